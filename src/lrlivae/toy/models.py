"""The toy networks (Sec. 4.1): MLPs with hidden layers of 32, 64 and 64 units, for 2-D points.

Lr-LiVAE ("ours"):
    Encoder^s  x (B, 2) -> z_s (B, zs_dim), deterministic (the Dirac posterior of Sec. 3.3)
    Encoder^u  x (B, 2) -> mu, logvar (B, zu_dim) of q(z_u | x) (Sec. 3.2)
    Decoder    concat(z_s, z_u) -> x' (B, 2), the encoders' layers in reverse (64, 64, 32)
    adv        the adversarial classifier on z_u (Eq. 4 / 5): zu_dim -> adv_hidden -> C
    prior      the project's GaussianMixturePrior on z_s (Eq. 6)
    generation for class c: z_s ~ N(mu_c, Sigma_c), z_u ~ N(0, I)
  The attribute names and call signatures are those of lrlivae.nn.LrLiVAE, so the image model's training
  steps (lrlivae.train.steps.gm_step / joint_step) train it unchanged.

cVAE-GAN (Bao et al. 2017): one encoder q(z | x, c) on concat(x, onehot(c)), a generator G(z, c) on
concat(z, onehot(c)); generation for class c: z ~ N(0, I).

Latent sizes (defaults): ours z_s = z_u = 2, cVAE-GAN z = 2. The label-irrelevant code of either model has
the data's dimension, as much as the within-class variation (position along the arc, noise) can use; ours'
z_s has as many again, for the class and whatever of x the decoder takes from it (Encoder^s also learns
from L_rec).

Both are judged by the same discriminator, ToyDiscriminator: h = MLP(x) (32, 64, 64, leaky ReLU) and
D(x, c) = fc(h) + <embed(c), h>, the projection label term of the image model's discriminator (Sec. 3.4).
`features` exposes h, the penultimate features that cVAE-GAN's feature matching uses.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from lrlivae.priors import GaussianMixturePrior, randn, soft_clamp

LOGVAR_BOUND = 10.0  # q(z_u | x) log-variances are soft-clamped to [-10, 10], as in the image Encoder^u


def mlp(sizes: Sequence[int], act: type[nn.Module] = nn.ReLU, act_last: bool = False) -> nn.Sequential:
    """Linear layers sizes[0] -> ... -> sizes[-1] with `act` between them (and after the last if act_last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if act_last or i < len(sizes) - 2:
            layers.append(act(0.2) if act is nn.LeakyReLU else act())
    return nn.Sequential(*layers)


class GaussianEncoder(nn.Module):
    """in_dim -> hidden -> (mu (B, z_dim), logvar (B, z_dim)) of a diagonal Gaussian posterior."""

    def __init__(self, in_dim: int, z_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.net = mlp([in_dim, *hidden, 2 * z_dim])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, raw = self.net(x).chunk(2, dim=1)  # (B, z_dim) each
        return mu, soft_clamp(raw, -LOGVAR_BOUND, LOGVAR_BOUND)


class ConcatDecoder(nn.Module):
    """dec(a, b) = MLP(concat(a, b)): (B, a_dim), (B, b_dim) -> (B, 2)."""

    def __init__(self, in_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.net = mlp([in_dim, *reversed(hidden), 2])

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([a, b], dim=1))


class ToyDiscriminator(nn.Module):
    """D(x, c) = fc(h) + <embed(c), h>, h = MLP(x) with leaky ReLU; returns logits (B,).

    c = None (or a negative label) uses only the unconditional part fc(h).
    """

    def __init__(self, n_classes: int, hidden: Sequence[int] = (32, 64, 64)) -> None:
        super().__init__()
        self.body = mlp([2, *hidden], act=nn.LeakyReLU, act_last=True)
        self.fc = nn.Linear(hidden[-1], 1)
        self.embed = nn.Embedding(n_classes, hidden[-1])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate features h: (B, 2) -> (B, hidden[-1])."""
        return self.body(x)

    def head(self, h: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        out = self.fc(h).squeeze(1)  # (B,)
        if y is not None:
            known = y >= 0
            proj = (self.embed(y.clamp(min=0)) * h).sum(dim=1)  # (B,)
            out = out + torch.where(known, proj, torch.zeros_like(proj))
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(x), y)


class ToyLrLiVAE(nn.Module):
    """Lr-LiVAE for 2-D points: Encoder^s, Encoder^u, Decoder, adversarial classifier, GM prior."""

    def __init__(self, n_classes: int = 3, zs_dim: int = 2, zu_dim: int = 2, hidden: Sequence[int] = (32, 64, 64),
                 adv_hidden: int = 32, gm_var_init: float = 1.0, gm_mean_init: float = 1.0) -> None:
        super().__init__()
        self.n_classes, self.zs_dim, self.zu_dim = n_classes, zs_dim, zu_dim
        self.enc_s = mlp([2, *hidden, zs_dim])
        self.enc_u = GaussianEncoder(2, zu_dim, hidden)
        self.dec = ConcatDecoder(zs_dim + zu_dim, hidden)
        self.adv = mlp([zu_dim, adv_hidden, n_classes])
        self.prior = GaussianMixturePrior(n_classes, zs_dim, var_init=gm_var_init, mean_init=gm_mean_init)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """x' = Decoder(z_s, mu_u) with z_u at its posterior mean: (B, 2) -> (B, 2)."""
        return self.dec(self.enc_s(x), self.enc_u(x)[0])

    def generate(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x = Decoder(z_s, z_u), z_s ~ N(mu_y, Sigma_y), z_u ~ N(0, I): labels (N,) -> points (N, 2)."""
        zs = self.prior.sample(y, generator)  # (N, zs_dim)
        zu = randn((len(y), self.zu_dim), generator=generator)  # (N, zu_dim)
        return self.dec(zs, zu)


class ToyCVAEGAN(nn.Module):
    """cVAE-GAN for 2-D points: encoder q(z | x, c) and generator G(z, c), label as a one-hot input."""

    def __init__(self, n_classes: int = 3, z_dim: int = 2, hidden: Sequence[int] = (32, 64, 64)) -> None:
        super().__init__()
        self.n_classes, self.z_dim = n_classes, z_dim
        self.enc = GaussianEncoder(2 + n_classes, z_dim, hidden)
        self.gen = ConcatDecoder(z_dim + n_classes, hidden)

    def onehot(self, y: torch.Tensor) -> torch.Tensor:
        return F.one_hot(y, self.n_classes).float()  # (B, C)

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mu, logvar (B, z_dim) of q(z | x, c)."""
        return self.enc(torch.cat([x, self.onehot(y)], dim=1))

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """G(z, c): (B, z_dim), (B,) -> (B, 2)."""
        return self.gen(z, self.onehot(y))

    def reconstruct(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x, y)[0], y)

    def generate(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x = G(z, c), z ~ N(0, I): labels (N,) -> points (N, 2)."""
        return self.decode(randn((len(y), self.z_dim), generator=generator), y)
