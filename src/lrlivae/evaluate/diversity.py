"""Intra-class diversity of generated images (paper Sec. 4.2, Eq. 12, Table 2):

    d_intra(X_c) = 1 - mean over pairs (x, x') of X_c of MS-SSIM(x, x'),  averaged over the classes c.

Protocol (fixed):
  * pairs: ALL unordered pairs of distinct images of a class, n(n-1)/2 for n images. Eq. 12 averages
    over X x X, which also counts the n self-pairs (MS-SSIM 1); that value is (n-1)/n times ours.
    Classes with fewer than 2 images are skipped; the result is the unweighted mean over the others.
  * MS-SSIM (Wang et al. 2003) from `pytorch_msssim.ms_ssim` on RGB in [0, 1] (data_range 1,
    K = (0.01, 0.03), channels averaged), with 3 scales (full, 1/2, 1/4 resolution) weighted by the
    first three of the standard five exponents renormalised to sum to 1:
    (0.0448, 0.2856, 0.3001) / 0.6305 = (0.0711, 0.4530, 0.4760), and a 3-px Gaussian window
    (sigma 1.5). Why: the standard 5 scales with an 11-px window need images of at least 161 px;
    pytorch_msssim requires the side to exceed (win_size - 1) * 16, which at 64 px allows a 3-px window.
  * images must be larger than 32 px; smaller ones (e.g. 32x32 CIFAR) are first enlarged by pixel
    replication by the smallest integer factor that makes them so (2 for 32 px), so the second scale
    sees the original pixels.
  * computation: `pytorch_msssim.ms_ssim` is the reference definition (`ms_ssim_pairs`, used by the
    one-pair loop and by the tests). The metric itself runs `fast_ms_ssim_pairs`, which computes the
    same quantity (tested equal to the library to 1e-6) in a form suited to all pairs of a class: the
    Gaussian window is applied as a separable 3-tap sum of shifted slices instead of a grouped
    convolution (which is slow on CPU), and everything that depends on one image only (its filtered
    mean and second moment, its downscaled versions) is computed once per image, not once per pair;
    per pair only the filtered product x * x' and the SSIM formula remain.
  * pairs are evaluated `pair_batch` at a time on `device`; the result does not depend on the batch.
The diversity of a set of identical images is exactly 0.
"""
from __future__ import annotations

import numpy as np
import torch

from lrlivae.data.aligned import to_float_tensor

MS_SSIM_WEIGHTS = tuple(w / sum((0.0448, 0.2856, 0.3001)) for w in (0.0448, 0.2856, 0.3001))
MS_SSIM_WIN_SIZE = 3
MS_SSIM_WIN_SIGMA = 1.5
MIN_SIDE = (MS_SSIM_WIN_SIZE - 1) * 16 + 1  # pytorch_msssim's size check: side > (win_size - 1) * 16


def _enlarge(x: torch.Tensor) -> torch.Tensor:
    side = min(x.shape[-2:])
    if side >= MIN_SIDE:
        return x
    factor = -(-MIN_SIDE // side)  # ceil
    return x.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


def ms_ssim_pairs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """MS-SSIM of each pair (a[i], b[i]): a, b (P, 3, S, S) float in [-1, 1] -> (P,) on their device."""
    from pytorch_msssim import ms_ssim

    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"need two (P, C, S, S) batches of equal shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    # channels_last: the library's grouped Gaussian convolutions run ~20x faster per image on CPU
    a01 = _enlarge((a.float() + 1.0) * 0.5).contiguous(memory_format=torch.channels_last)
    b01 = _enlarge((b.float() + 1.0) * 0.5).contiguous(memory_format=torch.channels_last)
    return ms_ssim(a01, b01, data_range=1.0, size_average=False, win_size=MS_SSIM_WIN_SIZE,
                   win_sigma=MS_SSIM_WIN_SIGMA, weights=list(MS_SSIM_WEIGHTS))


def _gauss_1d() -> torch.Tensor:
    """The library's 1-D Gaussian window (win_size taps, sigma win_sigma), normalised to sum 1."""
    coords = torch.arange(MS_SSIM_WIN_SIZE, dtype=torch.float32) - MS_SSIM_WIN_SIZE // 2
    g = torch.exp(-(coords**2) / (2 * MS_SSIM_WIN_SIGMA**2))
    return g / g.sum()


def _blur(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Valid (unpadded) separable Gaussian filter over the last two dims, as shifted-slice sums."""
    k = len(w)
    h, wd = x.shape[-2], x.shape[-1]
    if wd >= k:
        x = sum(w[t] * x[..., t : wd - k + 1 + t] for t in range(k))
    if h >= k:
        x = sum(w[t] * x[..., t : h - k + 1 + t, :] for t in range(k))
    return x


def _pyramid(x01: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """x01 (n, C, S, S) in [0, 1] and its 2x average-pooled versions, as the library downscales."""
    import torch.nn.functional as F

    out = [x01]
    for _ in range(levels - 1):
        x = out[-1]
        out.append(F.avg_pool2d(x, kernel_size=2, padding=[s % 2 for s in x.shape[2:]]))
    return out


class _ImageStats:
    """Per image and scale: the image, its filtered mean and its filtered second moment minus mean^2."""

    def __init__(self, x: torch.Tensor) -> None:  # x (n, 3, S, S) in [-1, 1]
        self.w = _gauss_1d().to(x.device)
        self.levels = len(MS_SSIM_WEIGHTS)
        self.x = _pyramid(_enlarge((x.float() + 1.0) * 0.5), self.levels)
        self.mu = [_blur(s, self.w) for s in self.x]
        self.var = [_blur(s * s, self.w) - m * m for s, m in zip(self.x, self.mu)]


def fast_ms_ssim_row(stats: _ImageStats, i: int, j0: int, j1: int) -> torch.Tensor:
    """MS-SSIM of image i of `stats` with each of the images j0 .. j1 - 1: (j1 - j0,). The same value
    as ms_ssim_pairs; image i broadcasts against a slice, so nothing is gathered or copied per pair."""
    c1, c2 = 0.01**2, 0.03**2  # (K1 * data_range)^2, (K2 * data_range)^2 with data_range 1
    factors = []
    for lev in range(stats.levels):
        x, mu, var = stats.x[lev], stats.mu[lev], stats.var[lev]
        mu_i, mu_j = mu[i : i + 1], mu[j0:j1]  # (1, 3, s, s), (P, 3, s, s)
        mu_ij = mu_i * mu_j
        cov = _blur(x[i : i + 1] * x[j0:j1], stats.w) - mu_ij
        cs_map = (2 * cov + c2) / (var[i : i + 1] + var[j0:j1] + c2)
        if lev < stats.levels - 1:
            factors.append(torch.relu(cs_map.flatten(2).mean(-1)))  # (P, 3)
        else:
            ssim_map = (2 * mu_ij + c1) / (mu_i * mu_i + mu_j * mu_j + c1) * cs_map
            factors.append(torch.relu(ssim_map.flatten(2).mean(-1)))
    w = torch.tensor(MS_SSIM_WEIGHTS, device=factors[0].device).view(-1, 1, 1)
    return torch.prod(torch.stack(factors) ** w, dim=0).mean(1)  # (P,)


def _groups(labels: np.ndarray) -> dict:
    labels = np.asarray(labels)
    return {c.item() if hasattr(c, "item") else c: np.flatnonzero(labels == c) for c in np.unique(labels)}


@torch.no_grad()
def class_diversities(images_u8: np.ndarray, labels: np.ndarray, *, pair_batch: int = 512,
                      device: str | torch.device = "cpu") -> dict:
    """Per class: 1 - mean MS-SSIM over all pairs of its images (batched). images_u8 (N, S, S, 3) uint8."""
    if len(images_u8) != len(labels):
        raise ValueError(f"{len(images_u8)} images but {len(labels)} labels")
    if pair_batch < 1:
        raise ValueError(f"pair_batch must be >= 1, got {pair_batch}")
    out = {}
    for c, rows in _groups(labels).items():
        n = len(rows)
        if n < 2:
            continue
        stats = _ImageStats(to_float_tensor(np.asarray(images_u8)[rows]).to(device))  # n images
        total = 0.0
        for i in range(n - 1):  # the pairs (i, j > i), pair_batch of them per call
            for j0 in range(i + 1, n, pair_batch):
                total += float(fast_ms_ssim_row(stats, i, j0, min(n, j0 + pair_batch)).double().sum())
        out[c] = 1.0 - total / (n * (n - 1) / 2)
    return out


def _mean_over_classes(per_class: dict) -> float:
    if not per_class:
        raise ValueError("intra-class diversity needs at least one class with 2 or more images")
    return float(np.mean(list(per_class.values())))


def intra_class_diversity(images_u8: np.ndarray, labels: np.ndarray, *, pair_batch: int = 512,
                          device: str | torch.device = "cpu") -> float:
    """Eq. 12 averaged over classes, all pairs evaluated `pair_batch` at a time."""
    return _mean_over_classes(class_diversities(images_u8, labels, pair_batch=pair_batch, device=device))


@torch.no_grad()
def intra_class_diversity_loop(images_u8: np.ndarray, labels: np.ndarray,
                               device: str | torch.device = "cpu") -> float:
    """The same number, one pair per MS-SSIM call (the naive baseline; for the benchmark only)."""
    per_class = {}
    for c, rows in _groups(labels).items():
        if len(rows) < 2:
            continue
        vals = []
        for i in range(len(rows)):
            for j in range(i + 1, len(rows)):
                a = to_float_tensor(np.asarray(images_u8)[rows[i : i + 1]]).to(device)
                b = to_float_tensor(np.asarray(images_u8)[rows[j : j + 1]]).to(device)
                vals.append(float(ms_ssim_pairs(a, b)[0]))
        per_class[c] = 1.0 - float(np.mean(vals))
    return _mean_over_classes(per_class)
