"""The scene behind the head in the synthetic renderer: the backdrop (``bg_kind``: smooth gradient
with soft blobs, stripes or dots, at ``bg_brightness``), the head's soft shadow on it and the neck and
shoulders. Everything here is drawn straight into the frame (float32 RGB in 0..1).
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from lrlivae.data.synthetic.canvas import ONE, SHIFT
from lrlivae.data.synthetic.lighting import light_rgb
from lrlivae.data.synthetic.pose import HEAD_HALF_HEIGHT, Head


def backdrop(rng: np.random.Generator, size: int, kind: int, brightness: float) -> np.ndarray:
    """float32 RGB background (size, size, 3) in 0..1 whose base luminance is `brightness`: a
    two-colour gradient with a pattern of `kind` (0 soft blobs, 1 stripes, 2 dots) on top."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    sat = rng.uniform(0.05, 0.3)
    c1 = brightness + rng.uniform(-sat, sat, 3)
    c2 = brightness + rng.uniform(-sat, sat, 3)
    ang = rng.uniform(0, 2 * np.pi)
    g = (xx - 0.5) * math.cos(ang) + (yy - 0.5) * math.sin(ang) + 0.5
    img = c1[None, None, :] * (1 - g[..., None]) + c2[None, None, :] * g[..., None]
    img = img - img.mean(axis=(0, 1)) + np.array([brightness] * 3) * 0.0 + img.mean(axis=(0, 1))
    if kind == 0:
        img = img + _blobs(rng, size)
    elif kind == 1:
        img = img + _stripes(rng, size, xx, yy)
    else:
        img = img + _dots(rng, size)
    return np.clip(img, 0, 1).astype(np.float32)


def _blobs(rng: np.random.Generator, size: int) -> np.ndarray:
    """A few large soft blobs of slightly different colour."""
    blobs = np.zeros((size, size, 3), np.float32)
    for _ in range(int(rng.integers(3, 7))):
        c = (int(rng.integers(0, size)), int(rng.integers(0, size)))
        ax = (int(rng.integers(size // 10, size // 3)), int(rng.integers(size // 10, size // 3)))
        angle = float(rng.uniform(0, 180))
        color = tuple(float(v) for v in rng.uniform(-0.08, 0.08, 3))
        cv2.ellipse(blobs, c, ax, angle, 0, 360, color, -1)
    return cv2.GaussianBlur(blobs, (0, 0), size / 25)


def _stripes(rng: np.random.Generator, size: int, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """Tinted stripes of random period and direction (a soft square wave)."""
    period = rng.uniform(0.07, 0.12) * size
    ang = rng.uniform(0, np.pi)
    ph = ((xx * math.cos(ang) + yy * math.sin(ang)) * size / period + rng.uniform()) % 1.0
    sq = np.clip((np.abs(ph - 0.5) - 0.25) * 6.0, -1, 1)  # soft square wave
    contrast = rng.uniform(0.22, 0.3)
    tint = rng.uniform(0.7, 1.3, 3)
    return (contrast * sq)[..., None] * tint[None, None, :]


def _dots(rng: np.random.Generator, size: int) -> np.ndarray:
    """Many small round spots of contrasting colours."""
    dots = np.zeros((size, size, 3), np.float32)
    n = int(size * size / rng.uniform(110, 170))
    xy = rng.uniform(0, size, (n, 2))
    rad = rng.uniform(2.8, 4.8, n)
    cols = rng.uniform(-1, 1, (n, 3)) * 0.5 + rng.choice([-1.0, 1.0], (n, 1)) * 0.5
    for (x, y), r, c in zip(xy, rad, cols):
        cv2.circle(dots, (int(x * ONE), int(y * ONE)), int(r * ONE), tuple(float(v) for v in c), -1,
                   cv2.LINE_AA, SHIFT)
    return dots * rng.uniform(0.3, 0.38)


def cast_head_shadow(frame: np.ndarray, m: np.ndarray, identity: dict, nui: dict, scale: float) -> np.ndarray:
    """Darken the frame under a soft shadow of the head, offset away from the light. m: the 2x3 map
    face units -> frame pixels. Returns the shaded frame."""
    size = frame.shape[0]
    sh = np.zeros((size, size), np.float32)
    off = -np.array([nui["light_x"], nui["light_y"]]) * 0.35
    cen = m[:, :2] @ off + m[:, 2]
    ax = (identity["face_width"] * 1.45 * scale, HEAD_HALF_HEIGHT * 1.15 * scale)
    cv2.ellipse(sh, (int(cen[0] * ONE), int(cen[1] * ONE)), (int(ax[0] * ONE), int(ax[1] * ONE)),
                nui["roll"], 0, 360, 1.0, -1, cv2.LINE_AA, SHIFT)
    sh = cv2.GaussianBlur(sh, (0, 0), 0.35 * scale)
    frame *= (1 - 0.2 * sh)[..., None]
    return frame


def draw_body(frame: np.ndarray, m: np.ndarray, head: Head, skin: np.ndarray, nui: dict, rng) -> None:
    """Neck and shoulders (clothes of a random colour), drawn straight into the frame through the
    2x3 map m (face units -> frame pixels)."""
    def to_frame(pts):
        pts = np.asarray(pts, np.float64)
        f = pts @ m[:, :2].T + m[:, 2]
        return np.round(f * ONE).astype(np.int32).reshape(-1, 1, 2)

    a = head.a
    shade = (1 - nui["light_strength"]) * 0.8 + nui["light_strength"] * 0.55
    neck = [(-0.36 * a, 0.6), (0.36 * a, 0.6), (0.42 * a, 2.3), (-0.42 * a, 2.3)]
    neck_col = tuple(float(v) for v in skin / 255.0 * shade * 0.72 * light_rgb(nui))
    cloth = rng.uniform(0.1, 0.9, 3)
    torso = [(-0.62 * a, 2.0), (-1.9, 2.45), (-3.2, 3.1), (-3.6, 14.0), (3.6, 14.0), (3.2, 3.1), (1.9, 2.45),
             (0.62 * a, 2.0), (0.0, 2.35)]
    cv2.fillPoly(frame, [to_frame(neck)], neck_col, cv2.LINE_AA, SHIFT)
    cv2.fillPoly(frame, [to_frame(torso)], tuple(float(v) for v in cloth), cv2.LINE_AA, SHIFT)

