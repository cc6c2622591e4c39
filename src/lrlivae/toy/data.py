"""The toy data set (Sec. 4.1, Appendix B.1): three half unit circles, 2.2 apart horizontally, plus noise.

Class c's points lie on the upper half of the unit circle centred at ((c - 1) * spacing, 0), at angles
t ~ U(0, pi), with isotropic Gaussian noise of std `noise` added:

    (x, y) = ((c - 1) * spacing + cos t, sin t) + noise * eps,     eps ~ N(0, I_2)

So x tells the class apart (label-relevant) while y has the same distribution in every class
(label-irrelevant): std(y) = sqrt(1/2 - 4/pi^2 + noise^2), about 0.343 for noise 0.15.
"""
from __future__ import annotations

import math

import numpy as np

N_CLASSES = 3


def real_std_y(noise: float = 0.15) -> float:
    """The exact std of y in every class: Var(sin t) = 1/2 - (2/pi)^2 for t ~ U(0, pi), plus the noise."""
    return math.sqrt(0.5 - 4.0 / math.pi**2 + noise**2)


def sample_half_circles(
    n_per_class: int, *, spacing: float = 2.2, noise: float = 0.15, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Draw n_per_class points of each of the 3 classes: (points (3n, 2) float32, labels (3n,) int64).

    Classes are stored one after another (class 0 first); deterministic in `seed`.
    """
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(N_CLASSES), n_per_class)  # (3n,)
    t = rng.uniform(0.0, math.pi, size=y.shape)  # (3n,)
    centre = (y - (N_CLASSES - 1) / 2.0) * spacing  # (3n,): -spacing, 0, +spacing
    pts = np.stack([centre + np.cos(t), np.sin(t)], axis=1)  # (3n, 2)
    pts = pts + noise * rng.standard_normal(pts.shape)
    return pts.astype(np.float32), y.astype(np.int64)
