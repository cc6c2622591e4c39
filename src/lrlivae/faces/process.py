"""One record in, one aligned size x size face crop (or a Reject with its reason) out.

    read the image (record.pixels for in-memory sources, else the file, checking its sha256 when
    the source lists one) -> detect faces -> keep the largest confident one -> landmarks within it
    -> similarity alignment on the five landmarks, or a box crop when there are none.

In-memory images (CIFAR) are not faces: they are only resized to size x size (method "resize").
Problems with the input (missing / broken / oversized file, hash mismatch, no face, listed
landmarks outside the detection, degenerate landmarks) become Rejects. Failures of the backends
themselves (e.g. missing network weights) propagate.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np

from lrlivae.imageio import DEFAULT_MAX_PIXELS, BadImage, DecodedImage, read_image, sha256_file
from lrlivae.records import FaceRecord, Reject
from lrlivae.faces.align import align_box, align_landmarks
from lrlivae.faces.common import Detection
from lrlivae.faces.detect import Detector, pick_face
from lrlivae.faces.landmarks import Landmarker, LandmarksOutsideDetection

# A face box must overlap the image by at least this fraction of its area.
MIN_BOX_INSIDE = 0.5


@dataclass
class AlignedFace:
    """An aligned crop and how it was made.

    crop:       (size, size, 3) uint8 RGB.
    box:        the face box used, (x0, y0, x1, y1) in the source file's pixels.
    landmarks:  the (5, 2) landmarks used, in the source file's pixels, or None.
    detector:   name of the detector backend ("none" for in-memory images).
    method:     "landmarks" (similarity alignment), "box" (box crop) or "resize" (in-memory image).
    score:      the detection's score.
    transform:  2x3 matrix mapping source-file pixels into the crop.
    source_mode: Pillow's mode of the file's pixels ("RGB", "L" for grey, "I;16" for 16-bit, ...); the
                crop is always 3-channel uint8.
    faces_found: detections at or above min_score (the one kept among them is the largest).
    face_kept:  "only face", or why this face was kept among several ("largest of 3 (area ...)").
    """

    crop: np.ndarray
    box: tuple[float, float, float, float]
    landmarks: np.ndarray | None
    detector: str
    method: str
    score: float = 1.0
    transform: np.ndarray | None = None
    source_mode: str = ""
    faces_found: int = 1
    face_kept: str = "only face"


def align_record(
    record: FaceRecord,
    detector: Detector,
    landmarker: Landmarker,
    *,
    size: int = 64,
    margin: float = 0.2,
    min_score: float = 0.0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> AlignedFace | Reject:
    """Align one record; see the module docstring."""
    if record.pixels is not None:
        return _resize_pixels(record, size)
    try:
        decoded = _read_verified(record, max_pixels)
        image, scale = decoded.rgb, decoded.scale
        rec = _scaled_record(record, scale)
        face, found, kept = _detect_face(image, rec, detector, min_score, scale)
        lm = _landmarks_in(face, image, rec, landmarker)
        crop, m, method = _align(image, face, lm, margin, size)
    except _Rejected as e:
        return Reject(record.path, e.reason)
    box, lm_file, m_file = _in_file_pixels(face.box, lm, m, scale)
    return AlignedFace(
        crop=np.ascontiguousarray(crop, dtype=np.uint8),
        box=box,
        landmarks=lm_file,
        detector=getattr(detector, "name", type(detector).__name__),
        method=method,
        score=float(face.score),
        transform=m_file,
        source_mode=decoded.mode,
        faces_found=len(found),
        face_kept=kept,
    )


class _Rejected(Exception):
    """A problem with the input: the record becomes a Reject with this reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _read_verified(record: FaceRecord, max_pixels: int) -> DecodedImage:
    """The record's file decoded, after checking its sha256 when the source lists one."""
    path = record.path
    if record.sha256:
        try:
            got = sha256_file(path)
        except FileNotFoundError:
            raise _Rejected("missing file") from None
        except OSError as e:
            raise _Rejected(f"unreadable file ({e.strerror or e})") from None
        if got.lower() != record.sha256.lower():
            raise _Rejected(f"sha256 mismatch (listed {record.sha256[:12]}..., file {got[:12]}...)")
    try:
        return read_image(path, max_pixels=max_pixels)
    except BadImage as e:
        raise _Rejected(e.reason) from None


def _detect_face(image: np.ndarray, rec: FaceRecord, detector: Detector, min_score: float, scale: float):
    """(the face kept, every detection at or above min_score, why that face was kept)."""
    found = [d for d in detector.detect(image, rec) if d.score >= min_score and d.area > 0]
    face = pick_face(found, min_score)
    if face is None:
        raise _Rejected("no face detected")
    kept = "only face" if len(found) == 1 else _why_kept(face, found, scale)
    if _inside_fraction(face.box, image.shape) < MIN_BOX_INSIDE:
        raise _Rejected("face box lies outside the image")
    return face, found, kept


def _landmarks_in(face: Detection, image: np.ndarray, rec: FaceRecord, landmarker: Landmarker) -> np.ndarray | None:
    """The five landmarks of `face`, or None when the landmarker gives none."""
    try:
        return landmarker.landmarks(image, face, rec)
    except LandmarksOutsideDetection as e:
        raise _Rejected(e.reason) from None


def _align(image: np.ndarray, face: Detection, lm: np.ndarray | None, margin: float, size: int):
    """(crop, 2x3 transform, method): similarity alignment on the landmarks, else a crop of the box."""
    try:
        if lm is not None:
            crop, m = align_landmarks(image, lm, size)
            return crop, m, "landmarks"
        crop, m = align_box(image, face.box, margin, size)
        return crop, m, "box"
    except ValueError as e:  # degenerate / non-finite landmarks or an empty box
        raise _Rejected(f"alignment failed ({e})") from None


def _in_file_pixels(box, lm: np.ndarray | None, m: np.ndarray, scale: float):
    """(box, landmarks, 2x3 transform) in the file's pixels, whatever reduction the decoder applied."""
    inv = 1.0 / scale
    box_file = tuple(float(v) * inv for v in box)
    lm_file = None if lm is None else np.asarray(lm, dtype=np.float64) * inv
    m_file = m.copy()
    m_file[:, :2] *= scale
    return box_file, lm_file, m_file


def _why_kept(face, found, scale: float) -> str:
    """Why `face` was kept among several detections: the largest (ties: the higher score)."""
    from lrlivae.faces.detect import SIZE_TIE

    others = sorted((d for d in found if d is not face), key=lambda d: -d.area)
    a, b = face.area / scale**2, others[0].area / scale**2
    tied = [d for d in others if d.area >= face.area * (1.0 - SIZE_TIE)]
    why = "largest" if not tied else f"largest (with {len(tied)} about as large: the highest score)"
    return f"{why} of {len(found)} (area {a:.0f} px^2, score {face.score:.3g}; next {b:.0f} px^2, " \
           f"score {others[0].score:.3g})"


def _resize_pixels(record: FaceRecord, size: int) -> AlignedFace | Reject:
    px = np.asarray(record.pixels)
    if px.ndim == 2:
        px = np.repeat(px[:, :, None], 3, axis=2)
    if px.ndim != 3 or px.shape[2] not in (3, 4) or px.shape[0] < 1 or px.shape[1] < 1:
        return Reject(record.path, f"in-memory image has unusable shape {px.shape}")
    if px.dtype != np.uint8:
        return Reject(record.path, f"in-memory image has dtype {px.dtype}, expected uint8")
    px = px[:, :, :3]
    h, w = px.shape[:2]
    if (h, w) != (size, size):
        interp = cv2.INTER_AREA if h > size or w > size else cv2.INTER_CUBIC
        crop = cv2.resize(px, (size, size), interpolation=interp)
    else:
        crop = px.copy()
    m = np.array([[size / w, 0.0, 0.0], [0.0, size / h, 0.0]])
    return AlignedFace(
        crop=np.ascontiguousarray(crop),
        box=(0.0, 0.0, float(w), float(h)),
        landmarks=None,
        detector="none",
        method="resize",
        score=1.0,
        transform=m,
    )


def _scaled_record(record: FaceRecord, scale: float) -> FaceRecord:
    """The record with its box / landmarks mapped onto an image decoded at `scale`."""
    if scale == 1.0 or (record.box is None and record.landmarks is None):
        return record
    box = None if record.box is None else tuple(float(v) * scale for v in record.box)
    lm = None if record.landmarks is None else np.asarray(record.landmarks, dtype=np.float64) * scale
    return dataclasses.replace(record, box=box, landmarks=lm)


def _inside_fraction(box, shape) -> float:
    h, w = shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box)
    area = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    if area <= 0:
        return 0.0
    ix = max(0.0, min(x1, w) - max(x0, 0.0))
    iy = max(0.0, min(y1, h) - max(y0, 0.0))
    return ix * iy / area


