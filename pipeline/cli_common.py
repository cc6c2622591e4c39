"""What every `lrlivae` command shares: the Typer app, the --params option, loading params and failing
with a clear message."""
from __future__ import annotations

from pathlib import Path
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
