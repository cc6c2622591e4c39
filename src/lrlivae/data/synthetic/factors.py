"""The factor tables of the synthetic face set: names, kinds and ranges, and the shared palettes.

Identity factors are fixed per identity, nuisance factors are drawn per image; every factor is a
number (float when continuous, int when discrete). ``FACTOR_RANGES`` gives the range (continuous)
or the number of classes (discrete) of each. ``FRAME_FACTORS`` lists the nuisance factors that
alignment removes by construction.
"""
from __future__ import annotations

from typing import Any

import numpy as np

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

# every ground-truth factor with its kind (what the probes and the swap predictor read)
FACTOR_KINDS: dict[str, str] = {**IDENTITY_FACTORS, **NUISANCE_FACTORS}

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
