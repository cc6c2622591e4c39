"""Where class-conditional samples lose their class: a decomposition of generation into its parts.

For a trained Lr-LiVAE and the evaluator (an independent identity classifier on real crops), on the
labeled test split:

    class_acc_recon          decode(z_s(x), mu_u(x))              the reconstruction itself
    class_acc_zs_prior_zu    decode(z_s(x), z_u ~ N(0, I))        z_s as encoded, z_u from its prior
    class_acc_mean_zs        decode(mu_y, mu_u(x))                the class mean with the image's own z_u
    class_acc_prior          decode(z_s ~ N(mu_y, Sigma_y), z_u ~ N(0, I))   what `generate` does

A decoder that ignores z_s scores low on all four; prior samples that lie off the codes score low on the
last two only; a z_u that carries identity lowers `zs_prior_zu` against `recon`.

Code statistics against the learned prior (train split):

    zs_spread_ratio_median   median over classes and dims of Var(z_s | class c) / Sigma_c
    zs_mahalanobis_sq_mean   mean squared Mahalanobis distance of a code to its own class Gaussian
                             (a code distribution that matches N(mu_c, Sigma_c) gives zs_dim)
    zs_prior_to_code_distance  mean |z_s^p - mu_c| / mean |z_s(x) - mu_c|: >1 when samples lie further
                             from the class mean than the person's real codes
    gm_sigma_median          median of Sigma_c
    zu_std_mean, zu_mu_norm_mean   mean posterior std of q(z_u | x) and mean |mu_u(x)|; for N(0, I)-like
                             aggregate posteriors these are about (small, sqrt(zu_dim))
    zu_aggregate_var_mean    mean over dims of Var(mu_u) + E[sigma_u^2] (1 for a matching prior)
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from lrlivae.data.aligned import to_uint8_images
from lrlivae.evaluate.classifier import accuracy
from lrlivae.encode import Codes, eval_batch, evaluating
from lrlivae.nn.decoder import reconstruction_statistics


def _decode_u8(model, zs: np.ndarray, zu: np.ndarray, batch: int | None = None, encoder_zu: bool = False) -> np.ndarray:
    """Decoded uint8 images; encoder_zu: z_u comes from the encoder (the decoder's statistics of encoder codes)."""
    batch = eval_batch(model.device, batch)
    out = []
    with evaluating(model), (reconstruction_statistics(model) if encoder_zu else contextlib.nullcontext()):
        for i in range(0, len(zs), batch):
            a = torch.as_tensor(zs[i : i + batch], device=model.device, dtype=torch.float32)
            b = torch.as_tensor(zu[i : i + batch], device=model.device, dtype=torch.float32)
            out.append(to_uint8_images(model.decode(a, b)))
    return np.concatenate(out) if out else np.zeros((0,), np.uint8)


def code_statistics(model, codes_train: Codes, y_train: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Spread of each class's encoded z_s against its learned Sigma_c, and the shape of q(z_u | x)."""
    means = model.prior.means.detach().cpu().double().numpy()  # (C, d)
    var = model.prior.variances.detach().cpu().double().numpy()  # (C, d)
    zs = codes_train.zs.astype(np.float64)
    ratios, maha, dist_code, dist_prior = [], [], [], []
    rng = np.random.default_rng(seed)
    for c in np.unique(y_train):
        z = zs[y_train == c]
        if len(z) < 2:
            continue
        ratios.append(z.var(axis=0) / var[c])
        maha.append((((z - means[c]) ** 2) / var[c]).sum(axis=1))
        dist_code.append(np.linalg.norm(z - means[c], axis=1))
        zp = means[c] + np.sqrt(var[c]) * rng.standard_normal(z.shape)
        dist_prior.append(np.linalg.norm(zp - means[c], axis=1))
    mu, lv = codes_train.mu.astype(np.float64), codes_train.logvar.astype(np.float64)
    return {
        "zs_spread_ratio_median": float(np.median(np.concatenate(ratios))),
        "zs_mahalanobis_sq_mean": float(np.concatenate(maha).mean()),
        "zs_prior_to_code_distance": float(np.concatenate(dist_prior).mean() / np.concatenate(dist_code).mean()),
        "gm_sigma_median": float(np.median(var)),
        "zu_std_mean": float(np.exp(0.5 * lv).mean()),
        "zu_mu_norm_mean": float(np.linalg.norm(mu, axis=1).mean()),
        "zu_aggregate_var_mean": float((mu.var(axis=0) + np.exp(lv).mean(axis=0)).mean()),
    }


def class_accuracy_decomposition(model, evaluator, codes_test: Codes, y_test: np.ndarray,
                                 seed: int = 0) -> dict[str, float]:
    """Evaluator accuracy of the four decodings in the module docstring, on the test codes."""
    g = torch.Generator().manual_seed(seed)
    n, zu_dim = codes_test.mu.shape
    zu_prior = torch.randn(n, zu_dim, generator=g).numpy()
    means = model.prior.means.detach().cpu().numpy()
    std = np.exp(0.5 * model.prior.logvars.detach().cpu().numpy())
    zs_prior = means[y_test] + std[y_test] * torch.randn(n, means.shape[1], generator=g).numpy()
    cases = {
        "class_acc_recon": (codes_test.zs, codes_test.mu),
        "class_acc_zs_prior_zu": (codes_test.zs, zu_prior),
        "class_acc_mean_zs": (means[y_test], codes_test.mu),
        "class_acc_prior": (zs_prior, zu_prior),
    }
    return {k: accuracy(evaluator, _decode_u8(model, zs, zu, encoder_zu=zu is codes_test.mu), y_test)
            for k, (zs, zu) in cases.items()}


def diagnose(model, evaluator, codes_train: Codes, y_train: np.ndarray, codes_test: Codes, y_test: np.ndarray,
             seed: int = 0) -> dict[str, float]:
    """Both groups of figures of the module docstring."""
    return {**class_accuracy_decomposition(model, evaluator, codes_test, y_test, seed),
            **code_statistics(model, codes_train, y_train, seed)}
