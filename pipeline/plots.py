"""The files behind the DVC plots (dvc.yaml `plots:`): JSON lists of rows, written atomically.

- training curves, reports/curves/<stage>.json: one row per logged step, {"step", "loss/...": mean}
  (the loss terms the training loop logs, averaged over the steps since the previous row);
- the toy's y-spread, reports/curves/toy.json: one row per figure epoch, {"epoch", "ours", "cvaegan",
  "real"}: generated std along y / real std, mean over classes and seeds (1 is the data; "real" is a
  second real draw, the noise floor);
- the comparison bars, reports/comparison_plot.json: one row per model, {"model", "inception_score",
  "fcd", "generated_class_accuracy", "intra_class_diversity"}.
Every row of a file has the same keys (DVC reads a list only when its rows agree): a value a row lacks
(a loss term logged only on some steps, a metric a model does not have) is null there.
"""
from __future__ import annotations

import math
from pathlib import Path

from lrlivae.io import atomic_write_json

COMPARISON_BARS = ("inception_score", "generated_class_accuracy", "intra_class_diversity", "fcd")


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _uniform(rows: list[dict]) -> list[dict]:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return [{k: r.get(k) for k in keys} for r in rows]


def write_curves(path: str | Path, history: list[dict]) -> list[dict]:
    rows = _uniform([{"step": int(h["step"]), **{k: float(v) for k, v in h.items() if k != "step" and _finite(v)}}
                     for h in history])
    atomic_write_json(path, rows)
    return rows


def write_toy_spread(path: str | Path, by_epoch: dict[int, dict[str, float]]) -> list[dict]:
    rows = _uniform([{"epoch": int(e), **{k: float(v) for k, v in m.items() if _finite(v)}}
                     for e, m in sorted(by_epoch.items())])
    atomic_write_json(path, rows)
    return rows


def write_comparison_bars(path: str | Path, reports: dict[str, dict], labels: dict[str, str]) -> list[dict]:
    rows = []
    for model, m in reports.items():
        row = {"model": labels.get(model, model)}
        row.update({k: float(m[k]) for k in COMPARISON_BARS if _finite(m.get(k))})
        rows.append(row)
    rows = _uniform(rows)
    atomic_write_json(path, rows)
    return rows
