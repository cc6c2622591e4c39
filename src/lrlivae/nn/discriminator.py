"""Pixel-domain discriminator D(x, y) with a projection label term (Sec. 3.4, Eq. 10; Appendix B.2-B.3).

    D(x, y) = fc_out(h) + <embed(y), h>,      h = lrelu(fc_hidden(features(x)))

(projection discriminator, Miyato and Koyama 2018; the label embedding meets the first fc layer as in the
paper). Every weight - convolutions, both fc layers and the embedding - is spectrally normalised
(torch.nn.utils.parametrizations.spectral_norm); activations are leaky ReLU with slope 0.1.
y = None, or entries of y that are negative, mean "unlabeled": only the unconditional part fc_out(h).

Architectures:
  small        SN conv3x3 stride 2 with 16w, 32w, 64w, 128w channels, global average pool (or sum pool,
               `cfg.disc_pool`), fc(disc_hidden), fc1.
  paper_faces  Table 4: conv3x3 64 s2, 128 s2, 256 s1, 256 s2, 512 s1, 512 s2, 512 s2,
               global average pool, fc1024, fc1.
  paper_cifar  Table 3: conv5x5 32 s1, 128 s2, 256 s2, 256 s2, flatten, fc512, fc1.

Spectral-norm state. In training mode every forward call runs one power iteration and updates the
stored singular vectors. D must therefore be called ONCE per discriminator step: score real images,
reconstructions and prior samples together with `forward_batches` (one concatenated forward). For the
generator's loss, score the fakes inside `frozen_spectral_norm(disc)`, which reuses the stored singular
vectors without advancing them. (D has no batch norm or dropout, so the frozen pass is otherwise identical.)
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
import torch.nn as nn
from torch.nn.utils.parametrizations import spectral_norm

from lrlivae.nn.config import ModelConfig

LRELU_SLOPE = 0.1
FEATURE_LAYERS = 4  # modules of `features` up to the feature map that return_features gives (two conv + lrelu)


def _sn_conv_lrelu(c_in: int, c_out: int, kernel: int, stride: int) -> list[nn.Module]:
    conv = nn.Conv2d(c_in, c_out, kernel, stride, padding=(kernel - 1) // 2)
    return [spectral_norm(conv), nn.LeakyReLU(LRELU_SLOPE, inplace=True)]


class SumPool(nn.Module):
    """Global sum pooling (B, C, H, W) -> (B, C, 1, 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(dim=(2, 3), keepdim=True)


def _pool(cfg: ModelConfig) -> nn.Module:
    return SumPool() if cfg.disc_pool == "sum" else nn.AdaptiveAvgPool2d(1)


def _features(cfg: ModelConfig) -> tuple[nn.Sequential, int]:
    """Convolutions (+ pooling / flattening) and the size of the vector they produce."""
    c = cfg.channels
    if cfg.arch == "paper_faces":
        spec = [(64, 3, 2), (128, 3, 2), (256, 3, 1), (256, 3, 2), (512, 3, 1), (512, 3, 2), (512, 3, 2)]
        tail: list[nn.Module] = [_pool(cfg), nn.Flatten()]
        n_out = 512
    elif cfg.arch == "paper_cifar":
        spec = [(32, 5, 1), (128, 5, 2), (256, 5, 2), (256, 5, 2)]
        side = cfg.image_size // 8
        tail, n_out = [nn.Flatten()], 256 * side * side
    else:
        spec = [(w, 3, 2) for w in cfg.small_channels()]
        tail, n_out = [_pool(cfg), nn.Flatten()], spec[-1][0]
    layers: list[nn.Module] = []
    for c_out, k, s in spec:
        layers += _sn_conv_lrelu(c, c_out, k, s)
        c = c_out
    return nn.Sequential(*layers, *tail), n_out


class Discriminator(nn.Module):
    """D(x (B, C, H, W), y (B,) long or None) -> logits (B,). Higher means "real"."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        hidden = cfg.disc_hidden_size
        self.features, n_feat = _features(cfg)
        self.fc_hidden = spectral_norm(nn.Linear(n_feat, hidden))
        self.act = nn.LeakyReLU(LRELU_SLOPE, inplace=True)
        self.fc_out = spectral_norm(nn.Linear(hidden, 1))
        self.embed = spectral_norm(nn.Embedding(cfg.n_classes, hidden))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, return_features: bool = False):
        """Logits (B,); with return_features also the feature map after the second convolution
        (B, c2, H/4, W/4) (small: H/4), the layer whose distances `feature_matching` reads."""
        mid = self.features[:FEATURE_LAYERS](x)
        h = self.act(self.fc_hidden(self.features[FEATURE_LAYERS:](mid)))  # (B, hidden)
        out = self.fc_out(h).squeeze(1)  # (B,)
        if y is not None:
            labeled = y >= 0  # (B,)
            e = self.embed(y.clamp_min(0))  # (B, hidden)
            projection = (e * h).sum(dim=1)  # (B,)
            out = out + projection * labeled.to(projection.dtype)
        return (out, mid) if return_features else out

    def forward_batches(
        self, xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor | None] | None = None
    ) -> list[torch.Tensor]:
        """Score several batches with ONE forward call (one power iteration); returns one (B_i,) per batch.

        ys: one label tensor (or None for unlabeled) per batch; None for all unlabeled.
        """
        sizes = [x.shape[0] for x in xs]
        x_all = torch.cat(list(xs), dim=0)  # (sum B_i, C, H, W)
        if ys is None or all(y is None for y in ys):
            y_all = None
        else:
            if len(ys) != len(xs):
                raise ValueError(f"got {len(xs)} image batches but {len(ys)} label batches")
            y_all = torch.cat([y if y is not None else torch.full((n,), -1, dtype=torch.long, device=x_all.device)
                               for y, n in zip(ys, sizes)])  # (sum B_i,)
        return list(self(x_all, y_all).split(sizes))


@contextmanager
def frozen_spectral_norm(disc: nn.Module) -> Iterator[nn.Module]:
    """Run D without advancing its spectral-norm power iteration (gradients still flow to inputs and weights).

    Switches D to eval mode for the block (SN then reuses the stored singular vectors) and restores the
    previous mode afterwards.
    """
    was_training = disc.training
    disc.eval()
    try:
        yield disc
    finally:
        disc.train(was_training)
