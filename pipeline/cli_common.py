"""What every `lrlivae` command shares: the Typer app, the --params option, loading params and failing
with a clear message."""
from __future__ import annotations

import functools
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


DVC_YAML = Path(__file__).resolve().parents[1] / "dvc.yaml"


@functools.lru_cache(maxsize=1)
def _dvc_doc() -> dict:
    import yaml

    return yaml.safe_load(DVC_YAML.read_text())


def dvc_path(stage: str, option: str, item: str | None = None) -> Path:
    """The value dvc.yaml's command for `stage` gives `option` (its ${vars} and a foreach ${item}
    substituted): paths have one home, dvc.yaml, and a command run by hand uses the same ones."""
    import shlex

    import yaml

    try:
        doc = _dvc_doc()
        st = doc["stages"][stage]
    except (OSError, KeyError, TypeError, yaml.YAMLError) as e:
        raise typer.BadParameter(f"no default for {option}: cannot read stage {stage!r} of {DVC_YAML} ({e}); "
                                 f"give {option} explicitly") from None
    cmd = st.get("do", st)["cmd"]
    words = shlex.split(" ".join(cmd) if isinstance(cmd, list) else cmd)
    if option not in words:
        raise typer.BadParameter(f"dvc.yaml's {stage} command has no {option}; give {option} explicitly")
    value = words[words.index(option) + 1]
    subst = {k: str(v) for block in doc.get("vars", []) if isinstance(block, dict) for k, v in block.items()}
    if item is not None:
        subst["item"] = item
    for k, v in subst.items():
        value = value.replace("${" + k + "}", v)
    return Path(value)


def from_dvc(stage: str, option: str):
    """A Typer default_factory: the path dvc.yaml's `stage` command passes as `option`."""
    return lambda: dvc_path(stage, option)
