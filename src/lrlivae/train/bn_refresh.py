"""Decoder batch-norm statistics that match use.

In training the decoder normalises each batch with that batch's own statistics (reconstructions of
encoder codes and prior samples alike), and keeps a running average of them for eval mode. What a user
asks of a trained model is prior samples in eval mode; the running average, a blend over every kind of
batch and over the whole run, then differs from the statistics of prior-sample batches, and eval-mode
samples differ from what the losses and the discriminator saw (lrlivae.evaluate.realism.train_eval_gap).
`refresh_decoder_statistics` recomputes the decoder's running statistics, as an exact average, from
batches of prior samples of the size training used (precise batch norm, computed on the batches of use).
"""
from __future__ import annotations

import torch
import torch.nn as nn


def decoder_batch_norms(model) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.dec.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def refresh_decoder_statistics(model, batches: int, batch_size: int, seed: int = 0) -> int:
    """Reset the running mean / variance of every batch norm of `model.dec` and re-estimate them over
    `batches` batches of `batch_size` prior samples (classes drawn uniformly, `model.generate`); every other
    module stays in eval mode and unchanged. Any model with `.dec`, `.cfg.n_classes` and `generate` (Lr-LiVAE,
    the baselines). Returns the number of batch norms refreshed."""
    bns = decoder_batch_norms(model)
    if not bns or batches <= 0:
        return 0
    was_training = model.training
    momenta = [m.momentum for m in bns]
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
        m.train()
    device = next(model.parameters()).device
    g = torch.Generator(device=device).manual_seed(seed)
    for _ in range(batches):
        y = torch.randint(model.cfg.n_classes, (batch_size,), generator=g, device=device)
        model.generate(y=y, n=batch_size, generator=g)
    for m, momentum in zip(bns, momenta):
        m.momentum = momentum
    model.train(was_training)
    return len(bns)
