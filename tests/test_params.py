"""params.yaml validation: bad keys stop the command before any work, naming the key."""
from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from lrlivae.nn.config import ModelConfig
from lrlivae.train.settings import TrainSettings
from lrlivae.train.steps import LossWeights
from pipeline import params as P
from pipeline.cli import app
from pipeline.params import ParamsError, load_params
from tests.conftest import REPO, copy_dvc_yaml, set_param, tiny_params, write_params


def test_repository_params_load():
    p = load_params(REPO / "params.yaml")
    assert p.align.size == 64 and p.synth.labeled.n_identities == 40
    assert p.align.split.train + p.align.split.val + p.align.split.test == pytest.approx(1.0)


@pytest.mark.parametrize(
    "key, value, expect",
    [
        ("align.detektor", "opencv", "align.detektor: unknown key"),
        ("synth.workers", "two", "synth.workers"),
        ("align.split.train", 1.5, "align.split.train"),
        ("lambda_lkd", -1.0, "lambda_lkd"),
        ("align.detector", "dlib", "align.detector"),
        ("align.labeled.source", "lfw", "align.labeled.source"),
        ("synth.frame_size", [200, 100], "synth.frame_size"),
        ("model.zu_dim", 0, "model.zu_dim"),
        ("model.n_classes", 10, "model.n_classes: unknown key"),
        ("train_joint.rec_dec", 0.0, "train_joint.rec_dec"),
        ("train_gm.rec_dec", 1.0, "train_gm.rec_dec: unknown key"),
        ("baselines.cvaegan.gd", -1, "baselines.cvaegan.gd"),
        ("toy.hidden", [], "toy.hidden"),
    ],
)
def test_bad_value_names_the_key(tmp_path, key, value, expect):
    p = set_param(tiny_params(), key, value)
    path = write_params(tmp_path / "params.yaml", p)
    with pytest.raises(ParamsError) as e:
        load_params(path)
    assert expect in str(e.value)


def test_split_must_sum_to_one(tmp_path):
    p = tiny_params(**{"align.split": {"train": 0.5, "val": 0.1, "test": 0.1}})
    with pytest.raises(ParamsError, match="train \\+ val \\+ test must be 1"):
        load_params(write_params(tmp_path / "params.yaml", p))


def test_missing_and_garbled_files(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("seed: [1, 2\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ParamsError, match="mapping"):
        load_params(tmp_path / "list.yaml")


def test_cli_stops_before_any_work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    copy_dvc_yaml(tmp_path)
    p = tiny_params(**{"align.workerz": 2})
    write_params(tmp_path / "params.yaml", p)
    result = CliRunner().invoke(app, ["synth", "--params", "params.yaml"])
    assert result.exit_code == 2
    assert "align.workerz: unknown key" in result.output
    assert not (tmp_path / "data").exists() and not (tmp_path / "mlflow.db").exists()


def test_help_lists_stage_commands():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for cmd in ("synth", "align"):
        assert cmd in result.output


def test_paper_profile_is_valid_and_holds_the_authors_weights():
    p = load_params(REPO / "profiles/paper_faces.yaml")
    assert (p.lambda_lkd, p.lambda_kl, p.lambda_rec, p.n_gm) == (0.1, 1.0, 10.0, 3)
    assert p.model.arch == "paper_faces" and p.model.zs_dim == p.model.zu_dim == 512
    assert p.train_joint.batch_size == 96 and p.train_joint.rec_dec == 10.0 and p.train_joint.adv_e == 1.0
    assert p.train_joint.kl_reduction == "mean" and p.train_joint.lkd_reduction == "sum"


def test_an_overlay_changes_only_its_keys_and_is_validated(tmp_path):
    base = tiny_params()
    write_params(tmp_path / "params.yaml", base)
    (tmp_path / "prof").mkdir()
    (tmp_path / "prof/over.yaml").write_text("base: ../params.yaml\nlambda_kl: 0.7\nfinetune_semi:\n  lr: 0.0002\n")
    p = load_params(tmp_path / "prof/over.yaml")
    full = load_params(tmp_path / "params.yaml")
    assert p.lambda_kl == 0.7 and p.finetune_semi.lr == 0.0002
    assert p.finetune_semi.steps == full.finetune_semi.steps and p.train_joint == full.train_joint
    (tmp_path / "prof/bad.yaml").write_text("base: ../params.yaml\nfinetune_semi:\n  lr: -1\n")
    with pytest.raises(ParamsError, match="finetune_semi.lr"):
        load_params(tmp_path / "prof/bad.yaml")
    (tmp_path / "prof/loop.yaml").write_text("base: loop.yaml\nseed: 1\n")
    with pytest.raises(ParamsError, match="loop"):
        load_params(tmp_path / "prof/loop.yaml")


def test_paper_semi_profile_is_the_papers_recipe_over_params_yaml():
    p = load_params(REPO / "profiles/paper_semi.yaml")
    full = load_params(REPO / "params.yaml")
    f = p.finetune_semi
    assert (f.mix_labeled, f.semi_n_gm, f.pseudo_label_threshold, f.gm_refit) == (0.0, 0, 0.0, "none")
    assert p.train_joint == full.train_joint and p.lambda_kl == full.lambda_kl


def test_a_section_takes_its_defaults_from_the_library_config(tmp_path):
    (tmp_path / "p.yaml").write_text("{}\n")
    p = load_params(tmp_path / "p.yaml")
    assert p.model.zu_dim == ModelConfig().zu_dim and p.model.dec_up == ModelConfig().dec_up
    assert p.lambda_lkd == LossWeights().lambda_lkd and p.n_gm == TrainSettings("gm", 1).n_gm
    assert p.train_joint.rec_dec == LossWeights().rec_dec and p.train.lr == TrainSettings("gm", 1).lr


def _norm(v):
    return [_norm(x) for x in v] if isinstance(v, (list, tuple)) else v


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
    """What each key would be without params.yaml: the defaults (the library's, and the stages' own)."""
    return P.Params().model_dump(mode="json")


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
