"""How much generated samples look like real photographs, and how much of the real variety they cover.

Each figure has a fixed protocol (the `evaluate` stage runs it for Lr-LiVAE and every baseline alike):

- precision / recall (Kynkaanniemi et al. 2019) in the evaluator's feature space, k = 3: the real manifold
  is the union of balls around each real feature with radius its distance to its k-th nearest real
  neighbour; precision is the fraction of samples inside it; recall the fraction of real images inside
  the samples' manifold (built the same way from the samples). Reals: the labeled test split; samples:
  the protocol's `per_class` samples of every class.
- density / coverage (Naeem et al. 2020), same balls: density = mean over samples of the number of real
  balls that hold it, divided by k; coverage = fraction of real balls that hold at least one sample.
- the same four per person (each class's samples against that class's real test images, k = 3, classes
  with at least k + 1 test images), averaged over classes: `*_per_class`.
- sharpness_ratio: mean squared Laplacian (4-neighbour, per channel, on [-1, 1]) of the samples over that
  of the real test images: 1 is as sharp as the photographs, > 1 carries extra high-frequency energy
  (checkerboard, noise), < 1 is blur.
- two_sample_accuracy: a fresh small CNN (`TwoSampleConfig`) learns to tell real training crops from
  samples on one half of each, and is scored on the other half: 0.5 means the two cannot be told apart,
  1.0 means every sample is recognised as generated.
- train_eval_gap: the same codes decoded in training mode (what the losses and the discriminator see at
  the end of training: batch statistics, or eval mode's statistics where the stage trained on them,
  TrainSettings.dec_bn_match) and in eval mode (what users get), mean absolute difference on [-1, 1].
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lrlivae.data.aligned import to_float_tensor

K_NEAREST = 3


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances (len(a), len(b)) in float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(d2, 0.0))


def knn_radii(f: np.ndarray, k: int = K_NEAREST) -> np.ndarray:
    """Distance of each row of f to its k-th nearest other row: (N,)."""
    if len(f) <= k:
        raise ValueError(f"k-nearest-neighbour radii need more than k = {k} points, got {len(f)}")
    d = _pairwise(f, f)
    return np.partition(d, k, axis=1)[:, k]  # column 0 of the sorted row is the point itself


def manifold_metrics(real: np.ndarray, fake: np.ndarray, k: int = K_NEAREST) -> dict[str, float]:
    """precision, recall, density, coverage of `fake` features against `real` features (module docstring)."""
    r_real, r_fake = knn_radii(real, k), knn_radii(fake, k)
    d = _pairwise(real, fake)  # (R, F)
    in_real_ball = d <= r_real[:, None]  # (R, F): fake j inside real ball i
    return {
        "precision": float(in_real_ball.any(axis=0).mean()),
        "recall": float((d <= r_fake[None, :]).any(axis=1).mean()),
        "density": float(in_real_ball.sum(axis=0).mean() / k),
        "coverage": float(in_real_ball.any(axis=1).mean()),
    }


def realism_in_features(real: np.ndarray, real_y: np.ndarray, fake: np.ndarray, fake_y: np.ndarray,
                        k: int = K_NEAREST) -> dict[str, float]:
    """manifold_metrics over all images, and averaged over classes (`*_per_class`, classes with > k
    real and > k generated images)."""
    m = manifold_metrics(real, fake, k)
    per: dict[str, list[float]] = {}
    for c in np.unique(fake_y):
        rc, fc = real[real_y == c], fake[fake_y == c]
        if len(rc) <= k or len(fc) <= k:
            continue
        for name, v in manifold_metrics(rc, fc, k).items():
            per.setdefault(name, []).append(v)
    for name, vs in per.items():
        m[f"{name}_per_class"] = float(np.mean(vs))
    return m


def high_frequency_energy(images_u8: np.ndarray) -> float:
    """Mean squared 4-neighbour Laplacian of uint8 images (N, H, W, C) mapped to [-1, 1]."""
    x = images_u8.astype(np.float32) / 127.5 - 1.0
    lap = (4 * x[:, 1:-1, 1:-1] - x[:, :-2, 1:-1] - x[:, 2:, 1:-1] - x[:, 1:-1, :-2] - x[:, 1:-1, 2:])
    return float(np.mean(lap.astype(np.float64) ** 2))


def sharpness_ratio(fake_u8: np.ndarray, real_u8: np.ndarray) -> float:
    """High-frequency energy of the samples over that of the real images (1: as sharp as real)."""
    return high_frequency_energy(fake_u8) / max(high_frequency_energy(real_u8), 1e-12)


@dataclass(frozen=True)
class TwoSampleConfig:
    """The two-sample test's classifier and its training (fixed protocol)."""

    channels: tuple[int, ...] = (16, 32, 64, 128)  # conv3x3 stride 2 + leaky ReLU each, then mean pool, fc1
    steps: int = 300
    batch: int = 64
    lr: float = 1e-3
    max_per_side: int = 2000  # images of each kind used (half to fit, half to score)


def _two_sample_net(cfg: TwoSampleConfig, in_ch: int) -> nn.Module:
    layers: list[nn.Module] = []
    c = in_ch
    for c_out in cfg.channels:
        layers += [nn.Conv2d(c, c_out, 3, 2, 1), nn.LeakyReLU(0.2)]
        c = c_out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 1))


def two_sample_accuracy(real_u8: np.ndarray, fake_u8: np.ndarray, seed: int = 0,
                        cfg: TwoSampleConfig = TwoSampleConfig()) -> float:
    """Held-out accuracy of a fresh classifier telling `real_u8` from `fake_u8` (module docstring).

    Both sets are cut to the same size n = min(len(real), len(fake), max_per_side), shuffled by `seed`;
    the first half of each fits the classifier (Adam, `steps` steps of `batch` images, half of each kind),
    the second half scores it. Runs on the CPU with a fixed seed, so the figure is repeatable."""
    rng = np.random.default_rng(seed)
    n = min(len(real_u8), len(fake_u8), cfg.max_per_side)
    if n < 8:
        raise ValueError(f"the two-sample test needs at least 8 images of each kind, got {n}")
    real = real_u8[rng.permutation(len(real_u8))[:n]]
    fake = fake_u8[rng.permutation(len(fake_u8))[:n]]
    h = n // 2
    x_fit = torch.cat([to_float_tensor(real[:h]), to_float_tensor(fake[:h])])  # (2h, C, H, W)
    y_fit = torch.cat([torch.ones(h), torch.zeros(h)])
    x_val = torch.cat([to_float_tensor(real[h:]), to_float_tensor(fake[h:])])
    y_val = torch.cat([torch.ones(n - h), torch.zeros(n - h)])
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = _two_sample_net(cfg, x_fit.shape[1])
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    net.train()
    for _ in range(cfg.steps):
        idx = torch.randint(len(x_fit), (cfg.batch,), generator=g)
        loss = F.binary_cross_entropy_with_logits(net(x_fit[idx]).squeeze(1), y_fit[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        logits = torch.cat([net(x_val[i:i + 256]).squeeze(1) for i in range(0, len(x_val), 256)])
    return float(((logits > 0).float() == y_val).float().mean())


def train_eval_gap(model, n_classes: int, n: int = 64, seed: int = 0) -> float:
    """Mean |x_train - x_eval| of `n` samples (classes cycled) drawn with the same codes by a copy of
    `model` in training mode and in eval mode (any model with `generate(y, n, generator)`); the model
    itself is untouched (each mode runs on its own copy, so the statistics a training-mode pass moves are
    not those the eval-mode pass reads). Training mode is the decoder as training
    ran it last: a decoder whose batch norms were trained on eval mode's statistics for the end of its stage
    (decoder.set_decoder_statistics) gives those there too."""
    y = torch.arange(n) % n_classes
    outs = []
    for train_mode in (True, False):  # a fresh copy each: a training-mode pass moves the statistics it uses
        twin = copy.deepcopy(model)
        twin.train(train_mode)
        with torch.no_grad():
            g = torch.Generator(device=twin.device).manual_seed(seed)
            outs.append(twin.generate(y=y.to(twin.device), n=n, generator=g).x.float().cpu())
    return float((outs[0] - outs[1]).abs().mean())
