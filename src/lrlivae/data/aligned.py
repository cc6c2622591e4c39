"""The aligned-array dataset: `faces.npy` (uint8, N x S x S x 3, RGB, memory-mappable) beside
`index.parquet` (one row per face, row i describing faces[i]).

`AlignedWriter` appends crops into a memory-mapped `.npy` sized for the worst case and shrinks it to
the accepted count at the end, so a stage over hundreds of thousands of images never holds them all in
memory. `AlignedFaces` reads a set back and turns shuffled index batches into float tensors.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd

FACES = "faces.npy"
INDEX = "index.parquet"
REJECTS = "rejects.csv"
SPLITS = ("train", "val", "test")


def _npy_header(shape: tuple[int, ...]) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False, "shape": shape}
    )
    return buf.getvalue()


class AlignedWriter:
    """Append (S, S, 3) uint8 crops to `path` (a .npy file), at most `capacity` of them."""

    def __init__(self, path: str | Path, capacity: int, size: int):
        self.path = Path(path)
        self.size = size
        self.count = 0
        self.capacity = max(1, capacity)
        self._arr = np.lib.format.open_memmap(self.path, mode="w+", dtype=np.uint8, shape=(self.capacity, size, size, 3))

    def append(self, crop: np.ndarray) -> int:
        if crop.shape != (self.size, self.size, 3) or crop.dtype != np.uint8:
            raise ValueError(f"crop must be ({self.size}, {self.size}, 3) uint8, got {crop.shape} {crop.dtype}")
        if self.count >= self.capacity:
            raise IndexError("AlignedWriter is full")
        self._arr[self.count] = crop
        self.count += 1
        return self.count - 1

    def close(self) -> None:
        """Flush and shrink the file to the rows written (header rewritten in place, file truncated)."""
        self._arr.flush()
        offset = self._arr.offset
        del self._arr
        shape = (self.count, self.size, self.size, 3)
        header = _npy_header(shape)
        if len(header) == offset:
            with open(self.path, "r+b") as f:
                f.write(header)
                f.truncate(offset + int(np.prod(shape)))
        else:  # header length changed (never in practice): copy the rows into a fresh file
            src = np.load(self.path, mmap_mode="r")[: self.count]
            tmp = self.path.with_suffix(".shrink.npy")
            np.save(tmp, np.ascontiguousarray(src))
            del src
            os.replace(tmp, self.path)


def to_float_tensor(batch_u8: np.ndarray):
    """(B, S, S, 3) uint8 -> torch float32 (B, 3, S, S) in [-1, 1]."""
    import torch

    # reorder to NCHW while still uint8 (a quarter of the bytes), then convert; contiguous NCHW matters:
    # channels-last input makes CPU convolutions many times slower. Both steps run in numpy, single
    # threaded: numpy's uint8 transpose copy is ~3x faster than torch's permute().contiguous(), and
    # torch's multi-threaded conversion of so small a batch collapses when another process holds a
    # core (bench/align_speed.py measures the loader).
    nchw = np.ascontiguousarray(np.asarray(batch_u8).transpose(0, 3, 1, 2))
    out = nchw.astype(np.float32)
    np.divide(out, np.float32(127.5), out=out)
    np.subtract(out, np.float32(1.0), out=out)
    return torch.from_numpy(out)


def to_uint8_images(x) -> np.ndarray:
    """torch (B, 3, S, S) in [-1, 1] -> (B, S, S, 3) uint8."""
    x = ((x.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().byte()
    return x.permute(0, 2, 3, 1).cpu().numpy()


class AlignedFaces:
    """One aligned set (`data/aligned/<set>`): memory-mapped faces plus the index table."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        faces_path, index_path = self.root / FACES, self.root / INDEX
        for p in (faces_path, index_path):
            if not p.exists():
                raise FileNotFoundError(f"{p}: missing; run the `align` stage first (dvc repro align)")
        self.faces = np.load(faces_path, mmap_mode="r")
        self.index = pd.read_parquet(index_path)
        self._labels: dict[tuple, np.ndarray] = {}
        if len(self.index) != len(self.faces):
            raise ValueError(
                f"{self.root}: {FACES} holds {len(self.faces)} faces but {INDEX} has {len(self.index)} rows"
            )

    def __len__(self) -> int:
        return len(self.faces)

    @property
    def identities(self) -> list[str]:
        """Sorted identity names (labels are positions in this list); empty for unlabeled sets."""
        return sorted(i for i in self.index["identity"].unique() if i)

    def labels(self, identities: list[str] | None = None) -> np.ndarray:
        """Integer label per row (-1 where the row has no identity)."""
        ids = tuple(identities if identities is not None else self.identities)
        if ids not in self._labels:  # mapped once per identity list; each caller gets its own copy
            lookup = {name: i for i, name in enumerate(ids)}
            self._labels[ids] = self.index["identity"].map(lambda s: lookup.get(s, -1)).to_numpy(np.int64)
        return self._labels[ids].copy()

    def split_indices(self, split: str) -> np.ndarray:
        """Rows of `split` (ascending), labeled or not."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return np.flatnonzero(self.index["split"].to_numpy() == split)

    def labeled_rows(self, split: str, identities: list[str] | None = None) -> np.ndarray:
        """Rows of `split` (ascending) whose identity is one of `identities` (default: the set's own), i.e.
        the rows with a label >= 0 in `labels(identities)`."""
        rows = self.split_indices(split)
        return rows[self.labels(identities)[rows] >= 0]

    def images(self, rows: np.ndarray) -> np.ndarray:
        """uint8 crops for `rows` (any order; read in sorted order for the memory map's sake)."""
        rows = np.asarray(rows)
        order = np.argsort(rows, kind="stable")
        out = np.empty((len(rows),) + self.faces.shape[1:], dtype=np.uint8)
        out[order] = self.faces[rows[order]]
        return out

    def batch(self, rows: np.ndarray):
        """Float tensor (B, 3, S, S) in [-1, 1] for `rows`."""
        return to_float_tensor(self.images(rows))
