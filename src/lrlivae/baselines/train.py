"""The shared training loop (`lrlivae.train.loop.Trainer`) driving a baseline's step.

`BaselineTrainer` keeps the loop's run / resume / atomic checkpoint / non-finite guard / logging and
replaces only what differs from Lr-LiVAE: the optimisers (generator side: encoder and generator;
critic side: discriminator and, for cVAE-GAN, the auxiliary classifier) and the step, one of
`lrlivae.baselines.steps.STEPS`, taken once per iteration (the loop's "joint" mode with no GM steps).
"""
from __future__ import annotations

from dataclasses import replace
import torch

from lrlivae.baselines.steps import STEPS, BaselineWeights
from lrlivae.train import distributed as ddp
from lrlivae.train.loop import CheckpointSpec, Hooks, TrainData, Trainer, TrainSettings
from lrlivae.train.sampler import EpochSampler
from lrlivae.train.speed import channels_last


class BaselineTrainer(Trainer):
    """Trains one baseline on uint8 faces with integer labels (settings.mode is forced to one step per
    iteration; settings.weights is unused, the baseline's weights are `weights`). Checkpoints are the
    loop's own (no GM optimiser; the GM sampler is the joint one)."""

    def __init__(self, model, disc, data: TrainData, settings: TrainSettings, weights: BaselineWeights,
                 checkpoint: CheckpointSpec, *, device: torch.device | str = "cpu", dist: ddp.DistInfo = ddp.DistInfo(),
                 hooks: Hooks = Hooks()):
        s = replace(settings, mode="joint", n_gm=0)
        self._take_inputs(model, disc, data, s, weights, checkpoint, device, dist, hooks)
        self.step_fn = STEPS[model.kind]
        self.gm_epochs_before = 0.0
        channels_last(model, disc)
        betas = (s.beta1, s.beta2)
        critic = [p for n, p in model.named_parameters() if n.startswith("cls.")]
        gen = [p for n, p in model.named_parameters() if not n.startswith("cls.")]
        self.opt_g = torch.optim.Adam(gen, lr=s.lr, betas=betas)
        critic = (list(disc.parameters()) if disc is not None else []) + critic
        self.opt_d = torch.optim.Adam(critic, lr=s.lr, betas=betas) if critic else None
        self.opt_gm = None
        self.joint_sampler = EpochSampler(data.rows, s.batch_size, seed=s.seed * 7919 + 2, rank=dist.rank,
                                          world=dist.world)
        self.gm_sampler = self.joint_sampler  # no GM steps; the loop reads its epoch progress only
        self.generator = torch.Generator(device=self.device).manual_seed(int(s.seed) * 1000 + dist.rank + 17)
        self.labeled = None

    def progress_name(self) -> str:
        return self.model.kind  # cvae, cgan, cvaegan: not the joint step it borrows the loop of

    # ------------------------------------------------------------------ the step
    def _update_sigma_lr(self) -> float:
        return self.s.lr  # no GM prior

    def _joint(self) -> dict:
        x, y = self._batch(self.joint_sampler)
        with self._autocast():
            total, scalars = self.step_fn(self.model, self.disc, self.opt_g, self.opt_d, x, y, self.w, self.generator)
        self._check(total, scalars)
        params = [p for g in self.opt_g.param_groups for p in g["params"]]
        if self.opt_d is not None:
            params += [p for g in self.opt_d.param_groups for p in g["params"]]
        ddp.allreduce_grads(params, self.dist.world)
        self.opt_g.step()
        if self.opt_d is not None:
            self.opt_d.step()
        return scalars
