"""One synthetic frame: the scene behind, the head drawn and lit on its canvas, warped into the frame
at its roll, scale and position, then the camera (``blur``, ``noise``); and the frame's JPEG coding.

``blur`` is a Gaussian sigma in face units (so it looks the same after alignment at every face size),
``noise`` a Gaussian sigma in 8-bit grey levels. The random draws come from one generator, in a fixed
order: backdrop, clothes, hair strands, sensor noise.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from lrlivae.data.synthetic.background import backdrop, cast_head_shadow, draw_body
from lrlivae.data.synthetic.canvas import Canvas
from lrlivae.data.synthetic.face import draw_head
from lrlivae.data.synthetic.factors import SKIN_TONES
from lrlivae.data.synthetic.lighting import shade


def render_frame(identity: dict, nuisance: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Draw one frame. Returns (RGB uint8 (S, S, 3), landmarks (5, 2) float64 in frame pixels,
    face box (x0, y0, x1, y1)). The frame is returned before JPEG compression (generate_set saves it
    at nuisance["jpeg_quality"]); blur and noise are applied."""
    size = int(nuisance["frame_size"])
    scale = float(nuisance["face_scale"])
    m_units = _units_to_frame_map(nuisance, size, scale)

    frame = backdrop(rng, size, int(nuisance["bg_kind"]), float(nuisance["bg_brightness"]))
    cv, head, lm_units, outline = draw_head(identity, nuisance, scale)
    frame = cast_head_shadow(frame, m_units, identity, nuisance, scale)
    draw_body(frame, m_units, head, SKIN_TONES[identity["skin_tone"]], nuisance, rng)
    col, alpha = shade(cv, head, nuisance, rng)
    frame = _composite(frame, col, alpha, cv, m_units)
    img = _camera(frame, nuisance, scale, rng)

    landmarks = _apply(m_units, lm_units)
    ob = _apply(m_units, outline)
    x0, y0 = np.clip(ob.min(0), 0, size - 1)
    x1, y1 = np.clip(ob.max(0), 0, size - 1)
    return img, landmarks, (float(x0), float(y0), float(x1), float(y1))


def _units_to_frame_map(nuisance: dict, size: int, scale: float) -> np.ndarray:
    """The 2x3 map face units -> frame pixels: rotate by roll, scale, move the pivot into place."""
    r = math.radians(nuisance["roll"])
    c, s = math.cos(r), math.sin(r)
    rot = np.array([[c, -s], [s, c]])
    pivot = np.array([nuisance["face_x"] * size, nuisance["face_y"] * size])
    return np.hstack([rot * scale, pivot[:, None]])


def _apply(m: np.ndarray, pts) -> np.ndarray:
    return np.asarray(pts, np.float64) @ m[:, :2].T + m[:, 2]


def _composite(frame: np.ndarray, col: np.ndarray, alpha: np.ndarray, cv: Canvas, m_units: np.ndarray) -> np.ndarray:
    """Warp the lit canvas (premultiplied colour, alpha) into the frame and put it over the scene."""
    size = frame.shape[0]
    # canvas pixels -> face units -> frame pixels
    to_units = np.array([[1 / cv.p, 0, cv.x0], [0, 1 / cv.p, cv.y0]])
    m_canvas = np.hstack([m_units[:, :2] @ to_units[:, :2], (m_units[:, :2] @ to_units[:, 2] + m_units[:, 2])[:, None]])
    rgba = np.dstack([col, alpha])
    warped = cv2.warpAffine(rgba, m_canvas, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                            borderValue=0)
    return warped[..., :3] + frame * (1 - warped[..., 3:4])


def _camera(frame: np.ndarray, nuisance: dict, scale: float, rng: np.random.Generator) -> np.ndarray:
    """Lens blur and sensor noise on the float frame (0..1); returns the uint8 frame."""
    sigma = float(nuisance["blur"]) * scale
    if sigma > 0.05:
        frame = cv2.GaussianBlur(frame, (0, 0), sigma)
    frame = frame * 255.0
    if nuisance["noise"] > 0:
        grain = rng.standard_normal(frame.shape).astype(np.float32)
        # sensor noise after demosaicing: slightly correlated between neighbouring pixels
        grain = cv2.GaussianBlur(grain, (0, 0), 0.85)
        grain /= grain.std() + 1e-6
        frame = frame + grain * float(nuisance["noise"])
    return np.clip(np.round(frame), 0, 255).astype(np.uint8)


def encode_jpeg(img: np.ndarray, quality: float) -> bytes:
    """JPEG bytes of an RGB frame (4:4:4 chroma, so colour detail survives like luminance)."""
    params = [int(cv2.IMWRITE_JPEG_QUALITY), int(round(quality))]
    if hasattr(cv2, "IMWRITE_JPEG_SAMPLING_FACTOR"):
        params += [int(cv2.IMWRITE_JPEG_SAMPLING_FACTOR), int(cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444)]
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def decode_jpeg(data: bytes) -> np.ndarray:
    """RGB uint8 frame of JPEG bytes."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
