"""Stages `train_evaluator` and `evaluate`: the fixed-protocol evaluation of a trained model.

train_evaluator: a compact residual classifier trained on the aligned labeled TRAIN split (no
pretrained weights), cached as its own stage so sweeps of the generative model do not retrain it; it
stands in for the paper's Inception network (Appendix B.5).

evaluate: scores the model the pipeline hands out (and the train_joint model beside it) by the fixed
protocol of lrlivae.evaluate.protocol, writes its figures and a markdown report; on real photo sources
(evaluate.identity_judge: auto) also dlib's face descriptor as an independent judge of identity
(lrlivae.evaluate.identity): generated samples and real test crops per class, the real crops' own
figures (real_*) being the ceiling.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lrlivae.data.aligned import AlignedFaces, to_float_tensor
from lrlivae.evaluate import figures as figs
from lrlivae.evaluate.classifier import EvaluatorTraining, accuracy, load_evaluator, save_evaluator, train_evaluator
from lrlivae.evaluate.identity import REAL_FACE_SOURCES, JudgeReference, judge_enabled
from lrlivae.evaluate.protocol import EvalProtocol, score_model
from lrlivae.io import atomic_write_bytes, atomic_write_json, save_png
from pipeline.params import Params
from pipeline.schema import values_for
from pipeline.tracking import stage_run
from pipeline.training import load_model


def run_train_evaluator(params: Params, params_path: Path, data_dir: Path, out_dir: Path, metrics_path: Path) -> dict:
    cfg = params.train_evaluator
    torch.manual_seed(params.seed)
    ds = AlignedFaces(data_dir)
    ids = ds.identities
    labels = ds.labels(ids)
    tr, te = ds.labeled_rows("train", ids), ds.labeled_rows("test", ids)
    with stage_run("train_evaluator", params.model_dump(mode="json"), params_path) as tracker:
        tracker.log_dataset(data_dir, context="training")
        start = time.perf_counter()
        training = EvaluatorTraining(**values_for(cfg, EvaluatorTraining), seed=params.seed)
        model = train_evaluator(np.asarray(ds.faces[tr]), labels[tr], training, progress=lambda r: tracker.log_metrics(
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


def judge_reference(params: Params, x_te: np.ndarray, y_te: np.ndarray) -> JudgeReference | None:
    """The judge's real reference when evaluate.identity_judge is on for the labeled source, else None."""
    cfg = params.evaluate
    source = params.align.labeled.resolved()
    if not judge_enabled(cfg.identity_judge, source) or not len(x_te):
        return None
    if source not in REAL_FACE_SOURCES:
        print(f"[lrlivae] warning: identity_judge is on for the {source or 'unknown'} source; dlib's "
              "descriptor is trained on real photographs and separates these faces only weakly")
    return JudgeReference(x_te, y_te, cfg.identity_judge_per_class, params.seed)


def protocol(params: Params) -> EvalProtocol:
    """The evaluation protocol's settings from params.yaml `evaluate`."""
    return EvalProtocol(**values_for(params.evaluate, EvalProtocol))


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
    te = ds.labeled_rows("test", ids)
    x_te, y_te = np.asarray(ds.faces[te]), ds.labels(ids)[te]
    figures_dir = Path(figures_dir)
    with stage_run("evaluate", params.model_dump(mode="json"), params_path) as tracker:
        tracker.log_dataset(data_dir, context="evaluation")
        tracker.log_scored_model(model_path, st)
        t0 = time.perf_counter()
        judge = judge_reference(params, x_te, y_te)
        m, table = score_model(model, ev, ds, ids, protocol(params), params.seed, device, judge)
        table_md = ""
        if table is None:  # no ground-truth factors (photos): the declared output holds the header only
            table = pd.DataFrame(columns=["factor", "kind", "metric", "from_zs", "from_zu", "chance"]).set_index("factor")
        table.to_csv(Path(metrics_path).with_name("disentanglement.csv"))
        if len(table):
            table_md = table.to_markdown(floatfmt=".3f") if hasattr(table, "to_markdown") else table.to_string()
        m["seconds"] = time.perf_counter() - t0
        others = {}
        for name, (other_path, other_metrics) in (also or {}).items():
            other, other_st, other_ids = load_scored(other_path, ev_meta, evaluator_path, device)
            if other_ids != ids:
                raise ValueError(f"{other_path} was trained on other identities than {model_path}")
            others[name], _ = score_model(other, ev, ds, ids, protocol(params), params.seed, device, judge)
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
