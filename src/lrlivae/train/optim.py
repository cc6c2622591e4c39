"""The optimisers of Algorithm 1 and the GM variances' learning-rate schedule.

- opt_gm: Encoder^s, the GM means and the GM log-variances (the GM steps, Eq. 9), each a named group;
- opt_g: Encoder^s, Encoder^u, the decoder and the adversarial classifier (the joint step), modes joint and semi;
- opt_d: the discriminator, when there is one and the generator's GAN weight is positive.
All Adam with the stage's lr and betas.
"""
from __future__ import annotations

import torch

from lrlivae.train.settings import TrainSettings


def build_optimizers(model, disc, s: TrainSettings):
    """(opt_gm, opt_g or None, opt_d or None) for `model` and `disc` under settings `s`."""
    betas = (s.beta1, s.beta2)
    opt_gm = torch.optim.Adam(
        [
            {"params": list(model.enc_s.parameters()), "name": "enc_s"},
            {"params": model.prior.mean_parameters(), "name": "gm_means"},
            {"params": model.prior.variance_parameters(), "name": "gm_logvars"},
        ],
        lr=s.lr, betas=betas,
    )
    opt_g = opt_d = None
    if s.mode in ("joint", "semi"):
        opt_g = torch.optim.Adam(
            [{"params": list(getattr(model, n).parameters()), "name": n} for n in ("enc_s", "enc_u", "dec", "adv")],
            lr=s.lr, betas=betas,
        )
        if disc is not None and s.weights.gan_g > 0:
            opt_d = torch.optim.Adam(disc.parameters(), lr=s.lr * s.d_lr_mult, betas=betas)
    return opt_gm, opt_g, opt_d


def set_sigma_lr(opt_gm, s: TrainSettings, gm_epochs: float) -> float:
    """The GM log-variances' learning rate: lr, times sigma_lr_decay once `gm_epochs` epochs of GM steps
    reach sigma_lr_decay_epochs (the paper: x0.01 after 2 epochs). Sets it on opt_gm and returns it."""
    lr = s.lr * (s.sigma_lr_decay if gm_epochs >= s.sigma_lr_decay_epochs else 1.0)
    for g in opt_gm.param_groups:
        if g["name"] == "gm_logvars":
            g["lr"] = lr
    return lr
