"""Inception Score (paper Sec. 4.2, Table 1; Salimans et al. 2016) from class probabilities.

    IS = exp( E_x KL( p(y|x) || p(y) ) )

Protocol (fixed, so that numbers are comparable between runs):
  * `probs` are the evaluator's softmax outputs p(y|x), one row per generated image, in an order the
    caller fixes. Since each chunk has its own p(y), every chunk should hold all classes: interleave
    the classes (row i showing class i mod C) rather than stacking them class by class, whose
    consecutive chunks would each see only about C / splits classes and score far lower;
  * the rows are cut into `splits` consecutive chunks (`numpy.array_split`, so the first
    N mod splits chunks hold one row more); no shuffling;
  * per chunk, p(y) is that chunk's mean of p(y|x), the KL is computed exactly in nats
    (0 log 0 = 0, no epsilon), averaged over the chunk's rows and exponentiated;
  * the result is the mean and the (population, ddof=0) standard deviation of the per-chunk scores;
  * a score on real images (the ceiling) uses the same chunk size as the generated set it is compared
    with (`splits_for_chunk`), since IS grows with the chunk size while a chunk holds too few images
    per class to estimate p(y); real images are interleaved by class like the generated ones.
Its range is [1, C]: 1 when every row is the same distribution, C when every row is one-hot and the
C classes are equally frequent within each chunk.
"""
from __future__ import annotations

import numpy as np
from scipy.special import xlogy


def split_scores(probs: np.ndarray, splits: int = 10) -> np.ndarray:
    """The Inception Score of each of `splits` consecutive chunks of `probs` (N, C): shape (splits,)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 1:
        raise ValueError(f"probs must be (N, C), got shape {p.shape}")
    if not isinstance(splits, (int, np.integer)) or splits < 1:
        raise ValueError(f"splits must be an int >= 1, got {splits!r}")
    if len(p) < splits:
        raise ValueError(f"need at least one row per split: {len(p)} rows for {splits} splits")
    if not np.isfinite(p).all() or (p < 0).any():
        raise ValueError("probs must be finite and non-negative")
    if not np.allclose(p.sum(1), 1.0, atol=1e-4):
        raise ValueError("every row of probs must sum to 1 (pass softmax outputs, not logits)")
    scores = []
    for chunk in np.array_split(p, splits):
        py = chunk.mean(0, keepdims=True)  # (1, C) marginal of this chunk
        kl = (xlogy(chunk, chunk) - xlogy(chunk, py)).sum(1)  # (n,) KL(p(y|x) || p(y)) in nats
        scores.append(float(np.exp(kl.mean())))
    return np.asarray(scores)


def inception_score(probs: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """(mean, std) of the Inception Score over `splits` consecutive chunks of `probs` (N, C)."""
    s = split_scores(probs, splits)
    return float(s.mean()), float(s.std())


def interleave_classes(labels: np.ndarray) -> np.ndarray:
    """An order of the rows in which the classes take turns: the first image of every class, then the
    second of every class, and so on (classes that run out drop out). Stable within a class."""
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.searchsorted(sorted_labels, sorted_labels, side="left")
    rank = np.arange(len(labels)) - starts  # position of each row within its class
    return order[np.lexsort((sorted_labels, rank))]


def splits_for_chunk(n_rows: int, chunk: int) -> int:
    """How many consecutive chunks of at least `chunk` rows n_rows make (at least 1)."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    return max(1, n_rows // chunk)
