"""Stage `compare`: the paper's comparison tables (Tables 1, 2, 5, 6; Fig. 7) from the reports of
`evaluate` (Lr-LiVAE) and `evaluate_baseline@<kind>` (cVAE, cGAN, cVAE-GAN), all scored by the same
evaluator with the same protocol.

Writes reports/comparison.json (flat keys `<metric>/<model>`, e.g. `inception_score/cvae`, and the
comparison id) and reports/comparison.md (Table 1: Inception Score; Table 2: intra-class diversity;
FCD; inpainting PSNR / SSIM per mask; identity left in the label-free code; disentanglement on the
synthetic set, where the identity and nuisance factors read from the label-free code are the comparable
figures; links to every model's figures). A metric a model does not have (cGAN: no encoder) is "n/a".

MLflow: one run per model, holding that model's metrics under their own names, and one run `all`
with the flat keys and both files; every run is tagged `comparison` = the comparison id (a hash of the
compared numbers) and `model`, so `tags.comparison = "<id>"` in the MLflow UI lists them side by side.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pandas as pd

from lrlivae.baselines.models import KINDS, NAMES
from lrlivae.evaluate.inpaint import MASKS
from lrlivae.io import atomic_write_bytes, atomic_write_json
from pipeline.params import Params
from pipeline.plots import write_comparison_bars
from pipeline.tracking import stage_run

OURS = "ours"
OURS_JOINT = "ours_train_joint"  # the same method before fine-tuning (models/train_joint)
LABELS = {**NAMES, OURS: "Lr-LiVAE (ours)", OURS_JOINT: "Lr-LiVAE before fine-tuning (train_joint)"}


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fmt(m: dict, key: str, digits: int = 3, std: str | None = None) -> str:
    if not _num(m.get(key)):
        return "n/a"
    s = f"{m[key]:.{digits}f}"
    return s + (f" ± {m[std]:.{digits}f}" if std and _num(m.get(std)) else "")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def load_reports(ours: Path, baselines_dir: Path, ours_joint: Path | None = None) -> dict[str, dict]:
    """{model: metrics} for the baselines that have a report, then ours, then ours before fine-tuning."""
    reports = {k: json.loads((Path(baselines_dir) / f"{k}.json").read_text()) for k in KINDS
               if (Path(baselines_dir) / f"{k}.json").exists()}
    reports[OURS] = json.loads(Path(ours).read_text())
    if ours_joint is not None and Path(ours_joint).exists():
        reports[OURS_JOINT] = json.loads(Path(ours_joint).read_text())
    return reports


def _table_path(model: str, ours_table: Path | None, baselines_dir: Path) -> Path | None:
    if model == OURS:
        return Path(ours_table) if ours_table is not None and Path(ours_table).exists() else None
    p = Path(baselines_dir) / model / "disentanglement.csv"
    return p if p.exists() else None


def add_label_free_scores(reports: dict[str, dict], ours_table: Path | None, baselines_dir: Path,
                          nuisance: list[str]) -> None:
    """Add, per model with a disentanglement table, the mean probe score of the identity factors
    (`label_free_identity`, lower is better) and of the nuisance factors (`label_free_nuisance`, higher is
    better) from its label-free code (z_u for ours, z for the baselines): comparable across models, unlike
    disentanglement_gap, whose label-relevant code is the true one-hot label (an oracle) for the baselines."""
    from lrlivae.data.synthetic import IDENTITY_FACTORS, NUISANCE_FACTORS

    for model, m in reports.items():
        p = _table_path(model, ours_table, baselines_dir)
        if p is None:
            continue
        t = pd.read_csv(p, index_col=0)
        for key, names in (("label_free_identity", [k for k in IDENTITY_FACTORS if k in t.index]),
                           ("label_free_nuisance", [k for k in NUISANCE_FACTORS if k in t.index and k in nuisance])):
            vals = t.loc[names, "from_zu"].to_numpy(float) if names else []
            vals = [v for v in vals if math.isfinite(v)]
            if vals:
                m[key] = float(sum(vals) / len(vals))


def flat_metrics(reports: dict[str, dict]) -> dict[str, float]:
    return {f"{k}/{model}": float(v) for model, m in reports.items() for k, v in m.items() if _num(v)}


def comparison_id(flat: dict[str, float]) -> str:
    return "cmp-" + hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()[:10]


def _factor_tables(ours_table: Path | None, baselines_dir: Path, models: list[str]) -> list[str]:
    cols, frames = [], {}
    for k in [OURS] + [k for k in models if k != OURS]:
        p = _table_path(k, ours_table, baselines_dir)
        if p is not None and len(t := pd.read_csv(p, index_col=0)):  # empty: no ground-truth factors (photos)
            frames[k] = t
    if not frames:
        return []
    base = next(iter(frames.values()))
    rows = []
    for factor in base.index:
        row = [factor, str(base.loc[factor, "kind"]), str(base.loc[factor, "metric"])]
        for model, t in frames.items():
            if model == OURS:
                row += [f"{t.loc[factor, 'from_zs']:.3f}", f"{t.loc[factor, 'from_zu']:.3f}"]
            else:
                row.append(f"{t.loc[factor, 'from_zu']:.3f}" if factor in t.index else "n/a")
        rows.append(row)
    for model in frames:
        cols += ["ours: from z_s", "ours: from z_u"] if model == OURS else [f"{LABELS[model]}: from z"]
    return ["", "Each ground-truth factor probed from each code (R^2 or accuracy on held-out codes; for the "
            "baselines the label-relevant code is the one-hot label itself, so only z is shown):", ""] + \
        _table(["factor", "kind", "metric"] + cols, rows)


def _judge_table(reports: dict[str, dict]) -> list[str]:
    """The identity-judge table (dlib's descriptor, real photo sources), when any report has its figures."""
    j = "identity_judge/"
    if not any(_num(r.get(j + "margin")) for r in reports.values()):
        return []
    ours = reports[OURS]
    rows = [[LABELS[m], _fmt(r, j + "same_distance"), _fmt(r, j + "other_distance"), _fmt(r, j + "margin"),
             _fmt(r, j + "accuracy"), _fmt(r, j + "auc")] for m, r in reports.items()]
    rows.append(["real test crops (leave one out)", _fmt(ours, j + "real_same_distance"),
                 _fmt(ours, j + "real_other_distance"), _fmt(ours, j + "real_margin"), _fmt(ours, j + "real_accuracy"),
                 _fmt(ours, j + "real_auc")])
    return ["", "## Identity judge: dlib's face descriptor (independent, not trained by us)", "",
            "Mean descriptor distance of class c's samples to person c's real test crops (same) and to the other "
            "people's (other); margin = other - same (higher is better); accuracy: samples whose nearest person is "
            "c; AUC: (sample, real crop) pairs, same person against different. dlib's rule of thumb: the same "
            "person is below 0.6. Real photographs only; rendered synthetic faces are outside its range.", ""] + \
        _table(["model", "same", "other", "margin", "accuracy", "AUC"], rows)


FIGURES = (("samples", "samples", "Samples, one row per class (Fig. 8 / 9)"),
           ("vary_zu", "vary_z", "One row per class, the label-free code (z_u; z for the baselines) varied along "
                                 "the columns, shared by each column (Fig. 4b)"),
           ("inpainting", "inpainting", "Inpainting: per mask a row of (original, masked, inpainted) (Fig. 7)"))


def _figures(reports: dict[str, dict], ours_figures: Path | None, baselines_dir: Path, md_path: Path) -> list[str]:
    """Links to each model's figures, relative to the Markdown file."""
    import os

    lines = []
    for ours_name, base_name, title in FIGURES:
        cells = []
        for model in reports:
            p = (Path(ours_figures) / f"{ours_name}.png") if model == OURS and ours_figures else \
                Path(baselines_dir) / model / "figures" / f"{base_name}.png"
            if p.exists():
                cells.append(f"{LABELS[model]}: ![{model} {base_name}]({os.path.relpath(p, Path(md_path).parent)})")
        if cells:
            lines += ["", f"### {title}", ""] + [c + "  " for c in cells]
    return ["", "## Figures"] + lines if lines else []


def comparison_markdown(reports: dict[str, dict], cid: str, ours_table: Path | None, baselines_dir: Path,
                        ours_figures: Path | None = None, md_path: Path = Path("reports/comparison.md")) -> str:
    """reports/comparison.md: the tables in the paper's order, then the identity judge and the figures."""
    lines = _intro(cid)
    lines += _score_tables(reports)
    lines += _realism_table(reports)
    lines += _inpainting_table(reports)
    lines += _identity_probe_table(reports)
    lines += _disentanglement_tables(reports, ours_table, baselines_dir)
    lines += _judge_table(reports)
    lines += _figures(reports, ours_figures, baselines_dir, md_path)
    return "\n".join(lines) + "\n"


def _intro(cid: str) -> list[str]:
    return ["# Comparison with the label-conditioned baselines", "",
            "Every model is scored by the same evaluator on the same test split with the same protocol "
            "(docs/guide.md: Evaluation). Baselines generate class c from z ~ N(0, I) concatenated with onehot(c); "
            "ours from z_s ~ N(mu_c, Sigma_c) and z_u ~ N(0, I).", "",
            f"MLflow: runs tagged `comparison = {cid}`; in the UI filter `tags.comparison = \"{cid}\"`, select "
            "the runs and press Compare.", ""]


def _score_tables(reports: dict[str, dict]) -> list[str]:
    """Table 1 (Inception Score), Table 2 (intra-class diversity) and FCD, with the real test images' figures
    (the same test split for every model) as the ceilings."""
    ours = reports[OURS]
    lines = ["## Table 1: Inception Score (higher is better)", ""]
    lines += _table(["model", "Inception Score", "generated-class accuracy"],
                    [[LABELS[m], _fmt(r, "inception_score", 2, "inception_score_std"),
                      _fmt(r, "generated_class_accuracy")] for m, r in reports.items()]
                    + [["real test images", _fmt(ours, "inception_score_real"), "-"]])
    lines += ["", "## Table 2: intra-class diversity, Eq. 12 (1 - mean MS-SSIM within a class; higher is more "
              "diverse)", ""]
    lines += _table(["model", "intra-class diversity"], [[LABELS[m], _fmt(r, "intra_class_diversity", 4)]
                                                         for m, r in reports.items()]
                    + [["real test images", _fmt(ours, "intra_class_diversity_real", 4)]])
    lines += ["", "## FCD: Frechet distance of evaluator features to the real test images (lower is better)", ""]
    return lines + _table(["model", "FCD"], [[LABELS[m], _fmt(r, "fcd", 2)] for m, r in reports.items()])


def _realism_table(reports: dict[str, dict]) -> list[str]:
    lines = ["", "## Realism: do the samples look like the photographs, in their variety?", "",
             "In the evaluator's feature space against the real test images (k = 3): precision (samples inside the "
             "real images' manifold), recall (real images inside the samples' manifold), per person (each class "
             "against its own test images, averaged), density and coverage; sharpness = high-frequency energy "
             "of the samples over the real images' (1: as sharp; > 1: checkerboard or noise; < 1: blur); "
             "two-sample accuracy of a fresh classifier telling real training crops from samples (0.5: "
             "indistinguishable); train/eval gap of the decoder (mean |difference| on [-1, 1]). Protocols: "
             "lrlivae.evaluate.realism.", ""]
    keys = [("precision", 3), ("recall", 3), ("precision_per_class", 3), ("recall_per_class", 3), ("density", 3),
            ("coverage", 3), ("sharpness_ratio", 2), ("two_sample_accuracy", 3), ("train_eval_gap", 3)]
    return lines + _table(["model", "precision", "recall", "precision / person", "recall / person", "density",
                           "coverage", "sharpness", "two-sample acc.", "train/eval gap"],
                          [[LABELS[m]] + [_fmt(r, k, d) for k, d in keys] for m, r in reports.items()])


def _inpainting_table(reports: dict[str, dict]) -> list[str]:
    lines = ["", "## Inpainting (Fig. 7): PSNR in dB over the masked region (SSIM in brackets)", "",
             "cVAE and cVAE-GAN are given the true label, as in the paper; ours uses none; cGAN has no encoder.", ""]
    rows = []
    for m, r in reports.items():
        label = f"{LABELS[m]} (no label)" if m in (OURS, OURS_JOINT) else \
            LABELS[m] + (" (true label)" if _num(r.get("inpaint_psnr_eyes")) else "")
        rows.append([label] + [f"{_fmt(r, f'inpaint_psnr_{k}', 2)} ({_fmt(r, f'inpaint_ssim_{k}')})"
                               if _num(r.get(f"inpaint_psnr_{k}")) else "n/a" for k in MASKS])
    return lines + _table(["model"] + list(MASKS), rows)


def _identity_probe_table(reports: dict[str, dict]) -> list[str]:
    ours = reports[OURS]
    lines = ["", "## Identity left in the label-free code (logistic probe, test accuracy; lower is better)", "",
             f"Chance: {_fmt(ours, 'chance_accuracy')}. Ours: z_u (z_s classifies identity at "
             f"{_fmt(ours, 'zs_probe_accuracy')}); baselines: z, the mean of q(z | x, c).", ""]
    return lines + _table(["model", "code", "identity probe accuracy"],
                          [[LABELS[m], "z_u" if m in (OURS, OURS_JOINT) else "z",
                            _fmt(r, "zu_probe_accuracy" if m in (OURS, OURS_JOINT) else "z_probe_accuracy")]
                           for m, r in reports.items()])


def _disentanglement_tables(reports: dict[str, dict], ours_table: Path | None, baselines_dir: Path) -> list[str]:
    """The synthetic set's disentanglement summary and per-factor tables (none without its ground truth)."""
    if not any(_num(r.get("disentanglement_gap")) for r in reports.values()):
        return []
    lines = ["", "## Disentanglement on the synthetic ground truth", "",
             "Mean probe score (R^2 or accuracy, held-out codes) of the identity factors and of the nuisance "
             "factors from the label-free code: z_u for ours, z for the baselines. disentanglement_gap = mean "
             "over identity factors of (score from the label-relevant code - score from the label-free code) + "
             "mean over nuisance factors of the reverse; for the baselines the label-relevant code is the true "
             "one-hot label, an oracle that knows every identity factor, so their gap is not comparable with "
             "ours (ours: z_s, inferred from the image).", ""]
    lines += _table(["model", "identity factors from the label-free code (lower is better)",
                     "nuisance factors from it (higher is better)", "disentanglement_gap"],
                    [[LABELS[m], _fmt(r, "label_free_identity"), _fmt(r, "label_free_nuisance"),
                      _fmt(r, "disentanglement_gap") + (" (oracle label)" if m not in (OURS, OURS_JOINT) and
                                                        _num(r.get("disentanglement_gap")) else "")]
                     for m, r in reports.items()])
    return lines + _factor_tables(ours_table, baselines_dir, list(reports))


def run_compare(params: Params, params_path: Path, ours: Path, baselines_dir: Path, ours_table: Path | None,
                out_json: Path, out_md: Path, ours_figures: Path | None = None, ours_joint: Path | None = None,
                out_plot: Path | None = None) -> dict:
    reports = load_reports(ours, baselines_dir, ours_joint)
    add_label_free_scores(reports, ours_table, baselines_dir, list(params.evaluate.nuisance_factors))
    flat = flat_metrics(reports)
    cid = comparison_id(flat)
    out = {"comparison": cid, **flat}
    atomic_write_json(out_json, out)
    md = comparison_markdown(reports, cid, ours_table, baselines_dir, ours_figures, out_md)
    atomic_write_bytes(out_md, md.encode())
    if out_plot is not None:
        write_comparison_bars(out_plot, reports, {k: k for k in reports})
    p = params.model_dump(mode="json")
    for model, m in reports.items():
        with stage_run("compare", p, params_path) as tracker:
            tracker.set_tags({"comparison": cid, "model": model, "mlflow.runName": f"compare@{model}"})
            tracker.log_metrics(m)
    with stage_run("compare", p, params_path) as tracker:
        tracker.set_tags({"comparison": cid, "model": "all", "mlflow.runName": "compare@all"})
        tracker.log_result(flat)
        tracker.log_artifact(out_md)
        tracker.log_artifact(out_json)
    print(f"compare: {', '.join(reports)} -> {out_md} (MLflow: tags.comparison = \"{cid}\")")
    return out
