"""Five-point landmarkers behind one interface:
`make_landmarker(name, **opts).landmarks(image_rgb, detection, record) -> (5, 2) array | None`.

Backends:

* "face_alignment": 2D-FAN (68 points, iBUG 300-W order) run inside the detection's box, reduced
                    to the project's five points (lrlivae.faces.align): eye centres = mean of
                    points 36-41 and 42-47, nose tip = 30, mouth corners = 48 and 54.
* "annotations":    the record's listed landmarks, accepted only when they lie inside the detected
                    box grown by 25% of its width / height on every side; otherwise the detection is
                    of something else and `LandmarksOutsideDetection` is raised. None listed -> None.
* "none":           no landmarks (the face is then cropped by its box).
* "dlib":           dlib's 68-point model reduced to the five points, or its 5-point model, offline
                    (lrlivae.faces.dlib_faces).
"""
from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from lrlivae.faces.common import Detection, check_rgb_image, five_from_68
from lrlivae.faces.weights import FAN_FILE, cached_model, ensure_weights, resolve_device

LANDMARKERS = ("face_alignment", "annotations", "none", "dlib")


class LandmarksOutsideDetection(Exception):
    """Listed landmarks do not fall inside the detected face box."""

    reason = "detection does not contain the annotated face"

    def __init__(self, reason: str | None = None):
        super().__init__(reason or self.reason)
        if reason:
            self.reason = reason


class Landmarker(Protocol):
    name: str

    def landmarks(self, image_rgb: np.ndarray, detection: Detection, record: Any = None) -> np.ndarray | None: ...


def inside_box(points: np.ndarray, box, grow: float = 0.25) -> bool:
    """True when every point lies in `box` grown by `grow` of its width / height on each side."""
    x0, y0, x1, y1 = (float(v) for v in box)
    gx, gy = (x1 - x0) * grow, (y1 - y0) * grow
    p = np.asarray(points, dtype=np.float64)
    return bool(
        np.isfinite(p).all()
        and (p[:, 0] >= x0 - gx).all()
        and (p[:, 0] <= x1 + gx).all()
        and (p[:, 1] >= y0 - gy).all()
        and (p[:, 1] <= y1 + gy).all()
    )


class FaceAlignmentLandmarker:
    """2D-FAN-4 from face-alignment inside a given box. flip_input averages with the mirrored
    image (the package's default; twice the compute)."""

    name = "face_alignment"

    def __init__(self, device: str = "cpu", flip_input: bool = True, allow_download: bool = True):
        self.device = device
        self.flip_input = bool(flip_input)
        self.allow_download = allow_download

    def _model(self):
        device = resolve_device(self.device)
        path = ensure_weights([FAN_FILE], self.allow_download)[FAN_FILE]

        def build():
            import face_alignment

            # The "folder" detector needs no weights; boxes are always passed in.
            return face_alignment.FaceAlignment(
                face_alignment.LandmarksType.TWO_D,
                device=device,
                flip_input=self.flip_input,
                face_detector="folder",
                compile=False,
            )

        return cached_model(("fan2d", device, str(path), self.flip_input), build)

    def landmarks(self, image_rgb: np.ndarray, detection: Detection, record: Any = None) -> np.ndarray | None:
        check_rgb_image(image_rgb)
        fa = self._model()
        # float64 like the package's own detector output: its crop() math fails on numpy float32.
        box = np.array([*detection.box, detection.score], dtype=np.float64)
        preds = fa.get_landmarks_from_image(np.ascontiguousarray(image_rgb), detected_faces=[box])
        if not preds:
            return None
        five = five_from_68(np.asarray(preds[0]))
        return five if np.isfinite(five).all() else None


class AnnotationLandmarker:
    """The record's listed landmarks, checked against the detection."""

    name = "annotations"

    def __init__(self, grow: float = 0.25):
        self.grow = float(grow)

    def landmarks(self, image_rgb: np.ndarray, detection: Detection, record: Any = None) -> np.ndarray | None:
        lm = getattr(record, "landmarks", None)
        if lm is None:
            return None
        lm = np.asarray(lm, dtype=np.float64)
        if lm.shape != (5, 2):
            raise LandmarksOutsideDetection(f"annotated landmarks have shape {lm.shape}, expected (5, 2)")
        if not inside_box(lm, detection.box, self.grow):
            raise LandmarksOutsideDetection()
        return lm


class NoLandmarker:
    name = "none"

    def landmarks(self, image_rgb: np.ndarray, detection: Detection, record: Any = None) -> np.ndarray | None:
        return None


def make_landmarker(name: str, **opts: Any) -> Landmarker:
    """A landmarker by name (LANDMARKERS) with backend options."""
    if name == "dlib":
        from lrlivae.faces.dlib_faces import DlibLandmarker

        return DlibLandmarker(**opts)
    if name == "face_alignment":
        return FaceAlignmentLandmarker(**opts)
    if name == "annotations":
        return AnnotationLandmarker(**opts)
    if name == "none":
        if opts:
            raise TypeError(f"the 'none' landmarker takes no options, got {sorted(opts)}")
        return NoLandmarker()
    raise ValueError(f"unknown landmarker {name!r}; valid landmarkers: {', '.join(LANDMARKERS)}")
