"""dlib face detectors and landmarks, offline: the trained files ship with the `face-recognition-models`
package (a normal dependency), so nothing is downloaded at run time.

Detectors (`make_detector("dlib_hog" | "dlib_cnn", ...)`):

* "dlib_hog": HOG features + a linear SVM over an image pyramid (dlib's frontal face detector). Finds
              frontal and slightly turned faces of about 80 px and more; each `upsample` doubles the image
              first (1: down to about 40 px). The score is the SVM margin (detections >= `min_score`,
              passed to dlib as its adjust_threshold: a negative value finds more faces, and more false ones).
* "dlib_cnn": the MMOD convolutional detector (mmod_human_face_detector.dat); more poses and lighting,
              about 0.2-3 s a photo on one CPU core. The score is its confidence (kept when >= `min_score`).

Both detect on a copy reduced to `max_side` pixels (longest side) and scale the boxes back.

Landmarks (`make_landmarker("dlib", model="68" | "5")`):

* "68": the iBUG 300-W ensemble of regression trees (Kazemi and Sullivan, 2014), reduced to the project's
        five points as for face-alignment (lrlivae.faces.common.five_from_68). Its training data (iBUG
        300-W) is licensed for non-commercial use only.
* "5":  dlib's own five-point model (two corners of each eye, the base of the nose; trained by dlib on
        its own data, free for commercial use). It has no mouth points: the eye centres fix the
        similarity alignment alone, and the five points returned are the template's points mapped back
        into the photo by that similarity (so the eyes are exact, nose and mouth follow the template).

The model folder is `face_recognition_models/models` inside the installed package, found without
importing the package (its __init__ needs pkg_resources); $LRLIVAE_DLIB_MODELS overrides it.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np

from lrlivae.faces.align import TEMPLATE_64, similarity_transform, transform_points
from lrlivae.faces.common import Detection, check_rgb_image, five_from_68, reduce_image
from lrlivae.faces.weights import cached_model

MODEL_FILES = {
    "cnn": "mmod_human_face_detector.dat",
    "5": "shape_predictor_5_face_landmarks.dat",
    "68": "shape_predictor_68_face_landmarks.dat",
    "descriptor": "dlib_face_recognition_resnet_model_v1.dat",
}
MODELS_ENV = "LRLIVAE_DLIB_MODELS"


class DlibMissingError(RuntimeError):
    """dlib itself or one of its trained model files is not installed."""


def import_dlib():
    try:
        import dlib  # noqa: PLC0415
    except ImportError as e:
        raise DlibMissingError(
            f"the dlib backends need the `dlib` module ({e}); install it with `pip install dlib-bin` "
            "(prebuilt wheels, no compiler needed)"
        ) from None
    return dlib


def models_dir() -> Path:
    """The folder holding dlib's trained files ($LRLIVAE_DLIB_MODELS, else face_recognition_models/models)."""
    env = os.environ.get(MODELS_ENV)
    if env:
        return Path(env)
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise DlibMissingError(
            "dlib's trained model files are not installed: the package `face-recognition-models` is missing "
            f"(pip install face-recognition-models), or set ${MODELS_ENV} to a folder holding "
            + ", ".join(MODEL_FILES.values())
        )
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def model_path(kind: str) -> Path:
    """Path of one of dlib's trained files: kind in MODEL_FILES ("cnn", "5", "68", "descriptor")."""
    if kind not in MODEL_FILES:
        raise ValueError(f"unknown dlib model {kind!r}; valid: {', '.join(MODEL_FILES)}")
    folder = models_dir()
    p = folder / MODEL_FILES[kind]
    if not p.is_file():
        raise DlibMissingError(
            f"dlib model file {MODEL_FILES[kind]} not found in {folder}; reinstall `face-recognition-models` "
            f"(pip install --force-reinstall face-recognition-models) or set ${MODELS_ENV} to a folder holding it"
        )
    return p


def _load(kind: str):
    dlib = import_dlib()
    path = model_path(kind)
    build = {
        "cnn": lambda: dlib.cnn_face_detection_model_v1(str(path)),
        "5": lambda: dlib.shape_predictor(str(path)),
        "68": lambda: dlib.shape_predictor(str(path)),
        "descriptor": lambda: dlib.face_recognition_model_v1(str(path)),
    }[kind]
    return cached_model(("dlib", kind, str(path)), build)


def load_model(kind: str):
    """A dlib model object, loaded once per process: "hog", "cnn", "5", "68" or "descriptor"."""
    if kind == "hog":
        import_dlib()
        return cached_model(("dlib", "hog"), lambda: import_dlib().get_frontal_face_detector())
    return _load(kind)


# ------------------------------------------------------------------------------------------- detectors
class _DlibDetector:
    name = "dlib"

    def __init__(self, upsample: int = 1, min_score: float = 0.0, max_side: int | None = 800):
        if not 0 <= int(upsample) <= 4:
            raise ValueError(f"upsample must be 0..4, got {upsample}")
        self.upsample = int(upsample)
        self.min_score = float(min_score)
        self.max_side = max_side

    def _raw(self, image: np.ndarray) -> list[tuple[tuple[float, float, float, float], float]]:
        raise NotImplementedError

    def detect(self, image_rgb: np.ndarray, record: Any = None) -> list[Detection]:
        check_rgb_image(image_rgb)
        small, s = reduce_image(image_rgb, self.max_side)
        out = []
        for (x0, y0, x1, y1), score in self._raw(np.ascontiguousarray(small)):
            if x1 > x0 and y1 > y0 and score >= self.min_score:
                out.append(Detection((x0 / s, y0 / s, x1 / s, y1 / s), float(score)))
        return out


def _rect_box(r) -> tuple[float, float, float, float]:
    # dlib rectangles are inclusive: right / bottom are the last pixel inside
    return float(r.left()), float(r.top()), float(r.right() + 1), float(r.bottom() + 1)


class DlibHOGDetector(_DlibDetector):
    """dlib's HOG frontal face detector; see the module docstring."""

    name = "dlib_hog"

    def _raw(self, image):
        dets, scores, _ = load_model("hog").run(image, self.upsample, self.min_score)
        return [(_rect_box(r), float(sc)) for r, sc in zip(dets, scores)]


class DlibCNNDetector(_DlibDetector):
    """dlib's MMOD CNN face detector; see the module docstring."""

    name = "dlib_cnn"

    def __init__(self, upsample: int = 0, min_score: float = 0.0, max_side: int | None = 640):
        super().__init__(upsample, min_score, max_side)

    def _raw(self, image):
        return [(_rect_box(d.rect), float(d.confidence)) for d in load_model("cnn")(image, self.upsample)]


# ------------------------------------------------------------------------------------------- landmarks
def five_from_dlib5(points: np.ndarray) -> np.ndarray:
    """dlib's 5-point shape ((5, 2): two corners of one eye, two of the other, the base of the nose) -> the
    project's five points: the two eye centres (ordered by x) fix a similarity onto the template, and the
    template's five points mapped back through it are returned."""
    p = np.asarray(points, dtype=np.float64)
    if p.shape != (5, 2):
        raise ValueError(f"expected (5, 2) dlib landmarks, got {p.shape}")
    eyes = np.stack([p[0:2].mean(0), p[2:4].mean(0)])
    eyes = eyes[np.argsort(eyes[:, 0], kind="stable")]  # project order: smaller x first
    m = similarity_transform(TEMPLATE_64[:2], eyes)  # template frame -> photo
    return transform_points(m, TEMPLATE_64)


def shape_points(shape) -> np.ndarray:
    return np.array([[pt.x, pt.y] for pt in shape.parts()], dtype=np.float64)


class DlibLandmarker:
    """dlib's shape predictor inside the detection's box; model "5" (default) or "68" (reduced to five points)."""

    name = "dlib"

    def __init__(self, model: str = "5"):
        model = str(model)
        if model not in ("68", "5"):
            raise ValueError(f"dlib landmark model must be '68' or '5', got {model!r}")
        self.model = model

    def landmarks(self, image_rgb: np.ndarray, detection: Detection, record: Any = None) -> np.ndarray | None:
        check_rgb_image(image_rgb)
        dlib = import_dlib()
        x0, y0, x1, y1 = detection.box
        rect = dlib.rectangle(int(round(x0)), int(round(y0)), int(round(x1)) - 1, int(round(y1)) - 1)
        pts = shape_points(load_model(self.model)(np.ascontiguousarray(image_rgb), rect))
        five = five_from_68(pts) if self.model == "68" else five_from_dlib5(pts)
        return five if np.isfinite(five).all() else None


def eyes_in_crop(crop: np.ndarray, upscale: int = 4, upsample: int = 1) -> np.ndarray | None:
    """The eye centres (2, 2) that dlib's HOG detector and 68-point model find in an aligned crop, in the
    crop's pixels (a check of alignment: compare with the template's eyes); None when no face is found.
    The crop is enlarged `upscale` times (bicubic) first, as dlib needs faces of about 40 px and more."""
    import cv2

    check_rgb_image(crop)
    h, w = crop.shape[:2]
    big = np.ascontiguousarray(cv2.resize(crop, (w * upscale, h * upscale), interpolation=cv2.INTER_CUBIC))
    dets, scores, _ = load_model("hog").run(big, upsample, -0.5)
    if not len(dets):
        return None
    r = max(dets, key=lambda d: d.area())
    five = five_from_68(shape_points(load_model("68")(big, r)))
    # cv2.resize maps pixel centres: x_big = (x + 0.5) * upscale - 0.5
    return (five[:2] + 0.5) / upscale - 0.5
