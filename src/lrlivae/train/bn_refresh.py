"""Decoder batch-norm statistics that match use.

In training the decoder normalises each batch with that batch's own statistics, and its batches are of
two kinds: encoder codes (reconstructions) and prior codes (samples). The two kinds differ (the aggregate
of q(z_u | x) is not N(0, I)), so one running average serves neither in eval mode: eval-mode samples and
reconstructions differ from what the losses and the discriminator saw (lrlivae.evaluate.realism.
train_eval_gap). `refresh_decoder_statistics` recomputes, as exact averages over batches of the size
training used, the statistics of prior-sample batches (the decoder's running statistics: generation) and
of encoder-code batches of training images (its second set, used inside
`lrlivae.nn.decoder.reconstruction_statistics`: reconstruction, swaps, inpainting).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn


def decoder_batch_norms(model) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.dec.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _estimate(model, bns, batches: int, run: Callable[[int], None]) -> None:
    """Running statistics of `bns` := the exact average over `batches` calls of run(i) (the rest in eval mode)."""
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
        m.train()
    for i in range(batches):
        run(i)
    model.eval()


@torch.no_grad()
def refresh_decoder_statistics(model, batches: int, batch_size: int, seed: int = 0,
                               images: Callable[[int], tuple[torch.Tensor, torch.Tensor]] | None = None) -> int:
    """Recompute the decoder's eval statistics (module docstring): from `batches` batches of `batch_size`
    prior samples (classes drawn uniformly, `model.generate`) into the running statistics, and, given
    `images(i) -> (x, y)` (the i-th batch of training images and labels) and a model that reconstructs, from
    reconstructions of them into the second set. Every other module stays in eval mode and unchanged. Any
    model with `.dec`, `.cfg.n_classes` and `generate` (Lr-LiVAE, the baselines). Returns the number of
    batch norms refreshed."""
    bns = decoder_batch_norms(model)
    if not bns or batches <= 0:
        return 0
    was_training = model.training
    momenta = [m.momentum for m in bns]
    modes = [int(m.stats_mode) if hasattr(m, "stats_mode") else 0 for m in bns]
    for m in bns:  # statistics used in training (decoder.set_decoder_statistics) are re-estimated too
        if hasattr(m, "stats_mode"):
            m.stats_mode.fill_(0)
    device = next(model.parameters()).device
    g = torch.Generator(device=device).manual_seed(seed)
    two_sets = all(hasattr(m, "rec_mean") for m in bns)
    if two_sets and images is not None and hasattr(model, "reconstruct"):
        takes_labels = hasattr(model, "kind")  # the baselines' q(z | x, c)

        def recon(i: int) -> None:
            x, y = images(i)
            if takes_labels:
                model.reconstruct(x, y, sample=True, generator=g)
            else:
                model.reconstruct(x, sample=True, generator=g)

        _estimate(model, bns, batches, recon)
        for m in bns:
            m.rec_mean.copy_(m.running_mean)
            m.rec_var.copy_(m.running_var)

    def sample(i: int) -> None:
        y = torch.randint(model.cfg.n_classes, (batch_size,), generator=g, device=device)
        model.generate(y=y, n=batch_size, generator=g)

    _estimate(model, bns, batches, sample)
    if two_sets and (images is None or not hasattr(model, "reconstruct")):
        for m in bns:  # nothing to reconstruct: one set for both uses
            m.rec_mean.copy_(m.running_mean)
            m.rec_var.copy_(m.running_var)
    for m, momentum, mode in zip(bns, momenta, modes):
        m.momentum = momentum
        if hasattr(m, "stats_mode"):
            m.stats_mode.fill_(mode)
    model.train(was_training)
    return len(bns)
