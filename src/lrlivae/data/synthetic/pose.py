"""The 3-D face model of the synthetic renderer: the fixed face layout and one head in one pose.

Face units: one unit is the nominal inter-ocular distance (an identity's ``eye_spacing`` scales it),
the origin is the centre of the head (the pivot of yaw and pitch), y points down and z towards the
camera. The head is an ellipsoid-like surface whose outline narrows towards the chin (``jaw``) and
whose chin drops as the mouth opens; yaw and pitch rotate it before the orthographic projection.
"""
from __future__ import annotations

import math

import numpy as np

# Fixed face layout (face units, origin at the head centre, y down).
HEAD_HALF_HEIGHT = 1.55
EYE_Y = -0.25
BROW_Y = -0.58
NOSE_Y = 0.33
MOUTH_Y = 0.86
HAIRLINE_Y = -1.3
BROW_THICKNESS = 0.06
DEPTH = 0.95
EYE_W, EYE_H, IRIS_R = 0.24, 0.13, 0.135


def _rotation(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """3x3 rotation of the head: yaw about the vertical axis, then pitch about the horizontal one."""
    y, p = math.radians(yaw_deg), math.radians(pitch_deg)
    cy, sy, cp, sp = math.cos(y), math.sin(y), math.cos(p), math.sin(p)
    ry = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
    return rx @ ry


class Head:
    """The 3-D face model of one identity in one pose: surface depth, projection, outline."""

    def __init__(self, ident: dict, nui: dict):
        self.a = ident["face_width"]
        self.b = HEAD_HALF_HEIGHT
        self.jaw = ident["jaw"]
        self.drop = 0.22 * nui["mouth_open"]  # the chin drops as the mouth opens
        self.rot = _rotation(nui["yaw"], nui["pitch"])

    def half_width(self, y):
        """Half-width of the (frontal) face outline at height y: an ellipse narrowed towards the chin."""
        y = np.asarray(y, np.float64)
        base = self.a * np.sqrt(np.clip(1.0 - (y / self.b) ** 2, 0.0, 1.0))
        t = np.clip(y / self.b, 0.0, 1.0)
        return base * (1.0 - (0.55 * self.jaw - 0.08) * t**1.2)

    def z(self, x, y):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        return DEPTH * np.sqrt(np.clip(1.0 - (x / self.a) ** 2 - (y / self.b) ** 2, 0.02, 1.0))

    def surf(self, pts2d, lift=0.0) -> np.ndarray:
        """2-D frontal face points -> 3-D points on the surface (plus `lift` outwards)."""
        p = np.asarray(pts2d, np.float64).reshape(-1, 2)
        return np.column_stack([p, self.z(p[:, 0], p[:, 1]) + lift])

    def project(self, pts3d) -> np.ndarray:
        p = np.asarray(pts3d, np.float64).reshape(-1, 3) @ self.rot.T
        return p[:, :2]

    def on_face(self, pts2d, lift=0.0) -> np.ndarray:
        return self.project(self.surf(pts2d, lift))

    def foreshorten(self, x, y) -> tuple[float, float]:
        """Horizontal / vertical shrink of a small surface patch at (x, y), relative to frontal."""
        z = float(self.z(x, y))
        n = np.array([x / self.a, y / self.b, z / DEPTH])
        n /= np.linalg.norm(n)
        m = self.rot @ n
        fx = math.sqrt(max(0.05, 1 - m[0] ** 2)) / math.sqrt(max(0.05, 1 - n[0] ** 2))
        fy = math.sqrt(max(0.05, 1 - m[1] ** 2)) / math.sqrt(max(0.05, 1 - n[1] ** 2))
        return fx, fy

    def outline3d(self, n: int = 72, grow: float = 0.0) -> np.ndarray:
        """Closed skin outline in 3-D: the silhouette; the lower face leans forward (z > 0) so the
        chin and jaw follow yaw / pitch while the skull outline stays."""
        t = np.linspace(0, 2 * np.pi, n, endpoint=False)
        y = self.b * np.sin(t)
        x = np.sign(np.cos(t)) * self.half_width(y)
        low = np.clip(np.sin(t), 0, 1)
        y = y + self.drop * low**2
        x = x * (1 + grow)
        y = y * (1 + grow)
        z = 0.62 * low**1.5
        return np.column_stack([x, y, z])
