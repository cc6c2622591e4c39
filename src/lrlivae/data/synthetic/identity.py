"""Identities of the synthetic face set: the shared looks, one identity's factors, a set's identities.

The "look" of an identity is the factors that show at low resolution (colouring, hair style and the
accessories). A seed defines a small pool of _N_LOOKS looks shared by every identity of every set
(identity g wears look g mod _N_LOOKS); identities that share a look differ in the finer factors
(face shape, eye spacing and colour, brows, nose, mouth), so no low-resolution colour layout
identifies anyone.

Seeding: look j comes from SeedSequence((seed, look tag, j)), identity g of a set from
SeedSequence((seed, set code, g)), g counting the set's identity offset.
"""
from __future__ import annotations

import math
import zlib
from typing import Any

import numpy as np

from lrlivae.data.synthetic.factors import ACCESSORIES, IDENTITY_FACTORS, _ID_CONTINUOUS, _ID_DISCRETE

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


def set_code(set_name: str) -> int:
    """The number a set's name contributes to its seeds (a CRC-32 of the name, 31 bits)."""
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
    code = set_code(set_name)
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

