"""Real photographs for tests and benches, offline: scikit-image's `data` module ships them.

* astronaut(): a 512x512 colour portrait (Eileen Collins).
* lfw_face(i): face i (0..99) of scikit-image's LFW subset, a 25x25 grey crop, upscaled and padded into a
  photo with room around the face, as a detector expects.
* portrait_variants(img, n): the portrait re-framed as other photos would frame it: scaled, turned a few
  degrees in the image plane, shifted, lighter or darker, some grey, some mirrored.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np


def _data():
    import skimage.data

    return skimage.data


@functools.lru_cache(maxsize=1)
def astronaut() -> np.ndarray:
    return np.ascontiguousarray(_data().astronaut())


@functools.lru_cache(maxsize=1)
def _lfw() -> np.ndarray:
    return _data().lfw_subset()[:100]  # the first 100 are faces, the rest are not


def lfw_face(i: int, face_px: int = 100, pad: int = 50) -> np.ndarray:
    g = (_lfw()[i] * 255).round().astype(np.uint8)
    g = cv2.resize(g, (face_px, face_px), interpolation=cv2.INTER_CUBIC)
    g = cv2.copyMakeBorder(g, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(np.repeat(g[:, :, None], 3, axis=2))


def non_face(i: int = 0) -> np.ndarray:
    """A photo with no face in it (scikit-image's coffee cup, or a brick wall)."""
    d = _data()
    img = [d.coffee, d.brick][i % 2]()
    return np.ascontiguousarray(img if img.ndim == 3 else np.repeat(img[:, :, None], 3, axis=2))


def transform(img: np.ndarray, scale: float = 1.0, angle: float = 0.0, shift=(0.0, 0.0), gain: float = 1.0,
              grey: bool = False, mirror: bool = False, out_size=None) -> np.ndarray:
    h, w = img.shape[:2]
    out_w, out_h = out_size or (w, h)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    m[:, 2] += [(out_w - w) / 2 + shift[0], (out_h - h) / 2 + shift[1]]
    im = cv2.warpAffine(img, m, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    im = np.clip(im.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    if grey:
        im = np.repeat(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)
    if mirror:
        im = im[:, ::-1]
    return np.ascontiguousarray(im)


def portrait_variants(img: np.ndarray, n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        out.append(transform(img, scale=rng.uniform(0.6, 1.2), angle=rng.uniform(-12, 12),
                             shift=tuple(rng.uniform(-40, 40, 2)), gain=rng.uniform(0.7, 1.25),
                             grey=bool(k % 3 == 1), mirror=bool(k % 2 == 1)))
    return out


def side_by_side(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Two photos on one canvas (the taller's height), the second scaled to a third of the first's height."""
    h = a.shape[0]
    bh = h // 3
    b = cv2.resize(b, (int(b.shape[1] * bh / b.shape[0]), bh), interpolation=cv2.INTER_AREA)
    canvas = np.full((h, a.shape[1] + b.shape[1], 3), 128, np.uint8)
    canvas[:, : a.shape[1]] = a
    canvas[h // 3: h // 3 + bh, a.shape[1]:] = b
    return canvas
