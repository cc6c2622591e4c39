"""Augmentation of the GM steps' batches (images in [-1, 1], (B, 3, H, W)); each draws from `generator`."""
from __future__ import annotations

import torch


def shift(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Translate the batch by a random offset of up to k pixels (edge pixels repeated); k 0: unchanged."""
    if k <= 0:
        return x
    dx, dy = (int(v) for v in torch.randint(-k, k + 1, (2,), generator=generator, device=generator.device))
    x = torch.nn.functional.pad(x, (k, k, k, k), mode="replicate")
    h, w = x.shape[2] - 2 * k, x.shape[3] - 2 * k
    return x[:, :, k + dy : k + dy + h, k + dx : k + dx + w]


def flip(x: torch.Tensor, on: bool, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2 (when `on`)."""
    if not on:
        return x
    mirror = torch.rand(len(x), generator=generator, device=generator.device) < 0.5  # (B,)
    return torch.where(mirror.to(x.device)[:, None, None, None], x.flip(-1), x)


def color(x: torch.Tensor, a: float, generator: torch.Generator) -> torch.Tensor:
    """Scale each image's light like the renderer's light intensity and warmth do: all channels by
    b ~ U(1 - a, 1 + a), red by (1 + t) and blue by (1 - t), t ~ U(-a, a); pixels in [-1, 1] are scaled
    as light in [0, 1] and clipped. a 0: unchanged."""
    a = float(a)
    if a <= 0:
        return x
    u = torch.rand(len(x), 2, generator=generator, device=generator.device).to(x.device) * 2 - 1
    b, t = 1 + a * u[:, 0], a * u[:, 1]
    gain = torch.stack([b * (1 + t), b, b * (1 - t)], 1).to(x.dtype)[:, :, None, None]
    return ((x + 1) * gain - 1).clamp_(-1, 1)


def gm_augment(x: torch.Tensor, settings, generator: torch.Generator) -> torch.Tensor:
    """The GM steps' augmentation a TrainSettings asks for (gm_shift, gm_flip, gm_color), in that order."""
    x = shift(x, settings.gm_shift, generator)
    x = flip(x, settings.gm_flip, generator)
    return color(x, settings.gm_color, generator)
