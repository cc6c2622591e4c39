"""What every `lrlivae` command shares: the Typer app, the --params option, loading params and failing
with a clear message."""
from __future__ import annotations

import functools
import os
import re
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


def find_dvc_yaml(cwd: Path | None = None) -> Path:
    """The dvc.yaml of the repository the command runs in: $DVC_ROOT/dvc.yaml when DVC_ROOT is set (DVC
    sets it for the stages it runs), else the first dvc.yaml in the working directory or a folder above it.
    Raises FileNotFoundError naming where it looked."""
    root = os.environ.get("DVC_ROOT")
    if root:
        path = Path(root) / "dvc.yaml"
        if path.is_file():
            return path
        raise FileNotFoundError(f"no dvc.yaml in DVC_ROOT (looked for {path})")
    start = (cwd or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / "dvc.yaml").is_file():
            return folder / "dvc.yaml"
    raise FileNotFoundError(f"no dvc.yaml in {start} or any folder above it (DVC_ROOT is not set)")


@functools.lru_cache(maxsize=8)
def _read_yaml(path: str, mtime_ns: int) -> object:
    import yaml

    return yaml.safe_load(Path(path).read_text())


def _load_yaml(path: Path) -> object:
    """A YAML file's content, read again only when the file changed."""
    return _read_yaml(str(path.resolve()), path.stat().st_mtime_ns)


def _flatten(node: object, prefix: str = "") -> dict[str, str]:
    """Scalars of nested mappings under their dotted keys: {"align": {"root": "x"}} -> {"align.root": "x"}."""
    if not isinstance(node, dict):
        return {prefix: str(node)} if prefix else {}
    out: dict[str, str] = {}
    for k, v in node.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _vars_block(block: object, base: Path) -> dict[str, str]:
    """One entry of a `vars:` list: a mapping, or a file ("file.yaml" or "file.yaml:key1,key2")."""
    if isinstance(block, dict):
        return _flatten(block)
    name, _, keys = str(block).partition(":")
    data = _load_yaml(base / name) or {}
    if keys:
        data = {k: data[k] for k in keys.split(",")}
    return _flatten(data)


def interpolation_values(dvc_yaml: Path, stage: dict | None = None) -> dict[str, str]:
    """What dvc.yaml's ${...} can name, as DVC resolves it: params.yaml beside dvc.yaml (DVC reads it by
    default), then the file's `vars`, then the stage's own `vars`; nested keys joined with dots
    (${align.labeled.root})."""
    base = dvc_yaml.parent
    values = _flatten(_load_yaml(base / "params.yaml") or {}) if (base / "params.yaml").is_file() else {}
    doc = _load_yaml(dvc_yaml) or {}
    for block in [*(doc.get("vars") or []), *((stage or {}).get("vars") or [])]:
        values.update(_vars_block(block, base))
    return values


def dvc_path(stage: str, option: str, item: str | None = None) -> Path:
    """The value dvc.yaml's command for `stage` gives `option` (its ${...} substituted from params.yaml and
    `vars`, a foreach ${item} from `item`): paths have one home, dvc.yaml, and a command run by hand uses
    the same ones. dvc.yaml is the working repository's (`find_dvc_yaml`), not the installed code's."""
    import shlex

    import yaml

    try:
        dvc_yaml = find_dvc_yaml()
    except FileNotFoundError as e:
        raise typer.BadParameter(f"no default for {option}: {e}; run the command in the repository or give "
                                 f"{option} explicitly") from None
    try:
        st = _load_yaml(dvc_yaml)["stages"][stage]
        values = interpolation_values(dvc_yaml, st)
    except (OSError, KeyError, TypeError, yaml.YAMLError) as e:
        raise typer.BadParameter(f"no default for {option}: cannot read stage {stage!r} of {dvc_yaml} ({e}); "
                                 f"give {option} explicitly") from None
    cmd = st.get("do", st)["cmd"]
    words = shlex.split(" ".join(cmd) if isinstance(cmd, list) else cmd)
    if option not in words:
        raise typer.BadParameter(f"dvc.yaml's {stage} command has no {option}; give {option} explicitly")
    value = words[words.index(option) + 1]
    if item is not None:
        values["item"] = item

    def substitute(m: re.Match) -> str:
        if m.group(1) not in values:
            raise typer.BadParameter(f"no default for {option}: dvc.yaml's {stage} command passes {value}, and "
                                     f"{m.group(1)} is in neither {dvc_yaml.parent / 'params.yaml'} nor the "
                                     f"vars of {dvc_yaml}; give {option} explicitly")
        return values[m.group(1)]

    return Path(re.sub(r"\$\{([^}]+)\}", substitute, value))


def from_dvc(stage: str, option: str):
    """A Typer default_factory: the path dvc.yaml's `stage` command passes as `option`."""
    return lambda: dvc_path(stage, option)
