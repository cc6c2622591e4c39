"""What the baseline stages measure and show beyond the shared generation metrics, for the baselines with
an encoder (cVAE, cVAE-GAN). Everything runs in eval mode without gradients; the encoder reads the true
label, as these models require (the paper gives cVAE-GAN the label for inpainting too).

  encode_rows         mean and log-variance of q(z | x, c) over rows of a set
  reconstruction_mse  mean squared error of x' = G(mean z, c) (pixels in [-1, 1])
  recon_grid          pairs of columns: input, reconstruction
  vary_z              the analogue of Fig. 4b: one row per class, z runs linearly from z_1 to z_2 ~ N(0, I)
                      along the columns (each column shares its z); the label is the only class input
"""
from __future__ import annotations

import numpy as np
import torch

from lrlivae.data.aligned import to_float_tensor, to_uint8_images
from lrlivae.io import image_grid
from lrlivae.encode import evaluating


def _label_tensor(labels: np.ndarray, device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(labels, dtype=np.int64), device=device)


def encode_rows(model, faces, rows: np.ndarray, labels: np.ndarray, device="cpu",
                batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(mu (N, z_dim), logvar (N, z_dim)) of faces[rows] with their labels labels[rows]; rows sorted first."""
    rows = np.sort(np.asarray(rows))
    mu, lv = [], []
    with evaluating(model):
        for i in range(0, len(rows), batch):
            r = rows[i : i + batch]
            m, v = model.encode(to_float_tensor(np.asarray(faces[r])).to(device), _label_tensor(labels[r], device))
            mu.append(m.float().cpu())
            lv.append(v.float().cpu())
    if not mu:
        z = np.zeros((0, model.cfg.z_dim), np.float32)
        return z, z.copy()
    return torch.cat(mu).numpy(), torch.cat(lv).numpy()


def reconstruction_mse(model, faces, rows: np.ndarray, labels: np.ndarray, device="cpu", batch: int = 256) -> float:
    """Mean squared error (pixels in [-1, 1]) of reconstructions from the mean of q(z | x, c)."""
    rows = np.sort(np.asarray(rows))
    err, n = 0.0, 0
    with evaluating(model):
        for i in range(0, len(rows), batch):
            r = rows[i : i + batch]
            x = to_float_tensor(np.asarray(faces[r])).to(device)
            rec = model.reconstruct(x, _label_tensor(labels[r], device), sample=False).x_rec.float()
            err += float(((rec - x) ** 2).mean(dim=(1, 2, 3)).sum())
            n += len(x)
    return err / max(1, n)


def recon_grid(model, faces, rows: np.ndarray, labels: np.ndarray, device="cpu") -> np.ndarray:
    """Pairs of columns: the input, then its reconstruction (z at the mean of q(z | x, c))."""
    rows = np.sort(np.asarray(rows))
    x_u8 = np.asarray(faces[rows])
    with evaluating(model):
        rec = model.reconstruct(to_float_tensor(x_u8).to(device), _label_tensor(labels[rows], device),
                                sample=False).x_rec
    pairs = np.stack([x_u8, to_uint8_images(rec)], 1).reshape((-1,) + x_u8.shape[1:])
    return image_grid(pairs, ncol=16)


def vary_z(model, classes, n: int, seed: int = 0) -> np.ndarray:
    """Rows = classes, columns = z from z_1 to z_2 ~ N(0, I) (shared by the column)."""
    g = torch.Generator(device=model.device).manual_seed(int(seed))
    with evaluating(model):
        z1, z2 = (torch.randn(model.cfg.z_dim, generator=g, device=model.device) for _ in range(2))
        alpha = torch.linspace(0.0, 1.0, n, device=model.device)[:, None]  # (n, 1)
        z = (1 - alpha) * z1 + alpha * z2  # (n, z_dim)
        rows = [to_uint8_images(model.decode(z, torch.full((n,), int(c), device=model.device))) for c in classes]
    return image_grid(np.concatenate(rows), ncol=n)
