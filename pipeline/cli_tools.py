"""`lrlivae` commands beyond the method's stages: the baselines, the comparison, the toy, FaceScrub
download, show-params and mlflow-sync (registered on the app of pipeline.cli_common)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from pipeline.cli_common import PARAMS_OPT, _fail, _load, app, from_dvc
from pipeline.params import ParamsError

KIND_OPT = typer.Option(..., "--kind", help="baseline: cvae | cgan | cvaegan")


def _check_kind(kind: str) -> None:
    from lrlivae.baselines import KINDS

    if kind not in KINDS:
        typer.echo(f"error: --kind must be one of {', '.join(KINDS)}, got {kind!r}", err=True)
        raise typer.Exit(2)


@app.command("train-baseline")
def train_baseline(
    kind: str = KIND_OPT,
    params: Path = PARAMS_OPT,
    data: Path = typer.Option(default_factory=from_dvc("train_baseline", "--data"), show_default="as dvc.yaml",
        help="aligned labeled set"),
    out: Optional[Path] = typer.Option(None, help="folder for model.pt (default models/baselines/KIND)"),
    metrics: Optional[Path] = typer.Option(None, help="metrics JSON (default reports/baselines/train_KIND.json)"),
    curves: Optional[Path] = typer.Option(None, help="loss curves JSON (a DVC plot)"),
) -> None:
    """Train a label-conditioned baseline (cVAE, cGAN with a projection discriminator, or cVAE-GAN)."""
    from pipeline.baselines import run_train_baseline
    from pipeline.training import TrainingError

    _check_kind(kind)
    p = _load(params)
    if not (data / "faces.npy").exists():
        _fail(FileNotFoundError(f"{data}/faces.npy does not exist; run `dvc repro align` first"))
    try:
        run_train_baseline(kind, p, params, data, out or Path(f"models/baselines/{kind}"),
                           metrics or Path(f"reports/baselines/train_{kind}.json"), curves_path=curves)
    except TrainingError as e:
        _fail(e)


@app.command("evaluate-baseline")
def evaluate_baseline(
    kind: str = KIND_OPT,
    params: Path = PARAMS_OPT,
    data: Path = typer.Option(default_factory=from_dvc("evaluate_baseline", "--data"), show_default="as dvc.yaml",
        help="aligned labeled set"),
    model: Optional[Path] = typer.Option(None, help="the baseline (default models/baselines/KIND/model.pt)"),
    evaluator: Path = typer.Option(default_factory=from_dvc("evaluate_baseline", "--evaluator"), show_default="as dvc.yaml",
        help="the trained evaluator"),
    metrics: Optional[Path] = typer.Option(None, help="metrics JSON (default reports/baselines/KIND.json)"),
    out: Optional[Path] = typer.Option(None, help="folder for figures/ and disentanglement.csv (default reports/baselines/KIND)"),
) -> None:
    """Score a baseline with the `evaluate` protocol and evaluator (IS, diversity, FCD, inpainting, probes)."""
    from pipeline.baselines import run_evaluate_baseline

    _check_kind(kind)
    p = _load(params)
    model = model or Path(f"models/baselines/{kind}/model.pt")
    for path in (data / "faces.npy", model, evaluator):
        if not path.exists():
            _fail(FileNotFoundError(f"{path} does not exist; run the stage that writes it first (dvc repro)"))
    try:
        run_evaluate_baseline(kind, p, params, data, model, evaluator,
                              metrics or Path(f"reports/baselines/{kind}.json"), out or Path(f"reports/baselines/{kind}"))
    except ValueError as e:
        _fail(e)


@app.command()
def compare(
    params: Path = PARAMS_OPT,
    ours: Path = typer.Option(default_factory=from_dvc("compare", "--ours"), show_default="as dvc.yaml",
        help="the `evaluate` report of Lr-LiVAE"),
    ours_table: Path = typer.Option(default_factory=from_dvc("compare", "--ours-table"), show_default="as dvc.yaml",
        help="its disentanglement table"),
    ours_figures: Path = typer.Option(default_factory=from_dvc("compare", "--ours-figures"), show_default="as dvc.yaml",
        help="its figures"),
    ours_joint: Optional[Path] = typer.Option(None, help="the `evaluate` report of the train_joint model"),
    baselines: Path = typer.Option(default_factory=from_dvc("compare", "--baselines"), show_default="as dvc.yaml",
        help="folder of the baseline reports (KIND.json)"),
    out_json: Path = typer.Option(default_factory=from_dvc("compare", "--out-json"), show_default="as dvc.yaml",
        help="flat comparison metrics"),
    out_md: Path = typer.Option(default_factory=from_dvc("compare", "--out-md"), show_default="as dvc.yaml",
        help="the comparison tables"),
    out_plot: Optional[Path] = typer.Option(None, help="bar-plot rows, one per model (a DVC plot)"),
) -> None:
    """The paper's comparison tables (Tables 1, 2; FCD, inpainting, disentanglement) from the reports."""
    from pipeline.compare import run_compare

    p = _load(params)
    if not ours.exists():
        _fail(FileNotFoundError(f"{ours} does not exist; run `dvc repro evaluate` first"))
    run_compare(p, params, ours, baselines, ours_table, out_json, out_md, ours_figures, ours_joint, out_plot)


@app.command()
def toy(
    params: Path = PARAMS_OPT,
    metrics: Path = typer.Option(default_factory=from_dvc("toy", "--metrics"), show_default="as dvc.yaml",
        help="metrics JSON"),
    figures: Path = typer.Option(default_factory=from_dvc("toy", "--figures"), show_default="as dvc.yaml",
        help="folder for fig2.png"),
    report: Path = typer.Option(default_factory=from_dvc("toy", "--report"), show_default="as dvc.yaml",
        help="the Markdown report"),
    curves: Optional[Path] = typer.Option(None, help="y-spread per figure epoch, JSON (a DVC plot)"),
) -> None:
    """Toy example (Sec. 4.1, Fig. 2): Lr-LiVAE against cVAE-GAN on three noisy half circles."""
    from pipeline import toy as stage

    p = _load(params)
    stage.run(p, params, metrics, figures, report, curves=curves)


@app.command("fetch-facescrub")
def fetch_facescrub(
    params: Path = PARAMS_OPT,
    out: Path = typer.Option(Path("data/raw/facescrub"), help="folder for the images and manifest.csv"),
    metrics: Path = typer.Option(Path("reports/fetch_facescrub.json"), help="metrics JSON"),
    list_file: List[Path] = typer.Option(
        [], "--list", help="a FaceScrub list file (repeatable); overrides fetch_facescrub.lists"
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="parse the lists, report identities, images and hosts; "
                                                         "fetch and write nothing"),
    no_env_proxy: bool = typer.Option(False, "--no-env-proxy", help="ignore HTTP_PROXY / HTTPS_PROXY (connect directly)"),
) -> None:
    """Download the FaceScrub images named by the official list files (resumable; writes manifest.csv)."""
    from pipeline import fetch_facescrub as stage

    p = _load(params)
    lists = list(list_file) or [Path(x) for x in p.fetch_facescrub.lists]
    for lf in lists:
        if not lf.is_file():
            _fail(FileNotFoundError(f"FaceScrub list file {lf} does not exist"))
    if no_env_proxy:
        p.fetch_facescrub.env_proxy = False
    try:
        stage.run(p, params, lists, out, metrics, dry_run=dry_run)
    except (OSError, ValueError) as e:
        _fail(e)


@app.command("show-params")
def show_params_cmd(
    params: Path = PARAMS_OPT,
    profile: Optional[str] = typer.Option(None, help="a profile: profiles/<name>.yaml or a path (an overlay of params.yaml)"),
    section: Optional[str] = typer.Argument(None, help="print only this section (e.g. train_joint)"),
) -> None:
    """Print every setting as the stages see it: the code's defaults, params.yaml and a profile merged."""
    from pipeline.params import profile_path, show_params

    try:
        typer.echo(show_params(profile_path(profile) if profile else params, section), nl=False)
    except ParamsError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2)


@app.command("mlflow-sync")
def mlflow_sync(
    tracking_uri: Optional[str] = typer.Option(None, help="the store to log to (default: MLFLOW_TRACKING_URI, "
                                                          "else the repo's mlflow.db)"),
) -> None:
    """Log what stages could not log to MLflow (mlflow-pending/): into the same runs when the store has them."""
    from pipeline.tracking_store import pending_records, quiet_mlflow, repo_root, sync_pending
    from pipeline.tracking_store import tracking_uri as default_tracking_uri

    quiet_mlflow()
    root = repo_root()
    uri = tracking_uri or default_tracking_uri(root)
    if not pending_records(root):
        typer.echo(f"nothing pending in {root / 'mlflow-pending'}")
        return
    results = sync_pending(root, uri)
    for record, _, run_id, message in results:
        typer.echo(f"{record.name}: {message}" + (f" (run {run_id})" if run_id else ""))
    failed = [r for r in results if not r[1]]
    typer.echo(f"{len(results) - len(failed)} of {len(results)} record(s) logged to {uri}")
    if failed:
        raise typer.Exit(1)
