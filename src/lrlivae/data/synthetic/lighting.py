"""Lighting in the synthetic renderer: the light's direction and colour, and the shading of the
drawn head (Lambert + ambient on an ellipsoid head and a larger one for the hair, socket and nose
occlusion, highlights, a little specular shine, hair strands).

The direction (``light_x``, ``light_y``; z towards the camera) is in the face's own frame, so the
shading survives alignment; ``light_strength`` mixes directional against flat light,
``light_intensity`` and ``light_warmth`` set the light's brightness and colour.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from lrlivae.data.synthetic.canvas import Canvas
from lrlivae.data.synthetic.pose import Head


def light_vec(nui: dict) -> np.ndarray:
    """Unit vector towards the light, in face coordinates."""
    lx, ly = nui["light_x"], nui["light_y"]
    lz = math.sqrt(max(0.05, 1.0 - lx * lx - ly * ly))
    v = np.array([lx, ly, lz])
    return v / np.linalg.norm(v)


def light_rgb(nui: dict) -> np.ndarray:
    """Colour and intensity of the light on the subject."""
    g = float(nui.get("light_intensity", 1.0))
    w = float(nui.get("light_warmth", 0.0))
    k = 0.32
    return (g * np.array([1.0 + k * w, 1.0, 1.0 - k * w])).astype(np.float32)


def shade(cv: Canvas, head: Head, nui: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Light the canvas. Returns (premultiplied RGB float32 in 0..1, alpha float32)."""
    u, v, z, head_m = _normals(cv, head)
    st = nui["light_strength"]
    L = light_vec(nui)
    ndl = np.clip(u * L[0] + v * L[1] + z * L[2], 0, 1)
    shading = (1 - st) * 0.9 + st * (0.38 + 0.72 * ndl)
    hvec = L + np.array([0.0, 0.0, 1.0])
    hvec /= np.linalg.norm(hvec)
    spec = np.clip(u * hvec[0] + v * hvec[1] + z * hvec[2], 0, 1) ** 24 * (0.22 * st) * head_m

    sig = max(0.5, 0.05 * cv.p)
    occ = cv2.GaussianBlur(cv.occ, (0, 0), sig).astype(np.float32) / 255.0
    hi = cv2.GaussianBlur(cv.hi, (0, 0), sig).astype(np.float32) / 255.0
    shading = shading * (1 - 0.7 * occ) + 0.22 * hi * (0.4 + st)
    shading = _shade_hair(cv, shading, head_m, rng)

    alpha = cv.mask.astype(np.float32) / 255.0
    tint = light_rgb(nui)
    col = cv.col.astype(np.float32) / 255.0 * shading[..., None] * tint + spec[..., None] * alpha[..., None] * tint
    return col, alpha


def _normals(cv: Canvas, head: Head) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Surface normals (u, v, z) at every canvas pixel: those of an ellipsoid head inside the head
    mask, of a larger ellipsoid (the hair) outside it, blended by the mask (also returned, 0..1)."""
    xs = np.arange(cv.w, dtype=np.float32) / cv.p + cv.x0  # pixel centres are integer positions
    ys = np.arange(cv.h, dtype=np.float32) / cv.p + cv.y0
    X, Y = np.meshgrid(xs, ys)
    a, b = head.a, head.b

    def ellipsoid(ax, by, cy):
        u = X / ax
        v = (Y - cy) / by
        r2 = np.clip(u * u + v * v, 0, 0.985)
        return u, v, np.sqrt(1 - r2)

    hu, hv, hz = ellipsoid(a * 1.02, b * 1.02, 0.0)
    gu, gv, gz = ellipsoid(a * 1.45, b * 1.25, -0.3)
    head_m = cv.head.astype(np.float32) / 255.0
    u = hu * head_m + gu * (1 - head_m)
    v = hv * head_m + gv * (1 - head_m)
    z = hz * head_m + gz * (1 - head_m)
    return u, v, z, head_m


def _shade_hair(cv: Canvas, shading: np.ndarray, head_m: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Hair strands (anisotropic noise in the hair regions, from `rng`) and the head's shadow on the
    hair next to the face outline."""
    noise = rng.standard_normal((cv.h, cv.w)).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), sigmaX=max(0.4, 0.02 * cv.p), sigmaY=max(1.0, 0.12 * cv.p))
    noise /= noise.std() + 1e-6
    hair_m = cv2.GaussianBlur(cv.hair, (0, 0), 0.8).astype(np.float32) / 255.0
    near = cv2.GaussianBlur(cv.head, (0, 0), max(1.0, 0.18 * cv.p)).astype(np.float32) / 255.0
    shading = shading * (1 - 0.7 * np.clip(near * 1.6, 0, 1) * hair_m * (1 - head_m))
    return shading * (1 + 0.09 * noise * hair_m)
