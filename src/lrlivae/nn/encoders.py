"""Encoder^s (image -> z_s, deterministic) and Encoder^u (image -> mu, log-variance of q(z_u | x)).

Both share one backbone design per architecture (two separate instances, no shared weights):
  small        4 blocks [conv3x3 stride 2, BN, ReLU] with 16w, 32w, 64w, 128w channels
               (64x64 -> 4x4), then fc(enc_hidden)-BN-ReLU.
  paper_faces  VGG16-BN: 13 conv3x3-BN-ReLU layers (64, 64 | 128, 128 | 256 x3 | 512 x3 | 512 x3) with a
               2x2 max-pool after each of the first four groups (64x64 -> 4x4x512), then fc1024-BN-ReLU
               (paper Appendix B.2).
  paper_cifar  Table 3: conv5x5 32 s2, conv5x5 64 s2, conv3x3 128 s2, conv3x3 256 s2 (BN, ReLU each),
               then fc1024-BN-ReLU.
The head is a linear layer to z_s (Encoder^s, the Dirac posterior of Sec. 3.3) or two linear layers to
mu and log-variance (Encoder^u, Sec. 3.2).

Encoder^u log-variance bound: logvar = soft_clamp(raw, -B, B) with B = cfg.logvar_bound (default 10, so
the variance stays in [4.5e-5, 2.2e4]); a smooth tanh squash, identity-like near 0, so exp(logvar) never
overflows and the gradient is never cut to exactly zero as a hard clamp would.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from lrlivae.nn.config import ModelConfig
from lrlivae.priors import soft_clamp

VGG16_GROUPS: tuple[tuple[int, ...], ...] = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512),
                                              (512, 512, 512))


def conv_bn_relu(c_in: int, c_out: int, kernel: int, stride: int) -> list[nn.Module]:
    """Conv (same padding, no bias since BN follows) + BatchNorm + ReLU."""
    # padding (k - 1) // 2: k = 3 or 5 keep the size at stride 1 and halve it (even sizes) at stride 2.
    return [nn.Conv2d(c_in, c_out, kernel, stride, padding=(kernel - 1) // 2, bias=False),
            nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def vgg16_bn_features(channels: int) -> nn.Sequential:
    """VGG16-BN convolutions with 4 max-pools: (B, channels, H, W) -> (B, 512, H/16, W/16)."""
    layers: list[nn.Module] = []
    c_in = channels
    for i, group in enumerate(VGG16_GROUPS):
        for c_out in group:
            layers += conv_bn_relu(c_in, c_out, 3, 1)
            c_in = c_out
        if i < 4:  # the fifth pool of ImageNet VGG16 is dropped at 64x64 (4x4x512 after group 5)
            layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


def cifar_features(channels: int) -> nn.Sequential:
    """Table 3 encoder convolutions: (B, channels, H, W) -> (B, 256, H/16, W/16)."""
    return nn.Sequential(
        *conv_bn_relu(channels, 32, 5, 2), *conv_bn_relu(32, 64, 5, 2),
        *conv_bn_relu(64, 128, 3, 2), *conv_bn_relu(128, 256, 3, 2),
    )


def small_features(channels: int, widths: tuple[int, ...]) -> nn.Sequential:
    """Stride-2 conv3x3-BN-ReLU blocks: (B, channels, H, W) -> (B, widths[-1], H/16, W/16)."""
    layers: list[nn.Module] = []
    c_in = channels
    for c_out in widths:
        layers += conv_bn_relu(c_in, c_out, 3, 2)
        c_in = c_out
    return nn.Sequential(*layers)


def backbone(cfg: ModelConfig) -> tuple[nn.Sequential, int]:
    """The convolutional part of an encoder and its flattened output size."""
    side = cfg.image_size // 16
    if cfg.arch == "paper_faces":
        return vgg16_bn_features(cfg.channels), 512 * side * side
    if cfg.arch == "paper_cifar":
        return cifar_features(cfg.channels), 256 * side * side
    widths = cfg.small_channels()
    return small_features(cfg.channels, widths), widths[-1] * side * side


class _EncoderTrunk(nn.Module):
    """Backbone + fc(enc_hidden)-BN-ReLU: (B, C, H, W) -> (B, enc_hidden)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.features, n_flat = backbone(cfg)
        hidden = cfg.enc_hidden_size
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(n_flat, hidden, bias=False), nn.BatchNorm1d(hidden),
                                nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))  # (B, enc_hidden)


class EncoderS(nn.Module):
    """Encoder^s: x (B, C, H, W) in [-1, 1] -> z_s (B, zs_dim), deterministic."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.trunk = _EncoderTrunk(cfg)
        self.head = nn.Linear(cfg.enc_hidden_size, cfg.zs_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))  # (B, zs_dim)


class EncoderU(nn.Module):
    """Encoder^u: x (B, C, H, W) -> (mu (B, zu_dim), logvar (B, zu_dim)) of q(z_u | x) = N(mu, diag(exp(logvar)))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.trunk = _EncoderTrunk(cfg)
        self.mu = nn.Linear(cfg.enc_hidden_size, cfg.zu_dim)
        self.logvar = nn.Linear(cfg.enc_hidden_size, cfg.zu_dim)
        self.logvar_bound = float(cfg.logvar_bound)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x)  # (B, enc_hidden)
        mu = self.mu(h)  # (B, zu_dim)
        logvar = soft_clamp(self.logvar(h), -self.logvar_bound, self.logvar_bound)  # (B, zu_dim)
        return mu, logvar
