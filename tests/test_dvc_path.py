"""The commands' path defaults come from the dvc.yaml of the repository they run in ($DVC_ROOT, else the
first dvc.yaml at or above the working directory), never from where the code is installed; its ${...}
resolve from dvc.yaml's vars and from params.yaml's nested keys."""
from __future__ import annotations

from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.cli_common import dvc_path, find_dvc_yaml


def _repo(root: Path, stages: dict, vars_: list | None = None, params: dict | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    doc = {"vars": vars_, "stages": stages} if vars_ else {"stages": stages}
    (root / "dvc.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    if params is not None:
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def _synth(out: str) -> dict:
    return {"synth": {"cmd": f"lrlivae synth --out-labeled {out} --out-unlabeled u --metrics m.json"}}


@pytest.fixture
def no_dvc_root(monkeypatch):
    monkeypatch.delenv("DVC_ROOT", raising=False)


def test_dvc_root_is_used_whatever_the_working_directory(tmp_path, monkeypatch):
    _repo(tmp_path / "run_by_dvc", _synth("from/dvc_root"))
    monkeypatch.chdir(_repo(tmp_path / "elsewhere", _synth("from/cwd")))
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "run_by_dvc"))
    assert find_dvc_yaml() == tmp_path / "run_by_dvc" / "dvc.yaml"
    assert dvc_path("synth", "--out-labeled") == Path("from/dvc_root")


def test_without_dvc_root_the_nearest_dvc_yaml_above_the_working_directory(tmp_path, monkeypatch, no_dvc_root):
    repo = _repo(tmp_path / "repo", _synth("from/repo"))
    deep = repo / "docs" / "notes"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert find_dvc_yaml() == (repo / "dvc.yaml").resolve()
    assert dvc_path("synth", "--out-labeled") == Path("from/repo")
    _repo(repo / "docs", _synth("from/docs"))  # a nearer one wins
    assert dvc_path("synth", "--out-labeled") == Path("from/docs")


def test_no_dvc_yaml_is_an_error_that_names_where_it_looked(tmp_path, monkeypatch, no_dvc_root):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("DVC_ROOT", str(empty))
    with pytest.raises(FileNotFoundError, match="DVC_ROOT") as e:
        find_dvc_yaml()
    assert str(empty / "dvc.yaml") in str(e.value)

    monkeypatch.delenv("DVC_ROOT")
    if any((p / "dvc.yaml").is_file() for p in (empty, *empty.parents)):
        pytest.skip("a folder above the test's temporary folder holds a dvc.yaml")
    monkeypatch.chdir(empty)
    with pytest.raises(FileNotFoundError) as e:
        find_dvc_yaml()
    assert str(empty.resolve()) in str(e.value) and "any folder above it" in str(e.value)
    r = CliRunner().invoke(app, ["train-gm"])
    assert r.exit_code == 2
    assert "no default for --data" in r.output and "dvc.yaml" in r.output


def test_substitutes_vars_params_yaml_keys_and_the_foreach_item(tmp_path, monkeypatch, no_dvc_root):
    stages = {
        "align": {"cmd": "lrlivae align --labeled-root ${align.labeled.root} --unlabeled-root ${unlabeled_root} "
                         "--out-dir ${paths.aligned}/sets --metrics ${reports}/align.json"},
        "train_baseline": {"foreach": ["cvae", "cgan"],
                           "do": {"cmd": "lrlivae train-baseline --kind ${item} --out models/baselines/${item}"}},
    }
    (tmp_path / "more_vars.yaml").write_text(yaml.safe_dump({"reports": "out/reports", "unused": "x"}))
    vars_ = [{"unlabeled_root": "data/raw/others"}, {"paths": {"aligned": "data/aligned"}}, "more_vars.yaml:reports"]
    params = {"seed": 0, "align": {"labeled": {"root": "data/raw/faces", "source": "imagefolder"}}}
    monkeypatch.chdir(_repo(tmp_path, stages, vars_, params))
    assert dvc_path("align", "--labeled-root") == Path("data/raw/faces")  # params.yaml, nested key
    assert dvc_path("align", "--unlabeled-root") == Path("data/raw/others")  # dvc.yaml vars
    assert dvc_path("align", "--out-dir") == Path("data/aligned/sets")  # a nested vars key
    assert dvc_path("align", "--metrics") == Path("out/reports/align.json")  # vars from a file
    assert dvc_path("train_baseline", "--out", item="cgan") == Path("models/baselines/cgan")


def test_an_unknown_key_is_an_error_that_names_it(tmp_path, monkeypatch, no_dvc_root):
    stages = {"align": {"cmd": "lrlivae align --labeled-root ${align.labeled.root} --out-dir data/aligned"}}
    monkeypatch.chdir(_repo(tmp_path, stages, params={"align": {}}))
    assert dvc_path("align", "--out-dir") == Path("data/aligned")
    with pytest.raises(typer.BadParameter, match=r"align\.labeled\.root is in neither .*params\.yaml"):
        dvc_path("align", "--labeled-root")
