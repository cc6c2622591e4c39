"""The `lrlivae` command: one sub-command per DVC stage (stage name with '-' for '_')."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from pipeline.params import Params, ParamsError, load_params

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Lr-LiVAE pipeline stages. Each command reads params.yaml (--params) and the paths it is given.",
)

PARAMS_OPT = typer.Option(Path("params.yaml"), "--params", help="parameters file (validated before any work)")


def _load(path: Path) -> Params:
    try:
        return load_params(path)
    except ParamsError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2)


def _fail(e: Exception) -> None:
    typer.echo(f"error: {e}", err=True)
    raise typer.Exit(1)


@app.command()
def synth(
    params: Path = PARAMS_OPT,
    out_labeled: Path = typer.Option(Path("data/raw/synthetic/labeled"), help="folder for the labeled set"),
    out_unlabeled: Path = typer.Option(Path("data/raw/synthetic/unlabeled"), help="folder for the unlabeled set"),
    metrics: Path = typer.Option(Path("reports/synth.json"), help="metrics JSON"),
) -> None:
    """Generate the built-in synthetic face sets (frames, landmarks and ground-truth factors)."""
    from pipeline import synth as stage

    p = _load(params)
    stage.run(p, params, out_labeled, out_unlabeled, metrics)


@app.command()
def align(
    params: Path = PARAMS_OPT,
    labeled_root: Path = typer.Option(Path("data/raw/synthetic/labeled"), help="source folder of the labeled set"),
    unlabeled_root: Optional[Path] = typer.Option(
        Path("data/raw/synthetic/unlabeled"), help="source folder of the unlabeled set ('' to skip the set)"
    ),
    labeled_list: List[Path] = typer.Option([], help="list files of the labeled source (FaceScrub); repeatable"),
    unlabeled_list: List[Path] = typer.Option([], help="list files of the unlabeled source; repeatable"),
    out_dir: Path = typer.Option(Path("data/aligned"), help="aligned sets are written to OUT_DIR/<set>"),
    metrics: Path = typer.Option(Path("reports/align.json"), help="metrics JSON"),
) -> None:
    """Detect, align and crop faces to SxS (default 64) for the labeled and unlabeled sets."""
    from pipeline import align as stage

    p = _load(params)
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
        stage.run(p, params, sets, out_dir, metrics)
    except stage.AlignStageError as e:
        _fail(e)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
