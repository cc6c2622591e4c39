"""Coverage metrics of generated toy points against the real distribution, per class (fixed protocol).

std_ratio(gen, real, axis=1)  std of the generated points along y divided by that of the real points
                              (1 = the label-irrelevant dimension is covered as widely as the data;
                              < 1 = "conservative" samples in a limited range, the paper's claim about cVAE-GAN).
sliced_wasserstein(a, b)      sliced 1-Wasserstein distance: the 1-D W1 distance of the two point sets
                              projected on `projections` random unit directions (drawn from a fixed
                              seed), averaged. For a pure translation by s every projection is shifted by
                              <s, theta>, so in 2-D the value is |s| * E|cos phi| = |s| * 2 / pi.
Standard deviations are population ones (ddof 0).
"""
from __future__ import annotations

import numpy as np


def std_ratio(gen: np.ndarray, real: np.ndarray, axis: int = 1) -> float:
    """std(gen[:, axis]) / std(real[:, axis]) for point sets (n, 2) and (m, 2)."""
    return float(np.std(gen[:, axis]) / np.std(real[:, axis]))


def _quantiles(v: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Empirical inverse CDF of each column of v (n, K) at `levels` (L,) -> (L, K)."""
    s = np.sort(v, axis=0)  # (n, K)
    idx = np.clip(np.ceil(levels * len(s)).astype(int) - 1, 0, len(s) - 1)  # (L,)
    return s[idx]


def projection_directions(projections: int = 128, dim: int = 2, seed: int = 0) -> np.ndarray:
    """`projections` random unit vectors (dim, K), uniform on the sphere, deterministic in `seed`."""
    theta = np.random.default_rng(seed).standard_normal((dim, projections))
    return theta / np.linalg.norm(theta, axis=0, keepdims=True)


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, projections: int = 128, seed: int = 0) -> float:
    """Sliced W1 between point sets a (n, d) and b (m, d): mean over random directions of W1 of projections.

    W1 of two empirical 1-D distributions is the integral over u in (0, 1) of |F_a^-1(u) - F_b^-1(u)|; both
    inverse CDFs are step functions with steps at i / n and j / m, so the integral is computed exactly on
    the merged steps (for n == m: the mean absolute difference of the sorted projections).
    """
    theta = projection_directions(projections, a.shape[1], seed)  # (d, K)
    pa, pb = np.asarray(a, np.float64) @ theta, np.asarray(b, np.float64) @ theta  # (n, K), (m, K)
    edges = np.union1d(np.arange(len(pa) + 1) / len(pa), np.arange(len(pb) + 1) / len(pb))  # (L + 1,)
    mids, widths = 0.5 * (edges[1:] + edges[:-1]), np.diff(edges)  # (L,) each
    gap = np.abs(_quantiles(pa, mids) - _quantiles(pb, mids))  # (L, K)
    return float((widths[:, None] * gap).sum(axis=0).mean())


def class_metrics(gen: np.ndarray, gen_y: np.ndarray, real: np.ndarray, real_y: np.ndarray, n_classes: int,
                  projections: int = 128, seed: int = 0) -> dict[str, float]:
    """Per class c: std_ratio_y_class<c>, std_ratio_x_class<c>, swd_class<c>; and their means over classes."""
    out: dict[str, float] = {}
    for c in range(n_classes):
        g, r = gen[gen_y == c], real[real_y == c]
        out[f"std_ratio_y_class{c}"] = std_ratio(g, r, axis=1)
        out[f"std_ratio_x_class{c}"] = std_ratio(g, r, axis=0)
        out[f"swd_class{c}"] = sliced_wasserstein(g, r, projections, seed)
    for name in ("std_ratio_y", "std_ratio_x", "swd"):
        out[name] = float(np.mean([out[f"{name}_class{c}"] for c in range(n_classes)]))
    return out
