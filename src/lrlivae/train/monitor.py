"""What the training stages measure and show: codes of a split, GM accuracy, active z_u units, linear
probes on the codes, and sample / reconstruction grids. Everything runs in eval mode without gradients
and restores the model's mode afterwards; fixed seeds make grids comparable across epochs."""
from __future__ import annotations

import numpy as np
import torch

from lrlivae import losses
from lrlivae.data.aligned import to_float_tensor, to_uint8_images
from lrlivae.encode import Codes, encode_rows, evaluating, gm_accuracy, probe_accuracy, probe_r2  # noqa: F401  (re-exported)
from lrlivae.io import image_grid


def d_gap_last_fifth(history: list[dict], steps: int) -> dict:
    """{"d_gap_last_fifth": mean of the logged D(real) - D(sample) over the last fifth of the run} (empty
    without a discriminator): near 0, the discriminator no longer tells the real images from the samples."""
    tail = [h["d/gap"] for h in history if "d/gap" in h and h["step"] > 0.8 * steps]
    return {"d_gap_last_fifth": float(np.mean(tail))} if tail else {}


def latent_stats(codes: Codes, threshold: float = 0.01) -> dict:
    """Active z_u units (Burda et al.) and the KL per dimension (nats) over a split."""
    mu, lv = torch.as_tensor(codes.mu), torch.as_tensor(codes.logvar)
    kl = losses.kl_per_dim(mu, lv)  # (zu_dim,)
    return {
        "zu_active_units": int(losses.active_units(mu, threshold)),
        "zu_kl_per_dim_mean": float(kl.mean()),
        "zu_kl_per_dim_max": float(kl.max()),
        "zu_kl_per_dim": kl.numpy(),
    }


def reconstruction_mse(model, faces, rows: np.ndarray, device="cpu", batch: int = 256) -> float:
    """Mean squared error (pixels in [-1, 1]) of reconstructions from z_s and the mean of z_u."""
    err, n = 0.0, 0
    rows = np.sort(np.asarray(rows))
    with evaluating(model):
        for i in range(0, len(rows), batch):
            x = to_float_tensor(np.asarray(faces[rows[i : i + batch]])).to(device)
            rec = model.reconstruct(x, sample=False).x_rec.float()
            err += float(((rec - x) ** 2).mean(dim=(1, 2, 3)).sum())
            n += len(x)
    return err / max(1, n)


def sample_grid(model, classes: list[int], per_class: int, seed: int = 0, zu: torch.Tensor | None = None) -> np.ndarray:
    """One row per class: z_s ~ N(mu_c, Sigma_c), z_u ~ N(0, I) from a fixed seed (eval mode)."""
    g = torch.Generator(device=model.device).manual_seed(seed)
    rows = []
    with evaluating(model):
        if zu is None:
            zu = torch.randn(per_class, model.cfg.zu_dim, generator=g, device=model.device)
        for c in classes:
            gen = model.generate(y=int(c), n=per_class, generator=g, zu=zu)
            rows.append(to_uint8_images(gen.x))
    return image_grid(np.concatenate(rows), ncol=per_class)


def recon_grid(model, faces, rows: np.ndarray, device="cpu") -> np.ndarray:
    """Pairs of columns: the input, then its reconstruction (z_u at its mean)."""
    x_u8 = np.asarray(faces[np.sort(rows)])
    with evaluating(model):
        rec = model.reconstruct(to_float_tensor(x_u8).to(device), sample=False).x_rec
    rec_u8 = to_uint8_images(rec)
    pairs = np.stack([x_u8, rec_u8], 1).reshape((-1,) + x_u8.shape[1:])
    return image_grid(pairs, ncol=16)
