"""What the detectors and landmarkers share: the `Detection` type, the RGB input check, the reduced copy
that large photos are detected on, and the reduction of 68 iBUG landmarks to the project's five points.

detect.py, landmarks.py and dlib_faces.py all import from here; this module imports none of them.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# 68-point indices (0-based) for the five points.
_LEFT_EYE = slice(36, 42)
_RIGHT_EYE = slice(42, 48)
_NOSE_TIP = 30
_MOUTH_LEFT = 48
_MOUTH_RIGHT = 54


@dataclass
class Detection:
    """One detected face: box (x0, y0, x1, y1), confidence, optional (5, 2) landmarks."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray | None = None

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)


def check_rgb_image(image: np.ndarray) -> None:
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8):
        raise TypeError(f"expected an (H, W, 3) uint8 RGB image, got {getattr(image, 'shape', None)} "
                        f"{getattr(image, 'dtype', type(image))}")


def reduce_image(image: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    """A copy with the longest side at most max_side, and its scale (reduced / original)."""
    h, w = image.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return image, 1.0
    s = max_side / float(max(h, w))
    small = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return small, s


def five_from_68(points: np.ndarray) -> np.ndarray:
    """(68, 2+) iBUG points -> (5, 2): left eye, right eye, nose tip, left / right mouth corner."""
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != 68 or p.shape[1] < 2:
        raise ValueError(f"expected (68, 2) landmarks, got {p.shape}")
    p = p[:, :2]
    return np.stack(
        [p[_LEFT_EYE].mean(0), p[_RIGHT_EYE].mean(0), p[_NOSE_TIP], p[_MOUTH_LEFT], p[_MOUTH_RIGHT]]
    )
