"""The train_gm and train_joint stages as commands: outputs, self-describing checkpoints, MLflow logs,
and a real kill (SIGKILL) followed by a resume that ends with the uninterrupted run's weights."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from lrlivae.data.aligned import AlignedWriter
from pipeline.cli import app
from pipeline.training import load_model
from tests.conftest import REPO, copy_dvc_yaml, set_param, tiny_params, write_params

N_ID = 4


def make_aligned(root: Path, per_id: int = 12, seed: int = 0) -> Path:
    """A small aligned set: each identity a different mean colour plus noise, a nuisance factor `light`."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    w = AlignedWriter(root / "faces.npy", capacity=N_ID * per_id, size=64)
    rows = []
    for i in range(N_ID):
        for k in range(per_id):
            light = rng.uniform(-1, 1)
            img = np.clip(rng.normal(60 + 40 * i + 30 * light, 20, size=(64, 64, 3)), 0, 255).astype(np.uint8)
            w.append(img)
            split = "test" if k < 3 else ("val" if k < 4 else "train")
            rows.append({"path": f"id{i}/{k}.jpg", "identity": f"id_{i:04d}", "split": split, "f_light_x": light})
    w.close()
    pd.DataFrame(rows).to_parquet(root / "index.parquet")
    return root


def train_params(**over):
    p = tiny_params()
    p["model"].update({"width": 0.25, "zs_dim": 4, "zu_dim": 4, "enc_hidden": 16, "adv_hidden": 8, "disc_hidden": 16})
    for stage in ("train_gm", "train_joint", "finetune_semi"):
        p[stage].update({"steps": 6, "batch_size": 8, "checkpoint_every": 2, "log_every": 2, "device": "cpu",
                         "grid_classes": 2})
    p["finetune_semi"].update({"grid_size": 3, "swap_pairs": 20, "predictor_epochs": 1})
    p["train_evaluator"].update({"epochs": 1, "batch_size": 8})
    if "baselines" in p:
        for k, v in {"steps": 4, "batch_size": 8, "checkpoint_every": 2, "log_every": 2, "device": "cpu",
                     "grid_classes": 2}.items():
            set_param(p, f"baselines.common.{k}", v)
        for kind in ("cvae", "cgan", "cvaegan"):
            set_param(p, f"baselines.{kind}.steps", None)
    p["evaluate"].update({"per_class": 4, "splits": 2, "figure_classes": 2})
    p.update(over)
    return p


def test_train_stages_end_to_end(tmp_path, isolated_mlflow, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = make_aligned(tmp_path / "data/aligned/labeled")
    write_params(tmp_path / "params.yaml", train_params())
    r = CliRunner().invoke(app, ["train-gm"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["train-joint"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    gm = json.loads((tmp_path / "reports/train_gm.json").read_text())
    joint = json.loads((tmp_path / "reports/train_joint.json").read_text())
    assert 0 <= gm["gm_test_accuracy"] <= 1 and gm["steps"] == 6
    for key in ("gm_test_accuracy", "recon_mse_test", "zs_probe_accuracy", "zu_probe_accuracy", "chance_accuracy",
                "zu_active_units", "zu_kl_per_dim_mean", "factor_light_x_zs_r2", "factor_light_x_zu_r2"):
        assert key in joint, key
    # The checkpoint describes itself: it loads with weights_only and rebuilds without params.yaml.
    st = torch.load(tmp_path / "models/train_joint/model.pt", weights_only=True)
    assert st["finished"] and st["identities"] == [f"id_{i:04d}" for i in range(N_ID)]
    model, _ = load_model(tmp_path / "models/train_joint/model.pt")
    assert model.cfg.n_classes == N_ID and not model.training
    # MLflow: one run per stage, named loss terms per step, grids and the checkpoint as artifacts.
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("lrlivae")
    runs = {r.data.tags["stage"]: r for r in client.search_runs([exp.experiment_id], "tags.run_type = 'stage'")}
    assert set(runs) == {"train_gm", "train_joint"}
    jr = runs["train_joint"]
    for key in ("loss/gm/cls", "loss/joint/rec", "loss/joint/kl", "loss/joint/d", "acc/gm/val", "lr/gm_sigma",
                "zu/active_units"):
        assert key in jr.data.metrics, key
    assert len(client.get_metric_history(jr.info.run_id, "loss/joint/rec")) == 3
    images = [a.path for a in client.list_artifacts(jr.info.run_id, "images")]
    assert any("samples_epoch" in p for p in images) and any("recon_epoch" in p for p in images)
    assert [a.path for a in client.list_artifacts(jr.info.run_id, "checkpoint")] == ["checkpoint/model.pt"]


def test_train_joint_needs_the_gm_checkpoint(tmp_path, isolated_mlflow, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_aligned(tmp_path / "data/aligned/labeled")
    write_params(tmp_path / "params.yaml", train_params())
    r = CliRunner().invoke(app, ["train-joint"])
    assert r.exit_code == 1 and "models/train_gm/model.pt does not exist" in r.output


def _cmd(tmp_path, steps):
    env = dict(os.environ, DVC_ROOT=str(tmp_path), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    code = "from pipeline.cli import app; app()"
    return [sys.executable, "-c", code, "train-gm"], env


def test_stage_killed_mid_run_resumes_to_the_same_weights(tmp_path):
    data = make_aligned(tmp_path / "data/aligned/labeled")
    copy_dvc_yaml(tmp_path)  # the stand-in repository root (DVC_ROOT) of both runs
    p = train_params()
    p["train_gm"].update({"steps": 60, "checkpoint_every": 1})
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    for d in (ref_dir, run_dir):
        d.mkdir()
        (d / "data").symlink_to(tmp_path / "data")
        write_params(d / "params.yaml", p)
    args, env = _cmd(tmp_path, 60)
    subprocess.run(args, cwd=ref_dir, env=env, check=True, capture_output=True, timeout=600)
    proc = subprocess.Popen(args, cwd=run_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ckpt = run_dir / "models/train_gm/model.pt"
    deadline = time.time() + 300
    while time.time() < deadline:
        if ckpt.exists():
            try:
                if torch.load(ckpt, weights_only=True)["step"] >= 10:
                    break
            except Exception:
                pass
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(ckpt, weights_only=True)
    assert not killed_at["finished"] and 10 <= killed_at["step"] < 60
    out = subprocess.run(args, cwd=run_dir, env=env, check=True, capture_output=True, text=True, timeout=600)
    assert "resuming from" in out.stdout + out.stderr
    a = torch.load(ref_dir / "models/train_gm/model.pt", weights_only=True)["model"]
    b = torch.load(ckpt, weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_a_set_smaller_than_one_batch_trains_with_the_batch_it_holds(tmp_path, isolated_mlflow, monkeypatch):
    """4 people x 8 training photos (32 rows) with the default batch of 64: the stage trains on batches of
    32, says so once, and writes it in its report; a set with fewer than 2 rows stops with the set named."""
    monkeypatch.chdir(tmp_path)
    make_aligned(tmp_path / "data/aligned/labeled")
    p = train_params()
    p["train_gm"]["batch_size"] = 64
    write_params(tmp_path / "params.yaml", p)
    r = CliRunner().invoke(app, ["train-gm"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert r.output.count("training with batches of 32") == 1, r.output
    m = json.loads((tmp_path / "reports/train_gm.json").read_text())
    assert m["batch_size"] == 32 and m["batch_size_clamped_from"] == 64

    from pipeline.training import TrainingError, fitting_batch_size

    assert fitting_batch_size("x.batch_size", 64, 1, {"a": 100, "b": 200}) == 64
    assert fitting_batch_size("x.batch_size", 64, 2, {"a": 100, "b": 40}) == 20
    with pytest.raises(TrainingError, match="b: 1 training rows are too few"):
        fitting_batch_size("x.batch_size", 64, 1, {"a": 100, "b": 1})
