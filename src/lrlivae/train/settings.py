"""The typed config of a training stage (TrainSettings) and the error a non-finite loss raises."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from lrlivae.train.steps import LossWeights


class NonFiniteLoss(RuntimeError):
    """A loss term became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainSettings:
    mode: Literal["gm", "joint", "semi"]
    steps: int  # GM steps (mode gm), joint iterations (mode joint) or fine-tuning steps (mode semi)
    batch_size: int = 64
    n_gm: int = 3  # GM steps per joint iteration (Algorithm 1)
    lr: float = 5e-4
    beta1: float = 0.0
    beta2: float = 0.9
    d_lr_mult: float = 1.0  # the discriminator's learning rate is lr times this
    n_d: int = 0  # discriminator-only steps on each joint batch before the joint step (steps.d_step)
    dec_bn_refresh: int = 100  # modes joint / semi: at the end, the decoder's batch-norm statistics are
    #                            recomputed over this many batches of prior samples (train.bn_refresh; 0: off)
    sigma_lr_decay: float = 0.01  # the GM variances' learning rate is multiplied by this ...
    sigma_lr_decay_epochs: float = 2.0  # ... after this many epochs of GM steps (paper: 0.01 after 2)
    checkpoint_every: int = 100
    log_every: int = 10
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast (CUDA, or a CPU with bf16 instructions)
    compile: bool = False  # torch.compile the encoders, the decoder and the discriminator (in place)
    seed: int = 0
    gm_shift: int = 0  # GM steps: random translation of each batch by up to this many pixels (augmentation)
    gm_flip: bool = False  # GM steps: mirror each image left-right with probability 1/2 (augmentation)
    gm_color: float = 0.0  # GM steps: random per-image light gain: brightness x U(1-a, 1+a), red / blue
    #                        x (1 +- t) with t ~ U(-a, a) (augmentation; 0: off)
    mix_labeled: float = 0.0  # mode semi: fraction of steps taken on a labeled batch instead (Algorithm 1 step)
    semi_n_gm: int = 0  # mode semi: GM steps on labeled batches before each fine-tuning step (Algorithm 1)
    pseudo_label_threshold: float = 0.0  # mode semi: an unlabeled z_s whose GM posterior max q(c | z_s) reaches
    #                        this follows N(mu_c, Sigma_c) of that class instead of the ambiguous Gaussian (0: off)
    gm_refit: Literal["none", "end", "epoch"] = "none"  # set Sigma_c to the variance of the class's training
    #                        codes (priors.refit_prior) at the end of the stage, or at every epoch end too
    weights: LossWeights = field(default_factory=LossWeights)
