"""params.yaml validation: bad keys stop the command before any work, naming the key."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

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
