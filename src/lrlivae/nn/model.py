"""Lr-LiVAE: two encoders, a decoder, the adversarial classifier on z_u and the GM prior on z_s (Fig. 1).

    z_s = Encoder^s(x)                         deterministic (Dirac posterior, Sec. 3.3)
    mu, logvar = Encoder^u(x);  z_u = mu + exp(logvar / 2) * eps     (Sec. 3.2, Algorithm 1 line 14)
    x' = Decoder(z_s, z_u)                     (Sec. 3.4)
    generation for class c: z_s ~ N(mu_c, Sigma_c), z_u ~ N(0, I), x = Decoder(z_s, z_u)   (Sec. 4.2)

The pixel discriminator is a separate module (`build_discriminator`) with its own optimiser.
All sub-networks use ordinary BatchNorm with running statistics, so the model must be put in eval()
mode for testing and generation; eval-mode outputs are then per-sample (independent of the batch).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from lrlivae.nn.classifier import AdversarialClassifier
from lrlivae.nn.config import ModelConfig
from lrlivae.nn.decoder import Decoder, reconstruction_statistics
from lrlivae.nn.discriminator import Discriminator
from lrlivae.nn.encoders import EncoderS, EncoderU
from lrlivae.priors import GaussianMixturePrior, randn, sample_standard_normal


@dataclass
class Encoded:
    zs: torch.Tensor  # (B, zs_dim)
    mu: torch.Tensor  # (B, zu_dim)
    logvar: torch.Tensor  # (B, zu_dim)


@dataclass
class Reconstruction:
    x_rec: torch.Tensor  # (B, C, H, W) in [-1, 1]
    zs: torch.Tensor  # (B, zs_dim)
    zu: torch.Tensor  # (B, zu_dim), sampled (or mu when sample=False)
    mu: torch.Tensor  # (B, zu_dim)
    logvar: torch.Tensor  # (B, zu_dim)


@dataclass
class Generated:
    x: torch.Tensor  # (N, C, H, W) in [-1, 1]
    zs: torch.Tensor  # (N, zs_dim)
    zu: torch.Tensor  # (N, zu_dim)
    y: torch.Tensor  # (N,) long, the classes z_s was drawn for


def generation_labels(y: torch.Tensor | int | None, n: int | None, n_classes: int, device: torch.device,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """The classes to generate for, as a (N,) long tensor on `device`: y=None draws n at random, an int
    repeats it n times, a tensor is checked against n and the class range [0, n_classes)."""
    if y is None:
        if n is None:
            raise ValueError("generate(y=None) needs n")
        gen_device = generator.device if generator is not None else device
        return torch.randint(n_classes, (n,), generator=generator, device=gen_device).to(device)
    if isinstance(y, int):
        if n is None:
            raise ValueError("generate(y=<int>) needs n")
        y = torch.full((n,), y, dtype=torch.long, device=device)
    y = y.to(device, torch.long).reshape(-1)
    if n is not None and n != y.numel():
        raise ValueError(f"n={n} but {y.numel()} labels were given")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}), got [{int(y.min())}, {int(y.max())}]")
    return y


class LrLiVAE(nn.Module):
    """Encoder^s, Encoder^u, Decoder, adversarial classifier and GM prior, built from one ModelConfig."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.enc_s = EncoderS(cfg)
        self.enc_u = EncoderU(cfg)
        self.dec = Decoder(cfg)
        self.adv = AdversarialClassifier(cfg)
        self.prior = GaussianMixturePrior(cfg.n_classes, cfg.zs_dim, var_min=cfg.gm_var_min,
                                          var_max=cfg.gm_var_max, var_init=cfg.gm_var_init,
                                          mean_init=cfg.gm_mean_init)

    @property
    def device(self) -> torch.device:
        return self.prior.means.device

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by component, for one optimiser (or learning rate) per component."""
        return {
            "enc_s": list(self.enc_s.parameters()),
            "enc_u": list(self.enc_u.parameters()),
            "dec": list(self.dec.parameters()),
            "adv": list(self.adv.parameters()),
            "gm_means": self.prior.mean_parameters(),
            "gm_logvars": self.prior.variance_parameters(),
        }

    # ------------------------------------------------------------------ inference
    def encode(self, x: torch.Tensor) -> Encoded:
        """x (B, C, H, W) -> z_s and the parameters of q(z_u | x)."""
        zs = self.enc_s(x)  # (B, zs_dim)
        mu, logvar = self.enc_u(x)  # (B, zu_dim) each
        return Encoded(zs=zs, mu=mu, logvar=logvar)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """z_u = mu + exp(logvar / 2) * eps, eps ~ N(0, I): (B, zu_dim)."""
        eps = randn(tuple(mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar) * eps

    def decode(self, zs: torch.Tensor, zu: torch.Tensor) -> torch.Tensor:
        """(B, zs_dim), (B, zu_dim) -> (B, C, H, W) in [-1, 1]."""
        return self.dec(zs, zu)

    def reconstruct(self, x: torch.Tensor, sample: bool = True,
                    generator: torch.Generator | None = None) -> Reconstruction:
        """x -> x' = Decoder(z_s, z_u); z_u is sampled from q(z_u | x), or its mean when sample=False."""
        enc = self.encode(x)
        zu = self.reparameterize(enc.mu, enc.logvar, generator) if sample else enc.mu  # (B, zu_dim)
        with reconstruction_statistics(self):  # eval mode: the decoder's statistics of encoder codes
            x_rec = self.decode(enc.zs, zu)  # (B, C, H, W)
        return Reconstruction(x_rec=x_rec, zs=enc.zs, zu=zu, mu=enc.mu, logvar=enc.logvar)

    def forward(self, x: torch.Tensor) -> Reconstruction:
        return self.reconstruct(x)

    # ------------------------------------------------------------------ generation
    def _labels(self, y: torch.Tensor | int | None, n: int | None,
                generator: torch.Generator | None) -> torch.Tensor:
        return generation_labels(y, n, self.cfg.n_classes, self.device, generator)

    def generate(
        self,
        y: torch.Tensor | int | None = None,
        n: int | None = None,
        generator: torch.Generator | None = None,
        zu: torch.Tensor | None = None,
    ) -> Generated:
        """Sample z_s ~ N(mu_y, Sigma_y), z_u ~ N(0, I) and decode.

        y: labels (N,), one class id (with n), or None (classes drawn uniformly, with n).
        zu: optional fixed z_u (N, zu_dim), e.g. to vary the class with everything else held.
        The prior parameters receive no gradient from generation (z_s is detached); the decoder does.
        Call model.eval() first for test-time generation.
        """
        labels = self._labels(y, n, generator)  # (N,)
        zs = self.prior.sample(labels, generator).detach()  # (N, zs_dim)
        if zu is None:
            zu = sample_standard_normal(labels.numel(), self.cfg.zu_dim, generator=generator, device=self.device,
                                        dtype=zs.dtype)  # (N, zu_dim)
        x = self.decode(zs, zu)  # (N, C, H, W)
        return Generated(x=x, zs=zs, zu=zu, y=labels)


def build_model(cfg: ModelConfig) -> LrLiVAE:
    """The generative model (encoders, decoder, adversarial classifier, GM prior) for a config."""
    return LrLiVAE(cfg)


def build_discriminator(cfg: ModelConfig) -> Discriminator:
    """The pixel discriminator for a config (a separate module with its own optimiser)."""
    return Discriminator(cfg)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
