"""The built-in synthetic face set.

Real face sets cannot ship with the project, so it draws its own: photo-like square frames
(128..160 px by default) each holding one shaded face at a random position, scale and in-plane
rotation, on a varied background, then blurred, made noisy and saved as JPEG. Everything is drawn
with OpenCV / numpy from a seed, deterministically.

Factors
-------
Identity factors are fixed per identity; nuisance factors are drawn per image. Every factor is
recorded as a number (float for continuous factors, int for discrete ones); ``FACTOR_RANGES`` gives
the range (continuous) or the number of classes (discrete) of each.

Identity: face shape (``face_width``, ``jaw``), ``skin_tone``, ``hair_color``, ``hair_style``,
``eye_color``, ``eye_spacing``, ``brow_slant``, ``nose_size``, ``mouth_size`` and accessories
(``glasses``, ``beard``, ``earrings``, ``mustache``; every identity wears one or two). Colours come
from small palettes shared by all identities, so an identity is only defined by the combination of
several factors.

Nuisance: head pose (``yaw``, ``pitch``, ``roll``), expression (``smile``, ``mouth_open``,
``eyes_closed``), illumination (``light_x``, ``light_y``, ``light_strength``; the direction is
given in the face's own frame, so it survives alignment), background (``bg_kind``,
``bg_brightness``), ``blur``, ``noise``, ``jpeg_quality``, and the framing (``frame_size``,
``face_scale``, ``face_x``, ``face_y``).

The framing factors and ``roll`` are removed by alignment: they are listed in ``FRAME_FACTORS``
and are recoverable from the recorded landmarks and box (or the frame itself), not from an aligned
crop. Every other factor is visible in a 64x64 crop aligned on the five landmarks.

Units and conventions
---------------------
The face model lives in "face units": one unit is the nominal inter-ocular distance (an identity's
``eye_spacing`` scales it) and the origin is the centre of the head, the pivot of yaw and pitch.
``face_scale`` is the size of one face unit in frame pixels and (``face_x``, ``face_y``) the pivot's
position as a fraction of the frame side. ``yaw`` > 0 turns the face towards the image's right,
``pitch`` > 0 tilts it up, ``roll`` > 0 rotates it clockwise in the image (all in degrees). ``blur``
is a Gaussian sigma in face units (so it looks the same after alignment at every face size),
``noise`` a Gaussian sigma in 8-bit grey levels, ``jpeg_quality`` the quality the frame is saved at
(``render_frame`` returns the frame before JPEG compression; ``generate_set`` writes it).

Landmarks follow lrlivae.faces.align: left eye centre, right eye centre, nose tip, left mouth
corner, right mouth corner, in image coordinates ("left" = smaller x). The box is the tight box of
the face's skin outline (forehead to chin, cheek to cheek; hair and ears excluded).

Seeding: identity ``k`` of a set is drawn from SeedSequence((seed, set code, k)) and image ``i`` of
it from SeedSequence((seed, set code, k, i)), where ``k`` already includes ``identity_offset``; the
output therefore does not depend on the number of workers.
"""
from __future__ import annotations

import math
import os
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from lrlivae.data.records import FaceRecord, Reject, SourceListing

# ---------------------------------------------------------------------------------------- factors
IDENTITY_FACTORS: dict[str, str] = {
    "face_width": "continuous",
    "jaw": "continuous",
    "skin_tone": "discrete",
    "hair_color": "discrete",
    "hair_style": "discrete",
    "eye_color": "discrete",
    "eye_spacing": "continuous",
    "brow_slant": "continuous",
    "nose_size": "continuous",
    "mouth_size": "continuous",
    "glasses": "discrete",
    "beard": "discrete",
    "earrings": "discrete",
    "mustache": "discrete",
}

NUISANCE_FACTORS: dict[str, str] = {
    "yaw": "continuous",
    "pitch": "continuous",
    "roll": "continuous",
    "smile": "continuous",
    "mouth_open": "continuous",
    "eyes_closed": "continuous",
    "light_x": "continuous",
    "light_y": "continuous",
    "light_strength": "continuous",
    "light_intensity": "continuous",
    "light_warmth": "continuous",
    "bg_kind": "discrete",
    "bg_brightness": "continuous",
    "blur": "continuous",
    "noise": "continuous",
    "jpeg_quality": "continuous",
    "frame_size": "discrete",
    "face_scale": "continuous",
    "face_x": "continuous",
    "face_y": "continuous",
}

# Nuisance factors that alignment removes by construction: recover them from the frame, the
# landmarks or the box instead of from an aligned crop.
FRAME_FACTORS: frozenset[str] = frozenset({"roll", "frame_size", "face_scale", "face_x", "face_y"})

ACCESSORIES = ("glasses", "beard", "earrings", "mustache")

# Continuous identity factors: (low, high), drawn uniformly.
_ID_CONTINUOUS: dict[str, tuple[float, float]] = {
    "face_width": (1.04, 1.2),  # head half-width at the cheeks, face units
    "jaw": (0.0, 1.0),  # 0 round jaw .. 1 narrow, pointed chin
    "eye_spacing": (0.84, 1.04),  # inter-ocular distance, face units
    "brow_slant": (-1.0, 1.0),  # > 0: inner ends lower, outer ends higher
    "nose_size": (0.7, 1.3),  # relative length / width / protrusion
    "mouth_size": (0.62, 1.0),  # mouth width at rest, face units
}
# Discrete identity factors: number of classes.
_ID_DISCRETE: dict[str, int] = {"skin_tone": 4, "hair_color": 5, "hair_style": 4, "eye_color": 3}

_NUI_CONTINUOUS: dict[str, tuple[float, float]] = {
    "yaw": (-22.0, 22.0),
    "pitch": (-20.0, 20.0),
    "roll": (-10.0, 10.0),
    "smile": (0.0, 1.0),
    "mouth_open": (0.0, 1.0),
    "eyes_closed": (0.0, 0.8),
    "light_x": (-0.75, 0.75),
    "light_y": (-0.8, 0.0),
    "light_strength": (0.3, 0.9),
    "light_intensity": (0.7, 1.4),
    "light_warmth": (-1.0, 1.0),
    "blur": (0.0, 0.065),
    "noise": (2.0, 20.0),
    "jpeg_quality": (6.0, 28.0),
}
_BG_BRIGHTNESS = ((0.05, 0.33), (0.7, 0.95))  # two bands, each drawn with probability 1/2
_BG_KINDS = 3  # 0 smooth gradient with soft blobs, 1 stripes, 2 dots
_FACE_SCALE_FRAC = (0.16, 0.215)  # face unit as a fraction of the frame side

FACTOR_RANGES: dict[str, Any] = {
    **_ID_CONTINUOUS,
    **_ID_DISCRETE,
    **{a: 2 for a in ACCESSORIES},
    **_NUI_CONTINUOUS,
    "bg_kind": _BG_KINDS,
    "bg_brightness": _BG_BRIGHTNESS,
    "frame_size": "frame side in pixels, from generate_set's frame_size range",
    "face_scale": "pixels per face unit: frame_size * (0.16 .. 0.215)",
    "face_x": (0.0, 1.0),
    "face_y": (0.0, 1.0),
}

# Shared palettes (RGB). Identities draw from the same few colours, so colour alone does not
# identify anyone.
SKIN_TONES = np.array([[240, 210, 190], [224, 180, 146], [198, 148, 110], [178, 128, 94]], np.float32)
HAIR_COLORS = np.array(
    [[32, 26, 24], [86, 56, 36], [146, 74, 36], [152, 116, 66], [118, 118, 124]], np.float32
)
EYE_COLORS = np.array([[92, 48, 18], [80, 150, 250], [40, 150, 45]], np.float32)
HAIR_STYLES = ("short", "long", "fringe", "curly")
BG_KINDS = ("smooth", "stripes", "dots")

# Fixed face layout (face units, origin at the head centre, y down).
_HEAD_HALF_HEIGHT = 1.55
_EYE_Y = -0.25
_BROW_Y = -0.58
_NOSE_Y = 0.33
_MOUTH_Y = 0.86
_HAIRLINE_Y = -1.3
_BROW_THICKNESS = 0.06
_DEPTH = 0.95
_EYE_W, _EYE_H, _IRIS_R = 0.24, 0.13, 0.135

_LM_COLUMNS = [f"lm_{i}_{c}" for i in range(5) for c in ("x", "y")]
_BOX_COLUMNS = ["box_x0", "box_y0", "box_x1", "box_y1"]


# --------------------------------------------------------------------------------------- sampling
# The "look" of an identity: the factors that show at low resolution (colouring, hair style and
# the accessories). A seed defines a small pool of _N_LOOKS looks shared by every identity of every
# set (identity g wears look g mod _N_LOOKS); identities that share a look differ in the finer
# factors (face shape, eye spacing and colour, brows, nose, mouth), so no low-resolution colour
# layout identifies anyone.
LOOK_FACTORS = ("skin_tone", "hair_color", "hair_style", "glasses", "beard", "earrings", "mustache")
_N_LOOKS = 4
_LOOK_TAG = 0x4C4F4F4B


def sample_look(rng: np.random.Generator) -> dict:
    """Draw the low-resolution look shared by a family of identities (one or two accessories)."""
    look = {name: int(rng.integers(n)) for name, n in _ID_DISCRETE.items() if name in LOOK_FACTORS}
    worn = rng.choice(len(ACCESSORIES), size=int(rng.integers(1, 3)), replace=False)
    for i, name in enumerate(ACCESSORIES):
        look[name] = int(i in worn)
    return look


def sample_identity(rng: np.random.Generator, look: dict | None = None) -> dict:
    """Draw one identity's factors (see IDENTITY_FACTORS); `look` fixes the LOOK_FACTORS (drawn
    here when None)."""
    if look is None:
        look = sample_look(rng)
    out: dict[str, Any] = dict(look)
    for name, (lo, hi) in _ID_CONTINUOUS.items():
        out[name] = float(rng.uniform(lo, hi))
    for name, n in _ID_DISCRETE.items():
        if name not in LOOK_FACTORS:
            out[name] = int(rng.integers(n))
    return {k: out[k] for k in IDENTITY_FACTORS}


def _identity_distance(a: dict, b: dict) -> float:
    """How different two identities look: differing discrete factors count 1 each, continuous ones
    their difference relative to the range (times 2)."""
    d = 0.0
    for name, kind in IDENTITY_FACTORS.items():
        if kind == "discrete":
            d += float(a[name] != b[name])
        else:
            lo, hi = _ID_CONTINUOUS[name]
            d += 2.0 * abs(a[name] - b[name]) / (hi - lo)
    return d


_MIN_IDENTITY_DISTANCE = 3.5


def _set_code(set_name: str) -> int:
    return zlib.crc32(set_name.encode("utf-8")) & 0x7FFFFFFF


def look_pool(seed: int) -> list[dict]:
    """The looks of a seed: look j from SeedSequence((seed, tag, j)), redrawn from its stream until
    it differs from the earlier looks in at least three look factors."""
    pool: list[dict] = []
    for j in range(_N_LOOKS):
        rng = np.random.default_rng(np.random.SeedSequence([seed, _LOOK_TAG, j]))
        for _ in range(200):
            look = sample_look(rng)
            if all(sum(look[k] != o[k] for k in LOOK_FACTORS) >= 3 for o in pool):
                break
        pool.append(look)
    return pool


def sample_identities(n: int, *, seed: int, set_name: str, identity_offset: int = 0) -> list[dict]:
    """The identities of a set. Identity k (global index g = identity_offset + k) wears look
    g mod _N_LOOKS of the seed's look_pool; the rest is drawn from SeedSequence((seed, set code, g))
    and redrawn from that stream while the identity is too close to an earlier one of the set."""
    code = _set_code(set_name)
    looks = look_pool(seed)
    out: list[dict] = []
    for k in range(n):
        g = identity_offset + k
        look = looks[g % len(looks)]
        rng = np.random.default_rng(np.random.SeedSequence([seed, code, g]))
        best, best_d = None, -1.0
        for _ in range(200):
            cand = sample_identity(rng, look)
            d = min((_identity_distance(cand, o) for o in out), default=math.inf)
            if d > best_d:
                best, best_d = cand, d
            if d >= _MIN_IDENTITY_DISTANCE:
                break
        out.append(best)
    return out


def sample_nuisance(rng: np.random.Generator, frame_size: tuple[int, int] = (128, 160)) -> dict:
    """Draw one image's nuisance factors (see NUISANCE_FACTORS). frame_size: (min, max) side."""
    lo, hi = int(frame_size[0]), int(frame_size[1])
    if not (0 < lo <= hi):
        raise ValueError(f"frame_size must be (min, max) with 0 < min <= max, got {frame_size}")
    out: dict[str, Any] = {}
    for name, (a, b) in _NUI_CONTINUOUS.items():
        out[name] = float(rng.uniform(a, b))
    out["jpeg_quality"] = float(round(out["jpeg_quality"]))
    # background brightness: dark or bright, never the mid-tones of the face
    u = float(rng.uniform())
    lo_b, hi_b = _BG_BRIGHTNESS
    out["bg_brightness"] = lo_b[0] + (lo_b[1] - lo_b[0]) * 2 * u if u < 0.5 else hi_b[0] + (hi_b[1] - hi_b[0]) * (2 * u - 1)
    out["bg_kind"] = int(rng.integers(_BG_KINDS))
    size = int(rng.integers(lo, hi + 1))
    out["frame_size"] = size
    scale = float(size * rng.uniform(*_FACE_SCALE_FRAC))
    # Keep the whole face (generous extents in face units) inside the frame at this roll.
    r = math.radians(out["roll"])
    c, s = math.cos(r), math.sin(r)
    corners = np.array([[-1.4, -1.45], [1.4, -1.45], [-1.4, 2.0], [1.4, 2.0]])
    rot = corners @ np.array([[c, s], [-s, c]])
    lo_xy = -rot.min(0) * scale + 1.0
    hi_xy = size - rot.max(0) * scale - 1.0
    if np.any(hi_xy <= lo_xy):  # face too large for this frame: shrink it
        fit = float((size - 2.0) / (rot.max(0) - rot.min(0)).max())
        scale = min(scale, fit)
        lo_xy = -rot.min(0) * scale + 1.0
        hi_xy = np.maximum(lo_xy, size - rot.max(0) * scale - 1.0)
    pos = rng.uniform(lo_xy, hi_xy)
    out["face_scale"] = scale
    out["face_x"] = float(pos[0] / size)
    out["face_y"] = float(pos[1] / size)
    return {k: out[k] for k in NUISANCE_FACTORS}


# -------------------------------------------------------------------------------------- rendering
_SHIFT = 4
_ONE = 1 << _SHIFT


class _Canvas:
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
        return np.round(self.px(pts) * _ONE).astype(np.int32).reshape(-1, 1, 2)

    def poly(self, pts, color, *targets):
        """Fill a polygon (face units) into the colour image (and the mask) and extra maps."""
        ip = self._ipts(pts)
        if color is not None:
            cv2.fillPoly(self.col, [ip], _c(color), cv2.LINE_AA, _SHIFT)
            cv2.fillPoly(self.mask, [ip], 255, cv2.LINE_AA, _SHIFT)
        for t, v in targets:
            cv2.fillPoly(t, [ip], int(v), cv2.LINE_AA, _SHIFT)

    def blend_poly(self, pts, color, opacity: float):
        """Blend `color` over the skin inside a polygon (facial hair), marking it as hair."""
        m = np.zeros_like(self.mask)
        cv2.fillPoly(m, [self._ipts(pts)], 255, cv2.LINE_AA, _SHIFT)
        m = np.minimum(m, self.head)
        w = m.astype(np.float32)[..., None] * (opacity / 255.0)
        self.col = np.round(self.col * (1 - w) + np.asarray(color, np.float32) * w).astype(np.uint8)
        self.hair = np.maximum(self.hair, (m * opacity).astype(np.uint8))

    def line(self, pts, color, thick, *targets):
        ip = self._ipts(pts)
        t_px = max(1, int(round(thick * self.p)))
        if color is not None:
            cv2.polylines(self.col, [ip], False, _c(color), t_px, cv2.LINE_AA, _SHIFT)
            cv2.polylines(self.mask, [ip], False, 255, t_px, cv2.LINE_AA, _SHIFT)
        for t, v in targets:
            cv2.polylines(t, [ip], False, int(v), t_px, cv2.LINE_AA, _SHIFT)

    def ellipse(self, center, axes, angle, color, *targets, thick: float | None = None):
        c = tuple(int(v) for v in np.round(self.px(center) * _ONE))
        ax = (max(1, int(round(axes[0] * self.p * _ONE))), max(1, int(round(axes[1] * self.p * _ONE))))
        t_px = -1 if thick is None else max(1, int(round(thick * self.p)))
        if color is not None:
            cv2.ellipse(self.col, c, ax, angle, 0, 360, _c(color), t_px, cv2.LINE_AA, _SHIFT)
            cv2.ellipse(self.mask, c, ax, angle, 0, 360, 255, t_px, cv2.LINE_AA, _SHIFT)
        for t, v in targets:
            cv2.ellipse(t, c, ax, angle, 0, 360, int(v), t_px, cv2.LINE_AA, _SHIFT)


def _c(color) -> tuple:
    return tuple(min(255, max(0, int(round(float(v))))) for v in color)


def _rotation(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    y, p = math.radians(yaw_deg), math.radians(pitch_deg)
    cy, sy, cp, sp = math.cos(y), math.sin(y), math.cos(p), math.sin(p)
    ry = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
    return rx @ ry


class _Head:
    """The 3-D face model of one identity in one pose: surface depth, projection, outline."""

    def __init__(self, ident: dict, nui: dict):
        self.a = ident["face_width"]
        self.b = _HEAD_HALF_HEIGHT
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
        return _DEPTH * np.sqrt(np.clip(1.0 - (x / self.a) ** 2 - (y / self.b) ** 2, 0.02, 1.0))

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
        n = np.array([x / self.a, y / self.b, z / _DEPTH])
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


def _light_vec(nui: dict) -> np.ndarray:
    lx, ly = nui["light_x"], nui["light_y"]
    lz = math.sqrt(max(0.05, 1.0 - lx * lx - ly * ly))
    v = np.array([lx, ly, lz])
    return v / np.linalg.norm(v)


def _light_rgb(nui: dict) -> np.ndarray:
    """Colour and intensity of the light on the subject."""
    g = float(nui.get("light_intensity", 1.0))
    w = float(nui.get("light_warmth", 0.0))
    k = 0.32
    return (g * np.array([1.0 + k * w, 1.0, 1.0 - k * w])).astype(np.float32)


def _curve(t, lo, hi):
    return lo + (hi - lo) * t


def _draw_head(ident: dict, nui: dict, rng: np.random.Generator, scale: float):
    """Draw the head (hair, ears, skin, features, accessories) on an un-rolled canvas.
    Returns (canvas, head model, landmarks in face units (5, 2), outline in face units)."""
    cv = _Canvas(scale)
    head = _Head(ident, nui)
    skin = SKIN_TONES[ident["skin_tone"]]
    hair = HAIR_COLORS[ident["hair_color"]]
    iris_col = EYE_COLORS[ident["eye_color"]]
    style = ident["hair_style"]
    a, b = head.a, head.b
    yaw = math.radians(nui["yaw"])
    hair_shift = 0.25 * math.sin(yaw)
    brow_col = hair * 0.55 + np.array([20, 15, 12]) * 0.45
    if ident["hair_color"] in (3, 4):  # blonde / grey hair: darker brows
        brow_col = hair * 0.45 + np.array([40, 30, 22]) * 0.55

    # --- hair behind the head
    if style == 1:  # long
        # falls behind the head and down both sides onto the shoulders; the neck stays free
        pts = [
            (-a * 1.12, -0.3), (-a * 1.22, 0.6), (-a * 1.30, 1.6), (-a * 1.28, 2.6), (-a * 0.72, 2.7),
            (-a * 0.55, 1.3), (a * 0.55, 1.3), (a * 0.72, 2.7), (a * 1.28, 2.6), (a * 1.30, 1.6),
            (a * 1.22, 0.6), (a * 1.12, -0.3),
        ]
        pts = np.array(pts) + [hair_shift * 0.4, 0]
        cv.poly(pts, hair, (cv.hair, 255))
        cv.ellipse((hair_shift * 0.3, -0.35), (a * 1.15, b * 0.95), 0, hair, (cv.hair, 255))
    else:
        if style in (0, 2):  # short / fringe: some volume behind the head, down to the ears
            cv.ellipse((hair_shift * 0.3, -0.45), (a * 1.2, 0.85), 0, hair, (cv.hair, 255))
    if style == 3:  # curly volume
        cx = hair_shift * 0.3
        cv.ellipse((cx, -0.45), (a * 1.42, b * 0.98), 0, hair, (cv.hair, 255))
        for k in range(16):
            ang = math.pi * (1.05 + 0.9 * k / 15.0) if k < 16 else 0
            px = cx + a * 1.38 * math.cos(ang)
            py = -0.45 + b * 0.95 * math.sin(ang)
            cv.ellipse((px, py), (0.26, 0.26), 0, hair, (cv.hair, 255))
        for side in (-1, 1):
            for k in range(4):
                cv.ellipse((cx + side * a * 1.33, -0.2 + 0.35 * k), (0.27, 0.24), 0, hair, (cv.hair, 255))

    # --- ears (behind the face outline)
    ear_pts = head.project([[-a * 0.98, 0.02, -0.28], [a * 0.98, 0.02, -0.28]])
    ear_lobes = head.project([[-a * 0.96, 0.30, -0.28], [a * 0.96, 0.30, -0.28]])
    for e in ear_pts:
        cv.ellipse(e, (0.15, 0.29), 0, skin * 0.93, (cv.occ, 0))
        cv.ellipse(e + [0, 0.02], (0.07, 0.17), 0, None, (cv.occ, 150))
    if ident["earrings"]:
        for side, lobe in zip((-1, 1), ear_lobes):
            c = lobe + [side * 0.03, 0.13]
            cv.ellipse(c, (0.1, 0.12), 0, (232, 190, 60), thick=0.05)
            cv.ellipse(lobe + [side * 0.03, 0.02], (0.045, 0.045), 0, (245, 210, 90))

    # --- neck stub under the chin inside the canvas (the body is drawn in the frame)
    # --- face outline
    outline3 = head.outline3d()
    outline = head.project(outline3)
    box_pts = head.project(outline3[outline3[:, 1] >= _HAIRLINE_Y])  # the visible face: hairline to chin
    cv.poly(outline, skin, (cv.head, 255), (cv.hair, 0))
    # brighter cheekbones and forehead
    for side in (-1, 1):
        cv.ellipse(head.on_face([[side * 0.55, 0.12]])[0], (0.3, 0.22), 0, None, (cv.hi, 110))
    cv.ellipse(head.on_face([[0.0, -0.95]])[0], (0.5, 0.2), 0, None, (cv.hi, 80))
    # soft shadow under the jaw line on the inside of the outline
    chin_shadow = head.project(head.outline3d(grow=-0.02))
    lower = chin_shadow[chin_shadow[:, 1] > 0.5]
    if len(lower) > 2:
        cv.line(lower[np.argsort(lower[:, 0])], None, 0.07, (cv.occ, 130))

    # --- beard (under the mouth and features)
    if ident["beard"]:
        # a short beard: hair colour blended over the skin of the jaw and chin
        out3 = head.outline3d(n=120)
        jaw3 = out3[out3[:, 1] > 0.55]  # lower outline, right -> left
        jaw_line = head.project(jaw3)
        ix = np.linspace(-0.98, 0.98, 15) * float(head.half_width(0.56))
        iy = 0.56 + (_MOUTH_Y + 0.22 + 0.2 * nui["mouth_open"] - 0.56) * np.clip(1 - (ix / ix[-1]) ** 2, 0, 1) ** 0.7
        inner = head.on_face(np.column_stack([ix, iy]))
        cv.blend_poly(np.vstack([jaw_line, inner]), hair * 0.95, 0.5)

    # --- eye sockets (occlusion) and eyes
    es = ident["eye_spacing"]
    closed = float(nui["eyes_closed"])
    eye_c = []
    for side in (-1, 1):
        ex = side * es / 2
        cen = head.on_face([[ex, _EYE_Y]], lift=-0.07)[0]
        eye_c.append(cen)
        fx, fy = head.foreshorten(ex, _EYE_Y)
        sock = head.on_face([[ex, _EYE_Y - 0.05]], lift=-0.07)[0]
        cv.ellipse(sock, (0.36 * fx, 0.25 * fy), 0, None, (cv.occ, 230))
        t = np.linspace(-1, 1, 15)
        w, h = _EYE_W * fx, _EYE_H * fy
        xs = cen[0] + w * t
        arch = np.sqrt(1 - t**2)
        upper_full = cen[1] - h * arch
        lower = cen[1] + h * arch * 0.95
        upper_now = upper_full + closed * (lower - upper_full)
        opening = np.vstack([np.column_stack([xs, upper_full]), np.column_stack([xs[::-1], lower[::-1]])])
        cv.poly(opening, (200,) * 3, (cv.occ, 60))
        iris_c = (cen[0], cen[1] + 0.01)
        cv.ellipse(iris_c, (_IRIS_R * fx, _IRIS_R * min(1.0, fy)), 0, iris_col)
        cv.ellipse(iris_c, (0.038 * fx, 0.038), 0, (12, 10, 10))
        cv.ellipse((iris_c[0] + 0.03, iris_c[1] - 0.035), (0.02, 0.02), 0, (255, 255, 255))
        # lids: skin from the top of the eye down to the current lid line, and a lash line
        lid = np.vstack([np.column_stack([xs, upper_full - 0.02]), np.column_stack([xs[::-1], upper_now[::-1]])])
        if closed > 0.01:
            cv.poly(lid, skin * 0.9)
        low_lid = np.vstack([np.column_stack([xs, lower]), np.column_stack([xs[::-1], lower[::-1] + 0.05])])
        cv.poly(low_lid, skin * 0.95)
        cv.line(np.column_stack([xs, upper_now]), (25, 18, 16), 0.035 + 0.02 * (1 - closed))
        cv.line(np.column_stack([xs[2:-2], lower[2:-2]]), skin * 0.6, 0.018)
        # brows
        bt = _BROW_THICKNESS
        bx = ex + side * np.array([-0.26, -0.12, 0.05, 0.2, 0.32])
        by = _BROW_Y + np.array([0.05, -0.02, -0.05, -0.03, 0.03])
        by = by + ident["brow_slant"] * 0.085 * np.array([1.0, 0.5, 0.0, -0.5, -1.0])
        top = head.on_face(np.column_stack([bx, by - bt * np.array([0.45, 0.55, 0.55, 0.45, 0.2])]))
        bot = head.on_face(np.column_stack([bx, by + bt * np.array([0.45, 0.45, 0.45, 0.35, 0.15])]))
        cv.poly(np.vstack([top, bot[::-1]]), brow_col, (cv.occ, 60))

    # --- nose
    ns = ident["nose_size"]
    tip_y = _NOSE_Y + 0.12 * (ns - 1.0)
    root = head.on_face([[0.0, _EYE_Y + 0.02]], lift=0.02)[0]
    tip = head.project(head.surf([[0.0, tip_y]], lift=0.26 * ns))[0]
    ala = head.on_face([[-0.19 * ns, tip_y + 0.03], [0.19 * ns, tip_y + 0.03]], lift=0.06)
    under = head.on_face([[0.0, tip_y + 0.11]], lift=0.05)[0]
    dark_side = 0 if nui["light_x"] > 0 else 1
    side_pt = ala[dark_side]
    cv.poly(np.vstack([root, tip, side_pt, side_pt + (root - side_pt) * 0.3]), None, (cv.occ, 110))
    cv.ellipse(under, (0.22 * ns, 0.07 * ns), 0, None, (cv.occ, 190))
    cv.line(np.vstack([root + (tip - root) * 0.15, tip - (tip - root) * 0.1]), None, 0.07, (cv.hi, 120))
    for k, s in enumerate((-1, 1)):
        cv.ellipse(ala[k] + [-s * 0.05 * ns, 0.0], (0.07 * ns, 0.04 * ns), 0, skin * 0.45)
    cv.ellipse(tip, (0.08 * ns, 0.06), 0, None, (cv.hi, 140))

    # --- mouth
    sm, op = float(nui["smile"]), float(nui["mouth_open"])
    half = ident["mouth_size"] / 2 * (1 + 0.4 * sm - 0.12 * op)
    corner_y = _MOUTH_Y - 0.13 * sm + 0.03 * op
    dip = 0.17 * sm
    gap = 0.025 + 0.07 * sm + 0.34 * op
    t = np.linspace(-1, 1, 21)
    bow = 1 - t**2
    xs = half * t
    up_in = corner_y + dip * bow
    lo_in = up_in + gap * bow**0.8
    up_out = up_in - (0.075 + 0.02 * (1 - sm)) * np.sqrt(bow) - 0.015 * np.cos(t * 3 * np.pi / 2) ** 2 * np.sqrt(bow)
    lo_out = lo_in + (0.1 - 0.03 * sm) * np.sqrt(bow)
    lip_col = skin * np.array([0.82, 0.52, 0.52]) + np.array([30, 8, 12])
    f3 = lambda xx, yy: head.on_face(np.column_stack([xx, yy]), lift=0.02)  # noqa: E731
    cv.poly(np.vstack([f3(xs, up_out), f3(xs[::-1], lo_out[::-1])]), lip_col)
    cv.poly(np.vstack([f3(xs, up_in), f3(xs[::-1], lo_in[::-1])]), (48, 14, 18))
    teeth_h = min(gap * 0.9, 0.02 + 0.13 * sm) * (sm > 0.15 or op > 0.3)
    if teeth_h > 0.01:
        tt = t[3:-3]
        tx = xs[3:-3]
        ty0 = up_in[3:-3]
        ty1 = ty0 + teeth_h * (1 - tt**2) ** 0.5
        cv.poly(np.vstack([f3(tx, ty0), f3(tx[::-1], ty1[::-1])]), (236, 232, 222))
    cv.line(f3(xs, up_in), (60, 20, 24), 0.02)
    # cheeks lift with the smile: a soft shadow line from the nose to the mouth corners
    for s in (-1, 1):
        fold = f3(s * np.array([0.2 * ns + 0.05, half * 0.9 + 0.08, half + 0.1]), np.array([tip_y + 0.02, corner_y - 0.15, corner_y + 0.05]))
        cv.line(fold, None, 0.04 + 0.03 * sm, (cv.occ, int(40 + 130 * sm)))

    if ident["mustache"]:
        mt = np.linspace(-1, 1, 13)
        mx = (half * 0.95 + 0.05) * mt
        lip = corner_y + dip * (1 - mt**2) - (0.075 + 0.02 * (1 - sm)) * np.sqrt(1 - mt**2)
        mtop = np.maximum(lip - 0.13 + 0.04 * np.abs(mt), tip_y + 0.12)
        mbot = lip + 0.01 + 0.05 * np.abs(mt) ** 2
        cv.blend_poly(np.vstack([f3(mx, mtop), f3(mx[::-1], mbot[::-1])]), hair * 0.9, 0.65)

    # --- hair on top of the head
    hl = _HAIRLINE_Y  # hairline at the centre
    xs = np.linspace(-a * 1.08, a * 1.08, 25)
    if style == 2:  # side-swept fringe: low over the left brow, back to the hairline on the right
        sweep = np.clip((1.0 - xs / a) / 2.0, 0.0, 1.0) ** 1.3
        edge = hl + 0.32 * sweep + 0.03 * (np.arange(25) % 2)
    elif style == 3:
        edge = hl + 0.25 * (xs / a) ** 2 + 0.04 * (np.arange(25) % 2)
    else:
        edge = hl + 0.45 * (xs / a) ** 4 + 0.05 * (xs / a) ** 2
    edge = np.minimum(edge, 0.05)
    front = head.on_face(np.column_stack([xs * 0.98, edge]), lift=0.05)
    top_t = np.linspace(np.pi, 2 * np.pi, 30)
    vol = 1.07 if style != 3 else 1.12
    cap = np.column_stack([a * vol * np.cos(top_t), b * vol * np.sin(top_t) - 0.04])
    cap[:, 0] += hair_shift * 0.2
    cap_pts = np.vstack([front, cap[::-1]])  # hairline left -> right, skull top right -> left
    cv.poly(cap_pts, hair, (cv.hair, 255))
    # sideburns
    for side in (-1, 1):
        sb = np.array([[side * a * 1.06, edge[0] + 0.05], [side * a * 0.94, edge[0] + 0.02], [side * a * 0.96, -0.1], [side * a * 1.02, -0.05]])
        cv.poly(head.on_face(sb * [1, 1]), hair, (cv.hair, 255))
    if style == 1:  # centre parting line
        part = head.on_face([[0.05, -1.5], [0.02, hl + 0.02]], lift=0.05)
        cv.line(part, hair * 0.6, 0.03)

    # --- glasses
    if ident["glasses"]:
        frame_col = (30, 28, 30)
        for k, side in enumerate((-1, 1)):
            fx, fy = head.foreshorten(side * es / 2, _EYE_Y)
            cv.ellipse(eye_c[k], (0.34 * fx, 0.25 * fy), 0, None, (cv.hi, 40))
            cv.ellipse(eye_c[k], (0.34 * fx, 0.25 * fy), 0, frame_col, thick=0.04)
            # the arms: short stubs towards the temples (the rest is hidden by the face's curve)
            start = eye_c[k] + [side * 0.34 * fx, -0.05]
            temple = head.on_face([[side * float(head.half_width(_EYE_Y)) * 0.86, _EYE_Y - 0.06]])[0]
            if side * (temple[0] - start[0]) > 0.02:
                cv.line(np.vstack([start, temple]), frame_col, 0.035)
        bridge = np.vstack([eye_c[0] + [0.34 * head.foreshorten(-es / 2, _EYE_Y)[0], -0.06], root + [0, -0.03], eye_c[1] - [0.34 * head.foreshorten(es / 2, _EYE_Y)[0], 0.06]])
        cv.line(bridge, frame_col, 0.045)

    landmarks = np.vstack([eye_c[0], eye_c[1], tip, f3(np.array([-half]), np.array([corner_y]))[0], f3(np.array([half]), np.array([corner_y]))[0]])
    return cv, head, landmarks, box_pts


def _shade(cv: _Canvas, head: _Head, nui: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Light the canvas: Lambert + ambient on an ellipsoid head (and a larger one for the hair),
    socket / nose occlusion, highlights and a little specular shine. Returns (premultiplied RGB
    float32 in 0..1, alpha float32)."""
    h, w = cv.h, cv.w
    xs = np.arange(w, dtype=np.float32) / cv.p + cv.x0  # pixel centres are integer positions
    ys = np.arange(h, dtype=np.float32) / cv.p + cv.y0
    X, Y = np.meshgrid(xs, ys)
    a, b = head.a, head.b

    def normals(ax, by, cy):
        u = X / ax
        v = (Y - cy) / by
        r2 = np.clip(u * u + v * v, 0, 0.985)
        return u, v, np.sqrt(1 - r2)

    hu, hv, hz = normals(a * 1.02, b * 1.02, 0.0)
    gu, gv, gz = normals(a * 1.45, b * 1.25, -0.3)
    head_m = cv.head.astype(np.float32) / 255.0
    u = hu * head_m + gu * (1 - head_m)
    v = hv * head_m + gv * (1 - head_m)
    z = hz * head_m + gz * (1 - head_m)
    L = _light_vec(nui)
    ndl = np.clip(u * L[0] + v * L[1] + z * L[2], 0, 1)
    st = nui["light_strength"]
    shade = (1 - st) * 0.9 + st * (0.38 + 0.72 * ndl)
    hvec = L + np.array([0.0, 0.0, 1.0])
    hvec /= np.linalg.norm(hvec)
    spec = np.clip(u * hvec[0] + v * hvec[1] + z * hvec[2], 0, 1) ** 24 * (0.22 * st) * head_m

    sig = max(0.5, 0.05 * cv.p)
    occ = cv2.GaussianBlur(cv.occ, (0, 0), sig).astype(np.float32) / 255.0
    hi = cv2.GaussianBlur(cv.hi, (0, 0), sig).astype(np.float32) / 255.0
    shade = shade * (1 - 0.7 * occ) + 0.22 * hi * (0.4 + st)
    # hair strands: anisotropic noise in the hair regions
    noise = rng.standard_normal((h, w)).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), sigmaX=max(0.4, 0.02 * cv.p), sigmaY=max(1.0, 0.12 * cv.p))
    noise /= noise.std() + 1e-6
    hair_m = cv2.GaussianBlur(cv.hair, (0, 0), 0.8).astype(np.float32) / 255.0
    # hair next to the face lies in the head's shadow: darker around the face outline
    near = cv2.GaussianBlur(cv.head, (0, 0), max(1.0, 0.18 * cv.p)).astype(np.float32) / 255.0
    shade = shade * (1 - 0.7 * np.clip(near * 1.6, 0, 1) * hair_m * (1 - head_m))
    shade = shade * (1 + 0.09 * noise * hair_m)

    alpha = cv.mask.astype(np.float32) / 255.0
    tint = _light_rgb(nui)
    col = cv.col.astype(np.float32) / 255.0 * shade[..., None] * tint + spec[..., None] * alpha[..., None] * tint
    return col, alpha


def _background(rng: np.random.Generator, size: int, kind: int, brightness: float) -> np.ndarray:
    """float32 RGB background in 0..1 whose base luminance is `brightness`."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    sat = rng.uniform(0.05, 0.3)
    c1 = brightness + rng.uniform(-sat, sat, 3)
    c2 = brightness + rng.uniform(-sat, sat, 3)
    ang = rng.uniform(0, 2 * np.pi)
    g = (xx - 0.5) * math.cos(ang) + (yy - 0.5) * math.sin(ang) + 0.5
    img = c1[None, None, :] * (1 - g[..., None]) + c2[None, None, :] * g[..., None]
    img = img - img.mean(axis=(0, 1)) + np.array([brightness] * 3) * 0.0 + img.mean(axis=(0, 1))
    if kind == 0:  # a few large soft blobs
        blobs = np.zeros((size, size, 3), np.float32)
        for _ in range(int(rng.integers(3, 7))):
            c = (int(rng.integers(0, size)), int(rng.integers(0, size)))
            ax = (int(rng.integers(size // 10, size // 3)), int(rng.integers(size // 10, size // 3)))
            cv2.ellipse(blobs, c, ax, float(rng.uniform(0, 180)), 0, 360, tuple(float(v) for v in rng.uniform(-0.08, 0.08, 3)), -1)
        img = img + cv2.GaussianBlur(blobs, (0, 0), size / 25)
    elif kind == 1:  # stripes
        period = rng.uniform(0.07, 0.12) * size
        ang = rng.uniform(0, np.pi)
        ph = ((xx * math.cos(ang) + yy * math.sin(ang)) * size / period + rng.uniform()) % 1.0
        sq = np.clip((np.abs(ph - 0.5) - 0.25) * 6.0, -1, 1)  # soft square wave
        contrast = rng.uniform(0.22, 0.3)
        tint = rng.uniform(0.7, 1.3, 3)
        img = img + (contrast * sq)[..., None] * tint[None, None, :]
    else:  # dots: many small round spots of contrasting colours
        dots = np.zeros((size, size, 3), np.float32)
        n = int(size * size / rng.uniform(110, 170))
        xy = rng.uniform(0, size, (n, 2))
        rad = rng.uniform(2.8, 4.8, n)
        cols = rng.uniform(-1, 1, (n, 3)) * 0.5 + rng.choice([-1.0, 1.0], (n, 1)) * 0.5
        for (x, y), r, c in zip(xy, rad, cols):
            cv2.circle(dots, (int(x * _ONE), int(y * _ONE)), int(r * _ONE), tuple(float(v) for v in c), -1,
                       cv2.LINE_AA, _SHIFT)
        img = img + dots * rng.uniform(0.3, 0.38)
    return np.clip(img, 0, 1).astype(np.float32)


def _body(frame: np.ndarray, m: np.ndarray, head: _Head, skin: np.ndarray, nui: dict, rng) -> None:
    """Neck and shoulders, drawn straight into the frame (float32 0..1) through the 2x3 map m
    (face units -> frame pixels)."""
    def to_frame(pts):
        pts = np.asarray(pts, np.float64)
        f = pts @ m[:, :2].T + m[:, 2]
        return np.round(f * _ONE).astype(np.int32).reshape(-1, 1, 2)

    a = head.a
    shade = (1 - nui["light_strength"]) * 0.8 + nui["light_strength"] * 0.55
    neck = [(-0.36 * a, 0.6), (0.36 * a, 0.6), (0.42 * a, 2.3), (-0.42 * a, 2.3)]
    neck_col = tuple(float(v) for v in skin / 255.0 * shade * 0.72 * _light_rgb(nui))
    cloth = rng.uniform(0.1, 0.9, 3)
    torso = [(-0.62 * a, 2.0), (-1.9, 2.45), (-3.2, 3.1), (-3.6, 14.0), (3.6, 14.0), (3.2, 3.1), (1.9, 2.45), (0.62 * a, 2.0), (0.0, 2.35)]
    cv2.fillPoly(frame, [to_frame(neck)], neck_col, cv2.LINE_AA, _SHIFT)
    cv2.fillPoly(frame, [to_frame(torso)], tuple(float(v) for v in cloth), cv2.LINE_AA, _SHIFT)


def render_frame(identity: dict, nuisance: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Draw one frame. Returns (RGB uint8 (S, S, 3), landmarks (5, 2) float64 in frame pixels,
    face box (x0, y0, x1, y1)). The frame is returned before JPEG compression (generate_set saves it
    at nuisance["jpeg_quality"]); blur and noise are applied."""
    size = int(nuisance["frame_size"])
    scale = float(nuisance["face_scale"])
    r = math.radians(nuisance["roll"])
    c, s = math.cos(r), math.sin(r)
    rot = np.array([[c, -s], [s, c]])
    pivot = np.array([nuisance["face_x"] * size, nuisance["face_y"] * size])
    m_units = np.hstack([rot * scale, pivot[:, None]])  # face units -> frame pixels

    frame = _background(rng, size, int(nuisance["bg_kind"]), float(nuisance["bg_brightness"]))
    cv, head, lm_units, outline = _draw_head(identity, nuisance, rng, scale)
    # a soft shadow of the head on the background, offset away from the light
    sh = np.zeros((size, size), np.float32)
    off = -np.array([nuisance["light_x"], nuisance["light_y"]]) * 0.35
    cen = m_units[:, :2] @ off + m_units[:, 2]
    ax = (identity["face_width"] * 1.45 * scale, _HEAD_HALF_HEIGHT * 1.15 * scale)
    cv2.ellipse(sh, (int(cen[0] * _ONE), int(cen[1] * _ONE)), (int(ax[0] * _ONE), int(ax[1] * _ONE)),
                nuisance["roll"], 0, 360, 1.0, -1, cv2.LINE_AA, _SHIFT)
    sh = cv2.GaussianBlur(sh, (0, 0), 0.35 * scale)
    frame *= (1 - 0.2 * sh)[..., None]
    _body(frame, m_units, head, SKIN_TONES[identity["skin_tone"]], nuisance, rng)
    col, alpha = _shade(cv, head, nuisance, rng)

    # canvas pixels -> face units -> frame pixels
    to_units = np.array([[1 / cv.p, 0, cv.x0], [0, 1 / cv.p, cv.y0]])
    m_canvas = np.hstack([m_units[:, :2] @ to_units[:, :2], (m_units[:, :2] @ to_units[:, 2] + m_units[:, 2])[:, None]])
    rgba = np.dstack([col, alpha])
    warped = cv2.warpAffine(rgba, m_canvas, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    frame = warped[..., :3] + frame * (1 - warped[..., 3:4])

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
    img = np.clip(np.round(frame), 0, 255).astype(np.uint8)

    def units_to_frame(p):
        return np.asarray(p, np.float64) @ m_units[:, :2].T + m_units[:, 2]

    landmarks = units_to_frame(lm_units)
    ob = units_to_frame(outline)
    x0, y0 = np.clip(ob.min(0), 0, size - 1)
    x1, y1 = np.clip(ob.max(0), 0, size - 1)
    return img, landmarks, (float(x0), float(y0), float(x1), float(y1))


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
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


# ------------------------------------------------------------------------------------- generation
def identity_name(index: int) -> str:
    return f"id_{index:04d}"


def frame_rng(seed: int, set_name: str, identity_index: int, image_index: int) -> np.random.Generator:
    """The generator of one frame, from (seed, set, global identity index, image index)."""
    return np.random.default_rng(np.random.SeedSequence([seed, _set_code(set_name), identity_index, image_index, 1]))


def _render_task(task) -> dict:
    out_dir, ident_index, image_index, identity, seed, set_name, frame_size = task
    rng = frame_rng(seed, set_name, ident_index, image_index)
    nui = sample_nuisance(rng, frame_size)
    img, lm, box = render_frame(identity, nui, rng)
    name = identity_name(ident_index)
    rel = f"images/{name}/{image_index:04d}.jpg"
    data = encode_jpeg(img, nui["jpeg_quality"])
    with open(Path(out_dir) / rel, "wb") as f:
        f.write(data)
    row: dict[str, Any] = {"path": rel, "identity": name, "width": img.shape[1], "height": img.shape[0]}
    for i in range(5):
        row[f"lm_{i}_x"] = float(lm[i, 0])
        row[f"lm_{i}_y"] = float(lm[i, 1])
    row.update(zip(_BOX_COLUMNS, (float(v) for v in box)))
    for k, v in identity.items():
        row[f"f_{k}"] = v
    for k, v in nui.items():
        row[f"f_{k}"] = v
    return row


def _worker_init() -> None:
    cv2.setNumThreads(1)


def generate_set(
    out_dir: Path,
    *,
    n_identities: int,
    images_per_identity: int,
    seed: int,
    set_name: str,
    identity_offset: int = 0,
    frame_size: tuple[int, int] = (128, 160),
    workers: int = 1,
    progress: bool = True,
) -> pd.DataFrame:
    """Render a set into out_dir: images/<identity>/<index:04d>.jpg and meta.parquet (written last,
    atomically). Identities are named id_<offset + k>. Returns the metadata table."""
    if n_identities < 1 or images_per_identity < 1:
        raise ValueError("n_identities and images_per_identity must be >= 1")
    out_dir = Path(out_dir)
    identities = sample_identities(n_identities, seed=seed, set_name=set_name, identity_offset=identity_offset)
    tasks = []
    for k, ident in enumerate(identities):
        gid = identity_offset + k
        (out_dir / "images" / identity_name(gid)).mkdir(parents=True, exist_ok=True)
        for i in range(images_per_identity):
            tasks.append((str(out_dir), gid, i, ident, int(seed), set_name, tuple(int(v) for v in frame_size)))

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(tasks), desc=f"synth {set_name}", unit="img")
    rows: list[dict] = []
    if workers <= 1:
        prev = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            for t in tasks:
                rows.append(_render_task(t))
                if bar is not None:
                    bar.update(1)
        finally:
            cv2.setNumThreads(prev)
    else:
        import multiprocessing as mp

        with mp.get_context().Pool(int(workers), initializer=_worker_init) as pool:
            for row in pool.imap(_render_task, tasks, chunksize=8):
                rows.append(row)
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()

    meta = pd.DataFrame(rows)
    for k, kind in {**IDENTITY_FACTORS, **NUISANCE_FACTORS}.items():
        col = f"f_{k}"
        meta[col] = meta[col].astype("int64" if kind == "discrete" else "float64")
    tmp = out_dir / "meta.parquet.tmp"
    meta.to_parquet(tmp, index=False)
    os.replace(tmp, out_dir / "meta.parquet")
    return meta


def read_synthetic(root: Path) -> SourceListing:
    """FaceRecords of a generated set (a folder with meta.parquet and images/)."""
    root = Path(root)
    meta_path = root / "meta.parquet"
    if not meta_path.is_file():
        raise FileNotFoundError(f"synthetic set metadata not found: {meta_path} (generate the set first)")
    try:
        meta = pd.read_parquet(meta_path)
    except Exception as e:  # noqa: BLE001 - any parse failure means a broken file
        raise ValueError(f"cannot read synthetic set metadata {meta_path}: {e}") from e
    needed = ["path", "identity", *_LM_COLUMNS, *_BOX_COLUMNS]
    missing = [c for c in needed if c not in meta.columns]
    if missing:
        raise ValueError(f"{meta_path} lacks columns {missing}")
    factor_cols = [c for c in meta.columns if c.startswith("f_")]
    records: list[FaceRecord] = []
    rejects: list[Reject] = []
    lm_all = meta[_LM_COLUMNS].to_numpy(np.float64).reshape(-1, 5, 2)
    box_all = meta[_BOX_COLUMNS].to_numpy(np.float64)
    factors = {c[2:]: meta[c].tolist() for c in factor_cols}
    for i, (rel, ident) in enumerate(zip(meta["path"], meta["identity"])):
        path = root / str(rel)
        if not path.is_file():
            rejects.append(Reject(str(path), "image listed in meta.parquet is missing"))
            continue
        fac = {}
        for name, values in factors.items():
            v = values[i]
            fac[name] = int(v) if isinstance(v, (int, np.integer)) else float(v)
        records.append(
            FaceRecord(
                path=str(path),
                identity=str(ident),
                box=tuple(float(v) for v in box_all[i]),
                landmarks=lm_all[i].copy(),
                factors=fac,
            )
        )
    return SourceListing(records=records, rejects=rejects)
