"""An independent identity judge: dlib's 128-D face descriptor (a ResNet trained by dlib on about three
million faces of other people; not trained by us), applied to our aligned crops.

The descriptor expects a 150x150 chip laid out as dlib.get_face_chip lays it out. Our crops are already
aligned to a known five-point template (lrlivae.faces.align.TEMPLATE_64), so each crop is warped by one fixed
similarity that carries the template's points onto where those points fall in dlib's chip
(TEMPLATE_CHIP_150, measured on real photos: see `chip_template_from_photos`); no landmarks are detected
on generated images, and no naive upscaling changes the face's place in the chip.

Distances are Euclidean between descriptors; dlib's own rule of thumb is that the same person is below
0.6. Range: real photographs (dlib reports 99.38% on LFW). Rendered synthetic faces are outside it: the
descriptor tells the synthetic identities apart only weakly, so the stages turn the judge off for the
synthetic source by default (identity_judge: auto).

Figures:

* `preservation_metrics`: for generated samples of class c, the mean distance to person c's real test
  crops (same_distance) against the mean distance to the other people's (other_distance); their difference
  (margin, higher is better); the fraction of samples whose nearest person (by mean distance) is c
  (accuracy); the verification AUC of (sample, real crop) pairs, same person against different; and the
  same figures for the real test crops among themselves (real_*), the ceiling.
* `swap_metrics`: for swapped images Decoder(z_s of A, z_u of B), the fraction nearer A (the z_s source)
  than B (the z_u source), and both mean distances.
"""
from __future__ import annotations

import time

import numpy as np

from lrlivae.faces.align import CROP_SIZE, TEMPLATE_64, similarity_transform

CHIP_SIZE = 150
CHIP_PADDING = 0.25
# Where the template's five points (eyes, nose tip, mouth corners) fall in dlib's 150x150 chip (padding
# 0.25): the mean over 94 real photos (astronaut and LFW faces from scikit-image) of each photo's 68-point
# landmarks reduced to our five points and mapped by that photo's dlib chip transform (5-point shape).
TEMPLATE_CHIP_150 = np.array(
    [[47.0, 46.7], [100.1, 46.1], [71.4, 75.2], [50.6, 104.2], [98.3, 104.0]], dtype=np.float64
)
SAME_PERSON_THRESHOLD = 0.6


def crop_to_chip_matrix(crop_size: int = CROP_SIZE) -> np.ndarray:
    """2x3 similarity from a crop_size x crop_size aligned crop onto dlib's 150x150 chip."""
    return similarity_transform(TEMPLATE_64 * (crop_size / CROP_SIZE), TEMPLATE_CHIP_150)


def chip_matrix(chip_details) -> np.ndarray:
    """2x3 matrix mapping photo pixels into the chip that dlib.extract_image_chip cuts for `chip_details`
    (the rectangle's corners, rotated by its angle about its centre, onto the chip's corners)."""
    import cv2

    r = chip_details.rect
    cx, cy = (r.left() + r.right()) / 2.0, (r.top() + r.bottom()) / 2.0
    c, s = np.cos(chip_details.angle), np.sin(chip_details.angle)

    def rot(px, py):
        dx, dy = px - cx, py - cy
        return [cx + c * dx - s * dy, cy + s * dx + c * dy]

    src = np.float32([rot(r.left(), r.top()), rot(r.right(), r.top()), rot(r.left(), r.bottom())])
    dst = np.float32([[0, 0], [chip_details.cols - 1, 0], [0, chip_details.rows - 1]])
    return cv2.getAffineTransform(src, dst).astype(np.float64)


def chip_template_from_photos(images: list[np.ndarray], upsample: int = 1) -> tuple[np.ndarray, int]:
    """Re-measure TEMPLATE_CHIP_150 on real photos: (mean (5, 2) chip positions of the five points, photos
    used). Each photo: HOG detection (largest), 68-point landmarks -> five points, mapped by the chip transform
    of dlib's 5-point shape."""
    from lrlivae.faces.dlib_faces import import_dlib, load_model, shape_points
    from lrlivae.faces.common import five_from_68

    dlib = import_dlib()
    hog, sp68, sp5 = load_model("hog"), load_model("68"), load_model("5")
    pts = []
    for im in images:
        im = np.ascontiguousarray(im)
        dets, _, _ = hog.run(im, upsample, 0.0)
        if not len(dets):
            continue
        r = max(dets, key=lambda d: d.area())
        five = five_from_68(shape_points(sp68(im, r)))
        m = chip_matrix(dlib.get_face_chip_details(sp5(im, r), CHIP_SIZE, CHIP_PADDING))
        pts.append(five @ m[:, :2].T + m[:, 2])
    if not pts:
        raise ValueError("no face found in any of the photos")
    return np.mean(pts, axis=0), len(pts)


class IdentityJudge:
    """dlib's face descriptor on aligned crops: `descriptors(crops (N, S, S, 3) uint8) -> (N, 128)`."""

    def __init__(self, batch: int = 16):
        from lrlivae.faces.dlib_faces import load_model

        self.model = load_model("descriptor")
        self.batch = int(batch)

    def chips(self, crops: np.ndarray) -> np.ndarray:
        """The 150x150 chips dlib's network reads, warped from aligned crops."""
        import cv2

        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[3] != 3 or crops.shape[1] != crops.shape[2] or crops.dtype != np.uint8:
            raise ValueError(f"expected aligned crops (N, S, S, 3) uint8, got {crops.shape} {crops.dtype}")
        m = crop_to_chip_matrix(crops.shape[1])
        return np.stack([cv2.warpAffine(c, m, (CHIP_SIZE, CHIP_SIZE), flags=cv2.INTER_CUBIC,
                                        borderMode=cv2.BORDER_REPLICATE) for c in crops]) if len(crops) else \
            np.zeros((0, CHIP_SIZE, CHIP_SIZE, 3), np.uint8)

    def descriptors(self, crops: np.ndarray) -> np.ndarray:
        chips = self.chips(crops)
        out = []
        for i in range(0, len(chips), self.batch):
            vs = self.model.compute_face_descriptor([np.ascontiguousarray(c) for c in chips[i: i + self.batch]])
            out += [np.asarray(v, dtype=np.float32) for v in vs]
        return np.stack(out) if out else np.zeros((0, 128), np.float32)


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) Euclidean distances between descriptor sets."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d2 = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(d2, 0.0))


def pick_per_class(labels: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most `per_class` items of each label (a seeded random choice)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        keep.append(idx if len(idx) <= per_class else np.sort(rng.choice(idx, per_class, replace=False)))
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, int)


def _person_scores(d: np.ndarray, y_rows: np.ndarray, y_cols: np.ndarray, exclude_self: bool) -> dict:
    """Same / other distance, margin, nearest-person accuracy and pair AUC of rows against real columns."""
    from sklearn.metrics import roc_auc_score

    d = np.array(d, dtype=np.float64)
    if exclude_self:
        np.fill_diagonal(d, np.nan)
    people = np.unique(y_cols)
    per_person = np.stack([np.nanmean(np.where(y_cols[None, :] == p, d, np.nan), axis=1) for p in people], 1) \
        if len(people) else np.zeros((len(d), 0))
    same, other, hit = [], [], []
    for c in np.unique(y_rows):
        rows = y_rows == c
        col = np.flatnonzero(people == c)
        if not len(col) or len(people) < 2:
            continue
        s = per_person[rows, col[0]]
        o = np.nanmean(np.where((y_cols[None, :] != c), d[rows], np.nan), axis=1)
        if np.isnan(s).all():
            continue
        same.append(np.nanmean(s))
        other.append(np.nanmean(o))
        hit += list(people[np.argmin(np.nan_to_num(per_person[rows], nan=np.inf), axis=1)] == c)
    out = {}
    if same:
        out = {"same_distance": float(np.mean(same)), "other_distance": float(np.mean(other)),
               "margin": float(np.mean(other) - np.mean(same)), "accuracy": float(np.mean(hit))}
        pair_same = (y_rows[:, None] == y_cols[None, :])
        ok = np.isfinite(d)
        if pair_same[ok].any() and (~pair_same[ok]).any():
            out["auc"] = float(roc_auc_score(pair_same[ok], -d[ok]))
    return out


def preservation_metrics(gen_desc: np.ndarray, gen_y: np.ndarray, real_desc: np.ndarray, real_y: np.ndarray,
                         with_real: bool = True) -> dict:
    """Identity preservation of generated samples against real test crops (see the module docstring)."""
    gen_y, real_y = np.asarray(gen_y), np.asarray(real_y)
    out = _person_scores(distances(gen_desc, real_desc), gen_y, real_y, exclude_self=False)
    if with_real:
        real = _person_scores(distances(real_desc, real_desc), real_y, real_y, exclude_self=True)
        out.update({f"real_{k}": v for k, v in real.items()})
    return out


def swap_metrics(swap_desc: np.ndarray, s_desc: np.ndarray, u_desc: np.ndarray) -> dict:
    """Swapped images against their z_s source and z_u source (row i with row i)."""
    ds = np.linalg.norm(np.asarray(swap_desc, np.float64) - s_desc, axis=1)
    du = np.linalg.norm(np.asarray(swap_desc, np.float64) - u_desc, axis=1)
    if not len(ds):
        return {}
    return {"swap_follows_zs": float(np.mean(ds < du)), "swap_distance_zs": float(ds.mean()),
            "swap_distance_zu": float(du.mean()),
            "swap_sources_distance": float(np.linalg.norm(np.asarray(s_desc, np.float64) - u_desc, axis=1).mean())}


JUDGE_PREFIX = "identity_judge/"
REAL_FACE_SOURCES = ("facescrub", "casia", "imagefolder")


def judge_enabled(setting, source: str) -> bool:
    """identity_judge: "auto" -> on for the real photo sources, off for synthetic faces and CIFAR; a bool as given."""
    if setting == "auto":
        return source in REAL_FACE_SOURCES
    return bool(setting)


class JudgeReference:
    """Descriptors of up to `per_class` real test crops per class, computed once and shared by every model
    a stage scores; `score(gen, gen_y)` gives the identity_judge/* figures of generated samples."""

    def __init__(self, x_te: np.ndarray, y_te: np.ndarray, per_class: int, seed: int = 0):
        self.judge = IdentityJudge()
        self.per_class = int(per_class)
        self.seed = seed
        rows = pick_per_class(y_te, self.per_class, seed)
        t0 = time.perf_counter()
        self.y = np.asarray(y_te)[rows]
        self.desc = self.judge.descriptors(np.asarray(x_te)[rows])
        self.seconds = time.perf_counter() - t0

    def score(self, gen: np.ndarray, gen_y: np.ndarray) -> dict:
        t0 = time.perf_counter()
        rows = pick_per_class(gen_y, self.per_class, self.seed)
        m = preservation_metrics(self.judge.descriptors(np.asarray(gen)[rows]), np.asarray(gen_y)[rows], self.desc,
                                 self.y)
        m["seconds"] = time.perf_counter() - t0 + self.seconds
        return {JUDGE_PREFIX + k: v for k, v in m.items()}
