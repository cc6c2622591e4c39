"""Where the training loop's batches come from: which sampler and which set each iteration takes (mode semi
draws, per step, whether its joint batch is a labeled one), each batch gathered on the device while the
batch before it trains (lrlivae.train.prefetch), and the random training batches the decoder's batch-norm
refresh reads.

`BatchFeed` is the batch half of `lrlivae.train.loop.Trainer`; it reads the trainer's settings `s`, its
samplers `gm_sampler` / `joint_sampler`, the training set `faces` / `labels`, the labeled set `labeled`
(mode semi, else None), `mix_rng_seed`, `device` and the current `step`.
"""
from __future__ import annotations

import numpy as np

from lrlivae.train.prefetch import Prefetcher, gather
from lrlivae.train.sampler import EpochSampler


class BatchFeed:
    """The batches of a Trainer's iterations, in order, on its device."""

    prefetch = True  # gather the next batch in a background thread (False: on the spot, as it is needed)
    _prefetcher: Prefetcher | None = None
    _plan = (-1, 0)  # (step, batches taken in that step): where the loop stands in `_requests(step)`

    def _mixed_step_is_labeled(self, step: int | None = None) -> bool:
        """Mode semi: whether this step (default: the current one) takes a labeled batch (a draw fixed by
        seed and step)."""
        if self.labeled is None:
            return False
        step = self.step if step is None else step
        return bool(np.random.default_rng([self.mix_rng_seed, step]).random() < self.s.mix_labeled)

    def _requests(self, step: int) -> list[tuple[EpochSampler, tuple | None]]:
        """The batches iteration `step` of `run` takes, in order, as (sampler, source) pairs: what the
        prefetcher gathers ahead. A wrong guess costs time, never a different batch."""
        s = self.s
        if s.mode == "gm":
            return [(self.gm_sampler, None)]
        if s.mode == "semi":
            last = ((self.gm_sampler, self.labeled) if self._mixed_step_is_labeled(step)
                    else (self.joint_sampler, None))
            return [(self.gm_sampler, self.labeled)] * s.semi_n_gm + [last]
        return [(self.gm_sampler, None)] * s.n_gm + [(self.joint_sampler, None)]

    def _batch(self, sampler: EpochSampler, source: tuple | None = None):
        """The next batch of `sampler` from `source` (faces, labels) (default: the training set), on the
        device; meanwhile the batch after it is gathered in the background."""
        faces, labels = source or (self.faces, self.labels)
        rows = sampler.next()
        if not self.prefetch:
            return gather(faces, labels, rows, self.device)
        if self._prefetcher is None:
            self._prefetcher = Prefetcher(self.device)
        x, y = self._prefetcher.take(faces, labels, rows)
        step, taken = self._plan
        taken = taken + 1 if step == self.step else 1
        self._plan = (self.step, taken)
        plan = self._requests(self.step)
        if taken < len(plan):
            nxt = plan[taken]
        elif self.step + 1 < self.s.steps:
            nxt = self._requests(self.step + 1)[0]
        else:
            return x, y  # the run's last batch
        n_sampler, n_source = nxt
        n_faces, n_labels = n_source or (self.faces, self.labels)
        self._prefetcher.ahead(n_sampler, n_faces, n_labels)
        return x, y

    def _stop_prefetch(self) -> None:
        if self._prefetcher is not None:
            self._prefetcher.close()
            self._prefetcher = None
        self._plan = (-1, 0)

    def _refresh_images(self):
        """i -> a batch of random training images (x, y) on the device, for bn_refresh (seeded)."""
        rows = np.sort(np.asarray(self.joint_sampler.rows))
        rng = np.random.default_rng([self.s.seed, 7919, 5])
        n = min(self.s.batch_size, len(rows))
        return lambda i: gather(self.faces, self.labels, np.sort(rng.choice(rows, n, replace=False)), self.device)
