"""Face detectors behind one interface: `make_detector(name, **opts).detect(image_rgb, record)`.

Backends:

* "opencv":         Viola-Jones cascade (haarcascade_frontalface_default.xml shipped with OpenCV).
                    The score is the cascade's level weight (detectMultiScale3 with
                    outputRejectLevels=True): larger is more confident, typically 0..10.
* "face_alignment": S3FD from the face-alignment package, score in 0..1.
* "annotations":    the box the source lists for the record (score 1.0); none listed, no detection.
* "dlib_hog", "dlib_cnn": dlib's HOG and MMOD CNN detectors, offline (lrlivae.faces.dlib_faces).

Boxes are (x0, y0, x1, y1) floats in the pixels of the image passed in. Large images are detected
on a reduced copy (longest side `max_side`) and the boxes scaled back.

The face-alignment networks need their pretrained weights (lrlivae.faces.weights: the torch hub
checkpoint folder; a missing file is downloaded if possible, else `MissingWeightsError` says which
files to put where).
"""
from __future__ import annotations

import os
import threading
from typing import Any, Protocol

import cv2
import numpy as np

from lrlivae.faces.common import Detection, check_rgb_image, reduce_image
from lrlivae.faces.weights import S3FD_FILE, MissingWeightsError, cached_model, ensure_weights, resolve_device

DETECTORS = ("opencv", "face_alignment", "annotations", "dlib_hog", "dlib_cnn")

S3FD_MIN_SIDE = 32


class Detector(Protocol):
    name: str

    def detect(self, image_rgb: np.ndarray, record: Any = None) -> list[Detection]: ...


# Detections whose area is within this fraction of the largest count as equally large (detectors such as
# dlib's HOG report boxes in a few pyramid sizes, so a false face is often "as large" as the real one).
SIZE_TIE = 0.2


def pick_face(detections: list[Detection], min_score: float = 0.0) -> Detection | None:
    """The largest detection with score >= min_score, or None. Detections within SIZE_TIE of the largest
    area count as equally large, and among them the higher score wins."""
    ok = [d for d in detections if d.score >= min_score and d.area > 0]
    if not ok:
        return None
    amax = max(d.area for d in ok)
    return max((d for d in ok if d.area >= amax * (1.0 - SIZE_TIE)), key=lambda d: (d.score, d.area))


# --------------------------------------------------------------------------------------- OpenCV


_CASCADES: dict[str, cv2.CascadeClassifier] = {}
_CASCADE_LOCK = threading.Lock()


def _cascade(path: str) -> cv2.CascadeClassifier:
    with _CASCADE_LOCK:
        c = _CASCADES.get(path)
        if c is None:
            c = cv2.CascadeClassifier(path)
            if c.empty():
                raise RuntimeError(f"could not load the OpenCV cascade {path}")
            _CASCADES[path] = c
        return c


class OpenCVDetector:
    """Viola-Jones frontal face cascade.

    scale_factor, min_neighbors: detectMultiScale parameters. min_size: smallest face side in the
    input image's pixels. equalize: histogram-equalise the grey image first. max_side: detect on a
    copy reduced to this longest side."""

    name = "opencv"

    def __init__(
        self,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size: int = 24,
        equalize: bool = True,
        max_side: int | None = 640,
        cascade: str | os.PathLike | None = None,
    ):
        if scale_factor <= 1.0:
            raise ValueError(f"scale_factor must be > 1, got {scale_factor}")
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)
        self.min_size = int(min_size)
        self.equalize = bool(equalize)
        self.max_side = max_side
        self.cascade_path = str(cascade) if cascade else os.path.join(
            cv2.data.haarcascades, "haarcascade_frontalface_default.xml"
        )

    def detect(self, image_rgb: np.ndarray, record: Any = None) -> list[Detection]:
        check_rgb_image(image_rgb)
        small, s = reduce_image(image_rgb, self.max_side)
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        if self.equalize:
            gray = cv2.equalizeHist(gray)
        ms = max(1, int(round(self.min_size * s)))
        rects, _levels, weights = _cascade(self.cascade_path).detectMultiScale3(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(ms, ms),
            outputRejectLevels=True,
        )
        out = []
        weights = np.asarray(weights, dtype=np.float64).reshape(-1)
        for i, (x, y, w, h) in enumerate(np.asarray(rects, dtype=np.float64).reshape(-1, 4).tolist()):
            score = float(weights[i]) if i < len(weights) else 0.0
            out.append(Detection((x / s, y / s, (x + w) / s, (y + h) / s), score))
        return out


# ------------------------------------------------------------------------------- face-alignment


class FaceAlignmentDetector:
    """S3FD from face-alignment. filter_threshold: the package's score cut before NMS output;
    max_side: detect on a copy reduced to this longest side (S3FD on CPU is slow on big images)."""

    name = "face_alignment"

    def __init__(
        self,
        device: str = "cpu",
        filter_threshold: float = 0.5,
        max_side: int | None = 640,
        allow_download: bool = True,
    ):
        self.device = device
        self.filter_threshold = float(filter_threshold)
        self.max_side = max_side
        self.allow_download = allow_download

    def _net(self):
        device = resolve_device(self.device)
        path = ensure_weights([S3FD_FILE], self.allow_download)[S3FD_FILE]

        def build():
            from face_alignment.detection.sfd.sfd_detector import SFDDetector

            return SFDDetector(device, path_to_detector=str(path), filter_threshold=self.filter_threshold)

        return cached_model(("s3fd", device, str(path), self.filter_threshold), build)

    def detect(self, image_rgb: np.ndarray, record: Any = None) -> list[Detection]:
        check_rgb_image(image_rgb)
        net = self._net()
        small, s = reduce_image(image_rgb, self.max_side)
        h, w = small.shape[:2]
        if h < S3FD_MIN_SIDE or w < S3FD_MIN_SIDE:  # its pooling stack needs 32 px; pad bottom / right
            small = cv2.copyMakeBorder(
                small, 0, max(0, S3FD_MIN_SIDE - h), 0, max(0, S3FD_MIN_SIDE - w), cv2.BORDER_CONSTANT, value=0
            )
        boxes = net.detect_from_image(np.ascontiguousarray(small))
        out = []
        for b in boxes:
            b = np.asarray(b, dtype=np.float64).reshape(-1)
            if b.size < 5 or not np.isfinite(b[:5]).all():
                continue
            x0, y0, x1, y1 = (float(v) / s for v in b[:4])
            if x1 > x0 and y1 > y0:
                out.append(Detection((x0, y0, x1, y1), float(b[4])))
        return out


# ---------------------------------------------------------------------------------- annotations


class AnnotationDetector:
    """The source's own box for the record (score 1.0); no box, no detection."""

    name = "annotations"

    def detect(self, image_rgb: np.ndarray, record: Any = None) -> list[Detection]:
        box = getattr(record, "box", None)
        if box is None:
            return []
        x0, y0, x1, y1 = (float(v) for v in box)
        if not (np.isfinite([x0, y0, x1, y1]).all() and x1 > x0 and y1 > y0):
            return []
        lm = getattr(record, "landmarks", None)
        return [Detection((x0, y0, x1, y1), 1.0, None if lm is None else np.asarray(lm, dtype=np.float64))]


def make_detector(name: str, **opts: Any) -> Detector:
    """A detector by name (DETECTORS) with backend options."""
    if name in ("dlib_hog", "dlib_cnn"):
        from lrlivae.faces.dlib_faces import DlibCNNDetector, DlibHOGDetector

        return (DlibHOGDetector if name == "dlib_hog" else DlibCNNDetector)(**opts)
    if name == "opencv":
        return OpenCVDetector(**opts)
    if name == "face_alignment":
        return FaceAlignmentDetector(**opts)
    if name == "annotations":
        if opts:
            raise TypeError(f"the annotations detector takes no options, got {sorted(opts)}")
        return AnnotationDetector()
    raise ValueError(f"unknown detector {name!r}; valid detectors: {', '.join(DETECTORS)}")
