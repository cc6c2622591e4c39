"""Frechet distance between two feature sets (FID, Heusel et al. 2017), here on the penultimate layer of
the project's own evaluator classifier ("FCD", Frechet Classifier Distance):

    d^2 = ||mu_a - mu_b||^2 + Tr( S_a + S_b - 2 (S_a S_b)^{1/2} )

Protocol: features in float64; mean and unbiased covariance (`numpy.cov`, ddof=1) per set; the matrix
square root by `scipy.linalg.sqrtm`. Numerical guard as in the reference FID code: if the product's
root is not finite, both covariances get `eps` (1e-6) added to their diagonal and the root is taken
again; an imaginary part below 1e-3 (relative to the largest entry) is rounding noise and dropped, a
larger one is an error. The value is clipped below at 0.
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of a feature set (N, D), N >= 2."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"features must be (N >= 2, D), got shape {f.shape}")
    if not np.isfinite(f).all():
        raise ValueError("features contain NaN or infinity")
    return f.mean(0), np.atleast_2d(np.cov(f, rowvar=False))


def _sqrtm(m: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sqrtm warns on near-singular input; the caller checks the result
        return linalg.sqrtm(m)


def frechet_distance(mu_a: np.ndarray, cov_a: np.ndarray, mu_b: np.ndarray, cov_b: np.ndarray,
                     eps: float = 1e-6) -> float:
    """Frechet distance between N(mu_a, cov_a) and N(mu_b, cov_b)."""
    mu_a, mu_b = np.atleast_1d(np.asarray(mu_a, np.float64)), np.atleast_1d(np.asarray(mu_b, np.float64))
    cov_a, cov_b = np.atleast_2d(np.asarray(cov_a, np.float64)), np.atleast_2d(np.asarray(cov_b, np.float64))
    if mu_a.shape != mu_b.shape or cov_a.shape != cov_b.shape or cov_a.shape != (len(mu_a),) * 2:
        raise ValueError(f"shape mismatch: mu {mu_a.shape} / {mu_b.shape}, cov {cov_a.shape} / {cov_b.shape}")
    diff = mu_a - mu_b
    covmean = _sqrtm(cov_a @ cov_b)
    if not np.isfinite(covmean).all():
        offset = np.eye(len(mu_a)) * eps
        covmean = _sqrtm((cov_a + offset) @ (cov_b + offset))
    if np.iscomplexobj(covmean):
        scale = max(1.0, float(np.abs(covmean).max()))
        if np.abs(covmean.imag).max() > 1e-3 * scale:
            raise ValueError(f"matrix square root has a large imaginary part ({np.abs(covmean.imag).max():.3g})")
        covmean = covmean.real
    d2 = diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean)
    return max(0.0, float(d2))


def fcd(feat_a: np.ndarray, feat_b: np.ndarray) -> float:
    """Frechet distance between the Gaussians fitted to two feature sets (N_a, D) and (N_b, D)."""
    mu_a, cov_a = feature_stats(feat_a)
    mu_b, cov_b = feature_stats(feat_b)
    return frechet_distance(mu_a, cov_a, mu_b, cov_b)
