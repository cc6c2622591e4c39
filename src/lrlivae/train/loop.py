"""One training loop shared by the training stages, read top to bottom:

    resume (if an unfinished checkpoint of the same run exists)
    for each iteration:
        n_gm GM steps on fresh batches          (mode "gm": the whole stage is GM steps)
        one joint step                          (mode "joint")
        stop on a non-finite loss, naming the term and the step
        log named scalars; at epoch ends call on_epoch (at most MAX_EPOCH_CALLS times, and at the last
        step); checkpoint every `checkpoint_every`
    final checkpoint, marked finished

A Trainer is given the model (and discriminator), the data (TrainData), its settings (TrainSettings), its
checkpoint (CheckpointSpec) and what to call back (Hooks). The checkpoint (lrlivae.train.checkpoint) holds
the model, discriminator, optimisers, sampler positions, RNG states and step, so a run killed at any moment
and started again ends with the same weights as one never interrupted (CPU). What is logged and when:
lrlivae.train.log_window.
Each batch is gathered one step ahead by a background thread (lrlivae.train.batches, .prefetch), which
changes neither the batches nor the sampler positions a checkpoint records.
"""
from __future__ import annotations

import contextlib
import math
from pathlib import Path

import numpy as np
import torch

from lrlivae.nn.decoder import decoder_statistics, set_decoder_statistics
from lrlivae.train import distributed as ddp
from lrlivae.train.augment import gm_augment
from lrlivae.train.batches import BatchFeed
from lrlivae.train.bn_refresh import refresh_decoder_statistics
from lrlivae.train.checkpoint import restore_trainer, save_checkpoint, trainer_state, unfinished_run
from lrlivae.train.log_window import MAX_EPOCH_CALLS, EpochCalls, LogWindow, bar_postfix, history_row  # noqa: F401
from lrlivae.train.optim import build_optimizers, set_sigma_lr
from lrlivae.train.sampler import EpochSampler
from lrlivae.train.settings import (CheckpointSpec, Hooks, NonFiniteLoss, TrainData,  # noqa: F401  (re-exported)
                                    TrainSettings)
from lrlivae.train.speed import channels_last, compile_modules  # noqa: F401  (re-exported)
from lrlivae.train.steps import d_step, gm_step, joint_step


class Trainer(BatchFeed):
    """Trains an LrLiVAE (and its discriminator) on uint8 faces with integer labels. Its batches come from
    `BatchFeed` (lrlivae.train.batches)."""

    def __init__(self, model, disc, data: TrainData, settings: TrainSettings, checkpoint: CheckpointSpec, *,
                 device: torch.device | str = "cpu", dist: ddp.DistInfo = ddp.DistInfo(), hooks: Hooks = Hooks(),
                 gm_epochs_before: float = 0.0):
        """gm_epochs_before: the epochs of GM steps the model had before this stage (the GM variances' learning
        rate schedule counts on from there)."""
        self._take_inputs(model, disc, data, settings, settings.weights, checkpoint, device, dist, hooks)
        self.gm_epochs_before = gm_epochs_before
        s, rows, labeled = settings, data.rows, data.labeled
        channels_last(*self._trained())
        if s.compile:
            compile_modules(model.enc_s, model.enc_u, model.dec, disc)
        self.opt_gm, self.opt_g, self.opt_d = build_optimizers(model, disc, s)
        base = int(s.seed) * 1000 + dist.rank
        self.gm_sampler = EpochSampler(rows, s.batch_size, seed=s.seed * 7919 + 1, rank=dist.rank, world=dist.world)
        self.joint_sampler = EpochSampler(rows, s.batch_size, seed=s.seed * 7919 + 2, rank=dist.rank, world=dist.world)
        self.generator = torch.Generator(device=self.device).manual_seed(base + 17)
        self.labeled = None
        self.refit_source = (data.faces, rows, self.labels) if s.mode != "semi" else None
        if s.mode == "semi" and (s.mix_labeled > 0 or s.semi_n_gm > 0 or s.gm_refit != "none"):
            if labeled is None:
                raise ValueError("mix_labeled > 0, semi_n_gm > 0 and gm_refit need the labeled set")
            l_faces, l_rows, l_labels = labeled
            self.labeled = (l_faces, torch.as_tensor(np.array(l_labels, dtype=np.int64)))
            # the GM sampler walks the labeled set in mode semi (it has no GM steps of its own)
            self.gm_sampler = EpochSampler(l_rows, s.batch_size, seed=s.seed * 7919 + 3, rank=dist.rank, world=dist.world)
            self.refit_source = (l_faces, l_rows, self.labeled[1])
        self.mix_rng_seed = s.seed * 7919 + 4

    def _take_inputs(self, model, disc, data: TrainData, settings: TrainSettings, weights,
                     checkpoint: CheckpointSpec, device: torch.device | str, dist: ddp.DistInfo, hooks: Hooks) -> None:
        """The attributes every trainer has (BaselineTrainer too), and the run's start: step 0, no history."""
        self.model, self.disc, self.faces = model, disc, data.faces
        self.labels = torch.as_tensor(np.array(data.labels, dtype=np.int64))
        self.s, self.w = settings, weights  # the checkpoint records asdict(self.w)
        self.checkpoint_path, self.fingerprint = Path(checkpoint.path), checkpoint.fingerprint
        self.extra_state = checkpoint.extra_state
        self.device, self.dist = torch.device(device), dist
        self.log_fn, self.on_epoch = hooks.log_fn, hooks.on_epoch
        self.step = 0
        self.last_saved_step = -1
        self.history: list[dict] = []  # logged loss terms per logged step, kept in the checkpoint

    # ------------------------------------------------------------------ state
    def _trained(self):
        return [self.model] + ([self.disc] if self.disc is not None else [])

    def state_dict(self, finished: bool) -> dict:
        return trainer_state(self, finished)

    def load_state_dict(self, st: dict) -> None:
        restore_trainer(self, st)

    def try_resume(self) -> bool:
        """Continue from an unfinished checkpoint of this very run (same fingerprint), if there is one."""
        st = unfinished_run(self.checkpoint_path, self.fingerprint, map_location=self.device)
        if st is None:
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
    def _autocast(self):
        if self.s.precision == "bf16" and self.device.type in ("cuda", "cpu"):
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _check(self, total: torch.Tensor, scalars: dict) -> None:
        if ddp.all_finite(total, self.dist) and all(math.isfinite(float(v)) for v in scalars.values()):
            return
        bad = [k for k, v in scalars.items() if not math.isfinite(float(v))] or ["loss/total"]
        kept = (f"the last good checkpoint {self.checkpoint_path} (step {self.last_saved_step}) is kept"
                if self.last_saved_step >= 0 else "no checkpoint had been written yet")
        raise NonFiniteLoss(f"non-finite {bad[0]} at step {self.step + 1} ({', '.join(bad)}); {kept}")

    def _gm(self, source: tuple | None = None) -> dict:
        self._update_sigma_lr()
        x, y = self._batch(self.gm_sampler, source)
        x = gm_augment(x, self.s, self.generator)  # drawn from the trainer's generator
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
        log, epoch_calls = LogWindow(), EpochCalls(s.steps, start=self.step)
        while self.step < s.steps:
            self._maybe_match_decoder()
            epoch_before = epoch_sampler.epoch if epoch_sampler.position < epoch_sampler.batches_per_epoch \
                else epoch_sampler.epoch + 1
            log.add(self._iteration())
            self.step += 1
            bar.update(1)
            if self.step % s.log_every == 0 or self.step == s.steps:
                self._log(log.mean(), epoch_sampler, bar)
                log = LogWindow()
            epoch_done = epoch_sampler.position >= epoch_sampler.batches_per_epoch
            if s.gm_refit == "epoch" and epoch_done and self.step < s.steps:
                self.refit()
            if s.gm_refit != "none" and self.step == s.steps:
                self.refit()
            if self.on_epoch is not None and epoch_calls.due(self.step, epoch_done):
                self.on_epoch(self, epoch_before)
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
        start = self._match_start()
        if self.s.mode != "gm" and (start is None or self.step <= start):  # batch statistics until the switch
            set_decoder_statistics(self.model, "batch")

    def _match_start(self) -> int | None:
        """The step from which the decoder's batch norms give in training what they give in use
        (TrainSettings.dec_bn_match)."""
        s = self.s
        if s.mode == "gm" or s.dec_bn_match <= 0:
            return None
        return s.steps - max(1, round(s.dec_bn_match * s.steps))

    def _maybe_match_decoder(self) -> None:
        """At the switch step: refresh the decoder's statistics from the current weights (train.bn_refresh),
        then train on them (decoder.set_decoder_statistics, TrainSettings.dec_bn_match_mode)."""
        start = self._match_start()
        if start is None or self.step < start or decoder_statistics(self.model) != "batch":
            return
        ddp.average_buffers(self.model, self.dist.world)
        refresh_decoder_statistics(self.model, max(1, self.s.dec_bn_refresh), self.s.batch_size, seed=self.s.seed,
                                   images=self._refresh_images())
        set_decoder_statistics(self.model, self.s.dec_bn_match_mode)

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
        self.history.append(history_row(self.step, logged))
        if self.log_fn is not None and self.dist.is_main:
            self.log_fn(logged, self.step)
        bar.set_postfix(bar_postfix(logged))

    def _finish(self) -> None:
        s = self.s
        # eval-mode samples as training made them (train.bn_refresh); statistics the decoder used in training
        # for the last steps (dec_bn_match) are already what it was trained with
        if s.mode != "gm" and s.dec_bn_refresh > 0 and decoder_statistics(self.model) == "batch":
            refresh_decoder_statistics(self.model, s.dec_bn_refresh, s.batch_size, seed=s.seed,
                                       images=self._refresh_images())
        self.save(finished=True)
