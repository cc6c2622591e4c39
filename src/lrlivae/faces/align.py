"""Similarity alignment of five facial landmarks onto a fixed 64x64 template, and box crops.

Landmark order everywhere in this project (image coordinates, x then y, "left" meaning smaller x
in the image):

    0 left eye centre, 1 right eye centre, 2 nose tip, 3 left mouth corner, 4 right mouth corner

The template places the eyes 21 px apart a little above the centre, so a 64x64 crop keeps the hair
line, both ears' region and the chin, as the paper's FaceScrub crops do.
"""
from __future__ import annotations

import numpy as np
import cv2

CROP_SIZE = 64

# (5, 2) template in the 64x64 output frame.
TEMPLATE_64 = np.array(
    [
        [21.5, 25.0],  # left eye
        [42.5, 25.0],  # right eye
        [32.0, 35.5],  # nose tip
        [24.0, 45.0],  # left mouth corner
        [40.0, 45.0],  # right mouth corner
    ],
    dtype=np.float64,
)

LANDMARK_NAMES = ("eye_left", "eye_right", "nose", "mouth_left", "mouth_right")


def template(size: int = CROP_SIZE) -> np.ndarray:
    """The five-point template scaled to a `size` x `size` crop."""
    return TEMPLATE_64 * (size / CROP_SIZE)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src onto dst.

    Umeyama (1991), closed form, no reflection. src, dst: (K, 2). Returns a 2x3 matrix M with
    dst ~= M[:, :2] @ src + M[:, 2].
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise ValueError(f"need two (K>=2, 2) point sets of equal shape, got {src.shape} and {dst.shape}")
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise ValueError("landmarks contain NaN or infinity")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s_c, d_c = src - mu_s, dst - mu_d
    var_s = (s_c**2).sum() / len(src)
    if var_s < 1e-12:
        raise ValueError("landmarks are degenerate (all at one point)")
    cov = d_c.T @ s_c / len(src)  # (2, 2)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rot = u @ np.diag(d) @ vt
    scale = (sig * d).sum() / var_s
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - m[:, :2] @ mu_s
    return m


def transform_points(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to (K, 2) points."""
    pts = np.asarray(pts, dtype=np.float64)
    return pts @ m[:, :2].T + m[:, 2]


def warp(image: np.ndarray, m: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """Warp `image` (H, W, 3 uint8) by the 2x3 matrix `m` into a size x size crop.

    When the transform shrinks the image by more than 2x the image is first reduced with area
    averaging, so large photos do not alias into the crop.
    """
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    if scale < 0.5:
        factor = max(1, int(np.floor(1.0 / scale / 1.5)))
        if factor > 1:
            h, w = image.shape[:2]
            nw, nh = max(1, w // factor), max(1, h // factor)
            image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
            m = m.copy()
            m[:, 0] *= w / nw  # a pixel of the reduced image spans w / nw original pixels
            m[:, 1] *= h / nh
    return cv2.warpAffine(
        image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def align_landmarks(image: np.ndarray, landmarks: np.ndarray, size: int = CROP_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Crop aligned by five landmarks. Returns (crop (size, size, 3), 2x3 transform)."""
    m = similarity_transform(np.asarray(landmarks)[:5], template(size))
    return warp(image, m, size), m


def box_transform(box, margin: float = 0.2, size: int = CROP_SIZE) -> np.ndarray:
    """2x3 transform mapping a square around `box` (x0, y0, x1, y1), grown by `margin` of its side
    on every edge, onto the size x size crop."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"empty box {box}")
    side = max(x1 - x0, y1 - y0) * (1.0 + 2.0 * margin)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    s = size / side
    return np.array([[s, 0.0, size / 2.0 - s * cx], [0.0, s, size / 2.0 - s * cy]])


def align_box(image: np.ndarray, box, margin: float = 0.2, size: int = CROP_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Box crop with a fixed margin, used when a backend gives no landmarks."""
    m = box_transform(box, margin, size)
    return warp(image, m, size), m
