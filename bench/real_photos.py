"""Bench: the align backends on real photographs that ship with scikit-image (offline), and the identity judge.

Sets:
  portraits   the astronaut portrait re-framed N ways (scale 0.6-1.2, turned up to 12 degrees, shifted,
              lighter / darker, a third grey, half mirrored), written as JPEG files;
  lfw         the 100 faces of scikit-image's LFW subset (25x25 grey), upscaled to 100 px in a 200 px photo.

Per backend (detector + landmarks) and set: accepted fraction; for landmark backends the eye error: dlib's
HOG + 68-point model re-run on each 64x64 crop (enlarged 4x), distance of each eye from the template's
(within 2 px: the fraction of crops with both eyes within 2 px; a crop where no face is found again
counts as a miss); throughput in photos/s through the align stage's own code (file decode, detect,
landmarks, warp), with `--workers` processes (OMP_NUM_THREADS=1 recommended).

Judge: dlib's descriptor on aligned crops: distance of a crop to the same photo mirrored / shifted 2 px /
re-framed, to different LFW people, and the AUC of "same photo re-framed" pairs against "different photo"
pairs; milliseconds per descriptor.

    OMP_NUM_THREADS=1 python bench/real_photos.py --portraits 40 --cnn 8 --json reports/bench_real_photos.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lrlivae.faces.align import TEMPLATE_64  # noqa: E402
from lrlivae.faces.dlib_faces import eyes_in_crop  # noqa: E402
from lrlivae.records import FaceRecord, Reject  # noqa: E402
from pipeline.params import AlignParams  # noqa: E402
from tests import photos  # noqa: E402

BACKENDS = {
    "opencv": ("opencv", "none"),
    "dlib_hog+dlib68": ("dlib_hog", "dlib"),
    "dlib_hog+dlib5": ("dlib_hog", "dlib"),
    "dlib_cnn+dlib68": ("dlib_cnn", "dlib"),
}


def write_set(folder: Path, images: list[np.ndarray]) -> list[FaceRecord]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    recs = []
    for i, im in enumerate(images):
        p = folder / f"{i:04d}.jpg"
        Image.fromarray(im).save(p, quality=92)
        recs.append(FaceRecord(path=str(p), identity="x"))
    return recs


def run_backend(name: str, records: list[FaceRecord], workers: int, cnn_upsample: int = 0) -> dict:
    from pipeline.align_workers import align_records

    det, lm = BACKENDS[name]
    cfg = AlignParams(detector=det, landmarks=lm, workers=workers, min_accept_fraction=0.0,
                      dlib={"landmark_model": "5" if name.endswith("dlib5") else "68",
                            **({"upsample": cnn_upsample} if det == "dlib_cnn" else {})})
    list(align_records(records[:1], cfg.model_copy(update={"workers": 1}), desc="warm"))  # load the models
    t0 = time.perf_counter()
    results = list(align_records(records, cfg, desc=name))
    secs = time.perf_counter() - t0
    ok = [r for r in results if not isinstance(r, Reject)]
    out = {"photos": len(records), "accepted": len(ok), "accept_fraction": len(ok) / len(records),
           "photos_per_s": len(records) / secs, "workers": workers,
           "several_faces": sum(r.faces_found > 1 for r in ok)}
    if lm != "none":
        errs = []
        for r in ok:
            eyes = eyes_in_crop(r.crop)
            errs.append(np.inf if eyes is None else float(np.linalg.norm(eyes - TEMPLATE_64[:2], axis=1).max()))
        errs = np.array(errs)
        out.update({"eyes_within_2px": float((errs <= 2.0).mean()) if len(errs) else 0.0,
                    "eye_error_median_px": float(np.median(errs)) if len(errs) else float("nan"),
                    "eye_error_p90_px": float(np.percentile(errs, 90)) if len(errs) else float("nan"),
                    "eyes_not_refound": int(np.isinf(errs).sum())})
    return out


def judge_bench(n_lfw: int) -> dict:
    from lrlivae.evaluate.identity import IdentityJudge, distances
    from lrlivae.faces.detect import make_detector, pick_face
    from lrlivae.faces.landmarks import make_landmarker
    from lrlivae.faces.align import align_landmarks
    from sklearn.metrics import roc_auc_score

    det, lm = make_detector("dlib_hog"), make_landmarker("dlib")

    def crop(im):
        f = pick_face(det.detect(im))
        return None if f is None else align_landmarks(im, lm.landmarks(im, f))[0]

    judge = IdentityJudge()
    a = crop(photos.astronaut())
    variants = {"mirrored": a[:, ::-1], "shifted_2px": np.roll(a, 2, axis=1),
                "reframed": crop(photos.transform(photos.astronaut(), scale=0.7, angle=8, gain=0.8))}
    t0 = time.perf_counter()
    da = judge.descriptors(np.stack([a] + list(variants.values())))
    ms = (time.perf_counter() - t0) / len(da) * 1000
    out = {f"astronaut_vs_{k}": float(distances(da[:1], da[i + 1: i + 2])[0, 0]) for i, k in enumerate(variants)}
    pairs_same, pairs_other = [], []
    base, again = [], []
    for i in range(n_lfw):
        c1 = crop(photos.lfw_face(i))
        c2 = crop(photos.transform(photos.lfw_face(i), scale=0.85, angle=6, shift=(6, -4), gain=1.15, mirror=True))
        if c1 is not None and c2 is not None:
            base.append(c1)
            again.append(c2)
    db, dg = judge.descriptors(np.stack(base)), judge.descriptors(np.stack(again))
    d = distances(db, dg)
    same = np.diag(d)
    other = d[~np.eye(len(d), dtype=bool)]
    pairs_same, pairs_other = same, other
    out.update({"lfw_faces": len(base), "lfw_same_photo_reframed_mean": float(same.mean()),
                "lfw_different_photos_mean": float(other.mean()),
                "lfw_astronaut_vs_lfw_mean": float(distances(da[:1], db).mean()),
                "lfw_reframed_auc": float(roc_auc_score(np.r_[np.ones(len(pairs_same)), np.zeros(len(pairs_other))],
                                                        -np.r_[pairs_same, pairs_other])),
                "ms_per_descriptor": ms})
    return out


def judge_synthetic(n_id: int, per_id: int) -> dict:
    """The judge on the built-in synthetic faces (aligned by the default params): verification AUC of
    descriptor distance over all pairs, and mean same / different identity distances."""
    from sklearn.metrics import roc_auc_score

    from lrlivae.data.aligned import AlignedFaces
    from lrlivae.data.synthetic.dataset import generate_set
    from lrlivae.evaluate.identity import IdentityJudge, distances
    from pipeline.align import align_set
    from pipeline.params import Params

    with tempfile.TemporaryDirectory() as tmp:
        generate_set(Path(tmp) / "raw", n_identities=n_id, images_per_identity=per_id, seed=0, set_name="labeled",
                     progress=False)
        params = Params.model_validate({"align": {"workers": 1, "min_accept_fraction": 0.0}})
        align_set("labeled", params.align.labeled, Path(tmp) / "raw", [], Path(tmp) / "aligned", params)
        ds = AlignedFaces(Path(tmp) / "aligned")
        ids = ds.index["identity"].to_numpy()
        d = distances(*(2 * [IdentityJudge().descriptors(np.asarray(ds.faces))]))
    iu = np.triu_indices(len(ids), 1)
    same = (ids[:, None] == ids[None, :])[iu]
    return {"synthetic_crops": len(ids), "synthetic_auc": float(roc_auc_score(same, -d[iu])),
            "synthetic_same_mean": float(d[iu][same].mean()), "synthetic_other_mean": float(d[iu][~same].mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--portraits", type=int, default=40)
    ap.add_argument("--lfw", type=int, default=100)
    ap.add_argument("--cnn", type=int, default=8, help="photos of each set for the slow CNN detector")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cnn-upsample", type=int, default=0, help="align.dlib.upsample for the CNN detector")
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--judge-lfw", type=int, default=40)
    ap.add_argument("--synthetic", type=int, nargs=2, metavar=("IDS", "PER_ID"), help="also judge synthetic faces")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    # the photos are made with OpenCV in this process; forked workers would inherit its thread pool and hang
    import multiprocessing

    multiprocessing.set_start_method("spawn", force=True)
    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, cores={os.cpu_count()}, workers={a.workers}")
    res: dict = {"omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        sets = {"portraits": write_set(Path(tmp) / "portraits", photos.portrait_variants(photos.astronaut(), a.portraits)),
                "lfw": write_set(Path(tmp) / "lfw", [photos.lfw_face(i) for i in range(a.lfw)])}
        for set_name, recs in sets.items():
            for b in a.backends.split(","):
                use = recs[: a.cnn] if b.startswith("dlib_cnn") else recs
                r = run_backend(b, use, a.workers, a.cnn_upsample)
                res[f"{set_name}/{b}"] = r
                print(f"{set_name:9s} {b:16s} " + "  ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                                        for k, v in r.items()), flush=True)
    if a.judge_lfw:
        res["judge"] = judge_bench(a.judge_lfw)
        print("judge " + "  ".join(f"{k}={v:.3g}" for k, v in res["judge"].items()))
    if a.synthetic:
        res["judge_synthetic"] = judge_synthetic(*a.synthetic)
        print("judge synthetic " + "  ".join(f"{k}={v:.3g}" for k, v in res["judge_synthetic"].items()))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
