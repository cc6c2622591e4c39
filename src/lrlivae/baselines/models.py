"""The label-conditioned baselines of the paper's comparison (Sec. 4.2, Tables 1, 2, 5, 6), built from the
same encoder, decoder and discriminator blocks as Lr-LiVAE (`lrlivae.nn`):

  cVAE      (Sohn et al. 2015)    encoder q(z | x, c), decoder p(x | z, c), z ~ N(0, I) prior.
  cGAN      (Miyato and Koyama)   generator G(z, c), projection discriminator D(x, c) (spectral norm, hinge).
  cVAE-GAN  (Bao et al. 2017)     encoder q(z | x, c), generator G(z, c), discriminator D(x) and an auxiliary
                                  classifier C(x) whose features drive the generator (mean feature matching).

The label c enters every network as a one-hot vector: the decoder / generator is the Lr-LiVAE `Decoder`
with concat(z_s, z_u) replaced by concat(onehot(c), z) (`BaselineConfig.decoder_config`: zs_dim = C,
zu_dim = z_dim); the encoder is the Lr-LiVAE backbone whose fc layer reads concat(features(x), onehot(c)).
Generation for class c, as the paper does for every baseline: z ~ N(0, I), x = G(z, onehot(c)).

Every model offers what the evaluation needs: `generate(y, n, generator)` -> `.x` in [-1, 1], `device`;
cVAE and cVAE-GAN also `encode(x, y)` and `reconstruct(x, y, sample)`; they need the true label for it
(the paper gives cVAE-GAN the label for inpainting), which `LabelBound` supplies to code written for
Lr-LiVAE's label-free `reconstruct(x, sample)`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Annotated

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import Field

from lrlivae.nn.config import ModelConfig
from lrlivae.nn.decoder import Decoder, fc_bn_relu, reconstruction_statistics
from lrlivae.nn.discriminator import Discriminator
from lrlivae.nn.encoders import backbone
from lrlivae.nn.model import generation_labels
from lrlivae.priors import randn, sample_standard_normal, soft_clamp

KINDS = ("cvae", "cgan", "cvaegan")
NAMES = {"cvae": "cVAE", "cgan": "cGAN", "cvaegan": "cVAE-GAN"}
HAS_ENCODER = {"cvae": True, "cgan": False, "cvaegan": True}
HAS_DISCRIMINATOR = {"cvae": False, "cgan": True, "cvaegan": True}


@dataclass
class BaselineConfig:
    """kind: one of KINDS; z_dim: size of the label-free code z; net: the shared architecture settings
    (arch, image size, n_classes, width, hidden sizes; its zs_dim / zu_dim are not used)."""

    kind: str
    z_dim: Annotated[int, Field(ge=1, le=4096, description="size of z (the label enters as one-hot)")]
    net: ModelConfig

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"baseline kind must be one of {KINDS}, got {self.kind!r}")
        if isinstance(self.z_dim, bool) or not isinstance(self.z_dim, int) or self.z_dim < 1:
            raise ValueError(f"z_dim must be an int >= 1, got {self.z_dim!r}")

    @property
    def n_classes(self) -> int:
        return self.net.n_classes

    def decoder_config(self) -> ModelConfig:
        """The Lr-LiVAE decoder's config with its input concat(z_s, z_u) read as concat(onehot(c), z)."""
        return replace(self.net, zs_dim=self.net.n_classes, zu_dim=self.z_dim)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "z_dim": self.z_dim, "net": self.net.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "BaselineConfig":
        return cls(kind=d["kind"], z_dim=int(d["z_dim"]), net=ModelConfig.from_dict(d["net"]))


def one_hot(y: torch.Tensor, n_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B,) long -> (B, n_classes)."""
    return F.one_hot(y.long(), n_classes).to(dtype)


class ConditionalEncoder(nn.Module):
    """q(z | x, c): backbone(x) and onehot(c) -> fc-BN-ReLU -> (mu (B, z_dim), logvar (B, z_dim)).

    The log-variance is soft-clamped to (-logvar_bound, logvar_bound) as in Lr-LiVAE's Encoder^u."""

    def __init__(self, cfg: BaselineConfig) -> None:
        super().__init__()
        net, hidden = cfg.net, cfg.net.enc_hidden_size
        self.n_classes = net.n_classes
        self.features, n_flat = backbone(net)
        self.fc = nn.Sequential(*fc_bn_relu(n_flat + net.n_classes, hidden))
        self.mu = nn.Linear(hidden, cfg.z_dim)
        self.logvar = nn.Linear(hidden, cfg.z_dim)
        self.logvar_bound = float(net.logvar_bound)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(x).flatten(1)  # (B, n_flat)
        h = self.fc(torch.cat([f, one_hot(y, self.n_classes, f.dtype)], 1))  # (B, hidden)
        logvar = soft_clamp(self.logvar(h), -self.logvar_bound, self.logvar_bound)  # (B, z_dim)
        return self.mu(h), logvar


class ConditionalDecoder(nn.Module):
    """p(x | z, c) / G(z, c): the Lr-LiVAE Decoder on concat(onehot(c), z) -> (B, C, H, W) in [-1, 1]."""

    def __init__(self, cfg: BaselineConfig) -> None:
        super().__init__()
        self.n_classes = cfg.n_classes
        self.dec = Decoder(cfg.decoder_config())

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.dec(one_hot(y, self.n_classes, z.dtype), z)


class AuxClassifier(nn.Module):
    """cVAE-GAN's classifier C(x): the encoder's backbone and fc-BN-ReLU layer (as Encoder^s), then fc(C).
    Returns (logits (B, C), features f_C(x) (B, enc_hidden)); the features feed Bao et al.'s feature
    matching. (Batch norm makes it learn many times faster than the discriminator's unnormalised layers;
    the step reads the matching features in eval mode, so that no image reaches another's features.)"""

    def __init__(self, net: ModelConfig) -> None:
        super().__init__()
        self.features, n_flat = backbone(net)
        self.fc = nn.Sequential(nn.Flatten(), *fc_bn_relu(n_flat, net.enc_hidden_size))
        self.fc_out = nn.Linear(net.enc_hidden_size, net.n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.fc(self.features(x))  # (B, enc_hidden)
        return self.fc_out(h), h


def disc_features(disc: Discriminator, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The unconditional D(x) of cVAE-GAN and its last hidden layer f_D(x): (logits (B,), features (B, hidden)).
    One call advances the spectral-norm power iteration once, like `Discriminator.forward`."""
    h = disc.act(disc.fc_hidden(disc.features(x)))  # (B, hidden)
    return disc.fc_out(h).squeeze(1), h


@dataclass
class BaselineGenerated:
    x: torch.Tensor  # (N, C, H, W) in [-1, 1]
    z: torch.Tensor  # (N, z_dim)
    y: torch.Tensor  # (N,) long


@dataclass
class BaselineReconstruction:
    x_rec: torch.Tensor  # (B, C, H, W) in [-1, 1]
    z: torch.Tensor  # (B, z_dim), sampled (or mu when sample=False)
    mu: torch.Tensor  # (B, z_dim)
    logvar: torch.Tensor  # (B, z_dim)


class _Conditional(nn.Module):
    """What every baseline shares: the config, the generator G(z, c) and class-conditional generation."""

    def __init__(self, cfg: BaselineConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.kind = cfg.kind
        self.dec = ConditionalDecoder(cfg)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B, z_dim), (B,) -> (B, C, H, W) in [-1, 1]."""
        return self.dec(z, y.to(z.device))

    def _labels(self, y, n: int | None, generator: torch.Generator | None) -> torch.Tensor:
        return generation_labels(y, n, self.cfg.n_classes, self.device, generator)

    def generate(self, y=None, n: int | None = None, generator: torch.Generator | None = None,
                 z: torch.Tensor | None = None) -> BaselineGenerated:
        """z ~ N(0, I) (or the given z (N, z_dim)) concatenated with onehot(y), decoded (paper Sec. 4.2).

        y: labels (N,), one class id (with n), or None (classes drawn uniformly, with n). Call eval() first."""
        labels = self._labels(y, n, generator)  # (N,)
        if z is None:
            z = sample_standard_normal(labels.numel(), self.cfg.z_dim, generator=generator, device=self.device)
        return BaselineGenerated(x=self.decode(z, labels), z=z, y=labels)


class CGAN(_Conditional):
    """cGAN generator G(z, c); its projection discriminator is a separate module (`build_discriminator`)."""


class CVAE(_Conditional):
    """cVAE: q(z | x, c) and p(x | z, c)."""

    def __init__(self, cfg: BaselineConfig) -> None:
        super().__init__(cfg)
        self.enc = ConditionalEncoder(cfg)

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of q(z | x, c), each (B, z_dim)."""
        return self.enc(x, y.to(x.device))

    def reconstruct(self, x: torch.Tensor, y: torch.Tensor, sample: bool = True,
                    generator: torch.Generator | None = None) -> BaselineReconstruction:
        """x' = G(z, c), z from q(z | x, c) (its mean when sample=False)."""
        mu, logvar = self.encode(x, y)
        z = mu  # (B, z_dim)
        if sample:
            z = mu + torch.exp(0.5 * logvar) * randn(tuple(mu.shape), generator=generator, device=mu.device,
                                                     dtype=mu.dtype)
        with reconstruction_statistics(self):  # eval mode: the decoder's statistics of encoder codes
            x_rec = self.decode(z, y)
        return BaselineReconstruction(x_rec=x_rec, z=z, mu=mu, logvar=logvar)


class CVAEGAN(CVAE):
    """cVAE-GAN: the cVAE plus the auxiliary classifier C (`cls`); D is a separate module."""

    def __init__(self, cfg: BaselineConfig) -> None:
        super().__init__(cfg)
        self.cls = AuxClassifier(cfg.net)


class LabelBound(nn.Module):
    """`model` with fixed true labels y (N,): `reconstruct(x, sample)` for code written for Lr-LiVAE's
    label-free interface (inpainting); x must hold the N images the labels belong to, in order."""

    def __init__(self, model: CVAE, y: torch.Tensor) -> None:
        super().__init__()
        self.model, self.y = model, torch.as_tensor(y, dtype=torch.long)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def reconstruct(self, x: torch.Tensor, sample: bool = False, generator=None) -> BaselineReconstruction:
        if len(x) != len(self.y):
            raise ValueError(f"{len(x)} images but {len(self.y)} bound labels")
        return self.model.reconstruct(x, self.y.to(x.device), sample=sample, generator=generator)


def build_baseline(cfg: BaselineConfig) -> _Conditional:
    """The generative part of a baseline (encoder, generator, classifier) for a config."""
    return {"cvae": CVAE, "cgan": CGAN, "cvaegan": CVAEGAN}[cfg.kind](cfg)


def build_discriminator(cfg: BaselineConfig) -> Discriminator | None:
    """The pixel discriminator (spectral norm, projection term; cVAE-GAN uses its unconditional part), or
    None for the cVAE."""
    return Discriminator(cfg.net) if HAS_DISCRIMINATOR[cfg.kind] else None
