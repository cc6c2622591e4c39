"""params.yaml: loading, overlays, the shared `train:` section, and the schema's root.

Paper symbols are top-level keys (so `dvc exp run -S lambda_lkd=0.1` works as written); stage settings
are grouped under the stage's name (the schema of each: pipeline/schema.py, pipeline/schema_eval.py).
params.yaml holds only what differs from the defaults, and a profile (profiles/*.yaml) only what differs
from params.yaml. An unknown key, a wrong type or an out-of-range value stops the command before any
work, with a message naming the key.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import yaml
from pydantic import ValidationError

from lrlivae.train.settings import TrainSettings
from lrlivae.train.steps import LossWeights
from pipeline.schema import (PAPER_SYMBOLS, TRAIN_STAGES, AlignParams, AlignSource, FetchFaceScrubParams,  # noqa: F401
                             FinetuneSemiParams, DlibOptions, ModelParams, OpenCVDetector, SourceKind, Split, Strict,
                             SynthParams, SynthSet, TrainGMParams, TrainJointParams, TrainShared, UnlabeledSource,
                             library_fields, section)
from pipeline.schema_eval import (BaselineCommon, BaselineKind, BaselinesParams, CGANParams, CVAEGANParams,  # noqa: F401
                                  CVAEParams, EvaluateParams, ToyParams, TrainEvaluatorParams)


# ---------------------------------------------------------------------------------------------- root
TopLevel = section("TopLevel", "The seed and the paper symbols (Algorithm 1, Eq. 9), read by every stage.",
                   library_fields(TrainSettings, only=("seed",)), library_fields(LossWeights, only=PAPER_SYMBOLS),
                   library_fields(TrainSettings, only=("n_gm",)))


class Params(TopLevel):
    synth: SynthParams = SynthParams()
    align: AlignParams = AlignParams()
    model: ModelParams = ModelParams()
    train: TrainShared = TrainShared()
    train_gm: TrainGMParams = TrainGMParams()
    train_joint: TrainJointParams = TrainJointParams()
    finetune_semi: FinetuneSemiParams = FinetuneSemiParams()
    train_evaluator: TrainEvaluatorParams = TrainEvaluatorParams()
    evaluate: EvaluateParams = EvaluateParams()
    fetch_facescrub: FetchFaceScrubParams = FetchFaceScrubParams()
    toy: ToyParams = ToyParams()
    baselines: BaselinesParams = BaselinesParams()


class ParamsError(ValueError):
    """params.yaml is missing, unreadable or invalid; the message names the key."""


def _format_errors(path: Path, err: ValidationError) -> str:
    lines = [f"{path}: invalid parameters:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling and where it is nested)"
        elif "input" in e and e["type"] != "missing" and not isinstance(e["input"], dict):
            msg = f"{msg} (got {e['input']!r})"
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def merge_overlay(base: dict, overlay: dict) -> dict:
    """`overlay` deep-merged over `base` (mappings merge key by key; any other value replaces)."""
    out = dict(base)
    for k, v in overlay.items():
        out[k] = merge_overlay(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """A params mapping from a file; a top-level `base: <file>` (relative to this file) makes the file an
    overlay: only the keys it names change, merged over the base file's values (profiles/ use this)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ParamsError(f"{path}: parameters file not found") from None
    except OSError as e:
        raise ParamsError(f"{path}: cannot read parameters file: {e}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: the top level must be a mapping of keys, got {type(raw).__name__}")
    if "base" in raw:
        base_path = (path.parent / str(raw.pop("base"))).resolve()
        if base_path in seen or base_path == path.resolve():
            raise ParamsError(f"{path}: `base` refers back to {base_path} (a loop of overlays)")
        raw = merge_overlay(_read_yaml(base_path, seen + (path.resolve(),)), raw)
    return raw


def inherit_train(raw: dict) -> dict:
    """Each training stage's section gets the `train:` keys it does not set itself."""
    shared = raw.get("train")
    if not shared:
        return raw
    if not isinstance(shared, dict):
        return raw  # validation names the bad `train` value
    out = dict(raw)
    for stage in TRAIN_STAGES:
        own = out.get(stage) or {}
        if isinstance(own, dict):
            out[stage] = {**shared, **own}
    return out


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml (or an overlay of it, see `_read_yaml`); raise ParamsError with a
    message naming each bad key."""
    path = Path(path)
    raw = inherit_train(_read_yaml(path))
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        raise ParamsError(_format_errors(path, e)) from None


def params_hash(path: str | Path) -> str:
    """sha256 of the params file's bytes (first 12 hex digits), used to tag runs."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def flatten(d: dict, prefix: str = "") -> dict[str, object]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists and tuples become their string form."""
    out: dict[str, object] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def profile_path(profile: str, root: str | Path = ".") -> Path:
    """A profile by name (profiles/<name>.yaml under `root`) or by path."""
    cand = Path(profile)
    if cand.suffix in (".yaml", ".yml") and cand.exists():
        return cand
    path = Path(root) / "profiles" / f"{profile}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in (Path(root) / "profiles").glob("*.yaml"))
        raise ParamsError(f"profile {profile!r} not found: no {path} (profiles: {', '.join(known) or 'none'})")
    return path


def show_params(path: str | Path = "params.yaml", section: str | None = None) -> str:
    """Every setting as the stages see it (defaults, params.yaml, overlays merged), as YAML."""
    d = load_params(path).model_dump(mode="json")
    if section is not None:
        if section not in d:
            raise ParamsError(f"no section {section!r} (sections: {', '.join(d)})")
        d = {section: d[section]}
    return yaml.safe_dump(d, sort_keys=False)
