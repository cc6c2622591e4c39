"""Stages `train_evaluator` and `evaluate`: the fixed-protocol evaluation of a trained model.

train_evaluator: a compact residual classifier trained on the aligned labeled TRAIN split (no
pretrained weights), cached as its own stage so sweeps of the generative model do not retrain it; it
stands in for the paper's Inception network (Appendix B.5).

evaluate (protocol, fixed):
- inception_score(_std): exp(E_x KL(p(y|x) || p(y))) with the evaluator's p(y|x) on `per_class` prior
  samples per class (z_s ~ N(mu_c, Sigma_c), z_u ~ N(0, I), eval mode, seed `seed`), classes
  interleaved, 10 splits of consecutive chunks; inception_score_real: the same on the real test split
  (the ceiling), interleaved by class and cut into chunks of the generated chunk size (so the two
  numbers are comparable: IS depends on the chunk size);
- intra_class_diversity(_real): Eq. 12, 1 - mean MS-SSIM over all pairs within a class, averaged over
  classes (MS-SSIM protocol in lrlivae.evaluate.diversity);
- fcd: Frechet distance of evaluator features, generated samples vs real test images;
- zs_accuracy (GM posterior, test split), zs/zu_probe_accuracy (logistic probes fitted on train codes),
  chance_accuracy;
- inpaint_psnr_<mask>, inpaint_ssim_<mask>: x_inp = M x' + (1 - M) x on the test split, over the masked
  region; masks placed from the alignment template (lrlivae.evaluate.inpaint);
- synthetic data: the disentanglement table (each ground-truth factor probed from z_s and from z_u on
  held-out codes) and disentanglement_gap;
- real photo sources (evaluate.identity_judge: auto): `identity_judge/<figure>`, dlib's face descriptor as
  an independent judge of identity preservation (lrlivae.evaluate.identity): `identity_judge_per_class`
  generated samples and real test crops per class; same_distance / other_distance / margin / accuracy / auc
  and the real crops' own figures real_* (the ceiling).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from lrlivae.data.aligned import AlignedFaces, to_float_tensor, to_uint8_images
from lrlivae.evaluate import figures as figs
from lrlivae.evaluate.classifier import accuracy, features, load_evaluator, predict_probs, save_evaluator, train_evaluator
from lrlivae.evaluate.diversity import intra_class_diversity
from lrlivae.evaluate.frechet import fcd
from lrlivae.evaluate.inception import inception_score, interleave_classes, splits_for_chunk
from lrlivae.evaluate.inpaint import MASKS, inpaint, make_mask, masked_psnr, masked_ssim
from lrlivae.evaluate.probes import disentanglement_gap, disentanglement_table
from lrlivae.io import atomic_write_bytes, atomic_write_json, save_png
from lrlivae.train import monitor
from pipeline.params import Params
from pipeline.tracking import stage_run
from pipeline.training import FACTOR_KINDS, load_model


def run_train_evaluator(params: Params, params_path: Path, data_dir: Path, out_dir: Path, metrics_path: Path) -> dict:
    cfg = params.train_evaluator
    torch.manual_seed(params.seed)
    ds = AlignedFaces(data_dir)
    ids = ds.identities
    labels = ds.labels(ids)
    tr, te = ds.split_indices("train"), ds.split_indices("test")
    tr, te = np.sort(tr[labels[tr] >= 0]), np.sort(te[labels[te] >= 0])
    with stage_run("train_evaluator", params.model_dump(mode="json"), params_path) as tracker:
        tracker.log_dataset(data_dir, context="training")
        start = time.perf_counter()
        model = train_evaluator(np.asarray(ds.faces[tr]), labels[tr], epochs=cfg.epochs, batch=cfg.batch_size,
                                lr=cfg.lr, optimizer=cfg.optimizer, seed=params.seed, progress=lambda r: tracker.log_metrics(
                                    {f"evaluator/{k}": v for k, v in r.items() if k != "epoch"}, step=int(r["epoch"])))
        metrics = {"evaluator_test_accuracy": accuracy(model, np.asarray(ds.faces[te]), labels[te]),
                   "evaluator_train_seconds": time.perf_counter() - start, "classes": len(ids)}
        save_evaluator(model, Path(out_dir) / "evaluator.pt", identities=ids)
        atomic_write_json(metrics_path, metrics)
        tracker.log_result(metrics)
        tracker.log_artifact(Path(out_dir) / "evaluator.pt", artifact_path="evaluator")
        tracker.log_model(Path(out_dir) / "evaluator.pt", "lrlivae-train_evaluator", tags={"stage": "train_evaluator"},
                          evaluator_meta={"identities": ids, "image_size": int(ds.faces.shape[1]),
                                          "stage": "train_evaluator"})
    print(f"train_evaluator: test accuracy {metrics['evaluator_test_accuracy']:.4f}")
    return metrics


JUDGE_PREFIX = "identity_judge/"
REAL_FACE_SOURCES = ("facescrub", "casia", "imagefolder")


def judge_enabled(setting, source: str) -> bool:
    """identity_judge: "auto" -> on for the real photo sources, off for synthetic faces and CIFAR; a bool as given."""
    if setting == "auto":
        return source in REAL_FACE_SOURCES
    return bool(setting)


class JudgeReference:
    """dlib descriptors of up to `per_class` real test crops per class, computed once and shared by every model
    a stage scores; `score(gen, gen_y)` gives the identity_judge/* figures of generated samples."""

    def __init__(self, x_te: np.ndarray, y_te: np.ndarray, per_class: int, seed: int = 0):
        from lrlivae.evaluate.identity import IdentityJudge, pick_per_class

        self.judge = IdentityJudge()
        self.per_class = int(per_class)
        self.seed = seed
        rows = pick_per_class(y_te, self.per_class, seed)
        t0 = time.perf_counter()
        self.y = np.asarray(y_te)[rows]
        self.desc = self.judge.descriptors(np.asarray(x_te)[rows])
        self.seconds = time.perf_counter() - t0

    def score(self, gen: np.ndarray, gen_y: np.ndarray) -> dict:
        from lrlivae.evaluate.identity import pick_per_class, preservation_metrics

        t0 = time.perf_counter()
        rows = pick_per_class(gen_y, self.per_class, self.seed)
        m = preservation_metrics(self.judge.descriptors(np.asarray(gen)[rows]), np.asarray(gen_y)[rows], self.desc,
                                 self.y)
        m["seconds"] = time.perf_counter() - t0 + self.seconds
        return {JUDGE_PREFIX + k: v for k, v in m.items()}


def judge_reference(params: Params, x_te: np.ndarray, y_te: np.ndarray) -> JudgeReference | None:
    """The judge's real reference when evaluate.identity_judge is on for the labeled source, else None."""
    cfg = params.evaluate
    if not judge_enabled(cfg.identity_judge, params.align.labeled.source) or not len(x_te):
        return None
    if params.align.labeled.source not in REAL_FACE_SOURCES:
        print(f"[lrlivae] warning: identity_judge is on for the {params.align.labeled.source} source; dlib's "
              "descriptor is trained on real photographs and separates these faces only weakly")
    return JudgeReference(x_te, y_te, cfg.identity_judge_per_class, params.seed)


def _generate(model, n_classes: int, per_class: int, seed: int, device) -> tuple[np.ndarray, np.ndarray]:
    g = torch.Generator(device=device).manual_seed(seed)
    imgs, ys = [], []
    with monitor.evaluating(model):
        for c in range(n_classes):
            out = model.generate(y=c, n=per_class, generator=g)
            imgs.append(to_uint8_images(out.x))
            ys.append(np.full(per_class, c))
    # interleave the classes, so that each Inception Score split (a consecutive chunk) holds all of them
    ys = np.concatenate(ys)
    order = interleave_classes(ys)
    return np.concatenate(imgs)[order], ys[order]


def generation_metrics(model, ev, n_classes: int, x_te: np.ndarray, y_te: np.ndarray, cfg, seed: int,
                       device, judge: JudgeReference | None = None) -> dict:
    """Inception Score (and its real-image ceiling), generated-class accuracy, intra-class diversity and FCD
    of any model with `generate(y=c, n, generator)` (Lr-LiVAE or a baseline), by the protocol above; with a
    judge reference also the identity_judge/* figures of the same samples."""
    m: dict[str, float] = {}
    gen, gen_y = _generate(model, n_classes, cfg.per_class, seed, device)
    splits = min(cfg.splits, len(gen))
    m["inception_score"], m["inception_score_std"] = inception_score(predict_probs(ev, gen), splits=splits)
    # the real ceiling: test images interleaved by class, in chunks as large as the generated ones
    real_order = interleave_classes(y_te)
    m["inception_score_real"], _ = inception_score(
        predict_probs(ev, x_te[real_order]), splits=splits_for_chunk(len(x_te), len(gen) // splits))
    m["generated_class_accuracy"] = accuracy(ev, gen, gen_y)
    m["intra_class_diversity"] = intra_class_diversity(gen, gen_y)
    try:
        m["intra_class_diversity_real"] = intra_class_diversity(x_te, y_te)
    except ValueError as e:  # a test split with one image per class has no pairs
        print(f"[lrlivae] warning: intra_class_diversity_real not computed: {e}")
    m["fcd"] = fcd(features(ev, gen), features(ev, x_te))
    if judge is not None:
        m.update(judge.score(gen, gen_y))
    return m


def inpainting_metrics(model, x: torch.Tensor, size: int) -> dict:
    """inpaint_psnr_<mask>, inpaint_ssim_<mask> on x (N, C, S, S) for every mask, for any model with
    `reconstruct(x, sample=False)` (a baseline that needs labels comes wrapped in `LabelBound`)."""
    m: dict[str, float] = {}
    for name in MASKS:
        mask = make_mask(name, size)
        with monitor.evaluating(model):
            x_inp = inpaint(model, x, mask)
        m[f"inpaint_psnr_{name}"] = float(np.mean(masked_psnr(x, x_inp, mask)))
        m[f"inpaint_ssim_{name}"] = float(np.mean(masked_ssim(x, x_inp, mask)))
    return m


def _test_split(ds: AlignedFaces, ids: list[str]):
    labels = ds.labels(ids)
    tr, te = (np.sort(r[labels[r] >= 0]) for r in (ds.split_indices("train"), ds.split_indices("test")))
    return labels, tr, te


def score_model(model, ev, ds: AlignedFaces, ids: list[str], cfg, seed: int, device,
                judge: JudgeReference | None = None) -> tuple[dict, object]:
    """Every figure of the protocol for one Lr-LiVAE model: generation metrics, code accuracies and probes,
    the class-accuracy decomposition and code statistics (lrlivae.evaluate.diagnose), inpainting, and on
    synthetic data the disentanglement table. Returns (metrics, table or None)."""
    from lrlivae.evaluate.diagnose import diagnose

    labels, tr, te = _test_split(ds, ids)
    x_te, y_te = np.asarray(ds.faces[te]), labels[te]
    m: dict[str, float] = {}
    m.update(generation_metrics(model, ev, len(ids), x_te, y_te, cfg, seed, device, judge))
    codes_tr = monitor.encode_rows(model, ds.faces, tr, device)
    codes_te = monitor.encode_rows(model, ds.faces, te, device)
    m["zs_accuracy"] = monitor.gm_accuracy(model, codes_te.zs, y_te)
    m["zs_probe_accuracy"] = monitor.probe_accuracy(codes_tr.zs, labels[tr], codes_te.zs, y_te)
    m["zu_probe_accuracy"] = monitor.probe_accuracy(codes_tr.mu, labels[tr], codes_te.mu, y_te)
    m["chance_accuracy"] = 1.0 / len(ids)
    m["evaluator_real_accuracy"] = accuracy(ev, x_te, y_te)
    m.update(diagnose(model, ev, codes_tr, labels[tr], codes_te, y_te, seed=seed))
    m.update(inpainting_metrics(model, to_float_tensor(x_te), ds.faces.shape[1]))
    kinds = {k: v for k, v in FACTOR_KINDS.items() if f"f_{k}" in ds.index}
    table = None
    if kinds:
        from lrlivae.data.synthetic import IDENTITY_FACTORS, NUISANCE_FACTORS

        f_tr = {k: ds.index[f"f_{k}"].to_numpy()[tr] for k in kinds}
        f_te = {k: ds.index[f"f_{k}"].to_numpy()[te] for k in kinds}
        table = disentanglement_table(codes_tr, codes_te, f_tr, f_te, kinds)
        nuisance = [k for k in NUISANCE_FACTORS if k in kinds and k in cfg.nuisance_factors]
        m["disentanglement_gap"] = disentanglement_gap(table, [k for k in IDENTITY_FACTORS if k in kinds], nuisance)
    return m, table


def load_scored(model_path: Path, ev_meta: dict, evaluator_path: Path, device):
    model, st = load_model(model_path, device)
    ids = list(st["identities"])
    if list(ev_meta.get("identities", ids)) != ids:
        raise ValueError(f"{evaluator_path} was trained on other identities than {model_path}")
    return model, st, ids


def run_evaluate(params: Params, params_path: Path, data_dir: Path, model_path: Path, evaluator_path: Path,
                 metrics_path: Path, figures_dir: Path, report_path: Path, also: dict[str, tuple[Path, Path]] | None = None
                 ) -> dict:
    """Score `model_path` (the model the pipeline hands out) into metrics_path, its figures and report;
    `also` = {name: (model, metrics JSON)} scores further models (e.g. the train_joint model before
    fine-tuning) by the same protocol into their own JSON files and MLflow metrics `<metric>/<name>`."""
    cfg = params.evaluate
    torch.manual_seed(params.seed)
    device = "cpu"
    ds = AlignedFaces(data_dir)
    ev, ev_meta = load_evaluator(evaluator_path, device)
    model, st, ids = load_scored(model_path, ev_meta, evaluator_path, device)
    labels, tr, te = _test_split(ds, ids)
    x_te = np.asarray(ds.faces[te])
    figures_dir = Path(figures_dir)
    with stage_run("evaluate", params.model_dump(mode="json"), params_path) as tracker:
        tracker.log_dataset(data_dir, context="evaluation")
        tracker.log_scored_model(model_path, st)
        t0 = time.perf_counter()
        judge = judge_reference(params, x_te, labels[te])
        m, table = score_model(model, ev, ds, ids, cfg, params.seed, device, judge)
        table_md = ""
        if table is not None:
            table.to_csv(Path(metrics_path).with_name("disentanglement.csv"))
            table_md = table.to_markdown(floatfmt=".3f") if hasattr(table, "to_markdown") else table.to_string()
        m["seconds"] = time.perf_counter() - t0
        others = {}
        for name, (other_path, other_metrics) in (also or {}).items():
            other, other_st, other_ids = load_scored(other_path, ev_meta, evaluator_path, device)
            if other_ids != ids:
                raise ValueError(f"{other_path} was trained on other identities than {model_path}")
            others[name], _ = score_model(other, ev, ds, ids, cfg, params.seed, device, judge)
            atomic_write_json(other_metrics, others[name])
            tracker.log_metrics({f"{k}/{name}": v for k, v in others[name].items()})
            tracker.log_headline(others[name], model=name)
            tracker.log_scored_model(other_path, other_st, tag=f"scored_model/{name}")
        # figures
        classes = list(range(min(cfg.figure_classes, len(ids))))
        pics = {
            "samples": figs.class_samples(model, classes, 8, seed=params.seed),
            "interpolate_zs": figs.interpolate_zs(model, classes, 8, seed=params.seed),
            "vary_zu": figs.vary_zu(model, classes, 8, seed=params.seed),
            "zu_dimensions": figs.zu_dimensions(model, to_float_tensor(x_te[:1]), n_dims=4),
            "inpainting": figs.inpainting_rows(model, x_te[: min(6, len(x_te))]),
        }
        write_figures(tracker, figures_dir, pics, st.get("history") or [])
        atomic_write_json(metrics_path, m)
        tracker.log_result(m)
        report = _report(m, table_md, pics, figures_dir, report_path, others)
        atomic_write_bytes(report_path, report.encode())
        tracker.log_artifact(report_path)
    print("evaluate: " + ", ".join(f"{k}={v:.4g}" for k, v in m.items()))
    return m


def write_figures(tracker, figures_dir: Path, pics: dict, history: list) -> None:
    """Save each figure as figures_dir/<name>.png and log it; add training curves from the checkpoint's
    loss history (one curve per logged loss term) when it has any."""
    curves = {k: [(h["step"], h[k]) for h in history if k in h]
              for k in sorted({k for h in history for k in h if k != "step"})}
    if curves:
        atomic_write_bytes(figures_dir / "training_curves.png", figs.training_curves(curves))
        tracker.log_artifact(figures_dir / "training_curves.png", artifact_path="images")
    for name, img in pics.items():
        save_png(figures_dir / f"{name}.png", img)
        tracker.log_image(img, f"{name}.png")


def _report(m: dict, table_md: str, pics: dict, figures_dir: Path, report_path: Path,
            others: dict[str, dict] | None = None) -> str:
    rel = lambda p: Path(p).resolve().relative_to(Path(report_path).resolve().parent)  # noqa: E731
    others = others or {}
    lines = ["# Evaluation", "", "| metric | scored model |" + "".join(f" {n} |" for n in others),
             "|---|---|" + "---|" * len(others)]
    lines += [f"| {k} | {v:.4f} |" + "".join(f" {o[k]:.4f} |" if k in o else " - |" for o in others.values())
              for k, v in m.items()]
    if table_md:
        lines += ["", "## Disentanglement (probes on held-out codes)", "", table_md]
    lines += ["", "## Figures", ""]
    for name in list(pics) + (["training_curves"] if (figures_dir / "training_curves.png").exists() else []):
        lines.append(f"![{name}]({rel(figures_dir / f'{name}.png')})")
    return "\n".join(lines) + "\n"
