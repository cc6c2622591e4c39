"""Stage `finetune_semi` (paper Sec. 3.6 / 4.4): fine-tune the whole network on unlabeled faces of unseen
identities, pulling their z_s toward the ambiguous Gaussian of Eq. 11; then measure, before and after:

- identity verification on the unseen identities' held-out images with z_s as the embedding (ROC AUC);
- face swapping between unseen identities: a factor predictor trained on real (rendered) labeled crops
  reads each swapped image; identity factors should follow the z_s source, nuisance factors the z_u
  source (mean R^2 / accuracy per group; only factors the predictor reads from real test crops of the
  unseen identities with a score of at least USABLE_CEILING = 0.7 are used, and that real-image score is
  reported as the ceiling, per factor as swap_ceiling_<factor>);
- real photo sources (finetune_semi.identity_judge: auto): dlib's descriptor as an independent judge of the
  swaps: `identity_judge/<before|after>_swap_follows_zs`, the fraction of swapped images nearer their z_s
  source than their z_u source, and the mean distances to each (identity_judge_pairs pairs of different
  unseen people from the test split);
- the Fig. 6 grid (first column gives z_s, first row z_u), written to reports/figures and logged.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lrlivae.data.aligned import AlignedFaces
from lrlivae.data.synthetic.factors import FACTOR_KINDS
from lrlivae.evaluate.factors import agreement, train_factor_predictor
from lrlivae.evaluate.swap import swap_grid, swap_images, verification_auc
from lrlivae.io import save_png
from lrlivae.train import monitor
from pipeline.params import Params
from pipeline.training import load_model, run_training

# Nuisance factors the swap measurement may read: pose, expression, light and background. Only those the
# factor predictor reads from real crops of the unseen identities with a score >= USABLE_CEILING are used.
NUISANCE_GROUP = ("yaw", "pitch", "smile", "mouth_open", "eyes_closed", "light_x", "light_y", "light_strength",
                  "light_intensity", "light_warmth", "bg_brightness", "bg_kind")
USABLE_CEILING = 0.7


def _factors(index, rows, names) -> dict[str, np.ndarray]:
    return {k: index[f"f_{k}"].to_numpy()[rows] for k in names}


def semi_metrics(model, device, unl: AlignedFaces, lab: AlignedFaces, params: Params, prefix: str) -> dict:
    """Verification AUC of `model` (z_s as embedding) on the unseen identities' test split."""
    out: dict[str, float] = {}
    test = np.sort(unl.split_indices("test"))
    truth_ids = unl.index["true_identity"].to_numpy() if "true_identity" in unl.index else None
    if truth_ids is not None and len(test) > 1:
        codes = monitor.encode_rows(model, unl.faces, test, device)
        out[f"{prefix}verification_auc"] = verification_auc(codes.zs, truth_ids[test])
    return out


def swap_metrics(model, device, unl: AlignedFaces, predictor, usable: dict[str, list[str]], params: Params, prefix: str) -> dict:
    """Swap random pairs of different unseen identities; score what the predictor reads against each source."""
    cfg = params.finetune_semi
    test = np.sort(unl.split_indices("test"))
    ids = unl.index["true_identity"].to_numpy()
    rng = np.random.default_rng(params.seed)
    a = rng.choice(test, size=cfg.swap_pairs)
    b = rng.choice(test, size=cfg.swap_pairs)
    keep = ids[a] != ids[b]
    a, b = a[keep], b[keep]
    pred = predictor.predict(swap_images(model, unl.faces, a, b, device))
    out = {}
    for group, src in (("identity", a), ("nuisance", b)):
        names = usable[group]
        if not names:
            continue
        scores = agreement({k: pred[k] for k in names}, _factors(unl.index, src, names), FACTOR_KINDS)
        out[f"{prefix}swap_{group}_follows_source"] = float(np.mean(list(scores.values())))
        # the other way round: how much of the other image's factors leak through (lower is better)
        other = b if group == "identity" else a
        leak = agreement({k: pred[k] for k in names}, _factors(unl.index, other, names), FACTOR_KINDS)
        out[f"{prefix}swap_{group}_follows_other"] = float(np.mean(list(leak.values())))
    return out


def judge_pairs(unl: AlignedFaces, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n pairs (a, b) of test rows of different people (true_identity when the set keeps it, else different rows)."""
    test = np.sort(unl.split_indices("test"))
    ids = unl.index["true_identity"].to_numpy() if "true_identity" in unl.index else np.arange(len(unl))
    rng = np.random.default_rng([seed, 14])
    a, b = rng.choice(test, size=4 * n), rng.choice(test, size=4 * n)
    keep = ids[a] != ids[b]
    return a[keep][:n], b[keep][:n]


def judge_swap_metrics(models: dict, device, unl: AlignedFaces, params: Params) -> dict:
    """identity_judge/<name>_swap_* for each model: do swapped images look like the z_s source to dlib's descriptor?"""
    from lrlivae.evaluate.identity import IdentityJudge, swap_metrics as judge_swaps

    a, b = judge_pairs(unl, params.finetune_semi.identity_judge_pairs, params.seed)
    if not len(a):
        return {}
    judge = IdentityJudge()
    rows = np.unique(np.concatenate([a, b]))
    desc = dict(zip(rows.tolist(), judge.descriptors(np.asarray(unl.faces[rows]))))
    da, db = np.stack([desc[i] for i in a]), np.stack([desc[i] for i in b])
    out = {}
    for name, m in models.items():
        got = judge_swaps(judge.descriptors(swap_images(m, unl.faces, a, b, device)), da, db)
        out.update({f"identity_judge/{name}_{k}": v for k, v in got.items()})
    out["identity_judge/swap_pairs"] = len(a)
    return out


def run(params: Params, params_path: Path, unlabeled_dir: Path, labeled_dir: Path, init: Path, out_dir: Path,
        metrics_path: Path, figures_dir: Path, curves: Path | None = None) -> dict:
    from lrlivae.data.synthetic import IDENTITY_FACTORS, NUISANCE_FACTORS

    unl, lab = AlignedFaces(unlabeled_dir), AlignedFaces(labeled_dir)
    before_model, init_state = load_model(init)
    cfg = params.finetune_semi
    has_truth = all(f"f_{k}" in lab.index for k in IDENTITY_FACTORS) and "true_identity" in unl.index

    def final(model, device, tracker) -> dict:
        before_model.to(device)
        metrics = {**semi_metrics(before_model, device, unl, lab, params, "before_"),
                   **semi_metrics(model, device, unl, lab, params, "after_")}
        if has_truth:
            tr, te = np.sort(lab.split_indices("train")), np.sort(lab.split_indices("test"))
            names = list(IDENTITY_FACTORS) + [k for k in NUISANCE_GROUP if k in NUISANCE_FACTORS]
            predictor = train_factor_predictor(np.asarray(lab.faces[tr]), _factors(lab.index, tr, names), FACTOR_KINDS,
                                               epochs=cfg.predictor_epochs, seed=params.seed)
            ceiling = agreement(predictor.predict(np.asarray(unl.faces[np.sort(unl.split_indices("test"))])),
                                _factors(unl.index, np.sort(unl.split_indices("test")), names), FACTOR_KINDS)
            usable = {"identity": [k for k in IDENTITY_FACTORS if ceiling.get(k, 0) >= USABLE_CEILING],
                      "nuisance": [k for k in NUISANCE_GROUP if ceiling.get(k, 0) >= USABLE_CEILING]}
            metrics.update({f"swap_ceiling_{k}": float(v) for k, v in ceiling.items()})
            for group in ("identity", "nuisance"):
                if usable[group]:
                    metrics[f"swap_{group}_real_ceiling"] = float(np.mean([ceiling[k] for k in usable[group]]))
                    metrics[f"swap_{group}_factors"] = len(usable[group])
            metrics.update(swap_metrics(before_model, device, unl, predictor, usable, params, "before_"))
            metrics.update(swap_metrics(model, device, unl, predictor, usable, params, "after_"))
        from lrlivae.evaluate.identity import judge_enabled

        if judge_enabled(cfg.identity_judge, params.align.unlabeled.resolved()) and len(unl.split_indices("test")) > 1:
            metrics.update(judge_swap_metrics({"before": before_model, "after": model}, device, unl, params))
        # Fig. 6: unseen identities, one image each for z_s (rows) and z_u (columns)
        test = np.sort(unl.split_indices("test"))
        ids = unl.index["true_identity"].to_numpy() if "true_identity" in unl.index else np.arange(len(unl))
        firsts = [test[ids[test] == i][0] for i in dict.fromkeys(ids[test])][: cfg.grid_size]
        rows_u = [test[ids[test] == i][-1] for i in dict.fromkeys(ids[test])][: cfg.grid_size]
        for name, m in (("before", before_model), ("after", model)):
            grid = swap_grid(m, unl.faces, np.array(firsts), np.array(rows_u), device)
            save_png(Path(figures_dir) / f"swap_{name}.png", grid)
            tracker.log_image(grid, f"swap_{name}.png")
        metrics["gm_labeled_test_accuracy"] = monitor.gm_accuracy(
            model, monitor.encode_rows(model, lab.faces, lab.split_indices("test"), device).zs,
            lab.labels(list(init_state["identities"]))[np.sort(lab.split_indices("test"))])
        return metrics

    return run_training("finetune_semi", params, params_path, unlabeled_dir, out_dir, metrics_path,
                        init_checkpoint=init, labeled_dir=labeled_dir, final_metrics=final, curves_path=curves)

