"""Encoding a split and reading the codes: eval-mode context, z_s and q(z_u | x) of rows of an aligned set,
the GM posterior's accuracy, linear probes. Shared by training (monitoring) and evaluation, so neither imports the other."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from lrlivae.data.aligned import to_float_tensor


@contextlib.contextmanager
def evaluating(*modules):
    modes = [m.training for m in modules]
    try:
        for m in modules:
            m.eval()
        with torch.no_grad():
            yield
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)


EVAL_BATCH = {"cpu": 256, "cuda": 1024}  # rows per forward pass of an evaluation loop, by device type


def eval_batch(device, batch: int | None = None) -> int:
    """`batch` when given, else the device's evaluation batch (EVAL_BATCH; 256 on other devices)."""
    return int(batch) if batch is not None else EVAL_BATCH.get(torch.device(device).type, 256)


@dataclass
class Codes:
    zs: np.ndarray  # (N, zs_dim)
    mu: np.ndarray  # (N, zu_dim)
    logvar: np.ndarray  # (N, zu_dim)


def encode_rows(model, faces, rows: np.ndarray, device="cpu", batch: int | None = None) -> Codes:
    """z_s and q(z_u | x) parameters of faces[rows], in eval mode, `batch` rows at a time (eval_batch)."""
    batch = eval_batch(device, batch)
    zs, mu, lv = [], [], []
    rows = np.sort(np.asarray(rows))
    with evaluating(model):
        for i in range(0, len(rows), batch):
            x = to_float_tensor(np.asarray(faces[rows[i : i + batch]])).to(device)
            enc = model.encode(x)
            zs.append(enc.zs.float().cpu())
            mu.append(enc.mu.float().cpu())
            lv.append(enc.logvar.float().cpu())
    cat = lambda a: torch.cat(a).numpy() if a else np.zeros((0, 0), np.float32)  # noqa: E731
    return Codes(cat(zs), cat(mu), cat(lv))


def gm_accuracy(model, zs: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of the GM prior's posterior argmax_c q(c | z_s) on codes `zs` (nan for no rows)."""
    with torch.no_grad():
        pred = model.prior.predict(torch.as_tensor(zs, device=model.device)).cpu().numpy()
    return float((pred == labels).mean()) if len(labels) else float("nan")


def probe_accuracy(z_train, y_train, z_test, y_test, max_iter: int = 2000) -> float:
    """Test accuracy of a logistic-regression probe fitted on train codes (standardised)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, C=1.0))
    clf.fit(z_train, y_train)
    return float(clf.score(z_test, y_test))


def probe_r2(z_train, f_train, z_test, f_test) -> float:
    """Test R^2 of a ridge probe from codes to one continuous factor (clipped below at 0)."""
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    reg = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
    reg.fit(z_train, f_train)
    return max(0.0, float(r2_score(f_test, reg.predict(z_test))))
