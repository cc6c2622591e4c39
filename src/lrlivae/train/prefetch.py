"""Training batches gathered off the critical path.

While the device runs step k, one background thread gathers the rows of the next batch from the uint8
faces (a memory-mapped array), converts them to float in [-1, 1] and, on CUDA, copies them from pinned
memory to the device on a side stream. The step then finds its batch ready.

Reproducibility does not depend on the thread. It never touches a sampler, a generator or a model: the
trainer hands it a copy of the sampler that will give the next batch, and when the trainer takes a batch
it advances its own sampler exactly as before and uses the prefetched tensors only if they hold exactly
the rows (and the source) it drew; otherwise it gathers them itself. The samplers a checkpoint saves
therefore count the batches consumed, and a batch holds the same values either way (`gather` is the one
function both paths run; bit-identical on CPU).
"""
from __future__ import annotations

import copy
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch


def gather(faces, labels: torch.Tensor, rows: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """faces[rows] as a training step reads it: float32 (B, 3, S, S) in [-1, 1], channels-last, on `device`,
    and labels[rows] (B,). Rows are read in ascending order (sequential reads of a memory-mapped file)."""
    from lrlivae.data.aligned import to_float_tensor

    order = np.argsort(rows, kind="stable")
    imgs = np.empty((len(rows),) + faces.shape[1:], dtype=np.uint8)
    imgs[order] = faces[rows[order]]
    x = to_float_tensor(imgs)  # (B, 3, S, S)
    y = labels[rows]  # (B,)
    if device.type == "cuda":  # pinned host memory: the copies below are truly asynchronous
        x, y = x.pin_memory(), y.pin_memory()
    x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    return x, y.to(device, non_blocking=True)


class Prefetcher:
    """One batch ahead: `ahead(sampler, faces, labels)` starts gathering the batch `sampler` gives next;
    `take(faces, labels, rows)` returns the batch of `rows`, prefetched when it matches, else gathered now."""

    def __init__(self, device: torch.device | str):
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        self.device = device
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-prefetch")
        self._stream = torch.cuda.Stream(device=device) if device.type == "cuda" else None
        self._pending: tuple[object, object, Future] | None = None  # (faces, labels, future)
        self.hits = 0  # batches taken from the prefetcher
        self.misses = 0  # batches gathered on the spot (the first of a run, or a batch other than foreseen)

    def _work(self, sampler, faces, labels):
        rows = sampler.next()  # the copy's; the trainer's sampler has not moved
        if self._stream is None:
            return rows, gather(faces, labels, rows, self.device), None
        with torch.cuda.device(self.device), torch.cuda.stream(self._stream):
            x, y = gather(faces, labels, rows, self.device)
            ready = torch.cuda.Event()
            ready.record(self._stream)
        return rows, (x, y), ready

    def ahead(self, sampler, faces, labels: torch.Tensor) -> None:
        """Start gathering the batch `sampler` will give next (from a copy: `sampler` itself does not move)."""
        self._drop()
        self._pending = (faces, labels, self._pool.submit(self._work, copy.copy(sampler), faces, labels))

    def take(self, faces, labels: torch.Tensor, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch of `rows` of (faces, labels): the prefetched tensors when they are exactly that batch."""
        pending, self._pending = self._pending, None
        if pending is not None:
            p_faces, p_labels, future = pending
            got_rows, (x, y), ready = future.result()
            if p_faces is faces and p_labels is labels and np.array_equal(got_rows, rows):
                if ready is not None:  # the compute stream waits for the side stream's copy, and the
                    # allocator learns that the compute stream uses the tensors
                    stream = torch.cuda.current_stream(self.device)
                    stream.wait_event(ready)
                    x.record_stream(stream)
                    y.record_stream(stream)
                self.hits += 1
                return x, y
        self.misses += 1
        return gather(faces, labels, rows, self.device)

    def _drop(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None and not pending[2].cancel():
            pending[2].exception()  # wait for the running gather; its result (or error) is not needed

    def close(self) -> None:
        """Finish or cancel the pending gather and stop the thread."""
        self._drop()
        self._pool.shutdown(wait=True)
