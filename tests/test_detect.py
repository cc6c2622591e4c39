"""Detector and landmarker backends: OpenCV cascade, annotations, face-alignment (random weights)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from lrlivae.records import FaceRecord
from lrlivae.faces import detect as detect_mod
from lrlivae.faces import weights as weights_mod
from lrlivae.faces.common import Detection, five_from_68
from lrlivae.faces.detect import make_detector, pick_face
from lrlivae.faces.landmarks import LandmarksOutsideDetection, make_landmarker
from lrlivae.faces.weights import FAN_FILE, S3FD_FILE, MissingWeightsError
from tests.drawn_face import draw_face, face_landmarks




def _overlap(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


# ------------------------------------------------------------------------------------- pick_face


def test_pick_face_largest_confident():
    small = Detection((0, 0, 10, 10), 0.9)
    big_weak = Detection((0, 0, 50, 50), 0.1)
    mid = Detection((0, 0, 30, 30), 0.8)
    assert pick_face([small, big_weak, mid], min_score=0.5) is mid
    assert pick_face([small, big_weak, mid]) is big_weak
    assert pick_face([small], min_score=0.95) is None
    assert pick_face([]) is None
    assert pick_face([Detection((5, 5, 5, 9), 1.0)]) is None  # empty box


# ---------------------------------------------------------------------------------------- OpenCV


def test_opencv_finds_drawn_face():
    img, box = draw_face(200)
    dets = make_detector("opencv").detect(img, None)
    face = pick_face(dets)
    assert face is not None
    assert isinstance(face.score, float) and face.landmarks is None
    assert _overlap(face.box, box) > 0.4
    assert face.box[0] < 100 < face.box[2] and face.box[1] < 100 < face.box[3]


def test_opencv_downscales_big_images_and_maps_boxes_back():
    img, box = draw_face(1600)  # detected on a 640 px copy
    det = make_detector("opencv", max_side=640)
    face = pick_face(det.detect(img, None))
    assert face is not None
    assert _overlap(face.box, box) > 0.4
    assert face.box[2] > 800  # in the original's pixels, not the copy's


def test_opencv_no_face_in_flat_or_smooth_image():
    det = make_detector("opencv", min_neighbors=5, equalize=False)
    assert det.detect(np.full((120, 160, 3), 128, np.uint8), None) == []
    ramp = np.tile(np.linspace(0, 255, 160, dtype=np.uint8), (120, 1))
    assert det.detect(np.dstack([ramp] * 3), None) == []


def test_opencv_rejects_non_rgb_arrays():
    with pytest.raises(TypeError):
        make_detector("opencv").detect(np.zeros((10, 10), np.uint8), None)


# ----------------------------------------------------------------------------------- annotations


def test_annotation_detector():
    det = make_detector("annotations")
    rec = FaceRecord(path="x.jpg", box=(1, 2, 30, 40))
    (d,) = det.detect(np.zeros((50, 50, 3), np.uint8), rec)
    assert d.box == (1.0, 2.0, 30.0, 40.0) and d.score == 1.0
    assert det.detect(np.zeros((50, 50, 3), np.uint8), FaceRecord(path="x.jpg")) == []
    assert det.detect(np.zeros((50, 50, 3), np.uint8), FaceRecord(path="x.jpg", box=(5, 5, 5, 9))) == []


def test_unknown_backends():
    with pytest.raises(ValueError, match="opencv"):
        make_detector("dlib")
    with pytest.raises(ValueError, match="face_alignment"):
        make_landmarker("mediapipe")


# ------------------------------------------------------------------------------------ landmarkers


def test_five_from_68():
    pts = np.zeros((68, 2))
    pts[36:42] = [10, 20]
    pts[42:48] = [30, 20]
    pts[30] = [20, 30]
    pts[48] = [12, 40]
    pts[54] = [28, 40]
    np.testing.assert_allclose(five_from_68(pts), [[10, 20], [30, 20], [20, 30], [12, 40], [28, 40]])
    with pytest.raises(ValueError):
        five_from_68(np.zeros((5, 2)))


def test_annotation_landmarker_inside_and_outside():
    lm = face_landmarks(200)
    rec = FaceRecord(path="x.jpg", box=(38, 20, 162, 180), landmarks=lm)
    img = np.zeros((200, 200, 3), np.uint8)
    mk = make_landmarker("annotations")
    got = mk.landmarks(img, Detection((38, 20, 162, 180), 1.0), rec)
    np.testing.assert_allclose(got, lm)
    # A detection elsewhere in the image is of something else.
    with pytest.raises(LandmarksOutsideDetection) as e:
        mk.landmarks(img, Detection((150, 150, 190, 190), 1.0), rec)
    assert e.value.reason == "detection does not contain the annotated face"
    # Within the 25% growth still counts.
    assert mk.landmarks(img, Detection((80, 60, 130, 140), 1.0), rec) is not None
    assert mk.landmarks(img, Detection((0, 0, 10, 10), 1.0), FaceRecord(path="x.jpg")) is None
    assert make_landmarker("none").landmarks(img, Detection((0, 0, 10, 10), 1.0), rec) is None


# -------------------------------------------------------------------------------- face-alignment


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    """Randomly initialised S3FD and 2D-FAN-4 state dicts under the exact checkpoint names."""
    import torch
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    torch_home = tmp_path_factory.mktemp("torch_home")
    ckpt = torch_home / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(s3fd().state_dict(), ckpt / S3FD_FILE)
    torch.save(FAN(4).state_dict(), ckpt / FAN_FILE)
    return torch_home


def _no_download(url, dest):
    raise OSError("network disabled in tests")


def test_face_alignment_backends_with_random_weights(random_weights, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(random_weights))
    monkeypatch.setattr(weights_mod, "_download", _no_download)
    img, box = draw_face(128)

    det = make_detector("face_alignment", device="cpu", filter_threshold=0.0)
    dets = det.detect(img, None)
    assert isinstance(dets, list)
    for d in dets:
        assert isinstance(d, Detection) and len(d.box) == 4 and isinstance(d.score, float)
        assert d.box[2] > d.box[0] and d.box[3] > d.box[1]
    assert det._net() is det._net()  # built once per process
    assert isinstance(det.detect(np.zeros((12, 20, 3), np.uint8), None), list)  # below S3FD's 32 px

    lmk = make_landmarker("face_alignment", device="cpu", flip_input=False)
    lm = lmk.landmarks(img, Detection(box, 1.0), None)
    assert lm is not None and lm.shape == (5, 2) and lm.dtype == np.float64
    assert np.isfinite(lm).all()
    assert lmk._model() is lmk._model()


def test_missing_weights_give_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_home"))
    monkeypatch.setattr(weights_mod, "_download", _no_download)
    img = np.zeros((64, 64, 3), np.uint8)
    ckpt = tmp_path / "empty_home" / "hub" / "checkpoints"
    with pytest.raises(MissingWeightsError) as e:
        make_detector("face_alignment").detect(img, None)
    msg = str(e.value)
    assert str(ckpt / S3FD_FILE) in msg and "network disabled" in msg
    with pytest.raises(MissingWeightsError) as e:
        make_landmarker("face_alignment").landmarks(img, Detection((0, 0, 32, 32), 1.0), None)
    assert str(ckpt / FAN_FILE) in str(e.value)
    with pytest.raises(MissingWeightsError, match="disabled"):
        make_detector("face_alignment", allow_download=False).detect(img, None)


@pytest.mark.parametrize("equalize", [False, True])
def test_align_stage_passes_the_opencv_settings_to_the_detector(equalize, monkeypatch):
    from pipeline.align_workers import _WORKER, _init_worker
    from pipeline.params import AlignParams

    cfg = AlignParams.model_validate({"opencv": {"min_neighbors": 3, "equalize": equalize}}).for_source("synthetic")
    assert cfg.detector == "opencv"
    cfg = cfg.model_dump()
    _init_worker(cfg)
    det = _WORKER.pop("detector")
    _WORKER.clear()
    assert det.min_neighbors == 3
    calls = []
    real = cv2.equalizeHist
    monkeypatch.setattr(detect_mod.cv2, "equalizeHist", lambda g: calls.append(g.shape) or real(g))
    img, box = draw_face(200)
    face = pick_face(det.detect(img, None))
    assert face is not None and _overlap(face.box, box) > 0.4
    assert calls == ([img.shape[:2]] if equalize else [])
