"""The drawing surface of the synthetic renderer: an un-rolled canvas in face units.

Shapes are given in face units and drawn anti-aliased with OpenCV at SHIFT bits of sub-pixel
precision, into the colour image, its coverage mask and helper maps (head, hair, occlusion,
highlight) that the lighting step reads.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

SHIFT = 4  # sub-pixel bits of OpenCV's fixed-point drawing
ONE = 1 << SHIFT


class Canvas:
    """An axis-aligned (un-rolled) drawing surface in face units, with premultiplied colour, a
    coverage mask and a few helper maps (head mask, hair mask, occlusion, highlight)."""

    def __init__(self, scale: float, x_range=(-2.3, 2.3), y_range=(-2.4, 3.3)):
        self.p = float(scale)
        self.x0, self.y0 = x_range[0], y_range[0]
        self.w = int(math.ceil((x_range[1] - x_range[0]) * self.p)) + 2
        self.h = int(math.ceil((y_range[1] - y_range[0]) * self.p)) + 2
        self.col = np.zeros((self.h, self.w, 3), np.uint8)
        self.mask = np.zeros((self.h, self.w), np.uint8)
        self.head = np.zeros((self.h, self.w), np.uint8)
        self.hair = np.zeros((self.h, self.w), np.uint8)
        self.occ = np.zeros((self.h, self.w), np.uint8)
        self.hi = np.zeros((self.h, self.w), np.uint8)

    def px(self, pts) -> np.ndarray:
        pts = np.asarray(pts, np.float64)
        return np.stack([(pts[..., 0] - self.x0) * self.p, (pts[..., 1] - self.y0) * self.p], -1)

    def _ipts(self, pts) -> np.ndarray:
        return np.round(self.px(pts) * ONE).astype(np.int32).reshape(-1, 1, 2)

    def poly(self, pts, color, *targets):
        """Fill a polygon (face units) into the colour image (and the mask) and extra maps."""
        ip = self._ipts(pts)
        if color is not None:
            cv2.fillPoly(self.col, [ip], _c(color), cv2.LINE_AA, SHIFT)
            cv2.fillPoly(self.mask, [ip], 255, cv2.LINE_AA, SHIFT)
        for t, v in targets:
            cv2.fillPoly(t, [ip], int(v), cv2.LINE_AA, SHIFT)

    def blend_poly(self, pts, color, opacity: float):
        """Blend `color` over the skin inside a polygon (facial hair), marking it as hair."""
        m = np.zeros_like(self.mask)
        cv2.fillPoly(m, [self._ipts(pts)], 255, cv2.LINE_AA, SHIFT)
        m = np.minimum(m, self.head)
        w = m.astype(np.float32)[..., None] * (opacity / 255.0)
        self.col = np.round(self.col * (1 - w) + np.asarray(color, np.float32) * w).astype(np.uint8)
        self.hair = np.maximum(self.hair, (m * opacity).astype(np.uint8))

    def line(self, pts, color, thick, *targets):
        ip = self._ipts(pts)
        t_px = max(1, int(round(thick * self.p)))
        if color is not None:
            cv2.polylines(self.col, [ip], False, _c(color), t_px, cv2.LINE_AA, SHIFT)
            cv2.polylines(self.mask, [ip], False, 255, t_px, cv2.LINE_AA, SHIFT)
        for t, v in targets:
            cv2.polylines(t, [ip], False, int(v), t_px, cv2.LINE_AA, SHIFT)

    def ellipse(self, center, axes, angle, color, *targets, thick: float | None = None):
        c = tuple(int(v) for v in np.round(self.px(center) * ONE))
        ax = (max(1, int(round(axes[0] * self.p * ONE))), max(1, int(round(axes[1] * self.p * ONE))))
        t_px = -1 if thick is None else max(1, int(round(thick * self.p)))
        if color is not None:
            cv2.ellipse(self.col, c, ax, angle, 0, 360, _c(color), t_px, cv2.LINE_AA, SHIFT)
            cv2.ellipse(self.mask, c, ax, angle, 0, 360, 255, t_px, cv2.LINE_AA, SHIFT)
        for t, v in targets:
            cv2.ellipse(t, c, ax, angle, 0, 360, int(v), t_px, cv2.LINE_AA, SHIFT)


def _c(color) -> tuple:
    return tuple(min(255, max(0, int(round(float(v))))) for v in color)

