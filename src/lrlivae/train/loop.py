"""One training loop shared by the training stages, read top to bottom:

    resume (if an unfinished checkpoint of the same run exists)
    for each iteration:
        n_gm GM steps on fresh batches          (mode "gm": the whole stage is GM steps)
        one joint step                          (mode "joint")
        stop on a non-finite loss, naming the term and the step
        log named scalars; at epoch ends call on_epoch (at most MAX_EPOCH_CALLS times, and at the last
        step); checkpoint every `checkpoint_every`
    final checkpoint, marked finished

The checkpoint holds the model, discriminator, optimisers, sampler positions, RNG states and step, so a
run killed at any moment and started again ends with the same weights as one never interrupted (CPU).
Each batch is gathered one step ahead by a background thread (lrlivae.train.prefetch), which changes
neither the batches nor the sampler positions a checkpoint records.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch

from lrlivae.train import augment
from lrlivae.train import distributed as ddp
from lrlivae.train.bn_refresh import refresh_decoder_statistics
from lrlivae.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from lrlivae.train.optim import build_optimizers, set_sigma_lr
from lrlivae.train.prefetch import Prefetcher, gather
from lrlivae.train.sampler import EpochSampler
from lrlivae.train.settings import NonFiniteLoss, TrainSettings  # noqa: F401  (re-exported)
from lrlivae.train.steps import d_step, gm_step, joint_step

CHECKPOINT_FORMAT = "lrlivae-checkpoint-1"
MAX_EPOCH_CALLS = 20  # on_epoch calls per run, at most (plus the last step)


def channels_last(*modules) -> None:
    """Store the modules' 4-D weights channels-last (NHWC), as the loop's image batches are: the small nets'
    convolutions then run about a fifth faster on CPU (bench/train_speed.py). Values are unchanged."""
    for m in modules:
        if m is not None:
            m.to(memory_format=torch.channels_last)


def compile_modules(*modules) -> None:
    """torch.compile each module in place (Module.compile: parameter names and checkpoints unchanged)."""
    for m in modules:
        if m is not None:
            m.compile()


class _LogWindow:
    """Sums of an iteration's scalars over one logging window, and its speed."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.count, self.t0 = 0, time.perf_counter()

    def add(self, scalars: dict) -> None:
        for k, v in scalars.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
        self.count += 1

    def mean(self) -> dict:
        out = {k: v / self.count for k, v in self.sums.items()}
        out["_it_per_s"] = self.count / max(1e-9, time.perf_counter() - self.t0)
        return out


class Trainer:
    """Trains an LrLiVAE (and its discriminator) on uint8 faces with integer labels."""

    prefetch = True  # gather the next batch in a background thread (False: on the spot, as it is needed)
    _prefetcher: Prefetcher | None = None
    _plan = (-1, 0)  # (step, batches taken in that step): where the loop stands in `_requests(step)`

    def __init__(self, model, disc, faces, rows: np.ndarray, labels: np.ndarray, settings: TrainSettings,
                 checkpoint_path: Path, fingerprint: str, extra_state: dict | None = None,
                 device: torch.device | str = "cpu", dist: ddp.DistInfo = ddp.DistInfo(),
                 log_fn: Callable[[dict, int], None] | None = None,
                 on_epoch: Callable[["Trainer", int], None] | None = None,
                 gm_epochs_before: float = 0.0, labeled: tuple | None = None):
        """faces / rows / labels: the training set (mode semi: the unlabeled set, labels ignored).
        labeled: (faces, rows, labels) of the labeled set, for mode semi with mix_labeled > 0."""
        self.model, self.disc, self.faces = model, disc, faces
        self.labels = torch.as_tensor(np.array(labels, dtype=np.int64))
        self.s, self.w = settings, settings.weights
        self.checkpoint_path, self.fingerprint = Path(checkpoint_path), fingerprint
        self.extra_state = extra_state or {}
        self.device, self.dist = torch.device(device), dist
        self.log_fn, self.on_epoch = log_fn, on_epoch
        self.gm_epochs_before = gm_epochs_before
        s = settings
        channels_last(*self._trained())
        if s.compile:
            compile_modules(model.enc_s, model.enc_u, model.dec, disc)
        self.opt_gm, self.opt_g, self.opt_d = build_optimizers(model, disc, s)
        base = int(s.seed) * 1000 + dist.rank
        self.gm_sampler = EpochSampler(rows, s.batch_size, seed=s.seed * 7919 + 1, rank=dist.rank, world=dist.world)
        self.joint_sampler = EpochSampler(rows, s.batch_size, seed=s.seed * 7919 + 2, rank=dist.rank, world=dist.world)
        self.generator = torch.Generator(device=self.device).manual_seed(base + 17)
        self.labeled = None
        self.refit_source = (faces, rows, self.labels) if s.mode != "semi" else None
        if s.mode == "semi" and (s.mix_labeled > 0 or s.semi_n_gm > 0 or s.gm_refit != "none"):
            if labeled is None:
                raise ValueError("mix_labeled > 0, semi_n_gm > 0 and gm_refit need the labeled set")
            l_faces, l_rows, l_labels = labeled
            self.labeled = (l_faces, torch.as_tensor(np.array(l_labels, dtype=np.int64)))
            # the GM sampler walks the labeled set in mode semi (it has no GM steps of its own)
            self.gm_sampler = EpochSampler(l_rows, s.batch_size, seed=s.seed * 7919 + 3, rank=dist.rank, world=dist.world)
            self.refit_source = (l_faces, l_rows, self.labeled[1])
        self.mix_rng_seed = s.seed * 7919 + 4
        self.step = 0
        self.last_saved_step = -1
        self.history: list[dict] = []  # logged loss terms per logged step, kept in the checkpoint

    # ------------------------------------------------------------------ state
    def _trained(self):
        return [self.model] + ([self.disc] if self.disc is not None else [])

    def state_dict(self, finished: bool) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "finished": finished,
            "fingerprint": self.fingerprint,
            "step": self.step,
            "mode": self.s.mode,
            "settings": {k: v for k, v in asdict(self.s).items() if k != "weights"},
            "weights": asdict(self.w),
            "model": self.model.state_dict(),
            "disc": self.disc.state_dict() if self.disc is not None else None,
            "opt_gm": self.opt_gm.state_dict() if self.opt_gm is not None else None,
            "opt_g": self.opt_g.state_dict() if self.opt_g is not None else None,
            "opt_d": self.opt_d.state_dict() if self.opt_d is not None else None,
            "sampler_gm": self.gm_sampler.state_dict(),
            "sampler_joint": self.joint_sampler.state_dict(),
            "rng": {**rng_state(), "generator": self.generator.get_state()},
            "gm_epochs": self.gm_epochs,
            "history": self.history,
            **self.extra_state,
        }

    def load_state_dict(self, st: dict) -> None:
        self.model.load_state_dict(st["model"])
        if self.disc is not None and st.get("disc") is not None:
            self.disc.load_state_dict(st["disc"])
        if self.opt_gm is not None:
            self.opt_gm.load_state_dict(st["opt_gm"])
        if self.opt_g is not None:
            self.opt_g.load_state_dict(st["opt_g"])
        if self.opt_d is not None:
            self.opt_d.load_state_dict(st["opt_d"])
        self.gm_sampler.load_state_dict(st["sampler_gm"])
        self.joint_sampler.load_state_dict(st["sampler_joint"])
        set_rng_state(st["rng"])
        self.generator.set_state(st["rng"]["generator"])
        self.step = int(st["step"])
        self.last_saved_step = self.step
        self.history = list(st.get("history", []))

    def try_resume(self) -> bool:
        """Continue from an unfinished checkpoint of this very run (same fingerprint), if there is one."""
        if not self.checkpoint_path.exists():
            return False
        try:
            st = load_checkpoint(self.checkpoint_path, map_location=self.device)
        except ValueError:
            return False
        if st.get("format") != CHECKPOINT_FORMAT or st.get("finished") or st.get("fingerprint") != self.fingerprint:
            return False
        self.load_state_dict(st)
        return True

    def save(self, finished: bool = False) -> None:
        for m in self._trained():
            ddp.average_buffers(m, self.dist.world)
        if self.dist.is_main:
            save_checkpoint(self.checkpoint_path, self.state_dict(finished))
        ddp.barrier(self.dist)
        self.last_saved_step = self.step

    # ------------------------------------------------------------------ schedule
    @property
    def gm_epochs(self) -> float:
        return self.gm_epochs_before + self.gm_sampler.epoch_progress

    def _update_sigma_lr(self) -> float:
        return set_sigma_lr(self.opt_gm, self.s, self.gm_epochs)

    # ------------------------------------------------------------------ steps
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

    def _autocast(self):
        if self.s.precision == "bf16" and self.device.type in ("cuda", "cpu"):
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        import contextlib

        return contextlib.nullcontext()

    def _check(self, total: torch.Tensor, scalars: dict) -> None:
        if ddp.all_finite(total, self.dist) and all(math.isfinite(float(v)) for v in scalars.values()):
            return
        bad = [k for k, v in scalars.items() if not math.isfinite(float(v))] or ["loss/total"]
        kept = (f"the last good checkpoint {self.checkpoint_path} (step {self.last_saved_step}) is kept"
                if self.last_saved_step >= 0 else "no checkpoint had been written yet")
        raise NonFiniteLoss(f"non-finite {bad[0]} at step {self.step + 1} ({', '.join(bad)}); {kept}")

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        """The GM steps' augmentation (lrlivae.train.augment), drawn from the trainer's generator."""
        x = augment.shift(x, self.s.gm_shift, self.generator)
        x = augment.flip(x, self.s.gm_flip, self.generator)
        return augment.color(x, self.s.gm_color, self.generator)

    def _gm(self, source: tuple | None = None) -> dict:
        self._update_sigma_lr()
        x, y = self._batch(self.gm_sampler, source)
        x = self._augment(x)
        with self._autocast():
            total, scalars = gm_step(self.model, self.opt_gm, x, y, self.w)
        self._check(total, scalars)
        ddp.allreduce_grads([p for g in self.opt_gm.param_groups for p in g["params"]], self.dist.world)
        self.opt_gm.step()
        return scalars

    def refit(self) -> int:
        """priors.refit_prior on the codes of the labeled training rows (eval mode; every rank computes the
        same codes from averaged batch-norm statistics, then rank 0's prior is broadcast)."""
        from lrlivae.priors import refit_prior
        from lrlivae.train.monitor import encode_rows

        faces, rows, labels = self.refit_source
        ddp.average_buffers(self.model, self.dist.world)
        rows = np.sort(np.asarray(rows))
        zs = torch.as_tensor(encode_rows(self.model, faces, rows, self.device).zs)  # (N, zs_dim), eval mode
        n = refit_prior(self.model.prior, zs, labels[rows])
        ddp.broadcast_state(self.model.prior)
        return n

    def _mixed_step_is_labeled(self, step: int | None = None) -> bool:
        """Mode semi: whether this step (default: the current one) takes a labeled batch (a draw fixed by
        seed and step)."""
        if self.labeled is None:
            return False
        step = self.step if step is None else step
        return bool(np.random.default_rng([self.mix_rng_seed, step]).random() < self.s.mix_labeled)

    def _joint(self) -> dict:
        if self.s.mode == "semi":
            if self._mixed_step_is_labeled():
                x, y = self._batch(self.gm_sampler, self.labeled)
            else:
                x, _ = self._batch(self.joint_sampler)
                y = None  # unlabeled: the ambiguous Gaussian, no label-dependent terms
        else:
            x, y = self._batch(self.joint_sampler)
        d_scalars = {}
        for _ in range(self.s.n_d if self.opt_d is not None else 0):  # D-only steps on this batch first
            with self._autocast():
                d_scalars = d_step(self.model, self.disc, self.opt_d, x, y, self.w, self.generator)
            ddp.allreduce_grads(list(self.disc.parameters()), self.dist.world)
            self.opt_d.step()
        with self._autocast():
            total, scalars = joint_step(self.model, self.disc, self.opt_g, self.opt_d, x, y, self.w, self.generator,
                                        pseudo_label_threshold=self.s.pseudo_label_threshold)
        self._check(total, scalars)
        params = [p for g in self.opt_g.param_groups for p in g["params"]]
        if self.opt_d is not None:
            params += list(self.disc.parameters())
        ddp.allreduce_grads(params, self.dist.world)
        self.opt_g.step()
        if self.opt_d is not None:
            self.opt_d.step()
        return {**d_scalars, **scalars}

    def progress_name(self) -> str:
        """The progress bar's label: the stage's mode (gm, joint, semi)."""
        return self.s.mode

    def run(self) -> None:
        """Train until `settings.steps`, resuming if possible; writes the finished checkpoint."""
        try:
            self._run()
        finally:
            self._stop_prefetch()  # the background thread, and a batch it may have gathered for nothing

    def _run(self) -> None:
        s = self.s
        self._start()
        epoch_sampler = self.gm_sampler if s.mode == "gm" else self.joint_sampler
        from lrlivae.progress import progress

        bar = progress(total=s.steps, initial=self.step, desc=self.progress_name(), unit="it",
                       disable=not self.dist.is_main, mininterval=2.0)
        log = _LogWindow()
        # on_epoch (validation figures and image grids for the tracker) at epoch ends, but no more than
        # MAX_EPOCH_CALLS times a run: a small set's epochs are a few steps long
        call_gap, last_call = max(1, s.steps // MAX_EPOCH_CALLS), self.step
        while self.step < s.steps:
            epoch_before = epoch_sampler.epoch if epoch_sampler.position < epoch_sampler.batches_per_epoch \
                else epoch_sampler.epoch + 1
            log.add(self._iteration())
            self.step += 1
            bar.update(1)
            if self.step % s.log_every == 0 or self.step == s.steps:
                self._log(log.mean(), epoch_sampler, bar)
                log = _LogWindow()
            epoch_done = epoch_sampler.position >= epoch_sampler.batches_per_epoch
            if s.gm_refit == "epoch" and epoch_done and self.step < s.steps:
                self.refit()
            if s.gm_refit != "none" and self.step == s.steps:
                self.refit()
            if self.on_epoch is not None and ((epoch_done and self.step - last_call >= call_gap) or self.step == s.steps):
                self.on_epoch(self, epoch_before)
                last_call = self.step
            if self.step % s.checkpoint_every == 0 and self.step < s.steps:
                self.save(finished=False)
        bar.close()
        self._finish()

    def _start(self) -> None:
        """Train mode, the same weights on every process, and the resume point of an interrupted run."""
        for m in self._trained():
            m.train()
            ddp.broadcast_state(m)
        if self.try_resume() and self.dist.is_main:
            print(f"resuming from {self.checkpoint_path} at step {self.step}/{self.s.steps}", flush=True)

    def _iteration(self) -> dict:
        """One iteration of the mode: GM steps (train_gm), Algorithm 1 (n_gm GM steps, then the joint
        step), or fine-tuning (semi_n_gm GM steps on labeled batches, then the joint step)."""
        s, scalars = self.s, {}
        if s.mode == "gm":
            return self._gm()
        for _ in range(s.semi_n_gm if s.mode == "semi" else s.n_gm):
            scalars.update(self._gm(self.labeled) if s.mode == "semi" else self._gm())
        scalars.update(self._joint())
        return scalars

    def _log(self, logged: dict, epoch_sampler: EpochSampler, bar) -> None:
        """The means of a logging window, with the learning rates, speed and epoch: into the history (loss
        terms and D figures), the log function and the progress bar."""
        logged["lr/main"] = self.s.lr
        logged["lr/gm_sigma"] = self._update_sigma_lr()
        logged["perf/it_per_s"] = logged.pop("_it_per_s")
        logged["epoch"] = epoch_sampler.epoch_progress
        self.history.append({"step": self.step, **{k: float(v) for k, v in logged.items()
                                                   if k.startswith(("loss/", "d/"))}})
        if self.log_fn is not None and self.dist.is_main:
            self.log_fn(logged, self.step)
        bar.set_postfix({k.split("/")[-1]: f"{v:.3g}" for k, v in logged.items() if k.startswith("loss/")
                         and k.endswith(("cls", "rec", "kl"))})

    def _finish(self) -> None:
        s = self.s
        if s.mode != "gm" and s.dec_bn_refresh > 0:  # eval-mode samples as training made them (train.bn_refresh)
            refresh_decoder_statistics(self.model, s.dec_bn_refresh, s.batch_size, seed=s.seed,
                                       images=self._refresh_images())
        self.save(finished=True)
