"""The paper's qualitative figures as uint8 image grids (`lrlivae.io.image_grid`, 2-px white padding),
plus training curves. Every function runs the model in eval mode without gradients and draws its noise
from a `torch.Generator` seeded with `seed`, so a figure is reproducible.

  class_samples     Fig. 8   one row per class: z_s ~ N(mu_c, Sigma_c), z_u ~ N(0, I), all independent
  interpolate_zs    Fig. 4a  one z_u for the whole grid; z^(i) runs linearly from z_1 to z_2 ~ N(0, I)
                             (columns) and is mapped to each class (rows) by z_s = z^(i) * sigma_c + mu_c
  vary_zu           Fig. 4b  one z_s ~ N(mu_c, Sigma_c) per row; z_u runs linearly from z_1 to z_2
                             ~ N(0, I) along the columns (each column shares its z_u)
  zu_dimensions     Fig. 5   z_s and the mean z_u of given images; one z_u dimension set to each of
                             `values`; the dimensions that change the image most (`rank_zu_dimensions`)
  inpainting_rows   Fig. 7   per mask a row of (original, masked input, inpainted) triples
  training_curves            one panel per logged series, PNG bytes
"""
from __future__ import annotations

import io

import numpy as np
import torch

from lrlivae.nn.decoder import reconstruction_statistics
from lrlivae.data.aligned import to_float_tensor, to_uint8_images
from lrlivae.evaluate.inpaint import inpaint, make_mask
from lrlivae.io import image_grid
from lrlivae.encode import evaluating


def _gen(model, seed: int) -> torch.Generator:
    return torch.Generator(device=model.device).manual_seed(int(seed))


def _randn(model, g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=g, device=model.device)


def _lerp(z1: torch.Tensor, z2: torch.Tensor, steps: int) -> torch.Tensor:
    """(steps, d): z1 at the first step, z2 at the last."""
    alpha = torch.linspace(0.0, 1.0, steps, device=z1.device)[:, None]  # (steps, 1)
    return (1 - alpha) * z1 + alpha * z2


def _as_tensor(images, device) -> torch.Tensor:
    if isinstance(images, torch.Tensor):
        return images.to(device)
    return to_float_tensor(np.asarray(images)).to(device)


def class_samples(model, classes, per_class: int, seed: int = 0) -> np.ndarray:
    """Fig. 8: len(classes) rows x per_class columns of independent samples."""
    g = _gen(model, seed)
    rows = []
    with evaluating(model):
        for c in classes:
            rows.append(to_uint8_images(model.generate(y=int(c), n=per_class, generator=g).x))
    return image_grid(np.concatenate(rows), ncol=per_class)


def interpolate_zs(model, classes, steps: int, seed: int = 0) -> np.ndarray:
    """Fig. 4a: rows = classes, columns = z^(i) from z_1 to z_2, one fixed z_u."""
    g = _gen(model, seed)
    with evaluating(model):
        z = _lerp(_randn(model, g, model.cfg.zs_dim), _randn(model, g, model.cfg.zs_dim), steps)  # (steps, zs)
        zu = _randn(model, g, 1, model.cfg.zu_dim).expand(steps, -1)  # (steps, zu_dim)
        sigma = torch.exp(0.5 * model.prior.logvars)  # (C, zs_dim)
        rows = [to_uint8_images(model.decode(z * sigma[int(c)] + model.prior.means[int(c)], zu)) for c in classes]
    return image_grid(np.concatenate(rows), ncol=steps)


def vary_zu(model, classes, n: int, seed: int = 0) -> np.ndarray:
    """Fig. 4b: rows = classes (one z_s each), columns = z_u from z_1 to z_2."""
    g = _gen(model, seed)
    with evaluating(model):
        zu = _lerp(_randn(model, g, model.cfg.zu_dim), _randn(model, g, model.cfg.zu_dim), n)  # (n, zu_dim)
        y = torch.as_tensor([int(c) for c in classes], device=model.device)
        zs = model.prior.sample(y, g)  # (rows, zs_dim)
        rows = [to_uint8_images(model.decode(zs[i : i + 1].expand(n, -1), zu)) for i in range(len(y))]
    return image_grid(np.concatenate(rows), ncol=n)


def rank_zu_dimensions(model, x) -> tuple[np.ndarray, np.ndarray]:
    """z_u dimensions by how much they change the image: (order, change), `change[d]` the mean absolute
    pixel change (range [-1, 1]) when dimension d of the mean z_u of `x` moves from -2 to 2; `order`
    sorts the dimensions by it, largest first."""
    with evaluating(model), reconstruction_statistics(model):  # decodes encoder codes
        enc = model.encode(_as_tensor(x, model.device))
        b, k = enc.zs.shape[0], model.cfg.zu_dim
        change = torch.zeros(k)
        for d in range(k):
            lo, hi = enc.mu.clone(), enc.mu.clone()
            lo[:, d], hi[:, d] = -2.0, 2.0
            x_lo, x_hi = model.decode(enc.zs, lo), model.decode(enc.zs, hi)
            change[d] = (x_hi - x_lo).abs().mean().float().cpu()
    change_np = change.numpy()
    return np.argsort(-change_np, kind="stable"), change_np


def zu_dimensions(model, x, n_dims: int = 3, values=tuple(np.linspace(-3, 3, 7))) -> np.ndarray:
    """Fig. 5: for each of the `n_dims` top dimensions and each image of `x` (tensor in [-1, 1] or uint8
    (N, S, S, 3)) a row; the columns set that dimension of the image's mean z_u to each of `values`."""
    order, _ = rank_zu_dimensions(model, x)
    values = torch.as_tensor(np.asarray(values, dtype=np.float32))
    rows = []
    with evaluating(model), reconstruction_statistics(model):  # decodes encoder codes
        enc = model.encode(_as_tensor(x, model.device))
        for d in order[:n_dims]:
            for i in range(enc.zs.shape[0]):
                zu = enc.mu[i : i + 1].repeat(len(values), 1)  # (V, zu_dim)
                zu[:, int(d)] = values.to(zu)
                rows.append(to_uint8_images(model.decode(enc.zs[i : i + 1].expand(len(values), -1), zu)))
    return image_grid(np.concatenate(rows), ncol=len(values))


def inpainting_rows(model, images, masks=("right_half", "eyes", "nose", "mouth", "bottom_half")) -> np.ndarray:
    """Fig. 7: one row per mask (a name of `inpaint.MASKS` or an (S, S) array; a dict name -> array also
    works), each the triples (original, masked input as the encoders see it, inpainted) of every image."""
    x = _as_tensor(images, model.device)
    size = x.shape[-1]
    items = masks.values() if isinstance(masks, dict) else masks
    cells = []
    for m in items:
        m = make_mask(m, size) if isinstance(m, str) else np.asarray(m)
        mt = torch.as_tensor(m, dtype=x.dtype, device=x.device)[None, None]  # (1, 1, S, S)
        x_inp = inpaint(model, x, m)
        triple = np.stack([to_uint8_images(x), to_uint8_images(x * (1 - mt)), to_uint8_images(x_inp)], 1)
        cells.append(triple.reshape((-1,) + triple.shape[2:]))  # (3N, S, S, 3)
    return image_grid(np.concatenate(cells), ncol=3 * len(x))


def training_curves(history: dict[str, list[tuple[float, float]]], ncol: int = 3) -> bytes:
    """PNG bytes: one panel per series name (e.g. 'loss/joint/rec'), value against step."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = sorted(history)
    ncol = max(1, min(ncol, len(names)))
    nrow = max(1, -(-len(names) // ncol))
    fig = Figure(figsize=(4 * ncol, 3 * nrow), dpi=80)
    FigureCanvasAgg(fig)
    for i, name in enumerate(names):
        ax = fig.add_subplot(nrow, ncol, i + 1)
        pts = np.asarray(history[name], dtype=np.float64).reshape(-1, 2)
        ax.plot(pts[:, 0], pts[:, 1], lw=1.2)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
