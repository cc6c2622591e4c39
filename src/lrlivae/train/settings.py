"""The typed config of a training stage (TrainSettings), what a Trainer is given besides it (TrainData,
CheckpointSpec, Hooks) and the error a non-finite loss raises."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Literal

import numpy as np
from pydantic import Field

from lrlivae.train.steps import LossWeights


class NonFiniteLoss(RuntimeError):
    """A loss term became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainSettings:
    """What a training stage runs: its mode and length, the optimiser, checkpoints and logs, augmentation of
    the GM steps, the fine-tuning options and the loss weights. The Annotated bounds are checked where the
    settings are read from a file (params.yaml)."""

    mode: Literal["gm", "joint", "semi"]
    steps: Annotated[int, Field(ge=1, description="GM steps (mode gm), Algorithm 1 iterations (mode joint) or "
                                "fine-tuning steps (mode semi)")]
    batch_size: Annotated[int, Field(ge=2, le=65536)] = 64
    n_gm: Annotated[int, Field(ge=0, le=100)] = 3  # GM steps per joint iteration (Algorithm 1)
    lr: Annotated[float, Field(gt=0, le=1)] = 5e-4
    beta1: Annotated[float, Field(ge=0, lt=1)] = 0.0
    beta2: Annotated[float, Field(ge=0, lt=1)] = 0.9
    d_lr_mult: Annotated[float, Field(gt=0, le=100, description="the discriminator's learning rate is lr times "
                                      "this")] = 1.0
    n_d: Annotated[int, Field(ge=0, le=8, description="discriminator-only steps on each joint batch before the "
                              "joint step (steps.d_step)")] = 0
    dec_bn_refresh: Annotated[int, Field(ge=0, le=100_000, description="modes joint / semi: at the end, recompute "
                                         "the decoder's batch-norm statistics over this many batches of prior "
                                         "samples (train.bn_refresh; 0: off)")] = 100
    dec_bn_match: Annotated[float, Field(ge=0, lt=1, description="modes joint / semi: for this fraction of the "
                                         "stage's last steps the decoder's batch norms give in training what they "
                                         "give in use (statistics refreshed as dec_bn_refresh first, then "
                                         "dec_bn_match_mode), so the losses and D see the decoder users get "
                                         "(0: off)")] = 0.0
    dec_bn_match_mode: Annotated[Literal["renorm", "fixed"], Field(
        description="renorm: batch renormalisation (eval mode's output, batch norm's gradient, the statistics "
        "follow the batches); fixed: eval mode, the statistics fixed (nn.decoder._TwoStatistics)")] = "renorm"
    sigma_lr_decay: Annotated[float, Field(gt=0, le=1, description="the GM variances' learning rate is "
                                           "multiplied by this ...")] = 0.01
    sigma_lr_decay_epochs: Annotated[float, Field(ge=0, description="... after this many epochs of GM steps "
                                                  "(paper: 0.01 after 2)")] = 2.0
    checkpoint_every: Annotated[int, Field(ge=1)] = 100
    log_every: Annotated[int, Field(ge=1)] = 10
    precision: Annotated[Literal["fp32", "bf16"], Field(description="bf16: autocast (CUDA, or a CPU with bf16 "
                                                        "instructions)")] = "fp32"
    compile: bool = False  # torch.compile the encoders, the decoder and the discriminator (in place)
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    gm_shift: Annotated[int, Field(ge=0, le=16, description="GM steps: random translation of each batch by up to "
                                   "this many pixels (augmentation)")] = 0
    gm_flip: Annotated[bool, Field(description="GM steps: mirror each image left-right with probability 1/2 "
                                   "(augmentation)")] = False
    gm_color: Annotated[float, Field(ge=0.0, le=0.5, description="GM steps: random per-image light gain: "
                                     "brightness x U(1-a, 1+a), red / blue x (1 +- t) with t ~ U(-a, a) "
                                     "(augmentation; 0: off)")] = 0.0
    mix_labeled: Annotated[float, Field(ge=0, le=1, description="mode semi: fraction of steps taken on a labeled "
                                        "batch instead (Algorithm 1 step)")] = 0.0
    semi_n_gm: Annotated[int, Field(ge=0, le=16, description="mode semi: GM steps on labeled batches before each "
                                    "fine-tuning step (Algorithm 1)")] = 0
    pseudo_label_threshold: Annotated[float, Field(ge=0, le=1, description="mode semi: an unlabeled z_s whose GM "
                                                   "posterior max q(c | z_s) reaches this follows N(mu_c, Sigma_c) "
                                                   "of that class instead of the ambiguous Gaussian (0: off)")] = 0.0
    gm_refit: Annotated[Literal["none", "end", "epoch"], Field(
        description="set Sigma_c to the variance of the class's training codes (priors.refit_prior) at the end "
        "of the stage, or at every epoch end too")] = "none"
    weights: LossWeights = field(default_factory=LossWeights)


@dataclass
class TrainData:
    """The faces a Trainer trains on: uint8 faces (N, H, W, 3), the rows of them it trains on and an integer
    label per face. Mode semi: the unlabeled set (labels ignored), and `labeled` = (faces, rows, labels) of
    the labeled set, for mix_labeled, semi_n_gm and gm_refit."""

    faces: Any  # (N, H, W, 3) uint8, a memory-mapped array or any array-like
    rows: np.ndarray
    labels: np.ndarray
    labeled: tuple | None = None


@dataclass
class CheckpointSpec:
    """Where a run's checkpoint goes, the fingerprint that tells an unfinished checkpoint of this very run
    (the only one it resumes from), and plain values stored along (model config, identity list)."""

    path: Path
    fingerprint: str
    extra_state: dict = field(default_factory=dict)


@dataclass
class Hooks:
    """What the loop calls besides training: log_fn(scalars, step) at each logging window (main process
    only), on_epoch(trainer, epoch) at epoch ends (lrlivae.train.log_window.EpochCalls)."""

    log_fn: Callable[[dict, int], None] | None = None
    on_epoch: Callable[[Any, int], None] | None = None
