"""The DVC pipeline in a scratch repository: repro runs, a second repro does nothing, and changing
`align` params reruns `align` only."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, closed_port, tiny_params, write_params

COPY = ["dvc.yaml", "src", "pipeline", ".gitignore"]
STAGES = ("synth", "align", "train_gm", "train_joint", "finetune_semi", "train_evaluator", "evaluate")


def _sh(args, cwd, env):
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"{args} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout + out.stderr


@pytest.fixture
def scratch_repo(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    for name in COPY:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(src, tmp_path / name)
    write_params(tmp_path / "params.yaml", tiny_params())
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{closed_port()}"
    env.pop("DVC_ROOT", None)
    for args in (
        ["git", "init", "-q"],
        ["git", "config", "user.email", "t@localhost"],
        ["git", "config", "user.name", "t"],
        [sys.executable, "-m", "dvc", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "init"],
    ):
        _sh(args, tmp_path, env)
    return tmp_path, env


def test_repro_is_incremental(scratch_repo):
    root, env = scratch_repo
    dvc = [sys.executable, "-m", "dvc"]
    first = _sh(dvc + ["repro", "align"], root, env)
    assert "Running stage 'synth'" in first and "Running stage 'align'" in first
    assert (root / "data/aligned/labeled/faces.npy").exists()
    assert list((root / "mlflow-pending").iterdir())  # the server is down: each stage's result waits for it
    second = _sh(dvc + ["repro", "align"], root, env)
    assert "Running stage" not in second
    p = yaml.safe_load((root / "params.yaml").read_text())
    p["align"]["margin"] = 0.25
    write_params(root / "params.yaml", p)
    third = _sh(dvc + ["repro", "align"], root, env)
    assert "Running stage 'align'" in third and "Running stage 'synth'" not in third
    metrics = _sh(dvc + ["metrics", "show"], root, env)
    assert "labeled_accepted" in metrics


def test_exp_run_with_lambda_lkd_reruns_exactly_the_stages_that_use_it(scratch_repo):
    from tests.test_training_stages import train_params

    root, env = scratch_repo
    write_params(root / "params.yaml", train_params())
    dvc = [sys.executable, "-m", "dvc"]
    _sh(dvc + ["repro"], root, env)
    _sh(["git", "add", "-A"], root, env)
    _sh(["git", "commit", "-qm", "pipeline run"], root, env)
    out = _sh(dvc + ["exp", "run", "-S", "lambda_lkd=0.2"], root, env)
    ran = {s for s in STAGES if f"Running stage '{s}'" in out}
    assert ran == {"train_gm", "train_joint", "finetune_semi", "evaluate"}, out
    assert "Running stage 'toy'" in out  # the toy reads the top-level paper symbols too
    out = _sh(dvc + ["exp", "run", "-S", "++train_joint.rec_dec=5.0"], root, env)
    ran = {s for s in STAGES if f"Running stage '{s}'" in out}
    assert ran == {"train_joint", "finetune_semi", "evaluate"}, out
    _check_experiments_in_mlflow(root, env)


def _check_experiments_in_mlflow(root, env):
    """After `dvc repro` and two `dvc exp run` against a server that is down, `lrlivae mlflow-sync` into a
    local store: three parent runs, each with its stage runs nested, its headline metrics and its registered
    models; a version generates faces; the declared plots render."""
    import json

    import mlflow
    import pandas as pd

    assert not (root / "mlflow.db").exists()
    synced = _sh(["lrlivae", "mlflow-sync", "--tracking-uri", f"sqlite:///{root / 'mlflow.db'}"], root, env)
    done, _, total = re.search(r"(\d+) of (\d+) record\(s\) logged", synced).group(1, 0, 2)
    assert done == total and int(total) > 2 * len(STAGES), synced
    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    exp_id = client.get_experiment_by_name("lrlivae").experiment_id
    parents = client.search_runs([exp_id], "tags.run_type = 'pipeline'")
    assert len(parents) == 3
    by_exp = {p.data.tags["dvc_exp_name"]: p for p in parents}
    repro = by_exp.pop("")
    assert len(by_exp) == 2
    assert {p.data.params["lambda_lkd"] for p in by_exp.values()} == {"0.2"} != {repro.data.params["lambda_lkd"]}
    assert ["train_joint.rec_dec=5.0" in p.data.tags["params_changed"] for p in by_exp.values()].count(True) == 1
    versions = {v.run_id: v for v in client.search_model_versions("name = 'lrlivae-finetune_semi'")}
    assert len(versions) == 3
    for parent in [repro, *by_exp.values()]:
        kids = client.search_runs([exp_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
        stages = {k.data.tags["stage"]: k for k in kids}
        assert {"train_joint", "finetune_semi", "evaluate"} <= set(stages)
        for k in ("inception_score", "fcd", "generated_class_accuracy", "zs_accuracy", "verification_auc"):
            assert k in parent.data.metrics, (parent.info.run_name, k)
        semi = stages["finetune_semi"]
        assert semi.info.run_id in versions  # its registered version points at its run
        assert stages["evaluate"].data.tags["scored_model_version"] == str(versions[semi.info.run_id].version)
    assert set(STAGES) <= {k.data.tags["stage"] for k in client.search_runs(
        [exp_id], f"tags.mlflow.parentRunId = '{repro.info.run_id}'")}
    from pipeline.tracking_store import keep_env_uri

    with keep_env_uri():
        mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
        faces = mlflow.pyfunc.load_model("models:/lrlivae-finetune_semi/1").predict(
            pd.DataFrame({"identity": [1], "n": [4]}))
    assert faces.shape == (4, 64, 64, 3)
    out = subprocess.run([sys.executable, "-m", "dvc", "plots", "show", "--json"], cwd=root, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert shown["data"] and not shown.get("errors")
    assert all(not p.get("errors") and p["content"]["data"]["values"] for v in shown["data"].values() for p in v)
