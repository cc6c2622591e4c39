"""A cartoon frontal face that OpenCV's Viola-Jones cascade finds, with its five landmarks."""
from __future__ import annotations

import cv2
import numpy as np


def draw_face(size: int = 200, bg: int = 60, scale: float = 1.0) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """A cartoon frontal face the Viola-Jones cascade finds: light oval, dark brows, eyes and mouth,
    shaded nose, on a darker background. Returns the RGB image and the oval's box."""
    img = np.full((size, size, 3), bg, np.uint8)
    c = size / 2.0
    s = scale * size / 200.0

    def p(x, y):
        return int(round(c + x * s)), int(round(c + y * s))

    def ax(a, b):
        return int(round(a * s)), int(round(b * s))

    cv2.ellipse(img, p(0, 0), ax(62, 80), 0, 0, 360, (190, 170, 160), -1)
    for side in (-1, 1):
        cv2.ellipse(img, p(side * 25, -35), ax(16, 5), 0, 0, 360, (40, 35, 35), -1)
        cv2.ellipse(img, p(side * 25, -18), ax(12, 7), 0, 0, 360, (30, 30, 30), -1)
    cv2.ellipse(img, p(0, 12), ax(8, 18), 0, 0, 360, (150, 130, 120), -1)
    cv2.ellipse(img, p(0, 42), ax(24, 7), 0, 0, 360, (50, 30, 40), -1)
    img = cv2.GaussianBlur(img, (5, 5), 0)
    box = (c - 62 * s, c - 80 * s, c + 62 * s, c + 80 * s)
    return img, box


def face_landmarks(size: int = 200, scale: float = 1.0) -> np.ndarray:
    """The five points of `draw_face` (eyes, nose tip, mouth corners)."""
    c, s = size / 2.0, scale * size / 200.0
    pts = np.array([[-25, -18], [25, -18], [0, 20], [-22, 42], [22, 42]], dtype=np.float64)
    return c + pts * s
