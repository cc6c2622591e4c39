"""Quality of the built-in synthetic face set: is every factor visible, are identities hard but
learnable, does a stock face detector find the faces?

Generates the default sets (labeled: 40 identities x 60 images, unlabeled: 10 x 40) into a temporary
folder (or --data, reused when it already holds them), aligns every frame onto the 64x64 template
with its ground-truth landmarks, splits each labeled identity's images 70/30 into train / test, and
measures:

* haar: the share of frames (both sets) in which OpenCV's Viola-Jones frontal-face cascade
  (scaleFactor 1.1, minNeighbors 4, minSize 30, grayscale frame) finds the face: a detection with
  IoU > 0.3 with the true box, or containing the box centre.
* factors: a small multi-output CNN trained on the aligned train crops predicts every factor that
  survives alignment; test R^2 (continuous) or accuracy (discrete). Background kind, which that
  shared network underserves, is also read by a CNN of its own (same architecture), whose score is
  reported. The framing factors that alignment removes (roll, frame size, face scale and position)
  are scored from the recorded landmarks / box / frame instead (a linear fit on train, scored on test).
* probe: identity accuracy of a logistic regression on 8x8 downsampled aligned crops (the best over
  a few regularisation strengths, so the figure is an upper bound).
* cnn_identity: identity accuracy of a small CNN trained on the aligned 64x64 crops.

    python bench/synth_quality.py --out reports/synth_quality.json [--data /tmp/synth] [--workers 2]

Not part of the test run; takes about 30 minutes on two CPU cores (`--threads 1 --workers 1`).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lrlivae.data import synthetic as S  # noqa: E402
from lrlivae.faces.align import align_landmarks  # noqa: E402

LANDMARK_COLS = [f"lm_{i}_{c}" for i in range(5) for c in ("x", "y")]
BOX_COLS = ["box_x0", "box_y0", "box_x1", "box_y1"]


# ------------------------------------------------------------------------------------------ data
def generate(root: Path, workers: int, seed: int, labeled=(40, 60), unlabeled=(10, 40)) -> dict:
    out = {}
    for name, (n_id, n_img), offset in (("labeled", labeled, 0), ("unlabeled", unlabeled, labeled[0])):
        d = root / name
        if (d / "meta.parquet").is_file():
            meta = pd.read_parquet(d / "meta.parquet")
            if meta["identity"].nunique() == n_id and len(meta) == n_id * n_img:
                out[name] = (meta, None)
                continue
        t = time.perf_counter()
        meta = S.generate_set(d, n_identities=n_id, images_per_identity=n_img, seed=seed, set_name=name,
                              identity_offset=offset, workers=workers, progress=False)
        out[name] = (meta, time.perf_counter() - t)
    return out


def load_frames(root: Path, meta: pd.DataFrame) -> list[np.ndarray]:
    frames = []
    for rel in meta["path"]:
        img = cv2.imread(str(root / rel), cv2.IMREAD_COLOR)
        frames.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    return frames


def aligned_crops(frames, meta) -> np.ndarray:
    lms = meta[LANDMARK_COLS].to_numpy(np.float64).reshape(-1, 5, 2)
    return np.stack([align_landmarks(f, lm)[0] for f, lm in zip(frames, lms)])


def split(meta: pd.DataFrame, frac: float = 0.7, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-identity split: a random `frac` of each identity's images for training."""
    rng = np.random.default_rng(seed)
    train = np.zeros(len(meta), bool)
    for _, idx in meta.groupby("identity").indices.items():
        idx = rng.permutation(idx)
        train[idx[: int(round(frac * len(idx)))]] = True
    return train, ~train


# ------------------------------------------------------------------------------------------ haar
def iou(a, b) -> float:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def haar_found(frame: np.ndarray, box, cascade) -> bool:
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    dets = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=4, minSize=(30, 30))
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    for x, y, w, h in dets:
        d = (x, y, x + w, y + h)
        if iou(d, box) > 0.3 or (d[0] <= cx <= d[2] and d[1] <= cy <= d[3]):
            return True
    return False


def haar_rate(frames, meta) -> float:
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    boxes = meta[BOX_COLS].to_numpy(np.float64)
    return float(np.mean([haar_found(f, b, cascade) for f, b in zip(frames, boxes)]))


# ------------------------------------------------------------------------------------ statistics
def r2(y, p) -> float:
    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    return float(1.0 - ((y - p) ** 2).sum() / max(((y - y.mean()) ** 2).sum(), 1e-12))


def frame_factor_scores(meta, widths, train, test) -> dict:
    """Framing factors from the landmarks / box / frame: least squares on simple features."""
    lm = meta[LANDMARK_COLS].to_numpy(np.float64).reshape(-1, 5, 2)
    size = meta["f_frame_size"].to_numpy(np.float64)
    eye_vec = lm[:, 1] - lm[:, 0]
    eyes_mid, mouth_mid = lm[:, :2].mean(1), lm[:, 3:].mean(1)
    up = eyes_mid - mouth_mid
    feats = {
        # roll: the angle of the eye line and of the mouth -> eyes line
        "roll": np.column_stack([np.degrees(np.arctan2(eye_vec[:, 1], eye_vec[:, 0])),
                                 np.degrees(np.arctan2(-up[:, 0], -up[:, 1]))]),
        # scale: landmark spread in pixels
        "face_scale": np.column_stack([np.linalg.norm(eye_vec, axis=1), np.linalg.norm(up, axis=1),
                                       np.linalg.norm(lm[:, 4] - lm[:, 3], axis=1)]),
        "face_x": np.column_stack([lm[..., 0] / size[:, None], up[:, 0] / size, up[:, 1] / size]),
        "face_y": np.column_stack([lm[..., 1] / size[:, None], up[:, 0] / size, up[:, 1] / size]),
    }
    out = {}
    for name, x in feats.items():
        y = meta[f"f_{name}"].to_numpy(np.float64)
        xa = np.column_stack([x, np.ones(len(x))])
        w, *_ = np.linalg.lstsq(xa[train], y[train], rcond=None)
        out[name] = {"kind": "continuous", "r2": r2(y[test], xa[test] @ w), "measured_on": "landmarks"}
    # frame size: read off the decoded frame
    out["frame_size"] = {"kind": "discrete", "acc": float(np.mean(np.asarray(widths)[test] == size[test])),
                         "measured_on": "frame"}
    return out


def linear_probe(crops, ids, train, test) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    small = np.stack([cv2.resize(c, (8, 8), interpolation=cv2.INTER_AREA) for c in crops]).reshape(len(crops), -1)
    sc = StandardScaler().fit(small[train].astype(np.float64))
    xtr, xte = sc.transform(small[train].astype(np.float64)), sc.transform(small[test].astype(np.float64))
    accs = {}
    for c in (0.01, 0.1, 1.0, 10.0):
        m = LogisticRegression(C=c, max_iter=3000).fit(xtr, ids[train])
        accs[str(c)] = float((m.predict(xte) == ids[test]).mean())
    return {"acc": max(accs.values()), "by_C": accs}


# ------------------------------------------------------------------------------------------ CNNs
# Pixel-level factors: statistics of the whole crop rather than things at places. They are read by
# a separate fully convolutional network that averages over the crop and trains on random patches,
# which keeps it from memorising the training crops instead of learning the texture cue.
TEXTURE_FACTORS = ("noise", "jpeg_quality")
TEXTURE_PATCH = 40

# Factors whose sign flips when the crop is mirrored (the factor network trains on random mirrors).
MIRROR_NEGATES = ("yaw", "light_x")

# Factors that the shared factor network underserves (it spends its capacity on the thirty others):
# each also gets a network of its own (same architecture, one head), whose score is reported; the
# shared network's score is kept beside it as "shared_cnn".
OWN_NETWORK_FACTORS = ("bg_kind",)


def _cbr(i, o, stride):
    import torch.nn as nn

    return [nn.Conv2d(i, o, 3, stride, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]


def spatial_cnn(n_out: int, hidden: int = 0, full_res_stem: bool = False):
    """A small plain CNN: 64 -> 8 px in three stride-2 steps, pooled to 4x4, then one or two dense
    layers. The full-resolution stem (one more 3x3 layer at 64 px) keeps pixel-level detail."""
    import torch.nn as nn

    if full_res_stem:
        stem = [*_cbr(3, 16, 1), *_cbr(16, 32, 2), *_cbr(32, 48, 2)]
    else:
        stem = [*_cbr(3, 24, 2), *_cbr(24, 48, 2), *_cbr(48, 48, 1)]
    layers = [*stem, *_cbr(48, 96, 2), *_cbr(96, 96, 1), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Dropout(0.3)]
    if hidden:
        layers += [nn.Linear(96 * 16, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, n_out)]
    else:
        layers += [nn.Linear(96 * 16, n_out)]
    return nn.Sequential(*layers)


def texture_cnn(n_out: int, width: int = 16):
    """Fully convolutional, global average pooled: sees any crop size, cares about statistics only."""
    import torch.nn as nn

    w = width
    return nn.Sequential(*_cbr(3, w, 1), *_cbr(w, 2 * w, 2), *_cbr(2 * w, 2 * w, 1), *_cbr(2 * w, 3 * w, 2),
                         nn.Conv2d(3 * w, n_out, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def _to_tensor(x):
    import torch

    return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float().div_(255.0)


def _augment(xb, rng, max_shift: int, flip: bool, patch: int = 0):
    """Random translation by up to max_shift pixels (replicated borders; the crops' landmarks are
    exact, so this only stands in for small alignment jitter), with flip a random horizontal mirror,
    with patch a random patch x patch window (one position per batch). Returns (batch, flipped)."""
    import torch
    import torch.nn.functional as F

    flipped = torch.from_numpy(rng.random(len(xb)) < 0.5) if flip else torch.zeros(len(xb), dtype=torch.bool)
    if flip and flipped.any():
        xb = xb.clone()
        xb[flipped] = xb[flipped].flip(3)
    if max_shift > 0:
        pad = F.pad(xb, (max_shift,) * 4, mode="replicate")
        out = torch.empty_like(xb)
        shifts = rng.integers(0, 2 * max_shift + 1, (len(xb), 2))
        for i, (dx, dy) in enumerate(shifts):
            out[i] = pad[i, :, dy: dy + xb.shape[2], dx: dx + xb.shape[3]]
        xb = out
    if patch:
        ox, oy = rng.integers(0, xb.shape[3] - patch + 1, 2)
        xb = xb[:, :, oy: oy + patch, ox: ox + patch]
    return xb, flipped


def train_net(model, x_tr, heads, targets_tr, epochs: int, seed: int = 0, max_shift: int = 0, batch: int = 64,
              lr: float = 3e-3, flip_negate: tuple | None = None, patch: int = 0):
    """Train `model` (outputs: one group per head, in order) for `epochs` epochs with AdamW and a
    one-cycle schedule. heads: list of (name, kind, n) with kind 'reg' (n = 1, MSE on a
    standardised target) or 'cls' (n classes, cross-entropy). flip_negate: when given, crops are
    mirrored at random and these regression targets change sign with the mirror. patch: train on
    random square patches of this size. Returns the model."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    x_all = _to_tensor(x_tr)
    t_all = {k: torch.as_tensor(v) for k, v in targets_tr.items()}
    n = len(x_all)
    steps = math.ceil(n / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps, pct_start=0.2)
    for _ in range(epochs):
        model.train()
        perm = torch.from_numpy(rng.permutation(n))
        for s in range(steps):
            idx = perm[s * batch:(s + 1) * batch]
            xb, flipped = _augment(x_all[idx], rng, max_shift, flip_negate is not None, patch)
            sign = 1.0 - 2.0 * flipped.float()
            out = model(xb)
            loss, o = 0.0, 0
            for name, kind, k in heads:
                part = out[:, o:o + k]
                o += k
                if kind == "reg":
                    target = t_all[name][idx].float()
                    if flip_negate is not None and name in flip_negate:
                        target = target * sign
                    loss = loss + F.mse_loss(part[:, 0], target)
                else:
                    loss = loss + F.cross_entropy(part, t_all[name][idx].long())
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model


def predict(model, x, batch: int = 256) -> np.ndarray:
    import torch

    model.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            outs.append(model(_to_tensor(x[i:i + batch])).numpy())
    return np.concatenate(outs)


def _heads(names, kinds, m_tr):
    heads, targets, stats = [], {}, {}
    for name in names:
        y = m_tr[f"f_{name}"].to_numpy()
        if kinds[name] == "continuous":
            mu = 0.0 if name in MIRROR_NEGATES else y.mean()  # mirrored targets: sign only
            sd = y.std() + 1e-9
            heads.append((name, "reg", 1))
            targets[name] = ((y - mu) / sd).astype(np.float32)
            stats[name] = (mu, sd)
        else:
            heads.append((name, "cls", int(y.max()) + 1))
            targets[name] = y.astype(np.int64)
    return heads, targets, stats


def _score(out_all, heads, stats, meta, test, measured_on) -> dict:
    res, o = {}, 0
    for name, kind, k in heads:
        part = out_all[:, o:o + k]
        o += k
        if name.startswith("_"):
            continue
        y = meta[f"f_{name}"].to_numpy()[test]
        if kind == "reg":
            mu, sd = stats[name]
            res[name] = {"kind": "continuous", "r2": r2(y, part[:, 0] * sd + mu), "measured_on": measured_on}
        else:
            res[name] = {"kind": "discrete", "acc": float((part.argmax(1) == y).mean()), "measured_on": measured_on}
    return res


def factor_scores(crops, meta, train, test, epochs: int, texture_epochs: int, extra_crops=None,
                  extra_meta=None, own_epochs: int = 30) -> dict:
    """Factors from the aligned crops: a multi-output CNN for everything but the pixel-level
    factors, a fully convolutional one for those; both trained on the train crops (plus, when given,
    the extra crops: the unlabeled set, whose factors are known too), scored on the test crops. An
    auxiliary identity output helps the first read the identity factors."""
    kinds = {**S.IDENTITY_FACTORS, **S.NUISANCE_FACTORS}
    names = [n for n in kinds if n not in S.FRAME_FACTORS and n not in TEXTURE_FACTORS]
    x_tr, m_tr = crops[train], meta[train]
    if extra_crops is not None:
        x_tr = np.concatenate([x_tr, extra_crops])
        m_tr = pd.concat([m_tr, extra_meta], ignore_index=True)
    id_classes, id_y = np.unique(m_tr["identity"].to_numpy(), return_inverse=True)
    heads, targets, stats = _heads(names, kinds, m_tr)
    heads = [("_identity", "cls", len(id_classes))] + heads
    targets["_identity"] = id_y
    model = spatial_cnn(sum(k for _, _, k in heads), hidden=256, full_res_stem=True)
    train_net(model, x_tr, heads, targets, epochs, seed=1, max_shift=1, flip_negate=MIRROR_NEGATES)
    res = _score(predict(model, crops[test]), heads, stats, meta, test, "aligned crop")

    for i, name in enumerate(OWN_NETWORK_FACTORS):
        h, t, st = _heads([name], kinds, m_tr)
        model = spatial_cnn(sum(k for _, _, k in h), hidden=256, full_res_stem=True)
        train_net(model, x_tr, h, t, own_epochs, seed=4 + i, max_shift=1, flip_negate=())
        shared = res[name]
        res[name] = _score(predict(model, crops[test]), h, st, meta, test, "aligned crop (own CNN)")[name]
        res[name]["shared_cnn"] = shared.get("r2", shared.get("acc"))

    heads, targets, stats = _heads(TEXTURE_FACTORS, kinds, m_tr)
    model = texture_cnn(len(heads))
    train_net(model, x_tr, heads, targets, texture_epochs, seed=3, flip_negate=(), patch=TEXTURE_PATCH)
    res.update(_score(predict(model, crops[test]), heads, stats, meta, test, "aligned crop (texture CNN)"))
    return {k: res[k] for k in kinds if k in res}


def cnn_identity(crops, ids, train, test, epochs: int) -> dict:
    classes, y = np.unique(ids, return_inverse=True)
    model = spatial_cnn(len(classes))
    train_net(model, crops[train], [("id", "cls", len(classes))], {"id": y[train]}, epochs, seed=2, max_shift=1,
              flip_negate=())
    pred = predict(model, crops[test]).argmax(1)
    return {"acc": float((pred == y[test]).mean()), "epochs": epochs}


# ------------------------------------------------------------------------------------------ main
def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="folder for the generated sets (kept; reused)")
    ap.add_argument("--out", type=Path, default=None, help="write the figures here as JSON")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--factor-epochs", type=int, default=50, help="training epochs of the factor CNN")
    ap.add_argument("--texture-epochs", type=int, default=40, help="training epochs of the texture CNN")
    ap.add_argument("--id-epochs", type=int, default=60, help="training epochs of the identity CNN")
    ap.add_argument("--own-epochs", type=int, default=30,
                    help="training epochs of the own CNN of each factor in OWN_NETWORK_FACTORS")
    ap.add_argument("--skip", nargs="*", default=[], choices=["haar", "probe", "cnn", "factors"],
                    help="leave these measurements out")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    with tempfile.TemporaryDirectory(prefix="synth_quality_") as tmp:
        root = args.data if args.data is not None else Path(tmp)
        sets = generate(root, args.workers, args.seed)
        lab_meta = sets["labeled"][0]
        unl_meta = sets["unlabeled"][0]
        t = time.perf_counter()
        lab_frames = load_frames(root / "labeled", lab_meta)
        unl_frames = load_frames(root / "unlabeled", unl_meta)
        crops = aligned_crops(lab_frames, lab_meta)
        load_s = time.perf_counter() - t

        report: dict = {
            "generation_seconds": {k: v[1] for k, v in sets.items()},
            "frames": {k: len(v[0]) for k, v in sets.items()},
            "load_align_seconds": load_s,
        }
        targets: dict = {}
        if "haar" not in args.skip:
            t = time.perf_counter()
            rates = {"labeled": haar_rate(lab_frames, lab_meta), "unlabeled": haar_rate(unl_frames, unl_meta)}
            n_lab, n_unl = len(lab_meta), len(unl_meta)
            rates["all"] = (rates["labeled"] * n_lab + rates["unlabeled"] * n_unl) / (n_lab + n_unl)
            report["haar_detection_rate"] = rates
            report["haar_seconds"] = time.perf_counter() - t
            targets["haar_detection_rate>=0.95"] = rates["all"] >= 0.95
            print(f"haar detection rate: {rates}", flush=True)

        train, test = split(lab_meta)
        ids = lab_meta["identity"].to_numpy()
        if "probe" not in args.skip:
            report["identity_probe_8x8"] = linear_probe(crops, ids, train, test)
            targets["identity_probe_8x8<0.6"] = report["identity_probe_8x8"]["acc"] < 0.6
            print(f"8x8 linear probe identity accuracy: {report['identity_probe_8x8']['acc']:.3f} "
                  f"(by C: {report['identity_probe_8x8']['by_C']})", flush=True)
        if "cnn" not in args.skip:
            t = time.perf_counter()
            report["identity_cnn"] = cnn_identity(crops, ids, train, test, args.id_epochs)
            report["identity_cnn"]["seconds"] = time.perf_counter() - t
            targets["identity_cnn>=0.95"] = report["identity_cnn"]["acc"] >= 0.95
            print(f"CNN identity accuracy: {report['identity_cnn']['acc']:.3f}", flush=True)
        if "factors" not in args.skip:
            t = time.perf_counter()
            unl_crops = aligned_crops(unl_frames, unl_meta)
            factors = factor_scores(crops, lab_meta, train, test, args.factor_epochs, args.texture_epochs,
                                    unl_crops, unl_meta, own_epochs=args.own_epochs)
            factors.update(frame_factor_scores(lab_meta, [f.shape[1] for f in lab_frames], train, test))
            report["factor_cnn"] = {"epochs": args.factor_epochs, "texture_epochs": args.texture_epochs,
                                    "own_epochs": args.own_epochs, "own_network": list(OWN_NETWORK_FACTORS),
                                    "seconds": time.perf_counter() - t}
            report["factors"] = factors
            ok = True
            print(f"{'factor':16s} {'kind':10s} {'score':>7s}  measured on")
            for name, r in factors.items():
                score = r.get("r2", r.get("acc"))
                need = 0.8 if r["kind"] == "continuous" else 0.9
                ok &= score >= need
                flag = "" if score >= need else "  <-- below target"
                shared = f" (shared CNN {r['shared_cnn']:.3f})" if "shared_cnn" in r else ""
                print(f"{name:16s} {r['kind']:10s} {score:7.3f}  {r['measured_on']}{shared}{flag}")
            targets["factors(r2>=0.8,acc>=0.9)"] = bool(ok)

    report["targets"] = targets
    print(json.dumps(targets, indent=1))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
