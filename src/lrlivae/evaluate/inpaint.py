"""Image inpainting with the encoders and the decoder (paper Sec. 4.5, Fig. 7).

    x' = Decoder(Encoder^s(x_masked), mean of Encoder^u(x_masked))       no class label needed
    x_inp = M * x' + (1 - M) * x

M is 1 where pixels are MISSING. The masked image fed to the encoders has the missing pixels set to 0,
mid grey in the model's [-1, 1] range; z_u is taken at the mean of q(z_u | x_masked) (deterministic).

Masks (`MASKS`), placed by the five-point alignment template scaled to an S x S crop
(`lrlivae.faces.align.template`; d = the eye distance, 21 px at S = 64). The paper lists the patterns
as "right-half, eyes, nose and mouth, and bottom-half"; we read "nose and mouth" as two separate
patterns, so there are five (a union is `make_mask("nose", S) | make_mask("mouth", S)`):
  right_half   columns >= S/2: the image's right half (the subject's left side of the face);
  bottom_half  rows >= S/2;
  eyes         one box over both eyes: x from the left eye - 0.4 d to the right eye + 0.4 d,
               y = eye height +- 0.3 d (at S=64: columns 14..50, rows 19..31);
  nose         x = nose tip +- 0.25 d, y from halfway between the eyes and the nose tip down to the
               tip + 0.2 d (at S=64: columns 27..37, rows 31..39);
  mouth        x from the left mouth corner - 0.25 d to the right one + 0.25 d, y = mouth height
               +- 0.25 d (at S=64: columns 19..45, rows 40..50).
A pixel (row r, column c) has its centre at template coordinates (x=c, y=r) and belongs to a box when
its centre lies inside the box (edges included).

Metrics over the masked region only, per image, on the uint8 images (range [0, 255]):
  masked_psnr  10 log10(255^2 / MSE over the masked pixels and the 3 channels); inf when exact;
  masked_ssim  the SSIM map of `skimage.metrics.structural_similarity` (Gaussian window sigma 1.5,
               K = (0.01, 0.03), population covariance, data range 255, the map averaged over the 3
               channels), averaged over the masked pixels.
"""
from __future__ import annotations

import numpy as np
import torch

from lrlivae.data.aligned import to_uint8_images
from lrlivae.faces.align import template
from lrlivae.encode import evaluating

MASKS = ("right_half", "eyes", "nose", "mouth", "bottom_half")


def _box(size: int, x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    m = np.zeros((size, size), dtype=np.uint8)
    c0, c1 = max(0, int(np.ceil(x0))), min(size - 1, int(np.floor(x1)))
    r0, r1 = max(0, int(np.ceil(y0))), min(size - 1, int(np.floor(y1)))
    m[r0 : r1 + 1, c0 : c1 + 1] = 1
    return m


def make_mask(name: str, size: int = 64) -> np.ndarray:
    """(size, size) uint8 mask, 1 where pixels are missing, for one of `MASKS`."""
    if name not in MASKS:
        raise ValueError(f"unknown mask {name!r}; expected one of {MASKS}")
    t = template(size)  # (5, 2): eye_left, eye_right, nose, mouth_left, mouth_right as (x, y)
    d = float(t[1, 0] - t[0, 0])  # eye distance
    if name == "right_half":
        m = np.zeros((size, size), np.uint8)
        m[:, size // 2 :] = 1
        return m
    if name == "bottom_half":
        m = np.zeros((size, size), np.uint8)
        m[size // 2 :, :] = 1
        return m
    if name == "eyes":
        ey = float(t[:2, 1].mean())
        return _box(size, t[0, 0] - 0.4 * d, t[1, 0] + 0.4 * d, ey - 0.3 * d, ey + 0.3 * d)
    if name == "nose":
        (nx, ny), ey = t[2], float(t[:2, 1].mean())
        return _box(size, nx - 0.25 * d, nx + 0.25 * d, (ey + ny) / 2, ny + 0.2 * d)
    my = float(t[3:, 1].mean())  # mouth
    return _box(size, t[3, 0] - 0.25 * d, t[4, 0] + 0.25 * d, my - 0.25 * d, my + 0.25 * d)


def masks(size: int = 64) -> dict[str, np.ndarray]:
    """Every mask of `MASKS` for an S x S crop."""
    return {name: make_mask(name, size) for name in MASKS}


def _mask_tensor(mask, x: torch.Tensor) -> torch.Tensor:
    m = torch.as_tensor(np.asarray(mask), dtype=x.dtype, device=x.device)
    if m.ndim == 2:  # (S, S)
        m = m[None, None]
    elif m.ndim == 3:  # (B, S, S)
        m = m[:, None]
    if m.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"mask of shape {tuple(m.shape[-2:])} for images of shape {tuple(x.shape[-2:])}")
    return m  # broadcastable to (B, C, S, S)


def inpaint(model, x: torch.Tensor, mask) -> torch.Tensor:
    """x (B, C, S, S) in [-1, 1], mask (S, S) or (B, S, S) with 1 = missing -> x_inp (B, C, S, S)."""
    with evaluating(model):
        x = x.to(model.device)
        m = _mask_tensor(mask, x)
        x_masked = x * (1 - m)  # missing pixels -> 0 (grey)
        x_rec = model.reconstruct(x_masked, sample=False).x_rec
        return m * x_rec + (1 - m) * x


def _u8(images) -> np.ndarray:
    if isinstance(images, torch.Tensor):
        return to_uint8_images(images)
    a = np.asarray(images)
    if a.dtype != np.uint8 or a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"expected (N, S, S, 3) uint8 images or a [-1, 1] tensor, got {a.shape} {a.dtype}")
    return a


def _mask_array(mask, n: int, size: int) -> np.ndarray:
    m = np.asarray(mask).astype(bool)
    m = np.broadcast_to(m, (n, size, size)) if m.ndim == 2 else m
    if m.shape != (n, size, size):
        raise ValueError(f"mask shape {m.shape} does not fit {n} images of {size}x{size}")
    if not m.reshape(n, -1).any(1).all():
        raise ValueError("every image needs at least one masked pixel")
    return m


def masked_psnr(x, x_inp, mask) -> np.ndarray:
    """(N,) PSNR in dB over the masked pixels (uint8 scale, peak 255); inf where they match exactly."""
    a, b = _u8(x).astype(np.float64), _u8(x_inp).astype(np.float64)
    m = _mask_array(mask, len(a), a.shape[1])
    out = np.empty(len(a))
    for i in range(len(a)):
        mse = ((a[i] - b[i]) ** 2)[m[i]].mean()
        out[i] = np.inf if mse == 0 else 10.0 * np.log10(255.0**2 / mse)
    return out


def masked_ssim(x, x_inp, mask) -> np.ndarray:
    """(N,) mean of the SSIM map over the masked pixels (1 where they match exactly)."""
    from skimage.metrics import structural_similarity

    a, b = _u8(x), _u8(x_inp)
    m = _mask_array(mask, len(a), a.shape[1])
    out = np.empty(len(a))
    for i in range(len(a)):
        _, smap = structural_similarity(a[i], b[i], data_range=255, channel_axis=-1, gaussian_weights=True,
                                        sigma=1.5, use_sample_covariance=False, full=True)
        out[i] = float(smap.mean(-1)[m[i]].mean())  # (S, S, 3) map -> channel mean -> masked mean
    return out
