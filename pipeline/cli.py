"""The `lrlivae` command: one sub-command per DVC stage (stage name with '-' for '_')."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from pipeline.cli_common import PARAMS_OPT, _fail, _load, app, from_dvc


@app.command()
def synth(
    params: Path = PARAMS_OPT,
    out_labeled: Path = typer.Option(default_factory=from_dvc("synth", "--out-labeled"), show_default="as dvc.yaml",
        help="folder for the labeled set"),
    out_unlabeled: Path = typer.Option(default_factory=from_dvc("synth", "--out-unlabeled"), show_default="as dvc.yaml",
        help="folder for the unlabeled set"),
    metrics: Path = typer.Option(default_factory=from_dvc("synth", "--metrics"), show_default="as dvc.yaml",
        help="metrics JSON"),
) -> None:
    """Generate the built-in synthetic face sets (frames, landmarks and ground-truth factors)."""
    from pipeline import synth as stage

    p = _load(params)
    stage.run(p, params, out_labeled, out_unlabeled, metrics)


@app.command()
def align(
    params: Path = PARAMS_OPT,
    labeled_root: Optional[Path] = typer.Option(None, show_default="params: align.labeled.root",
        help="source folder of the labeled set"),
    unlabeled_root: Optional[Path] = typer.Option(None, show_default="params: align.unlabeled.root",
        help="source folder of the unlabeled set ('' to skip the set)"),
    labeled_list: List[Path] = typer.Option([], help="list files of the labeled source (FaceScrub); repeatable"),
    unlabeled_list: List[Path] = typer.Option([], help="list files of the unlabeled source; repeatable"),
    out_dir: Path = typer.Option(default_factory=from_dvc("align", "--out-dir"), show_default="as dvc.yaml",
        help="aligned sets are written to OUT_DIR/<set>"),
    metrics: Path = typer.Option(default_factory=from_dvc("align", "--metrics"), show_default="as dvc.yaml",
        help="metrics JSON"),
    people: Optional[Path] = typer.Option(default_factory=from_dvc("align", "--people"), show_default="as dvc.yaml",
        help="CSV of every person of each set: photos, accepted, split sizes, kept or left out and why"),
) -> None:
    """Detect, align and crop faces to SxS (default 64) for the labeled and unlabeled sets."""
    from pipeline import align as stage

    p = _load(params)
    labeled_root = labeled_root if labeled_root is not None else Path(p.align.labeled.root)
    if unlabeled_root is None:
        unlabeled_root = Path(p.align.unlabeled.root) if p.align.unlabeled.root else None
    if str(labeled_root) in ("", "."):
        _fail(ValueError(f"no labeled set: set align.labeled.root in {params} or give --labeled-root"))
    sets = {"labeled": (labeled_root, list(labeled_list))}
    if unlabeled_root is not None and str(unlabeled_root) not in ("", "."):
        sets["unlabeled"] = (unlabeled_root, list(unlabeled_list))
    for name, (root, lists) in sets.items():
        if not root.exists():
            _fail(FileNotFoundError(f"{name} source folder {root} does not exist"))
        for lf in lists:
            if not lf.exists():
                _fail(FileNotFoundError(f"{name} list file {lf} does not exist"))
    try:
        stage.run(p, params, sets, out_dir, metrics, people)
    except stage.AlignStageError as e:
        _fail(e)


def _train(stage: str, params: Path, data: Path, out: Path, metrics: Path, init: Optional[Path],
           curves: Optional[Path] = None) -> None:
    from pipeline.training import TrainingError, run_training

    p = _load(params)
    if not (data / "faces.npy").exists():
        _fail(FileNotFoundError(f"{data}/faces.npy does not exist; run `dvc repro align` first"))
    if init is not None and not init.exists():
        _fail(FileNotFoundError(f"{init} does not exist; run `dvc repro train_gm` first"))
    try:
        run_training(stage, p, params, data, out, metrics, init_checkpoint=init, curves_path=curves)
    except TrainingError as e:
        _fail(e)


@app.command("train-gm")
def train_gm(
    params: Path = PARAMS_OPT,
    data: Path = typer.Option(default_factory=from_dvc("train_gm", "--data"), show_default="as dvc.yaml",
        help="aligned labeled set"),
    out: Path = typer.Option(default_factory=from_dvc("train_gm", "--out"), show_default="as dvc.yaml",
        help="folder for model.pt"),
    metrics: Path = typer.Option(default_factory=from_dvc("train_gm", "--metrics"), show_default="as dvc.yaml",
        help="metrics JSON"),
    curves: Optional[Path] = typer.Option(None, help="loss curves JSON (a DVC plot)"),
) -> None:
    """Stage 1: pre-train Encoder^s and the Gaussian-mixture prior with L_GM (Eq. 9)."""
    _train("train_gm", params, data, out, metrics, None, curves)


@app.command("train-joint")
def train_joint(
    params: Path = PARAMS_OPT,
    data: Path = typer.Option(default_factory=from_dvc("train_joint", "--data"), show_default="as dvc.yaml",
        help="aligned labeled set"),
    init: Path = typer.Option(default_factory=from_dvc("train_joint", "--init"), show_default="as dvc.yaml",
        help="the train_gm checkpoint to start from"),
    out: Path = typer.Option(default_factory=from_dvc("train_joint", "--out"), show_default="as dvc.yaml",
        help="folder for model.pt"),
    metrics: Path = typer.Option(default_factory=from_dvc("train_joint", "--metrics"), show_default="as dvc.yaml",
        help="metrics JSON"),
    curves: Optional[Path] = typer.Option(None, help="loss curves JSON (a DVC plot)"),
) -> None:
    """Stage 2: Algorithm 1, n_gm GM steps then one joint step of every network, per iteration."""
    _train("train_joint", params, data, out, metrics, init, curves)


@app.command("finetune-semi")
def finetune_semi(
    params: Path = PARAMS_OPT,
    data: Path = typer.Option(default_factory=from_dvc("finetune_semi", "--data"), show_default="as dvc.yaml",
        help="aligned unlabeled set (unseen identities)"),
    labeled: Path = typer.Option(default_factory=from_dvc("finetune_semi", "--labeled"), show_default="as dvc.yaml",
        help="aligned labeled set"),
    init: Path = typer.Option(default_factory=from_dvc("finetune_semi", "--init"), show_default="as dvc.yaml",
        help="the train_joint checkpoint to start from"),
    out: Path = typer.Option(default_factory=from_dvc("finetune_semi", "--out"), show_default="as dvc.yaml",
        help="folder for model.pt"),
    metrics: Path = typer.Option(default_factory=from_dvc("finetune_semi", "--metrics"), show_default="as dvc.yaml",
        help="metrics JSON"),
    figures: Path = typer.Option(default_factory=from_dvc("finetune_semi", "--figures"), show_default="as dvc.yaml",
        help="folder for the swap figures"),
    curves: Optional[Path] = typer.Option(None, help="loss curves JSON (a DVC plot)"),
) -> None:
    """Stage 3: semi-supervised fine-tuning on unlabeled faces with the ambiguous Gaussian (Eq. 11)."""
    from pipeline import finetune_semi as stage
    from pipeline.training import TrainingError

    p = _load(params)
    for path, what in ((data / "faces.npy", "`dvc repro align`"), (labeled / "faces.npy", "`dvc repro align`"),
                       (init, "`dvc repro train_joint`")):
        if not path.exists():
            _fail(FileNotFoundError(f"{path} does not exist; run {what} first"))
    try:
        stage.run(p, params, data, labeled, init, out, metrics, figures, curves=curves)
    except TrainingError as e:
        _fail(e)


@app.command("train-evaluator")
def train_evaluator_cmd(
    params: Path = PARAMS_OPT,
    data: Path = typer.Option(default_factory=from_dvc("train_evaluator", "--data"), show_default="as dvc.yaml",
        help="aligned labeled set"),
    out: Path = typer.Option(default_factory=from_dvc("train_evaluator", "--out"), show_default="as dvc.yaml",
        help="folder for evaluator.pt"),
    metrics: Path = typer.Option(default_factory=from_dvc("train_evaluator", "--metrics"), show_default="as dvc.yaml",
        help="metrics JSON"),
) -> None:
    """Train the classifier behind the Inception Score and FCD on the real labeled training split."""
    from pipeline.evaluate import run_train_evaluator

    p = _load(params)
    if not (data / "faces.npy").exists():
        _fail(FileNotFoundError(f"{data}/faces.npy does not exist; run `dvc repro align` first"))
    run_train_evaluator(p, params, data, out, metrics)


@app.command()
def evaluate(
    params: Path = PARAMS_OPT,
    data: Path = typer.Option(default_factory=from_dvc("evaluate", "--data"), show_default="as dvc.yaml",
        help="aligned labeled set"),
    model: Path = typer.Option(default_factory=from_dvc("evaluate", "--model"), show_default="as dvc.yaml",
        help="the model to evaluate"),
    evaluator: Path = typer.Option(default_factory=from_dvc("evaluate", "--evaluator"), show_default="as dvc.yaml",
        help="the trained evaluator"),
    metrics: Path = typer.Option(default_factory=from_dvc("evaluate", "--metrics"), show_default="as dvc.yaml",
        help="metrics JSON"),
    figures: Path = typer.Option(default_factory=from_dvc("evaluate", "--figures"), show_default="as dvc.yaml",
        help="folder for the figures"),
    report: Path = typer.Option(default_factory=from_dvc("evaluate", "--report"), show_default="as dvc.yaml",
        help="the Markdown report"),
    joint_model: Optional[Path] = typer.Option(None, help="also score this model (train_joint, before fine-tuning)"),
    joint_metrics: Path = typer.Option(default_factory=from_dvc("evaluate", "--joint-metrics"), show_default="as dvc.yaml",
        help="its metrics JSON"),
) -> None:
    """Inception Score, intra-class diversity, FCD, probes, inpainting, disentanglement, and figures."""
    from pipeline.evaluate import run_evaluate

    p = _load(params)
    for path in (data / "faces.npy", model, evaluator) + ((joint_model,) if joint_model else ()):
        if not path.exists():
            _fail(FileNotFoundError(f"{path} does not exist; run the stage that writes it first (dvc repro)"))
    try:
        also = {"train_joint": (joint_model, joint_metrics)} if joint_model else None
        run_evaluate(p, params, data, model, evaluator, metrics, figures, report, also)
    except ValueError as e:
        _fail(e)




from pipeline import cli_tools  # noqa: E402,F401  (registers the baseline, comparison, toy and tool commands)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
