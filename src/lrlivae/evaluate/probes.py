"""How well the latent space is disentangled (paper Sec. 4.3), measured with linear probes.

For every ground-truth factor a probe is fitted on the training split's codes and scored on the test
split, once from z_s and once from z_u (the mean of q(z_u | x)):
  continuous factors: ridge regression, test R^2 clipped below at 0 (`monitor.probe_r2`);
  discrete factors:   logistic regression, test accuracy (`monitor.probe_accuracy`); `chance` is the
                      test frequency of the most common training value.
Identity factors should be predicted from z_s and not from z_u, nuisance factors the other way round:

    gap = mean_{f in identity} (score_zs(f) - score_zu(f)) + mean_{f in nuisance} (score_zu(f) - score_zs(f))

positive when the split follows the labels, negative when it is reversed. A factor that cannot be
probed (constant in the training split) scores NaN and is left out of the means; an empty group adds 0.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from lrlivae.encode import probe_accuracy, probe_r2

KINDS = ("continuous", "discrete")


def _codes(codes) -> tuple[np.ndarray, np.ndarray]:
    """(z_s, z_u) from a `monitor.Codes` (z_u = mu) or a mapping with keys 'zs' and 'zu'."""
    if isinstance(codes, Mapping):
        return np.asarray(codes["zs"]), np.asarray(codes["zu"])
    return np.asarray(codes.zs), np.asarray(codes.mu)


def _column(factors, name: str) -> np.ndarray:
    return np.asarray(factors[name])


def disentanglement_table(codes_train, codes_test, factors_train, factors_test,
                          kinds: Mapping[str, str]) -> pd.DataFrame:
    """One row per factor of `kinds` (name -> 'continuous' | 'discrete'), indexed by factor, with columns
    kind, metric ('r2' | 'accuracy'), from_zs, from_zu, chance (0 for R^2). `factors_*` map a factor
    name to one value per code row (a dict of arrays or a DataFrame)."""
    zs_tr, zu_tr = _codes(codes_train)
    zs_te, zu_te = _codes(codes_test)
    rows = []
    for name, kind in kinds.items():
        if kind not in KINDS:
            raise ValueError(f"factor {name!r}: kind must be one of {KINDS}, got {kind!r}")
        f_tr, f_te = _column(factors_train, name), _column(factors_test, name)
        if len(f_tr) != len(zs_tr) or len(f_te) != len(zs_te):
            raise ValueError(f"factor {name!r}: {len(f_tr)}/{len(f_te)} values for {len(zs_tr)}/{len(zs_te)} codes")
        row = {"factor": name, "kind": kind, "metric": "r2" if kind == "continuous" else "accuracy"}
        if kind == "continuous":
            f_tr, f_te = f_tr.astype(np.float64), f_te.astype(np.float64)
            ok = np.std(f_tr) > 0
            score = (lambda z_tr, z_te: probe_r2(z_tr, f_tr, z_te, f_te)) if ok else None
            row["chance"] = 0.0
        else:
            values, counts = np.unique(f_tr, return_counts=True)
            ok = len(values) > 1
            score = (lambda z_tr, z_te: probe_accuracy(z_tr, f_tr, z_te, f_te)) if ok else None
            row["chance"] = float(np.mean(f_te == values[counts.argmax()])) if len(f_te) else float("nan")
        row["from_zs"] = score(zs_tr, zs_te) if score else float("nan")
        row["from_zu"] = score(zu_tr, zu_te) if score else float("nan")
        rows.append(row)
    cols = ["factor", "kind", "metric", "from_zs", "from_zu", "chance"]
    return pd.DataFrame(rows, columns=cols).set_index("factor")


def _group_mean(diff: pd.Series, names) -> float:
    names = list(names)
    missing = [n for n in names if n not in diff.index]
    if missing:
        raise KeyError(f"factors not in the table: {missing}")
    vals = diff.loc[names].to_numpy(np.float64) if names else np.zeros(0)
    vals = vals[np.isfinite(vals)]
    return float(vals.mean()) if len(vals) else 0.0


def disentanglement_gap(table: pd.DataFrame, identity_factors, nuisance_factors) -> float:
    """Mean (from_zs - from_zu) over identity factors + mean (from_zu - from_zs) over nuisance factors."""
    diff = table["from_zs"] - table["from_zu"]
    return _group_mean(diff, identity_factors) - _group_mean(diff, nuisance_factors)
