"""The loss terms only cVAE-GAN needs (Bao et al., ICCV 2017), as small pure functions returning scalars.

The reconstruction, KL and GAN terms are Lr-LiVAE's (`lrlivae.losses`: rec_loss, kl_loss, d_loss_hinge,
g_loss_hinge, d_loss_bce). Features f (B, k) are the last hidden layer of the discriminator (f_D) or of
the auxiliary classifier (f_C).

  pairwise_feature_matching   Eq. 6 (the feature part of L_G): 1/2 ||f(x) - f(x')||^2 per pair, batch mean;
  mean_feature_matching       Eq. 7, L_GD: 1/2 ||mean_i f(x_i) - mean_j f(G(z_j))||^2;
  class_mean_feature_matching Eq. 8, L_GC: 1/2 ||mean f_C(x of class c) - mean f_C(G(z, c))||^2, averaged
                              over the classes present in both batches (the paper sums over classes; the
                              mean keeps the weight independent of how many classes a batch holds);
  classifier_loss             L_C = -log P(c | x) on real images.
The real-image side of every matching term is a target: it is detached, so only the generator (and,
through x', the encoder) receives a gradient from it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def pairwise_feature_matching(f_real: torch.Tensor, f_rec: torch.Tensor) -> torch.Tensor:
    """1/2 ||f(x) - f(x')||^2 summed over features, mean over the batch: (B, k), (B, k) -> scalar."""
    return 0.5 * (f_rec - f_real.detach()).pow(2).sum(dim=1).mean()


def mean_feature_matching(f_real: torch.Tensor, f_fake: torch.Tensor) -> torch.Tensor:
    """L_GD (Eq. 7) = 1/2 ||E f(x) - E f(G(z))||^2 with batch means: (B, k), (M, k) -> scalar."""
    return 0.5 * (f_fake.mean(dim=0) - f_real.detach().mean(dim=0)).pow(2).sum()


def class_mean_feature_matching(f_real: torch.Tensor, y_real: torch.Tensor, f_fake: torch.Tensor,
                                y_fake: torch.Tensor) -> torch.Tensor:
    """L_GC (Eq. 8): mean over classes c present in both batches of 1/2 ||E f(x | c) - E f(G(z, c))||^2.

    f_real (B, k) with labels y_real (B,), f_fake (M, k) with labels y_fake (M,)."""
    n_classes = int(torch.maximum(y_real.max(), y_fake.max())) + 1
    oh_r = F.one_hot(y_real, n_classes).to(f_real.dtype)  # (B, C)
    oh_f = F.one_hot(y_fake, n_classes).to(f_fake.dtype)  # (M, C)
    n_r, n_f = oh_r.sum(0), oh_f.sum(0)  # (C,)
    both = (n_r > 0) & (n_f > 0)  # (C,)
    mean_r = (oh_r.t() @ f_real.detach())[both] / n_r[both, None]  # (C', k)
    mean_f = (oh_f.t() @ f_fake)[both] / n_f[both, None]  # (C', k)
    return 0.5 * (mean_f - mean_r).pow(2).sum(dim=1).mean()


def classifier_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L_C = -log P(c | x), batch mean: (B, C), (B,) -> scalar."""
    return F.cross_entropy(logits, y)
