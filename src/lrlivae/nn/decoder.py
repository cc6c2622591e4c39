"""Decoder (generator) p_theta(x | z_s, z_u): concat(z_s, z_u) -> image in [-1, 1] (tanh), Sec. 3.4.

Each architecture mirrors its encoder; upsampling is a transposed convolution that exactly doubles
the size:
  small        fc(128w * s * s)-BN-ReLU, reshape to s x s (s = image_size / 16), then
               3 x [convT4x4 stride 2, BN, ReLU, dec_depth x (conv3x3, BN, ReLU)] with 64w, 32w, 16w
               channels and convT4x4 stride 2 to the image channels, tanh (w: dec_width, else width).
  paper_faces  fc1024-BN-ReLU, fc(512 * s * s)-BN-ReLU, then the VGG16-BN groups in reverse:
               3 x conv3x3 512 at s x s; [convT 512, 2 x conv 512], [convT 256, 2 x conv 256],
               [convT 128, conv 128], [convT 64, conv 64] each group doubling the size; conv3x3 to the
               image channels, tanh.
  paper_cifar  Table 3: fc1024-BN-ReLU (a 2x2x256 map at 32x32), convT5x5 256 s2, conv5x5 256 s1,
               convT5x5 128 s2, convT5x5 64 s2, convT5x5 32 s2 (BN, ReLU each), conv5x5 3 s1, tanh.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from lrlivae.nn.config import ModelConfig
from lrlivae.nn.encoders import conv_bn_relu


def up_bn_relu(c_in: int, c_out: int, kernel: int) -> list[nn.Module]:
    """Transposed conv that doubles H and W (kernel 4: padding 1; kernel 5: padding 2, output_padding 1)."""
    padding, output_padding = (1, 0) if kernel == 4 else ((kernel - 1) // 2, 1)
    return [nn.ConvTranspose2d(c_in, c_out, kernel, 2, padding, output_padding, bias=False),
            nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def fc_bn_relu(n_in: int, n_out: int) -> list[nn.Module]:
    return [nn.Linear(n_in, n_out, bias=False), nn.BatchNorm1d(n_out), nn.ReLU(inplace=True)]


class Decoder(nn.Module):
    """(z_s (B, zs_dim), z_u (B, zu_dim)) -> x (B, channels, image_size, image_size) in [-1, 1]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        z_dim, side, out_c = cfg.zs_dim + cfg.zu_dim, cfg.image_size // 16, cfg.channels
        if cfg.arch == "small":
            c1, c2, c3, c4 = cfg.decoder_channels()
            fc = fc_bn_relu(z_dim, c4 * side * side)
            start = c4
            convs = []
            for c_in, c_out in ((c4, c3), (c3, c2), (c2, c1)):
                convs += up_bn_relu(c_in, c_out, 4)
                for _ in range(cfg.dec_depth):
                    convs += conv_bn_relu(c_out, c_out, 3, 1)
            convs.append(nn.ConvTranspose2d(c1, out_c, 4, 2, 1))
        elif cfg.arch == "paper_faces":
            fc = [*fc_bn_relu(z_dim, cfg.enc_hidden_size), *fc_bn_relu(cfg.enc_hidden_size, 512 * side * side)]
            start = 512
            convs = [*conv_bn_relu(512, 512, 3, 1), *conv_bn_relu(512, 512, 3, 1), *conv_bn_relu(512, 512, 3, 1),
                     *up_bn_relu(512, 512, 4), *conv_bn_relu(512, 512, 3, 1), *conv_bn_relu(512, 512, 3, 1),
                     *up_bn_relu(512, 256, 4), *conv_bn_relu(256, 256, 3, 1), *conv_bn_relu(256, 256, 3, 1),
                     *up_bn_relu(256, 128, 4), *conv_bn_relu(128, 128, 3, 1),
                     *up_bn_relu(128, 64, 4), *conv_bn_relu(64, 64, 3, 1),
                     nn.Conv2d(64, out_c, 3, 1, 1)]
        else:  # paper_cifar
            fc = fc_bn_relu(z_dim, 256 * side * side)
            start = 256
            convs = [*up_bn_relu(256, 256, 5), *conv_bn_relu(256, 256, 5, 1), *up_bn_relu(256, 128, 5),
                     *up_bn_relu(128, 64, 5), *up_bn_relu(64, 32, 5), nn.Conv2d(32, out_c, 5, 1, 2)]
        self.fc = nn.Sequential(*fc)
        self.unflatten = nn.Unflatten(1, (start, side, side))
        self.convs = nn.Sequential(*convs, nn.Tanh())

    def forward(self, zs: torch.Tensor, zu: torch.Tensor) -> torch.Tensor:
        z = torch.cat([zs, zu], dim=1)  # (B, zs_dim + zu_dim)
        h = self.unflatten(self.fc(z))  # (B, start, s, s)
        return self.convs(h)  # (B, channels, image_size, image_size)
