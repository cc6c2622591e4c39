"""Face synthesis across identities (paper Fig. 6) and identity verification with z_s.

Swap: x = Decoder(z_s of image A, z_u of image B), z_u at the mean of q(z_u | x_B). If the latent space
is disentangled, x shows A's identity in B's pose, expression and lighting.

Verification: z_s as an identity embedding; the ROC AUC of cosine similarity for same- versus
different-identity pairs over all pairs of a held-out set of (unseen) identities.
"""
from __future__ import annotations

import numpy as np
import torch

from lrlivae.data.aligned import to_float_tensor, to_uint8_images
from lrlivae.io import image_grid
from lrlivae.nn.decoder import reconstruction_statistics
from lrlivae.encode import eval_batch, evaluating


def swap_images(model, faces, rows_s: np.ndarray, rows_u: np.ndarray, device="cpu",
                batch: int | None = None) -> np.ndarray:
    """Decoder(z_s of faces[rows_s[i]], mean z_u of faces[rows_u[i]]) for each i: (N, S, S, 3) uint8,
    `batch` pairs at a time (lrlivae.encode.eval_batch)."""
    rows_s, rows_u = np.asarray(rows_s), np.asarray(rows_u)
    batch = eval_batch(device, batch)
    out = []
    with evaluating(model), reconstruction_statistics(model):  # decodes encoder codes
        for i in range(0, len(rows_s), batch):
            xs = to_float_tensor(np.asarray(faces[np.sort(rows_s[i : i + batch])]))
            xu = to_float_tensor(np.asarray(faces[np.sort(rows_u[i : i + batch])]))
            # undo the sort so row k pairs rows_s[k] with rows_u[k]
            inv_s = np.argsort(np.argsort(rows_s[i : i + batch], kind="stable"), kind="stable")
            inv_u = np.argsort(np.argsort(rows_u[i : i + batch], kind="stable"), kind="stable")
            zs = model.enc_s(xs.to(device))[torch.as_tensor(inv_s)]
            mu, _ = model.enc_u(xu.to(device))
            out.append(to_uint8_images(model.decode(zs, mu[torch.as_tensor(inv_u)])))
    return np.concatenate(out) if out else np.zeros((0,) + faces.shape[1:], np.uint8)


def swap_grid(model, faces, rows_s: np.ndarray, rows_u: np.ndarray, device="cpu") -> np.ndarray:
    """Fig. 6: the first column gives z_s (one source image per row), the first row gives z_u (one source
    image per column); every crossing is decoded. Top-left is blank."""
    n, m = len(rows_s), len(rows_u)
    size = faces.shape[1:]
    cells = np.full((n + 1, m + 1) + size, 255, dtype=np.uint8)
    cells[0, 1:] = np.asarray(faces[np.asarray(rows_u)])
    cells[1:, 0] = np.asarray(faces[np.asarray(rows_s)])
    ii, jj = np.meshgrid(np.arange(n), np.arange(m), indexing="ij")
    swapped = swap_images(model, faces, np.asarray(rows_s)[ii.ravel()], np.asarray(rows_u)[jj.ravel()], device)
    cells[1:, 1:] = swapped.reshape((n, m) + size)
    return image_grid(cells.reshape((-1,) + size), ncol=m + 1)


def verification_auc(embeddings: np.ndarray, identities: np.ndarray) -> float:
    """ROC AUC of cosine similarity for same- vs different-identity pairs (all pairs i < j)."""
    from sklearn.metrics import roc_auc_score

    e = np.asarray(embeddings, dtype=np.float64)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    sim = e @ e.T
    iu = np.triu_indices(len(e), k=1)
    ids = np.asarray(identities)
    same = (ids[:, None] == ids[None, :])[iu]
    if same.all() or not same.any():
        return float("nan")
    return float(roc_auc_score(same, sim[iu]))
