"""Per-image nuisance factors of the synthetic face set: pose, expression, light, background,
camera (blur, noise, JPEG quality) and framing, drawn from one image's generator.

Conventions: ``yaw`` > 0 turns the face towards the image's right, ``pitch`` > 0 tilts it up,
``roll`` > 0 rotates it clockwise in the image (degrees). The light direction (``light_x``,
``light_y``) is given in the face's own frame, so it survives alignment. ``face_scale`` is the size of
one face unit in frame pixels, (``face_x``, ``face_y``) the head pivot as a fraction of the frame side.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from lrlivae.data.synthetic.factors import (
    NUISANCE_FACTORS,
    _BG_BRIGHTNESS,
    _BG_KINDS,
    _FACE_SCALE_FRAC,
    _NUI_CONTINUOUS,
)

# Generous extents of the face in face units (x, y), kept inside the frame at every roll.
_FACE_CORNERS = np.array([[-1.4, -1.45], [1.4, -1.45], [-1.4, 2.0], [1.4, 2.0]])


def sample_nuisance(rng: np.random.Generator, frame_size: tuple[int, int] = (128, 160)) -> dict:
    """Draw one image's nuisance factors (see NUISANCE_FACTORS). frame_size: (min, max) side."""
    lo, hi = int(frame_size[0]), int(frame_size[1])
    if not (0 < lo <= hi):
        raise ValueError(f"frame_size must be (min, max) with 0 < min <= max, got {frame_size}")
    out: dict[str, Any] = {}
    for name, (a, b) in _NUI_CONTINUOUS.items():
        out[name] = float(rng.uniform(a, b))
    out["jpeg_quality"] = float(round(out["jpeg_quality"]))
    out["bg_brightness"] = _bg_brightness(rng)
    out["bg_kind"] = int(rng.integers(_BG_KINDS))
    size = int(rng.integers(lo, hi + 1))
    out["frame_size"] = size
    out["face_scale"], out["face_x"], out["face_y"] = _framing(rng, size, out["roll"])
    return {k: out[k] for k in NUISANCE_FACTORS}


def _bg_brightness(rng: np.random.Generator) -> float:
    """Background brightness: dark or bright, never the mid-tones of the face."""
    u = float(rng.uniform())
    lo_b, hi_b = _BG_BRIGHTNESS
    return lo_b[0] + (lo_b[1] - lo_b[0]) * 2 * u if u < 0.5 else hi_b[0] + (hi_b[1] - hi_b[0]) * (2 * u - 1)


def _framing(rng: np.random.Generator, size: int, roll_deg: float) -> tuple[float, float, float]:
    """(face_scale, face_x, face_y) of a frame of side `size`: a face size drawn from
    _FACE_SCALE_FRAC (shrunk when the face would not fit at this roll), then a position that keeps
    the whole face inside the frame."""
    scale = float(size * rng.uniform(*_FACE_SCALE_FRAC))
    r = math.radians(roll_deg)
    c, s = math.cos(r), math.sin(r)
    rot = _FACE_CORNERS @ np.array([[c, s], [-s, c]])
    lo_xy = -rot.min(0) * scale + 1.0
    hi_xy = size - rot.max(0) * scale - 1.0
    if np.any(hi_xy <= lo_xy):  # face too large for this frame: shrink it
        fit = float((size - 2.0) / (rot.max(0) - rot.min(0)).max())
        scale = min(scale, fit)
        lo_xy = -rot.min(0) * scale + 1.0
        hi_xy = np.maximum(lo_xy, size - rot.max(0) * scale - 1.0)
    pos = rng.uniform(lo_xy, hi_xy)
    return scale, float(pos[0] / size), float(pos[1] / size)
