"""Decoder (generator) p_theta(x | z_s, z_u): concat(z_s, z_u) -> image in [-1, 1] (tanh), Sec. 3.4.

Each architecture mirrors its encoder. Upsampling (`cfg.dec_up`) is a transposed convolution that exactly
doubles the size ("transpose", the paper) or nearest-neighbour doubling followed by a conv3x3 ("resize":
every output pixel sees the same number of weights, so no checkerboard; Odena et al. 2016). The
normalisation (`cfg.dec_norm`) is BatchNorm ("batch", the paper), GroupNorm with 8 groups ("group": each
image normalised on its own) or none ("none": convolutions with biases); with "group" and "none" the
training-mode and eval-mode outputs are the same.
  small        fc(128w * s * s)-BN-ReLU, reshape to s x s (s = image_size / 16), then
               3 x [convT4x4 stride 2, BN, ReLU, dec_depth x (conv3x3, BN, ReLU)] with 64w, 32w, 16w
               channels and convT4x4 stride 2 to the image channels, tanh (w: dec_width, else width);
               with dec_head > 0 the last doubling keeps 16w channels (BN, ReLU), dec_head - 1 more
               conv3x3-BN-ReLU follow at full resolution, then a conv3x3 to the image channels.
  paper_faces  fc1024-BN-ReLU, fc(512 * s * s)-BN-ReLU, then the VGG16-BN groups in reverse:
               3 x conv3x3 512 at s x s; [convT 512, 2 x conv 512], [convT 256, 2 x conv 256],
               [convT 128, conv 128], [convT 64, conv 64] each group doubling the size; conv3x3 to the
               image channels, tanh.
  paper_cifar  Table 3: fc1024-BN-ReLU (a 2x2x256 map at 32x32), convT5x5 256 s2, conv5x5 256 s1,
               convT5x5 128 s2, convT5x5 64 s2, convT5x5 32 s2 (BN, ReLU each), conv5x5 3 s1, tanh.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from lrlivae.nn.config import ModelConfig

GROUPS = 8  # GroupNorm groups of the "group" decoder


STATS_MODES = ("batch", "fixed", "renorm")  # what a decoder batch norm normalises with in training mode


class _TwoStatistics:
    """Batch norm whose eval mode keeps two sets of statistics: running_mean / running_var for decoding
    prior codes (generation) and rec_mean / rec_var for decoding encoder codes (reconstruction, swaps,
    inpainting), chosen by `use_rec` (`reconstruction_statistics`). lrlivae.train.bn_refresh fills both
    sets at the end of training.

    In training mode it normalises as `stats_mode` says (`set_decoder_statistics`, TrainSettings.dec_bn_match):
      batch   plain batch norm (each batch's own statistics; the running ones follow them);
      fixed   as eval mode, with the stored statistics, which no longer move;
      renorm  batch renormalisation without clipping (Ioffe 2017): the output is eval mode's (the stored set),
              the gradient flows through the batch's statistics as in batch norm, and the stored set follows
              the batches it normalises (momentum).
    With fixed and renorm what the losses see is what users get. `stats_mode` is a buffer: a checkpoint keeps
    it, and a loaded model in training mode runs as its training ended."""

    use_rec = False

    def _add_rec(self) -> None:
        self.register_buffer("rec_mean", self.running_mean.clone())
        self.register_buffer("rec_var", self.running_var.clone())
        self.register_buffer("stats_mode", torch.zeros((), dtype=torch.uint8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mode = 1 if not self.training else int(self.stats_mode)
        if mode == 0:
            return super().forward(x)
        mean, var = (self.rec_mean, self.rec_var) if self.use_rec else (self.running_mean, self.running_var)
        if mode == 1:
            return F.batch_norm(x, mean, var, self.weight, self.bias, False, 0.0, self.eps)
        return self._renorm(x, mean, var)

    def _renorm(self, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.float()
        mu_b, var_b = xf.mean(dims), xf.var(dims, unbiased=False)
        sigma_b, sigma = (var_b + self.eps).sqrt(), (var + self.eps).sqrt()
        r, d = (sigma_b / sigma).detach(), ((mu_b - mean) / sigma).detach()
        y = ((xf - mu_b.view(shape)) / sigma_b.view(shape) * r.view(shape) + d.view(shape))
        y = y * self.weight.view(shape) + self.bias.view(shape)
        with torch.no_grad():
            n = x.numel() / x.shape[1]
            m = self.momentum if self.momentum is not None else 0.1
            mean.lerp_(mu_b.detach().to(mean.dtype), m)
            var.lerp_((var_b.detach() * n / max(n - 1, 1)).to(var.dtype), m)
        return y.to(x.dtype)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for k, src in (("rec_mean", "running_mean"), ("rec_var", "running_var")):
            if prefix + k not in state_dict and prefix + src in state_dict:  # a checkpoint with one set
                state_dict[prefix + k] = state_dict[prefix + src]
        if prefix + "stats_mode" not in state_dict and prefix + "running_mean" in state_dict:  # an earlier one
            state_dict[prefix + "stats_mode"] = torch.zeros((), dtype=torch.uint8)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class DecoderBatchNorm2d(_TwoStatistics, nn.BatchNorm2d):
    def __init__(self, c: int) -> None:
        super().__init__(c)
        self._add_rec()


class DecoderBatchNorm1d(_TwoStatistics, nn.BatchNorm1d):
    def __init__(self, c: int) -> None:
        super().__init__(c)
        self._add_rec()


@contextmanager
def reconstruction_statistics(model) -> Iterator[None]:
    """Within the block, an eval-mode decoder (`model.dec`) normalises with the statistics of encoder codes
    (reconstructions, swaps, inpainting) instead of those of prior samples."""
    bns = [m for m in model.dec.modules() if isinstance(m, _TwoStatistics)]
    for m in bns:
        m.use_rec = True
    try:
        yield
    finally:
        for m in bns:
            m.use_rec = False


def set_decoder_statistics(model, mode: str) -> int:
    """What every batch norm of `model.dec` normalises with in training mode: "batch", "fixed" or "renorm"
    (_TwoStatistics). Returns their number."""
    if mode not in STATS_MODES:
        raise ValueError(f"decoder statistics mode must be one of {STATS_MODES}, got {mode!r}")
    bns = [m for m in model.dec.modules() if isinstance(m, _TwoStatistics)]
    for m in bns:
        m.stats_mode.fill_(STATS_MODES.index(mode))
    return len(bns)


def decoder_statistics(model) -> str:
    """The training-mode statistics of the decoder's batch norms (`set_decoder_statistics`; "batch" if none)."""
    modes = {int(m.stats_mode) for m in model.dec.modules() if isinstance(m, _TwoStatistics)}
    return STATS_MODES[modes.pop()] if len(modes) == 1 else "batch"


def norm(kind: str, c: int, dims: int = 2) -> nn.Module:
    """BatchNorm with a second set of eval statistics ("batch"), GroupNorm ("group", 8 groups or fewer when
    c is smaller) or none ("none")."""
    if kind == "group":
        return nn.GroupNorm(min(GROUPS, c), c)
    if kind == "none":
        return nn.Identity()
    return DecoderBatchNorm2d(c) if dims == 2 else DecoderBatchNorm1d(c)


def conv_norm_relu(c_in: int, c_out: int, kernel: int, kind: str = "batch") -> list[nn.Module]:
    """Conv at stride 1 (same padding; a bias only without normalisation) + normalisation + ReLU."""
    return [nn.Conv2d(c_in, c_out, kernel, 1, (kernel - 1) // 2, bias=kind == "none"), norm(kind, c_out),
            nn.ReLU(inplace=True)]


def upsample(c_in: int, c_out: int, kernel: int, up: str = "transpose", bias: bool = False) -> list[nn.Module]:
    """A layer that doubles H and W: a transposed conv (kernel 4: padding 1; kernel 5: padding 2,
    output_padding 1), or nearest doubling then a conv of the same kernel ("resize")."""
    if up == "resize":
        return [nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(c_in, c_out, kernel, 1, (kernel - 1) // 2, bias=bias)]
    padding, output_padding = (1, 0) if kernel == 4 else ((kernel - 1) // 2, 1)
    return [nn.ConvTranspose2d(c_in, c_out, kernel, 2, padding, output_padding, bias=bias)]


def up_norm_relu(c_in: int, c_out: int, kernel: int, up: str = "transpose", kind: str = "batch") -> list[nn.Module]:
    """Doubling layer (`upsample`; a resize uses a 3x3 kernel where the transposed conv has 4x4) + norm + ReLU."""
    k = 3 if up == "resize" and kernel == 4 else kernel
    return [*upsample(c_in, c_out, k, up, bias=kind == "none"), norm(kind, c_out), nn.ReLU(inplace=True)]


def fc_bn_relu(n_in: int, n_out: int, kind: str = "batch") -> list[nn.Module]:
    return [nn.Linear(n_in, n_out, bias=kind == "none"), norm(kind, n_out, dims=1), nn.ReLU(inplace=True)]


class Decoder(nn.Module):
    """(z_s (B, zs_dim), z_u (B, zu_dim)) -> x (B, channels, image_size, image_size) in [-1, 1]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        z_dim, side, out_c = cfg.zs_dim + cfg.zu_dim, cfg.image_size // 16, cfg.channels
        up, nk = cfg.dec_up, cfg.dec_norm
        ucr = lambda a, b, k: up_norm_relu(a, b, k, up, nk)  # noqa: E731
        ccr = lambda a, b, k: conv_norm_relu(a, b, k, nk)  # noqa: E731
        if cfg.arch == "small":
            c1, c2, c3, c4 = cfg.decoder_channels()
            fc = fc_bn_relu(z_dim, c4 * side * side, nk)
            start = c4
            convs = []
            for c_in, c_out in ((c4, c3), (c3, c2), (c2, c1)):
                convs += ucr(c_in, c_out, 4)
                for _ in range(cfg.dec_depth):
                    convs += ccr(c_out, c_out, 3)
            if cfg.dec_head > 0:  # the last doubling keeps c1 channels; conv3x3 layers at full resolution
                convs += ucr(c1, c1, 4)
                for _ in range(cfg.dec_head - 1):
                    convs += ccr(c1, c1, 3)
                convs.append(nn.Conv2d(c1, out_c, 3, 1, 1))
            else:
                convs += upsample(c1, out_c, 3 if up == "resize" else 4, up, bias=True)
        elif cfg.arch == "paper_faces":
            fc = [*fc_bn_relu(z_dim, cfg.enc_hidden_size, nk), *fc_bn_relu(cfg.enc_hidden_size, 512 * side * side, nk)]
            start = 512
            convs = [*ccr(512, 512, 3), *ccr(512, 512, 3), *ccr(512, 512, 3),
                     *ucr(512, 512, 4), *ccr(512, 512, 3), *ccr(512, 512, 3),
                     *ucr(512, 256, 4), *ccr(256, 256, 3), *ccr(256, 256, 3),
                     *ucr(256, 128, 4), *ccr(128, 128, 3),
                     *ucr(128, 64, 4), *ccr(64, 64, 3),
                     nn.Conv2d(64, out_c, 3, 1, 1)]
        else:  # paper_cifar
            fc = fc_bn_relu(z_dim, 256 * side * side, nk)
            start = 256
            convs = [*ucr(256, 256, 5), *ccr(256, 256, 5), *ucr(256, 128, 5),
                     *ucr(128, 64, 5), *ucr(64, 32, 5), nn.Conv2d(32, out_c, 5, 1, 2)]
        self.fc = nn.Sequential(*fc)
        self.unflatten = nn.Unflatten(1, (start, side, side))
        self.convs = nn.Sequential(*convs, nn.Tanh())

    def forward(self, zs: torch.Tensor, zu: torch.Tensor) -> torch.Tensor:
        z = torch.cat([zs, zu], dim=1)  # (B, zs_dim + zu_dim)
        h = self.unflatten(self.fc(z))  # (B, start, s, s)
        return self.convs(h)  # (B, channels, image_size, image_size)
