"""Every setting has one default. A params-schema field that is also a field of the library's typed
config it fills must carry the library's default; params.yaml (and each profile) names a setting only
where its value differs from the default it would get otherwise."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from lrlivae.baselines.steps import BaselineWeights
from lrlivae.evaluate.protocol import EvalProtocol
from lrlivae.nn.config import ModelConfig
from lrlivae.toy.train import ToyConfig
from lrlivae.train.loop import TrainSettings
from lrlivae.train.steps import LossWeights
from pipeline import params as P

REPO = Path(__file__).resolve().parents[1]


def _lib_defaults(cls) -> dict:
    if callable(cls) and not isinstance(cls, type):  # a factory of a config instance
        return dataclasses.asdict(cls())
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def _norm(v):
    if isinstance(v, tuple):
        return [_norm(x) for x in v]
    if isinstance(v, list):
        return [_norm(x) for x in v]
    return v


# schema class -> the library configs its fields fill (pipeline/training.py, toy.py, baselines.py)
PAIRS = [
    (P.ModelParams, [ModelConfig]),
    (P.TrainShared, [TrainSettings, LossWeights]),
    (P.TrainGMParams, [TrainSettings, LossWeights]),
    (P.TrainJointParams, [TrainSettings, LossWeights]),
    (P.FinetuneSemiParams, [TrainSettings, LossWeights]),
    (P.ToyParams, [ToyConfig]),
    (P.EvaluateParams, [EvalProtocol]),
    (P.CVAEParams, [BaselineWeights]),
    (P.CVAEGANParams, [lambda: BaselineWeights.for_kind("cvaegan")]),
]


@pytest.mark.parametrize("schema,libs", PAIRS, ids=[p[0].__name__ for p in PAIRS])
def test_schema_defaults_are_the_library_defaults(schema, libs):
    fields = {k: f.default for k, f in schema.model_fields.items()}
    bad = []
    for lib in libs:
        for name, default in _lib_defaults(lib).items():
            if name in fields and _norm(fields[name]) != _norm(default):
                lib_name = getattr(lib, "__name__", "library")
                bad.append(f"{schema.__name__}.{name} = {fields[name]!r} but {lib_name}.{name} = {default!r}")
    assert not bad, "settings with two defaults:\n" + "\n".join(bad)


def test_the_paper_symbols_have_one_default():
    top = {k: P.Params.model_fields[k].default for k in ("lambda_lkd", "lambda_kl", "lambda_rec", "n_gm")}
    for lib in (LossWeights, TrainSettings, ToyConfig):
        for k, v in _lib_defaults(lib).items():
            if k in top and k != "n_gm":  # the toy's n_gm is its own setting (toy.n_gm)
                assert v == top[k], f"{lib.__name__}.{k} = {v} but params' top-level {k} = {top[k]}"
    assert _lib_defaults(TrainSettings)["n_gm"] == top["n_gm"]


def _restated(raw: dict, defaults: dict, path: str = "") -> list[str]:
    out = []
    for k, v in raw.items():
        d = defaults.get(k, object())
        if isinstance(v, dict) and isinstance(d, dict):
            out += _restated(v, d, f"{path}{k}.")
        elif _norm(v) == _norm(d):
            out.append(f"{path}{k}")
    return out


def _default_dump() -> dict:
    """What each key would be without params.yaml: the schema defaults (required keys excluded)."""
    out = {}
    for name, f in P.Params.model_fields.items():
        d = f.default
        out[name] = d.model_dump(mode="json") if isinstance(d, BaseModel) else d
    return out


@pytest.mark.parametrize("path", ["params.yaml"])
def test_params_yaml_names_only_what_differs(path):
    raw = yaml.safe_load((REPO / path).read_text())
    raw.pop("base", None)
    defaults = _default_dump()
    # the stage sections of training inherit `train:`; a stage key equal to what `train:` gives is a restatement
    shared = raw.get("train", {})
    for stage in P.TRAIN_STAGES:
        defaults[stage] = {**defaults[stage], **shared}
    # top-level paper symbols and the seed stay in params.yaml so that `dvc exp run -S lambda_lkd=X` works
    top_level = {"seed", "lambda_lkd", "lambda_kl", "lambda_rec", "n_gm"}
    restated = [k for k in _restated(raw, defaults) if k not in top_level]
    assert not restated, f"{path} restates defaults (remove them; the default lives in the code): {restated}"


def test_profiles_are_overlays_of_params_yaml():
    base = P.load_params(REPO / "params.yaml").model_dump(mode="json")
    for prof in sorted((REPO / "profiles").glob("*.yaml")):
        raw = yaml.safe_load(prof.read_text())
        assert raw.pop("base", None) == "../params.yaml", f"{prof.name}: a profile is an overlay (base: ../params.yaml)"
        same = _restated(raw, base)
        assert not same, f"{prof.name} names keys whose value params.yaml already gives: {same}"
        assert P.load_params(prof).model_dump(mode="json") != base


def test_train_section_reaches_every_training_stage_unless_a_stage_overrides(tmp_path):
    (tmp_path / "p.yaml").write_text("train: {lr: 0.001, gm_shift: 3}\ntrain_joint: {lr: 0.002}\n")
    p = P.load_params(tmp_path / "p.yaml")
    assert (p.train_gm.lr, p.train_joint.lr, p.finetune_semi.lr) == (0.001, 0.002, 0.001)
    assert p.train_gm.gm_shift == p.train_joint.gm_shift == p.finetune_semi.gm_shift == 3
    (tmp_path / "bad.yaml").write_text("train: {lrr: 0.001}\n")
    with pytest.raises(P.ParamsError, match="train.lrr: unknown key"):
        P.load_params(tmp_path / "bad.yaml")


def test_the_toy_reads_the_paper_symbols_from_the_top_level(tmp_path):
    from pipeline.toy import toy_config

    (tmp_path / "p.yaml").write_text("lambda_lkd: 0.05\nlambda_kl: 2.0\nlambda_rec: 3.0\n")
    cfg = toy_config(P.load_params(tmp_path / "p.yaml"))
    assert (cfg.lambda_lkd, cfg.lambda_kl, cfg.lambda_rec) == (0.05, 2.0, 3.0)
    assert cfg.weights().lambda_lkd == 0.05


def test_show_params_prints_the_merged_profile():
    from typer.testing import CliRunner

    from pipeline.cli import app

    r = CliRunner().invoke(app, ["show-params", "--profile", str(REPO / "profiles/paper_semi.yaml"), "finetune_semi"])
    assert r.exit_code == 0, r.output
    shown = yaml.safe_load(r.output)["finetune_semi"]
    assert shown["mix_labeled"] == 0.0 and shown["gm_shift"] == 2  # the profile's value, and params.yaml's train:
    r = CliRunner().invoke(app, ["show-params", "--profile", "no_such_profile"])
    assert r.exit_code == 2 and "not found" in r.output
