"""Deterministic, resumable batch sampling: epoch e visits the rows in an order drawn from (seed, e).

The sampler's whole state is (epoch, position), so a resumed run draws exactly the batches the
uninterrupted run would have drawn. Batches never straddle an epoch boundary (the tail is dropped,
as with drop_last), so every batch has the same size. Under data parallelism each rank takes every
world-th batch of the same global order.
"""
from __future__ import annotations

import numpy as np


class EpochSampler:
    def __init__(self, rows: np.ndarray, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) < batch_size * world:
            raise ValueError(
                f"{len(rows)} training rows are fewer than one batch per process ({batch_size} x {world}); "
                "lower the batch size or add data"
            )
        self.rows, self.batch_size, self.seed, self.rank, self.world = rows, batch_size, seed, rank, world
        self.batches_per_epoch = len(rows) // (batch_size * world)
        self.epoch, self.position = 0, 0
        self._order: np.ndarray | None = None

    def _perm(self) -> np.ndarray:
        if self._order is None:
            self._order = np.random.default_rng([self.seed, self.epoch]).permutation(self.rows)
        return self._order

    def next(self) -> np.ndarray:
        """Rows of the next batch (this rank's share)."""
        if self.position >= self.batches_per_epoch:
            self.epoch, self.position, self._order = self.epoch + 1, 0, None
        start = (self.position * self.world + self.rank) * self.batch_size
        self.position += 1
        return self._perm()[start : start + self.batch_size]

    @property
    def epoch_progress(self) -> float:
        """Fractional epochs completed."""
        return self.epoch + self.position / self.batches_per_epoch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position, self._order = int(state["epoch"]), int(state["position"]), None
