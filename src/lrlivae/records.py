"""The record every source yields: one image on disk and what the source knows about it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class FaceRecord:
    """One source image.

    path:       image file on disk (absolute or relative to the working directory).
    identity:   identity name ("" when the source has no label or labels are dropped).
    box:        a face box (x0, y0, x1, y1) in the image's pixels from the source's metadata, or None.
    landmarks:  (5, 2) landmarks from the source's metadata (order in lrlivae.faces.align), or None.
    factors:    ground-truth factors (synthetic data only), plain floats / ints / strs.
    sha256:     expected hash of the file, when the source lists one.
    """

    path: str
    identity: str = ""
    box: tuple[float, float, float, float] | None = None
    landmarks: np.ndarray | None = None
    factors: dict[str, Any] = field(default_factory=dict)
    sha256: str | None = None
    # Set when an image comes from an in-memory array source (CIFAR): the array itself.
    pixels: np.ndarray | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Reject:
    """An input that could not be used, and why (written to rejects.csv)."""

    path: str
    reason: str


@dataclass
class SourceListing:
    """What a source reader returns: usable records plus inputs rejected while listing."""

    records: list[FaceRecord]
    rejects: list[Reject] = field(default_factory=list)
