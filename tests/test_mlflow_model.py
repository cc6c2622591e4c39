"""The pyfunc wrapper's pieces without a store: slim checkpoints of Lr-LiVAE and of a baseline rebuild the
generator, generate the requested number of faces per identity, reproducibly, and reject bad requests."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch

from lrlivae.baselines import BaselineConfig, build_baseline
from lrlivae.nn.config import ModelConfig
from lrlivae.nn.model import build_model
from pipeline.face_generator import build_generator, generate_faces
from pipeline.mlflow_model import prepare_generator

NET = dict(arch="small", image_size=64, zs_dim=4, zu_dim=4, n_classes=3, width=0.25, enc_hidden=16, adv_hidden=8,
           disc_hidden=16)


def _checkpoints(tmp_path):
    cfg = ModelConfig(**NET)
    ours = tmp_path / "ours.pt"
    torch.save({"model_config": cfg.to_dict(), "model": build_model(cfg).state_dict(), "identities": ["a", "b", "c"],
                "stage": "train_joint", "opt_g": {"big": torch.zeros(10)}}, ours)
    bcfg = BaselineConfig(kind="cvae", z_dim=4, net=cfg)
    base = tmp_path / "cvae.pt"
    torch.save({"baseline_config": bcfg.to_dict(), "model": build_baseline(bcfg).state_dict(),
                "identities": ["a", "b", "c"], "stage": "train_baseline", "kind": "cvae"}, base)
    return {"ours": ours, "cvae": base}


@pytest.mark.parametrize("which", ["ours", "cvae"])
def test_slim_checkpoint_generates_faces(tmp_path, which):
    ckpt = _checkpoints(tmp_path)[which]
    slim_path, meta, sha = prepare_generator(ckpt, tmp_path / "slim")
    assert meta["identities"] == ["a", "b", "c"] and meta["image_size"] == 64 and len(sha) == 64
    slim = torch.load(slim_path, weights_only=True)
    assert set(slim) == {"family", "config", "model", "identities", "stage", "kind"}  # no optimiser state
    model = build_generator(slim)
    req = pd.DataFrame({"identity": [2, 0], "n": [3, 1], "seed": [1, 1]})
    faces = generate_faces(model, req, 3)
    assert faces.shape == (4, 64, 64, 3) and faces.dtype == np.uint8
    np.testing.assert_array_equal(generate_faces(model, req, 3), faces)
    one = generate_faces(model, pd.DataFrame({"identity": [1]}), 3)  # n and seed default to 1 and 0
    assert one.shape == (1, 64, 64, 3)
    with pytest.raises(ValueError, match="row 0: identity 3 is not a class index"):
        generate_faces(model, pd.DataFrame({"identity": [3]}), 3)
    with pytest.raises(ValueError, match="row 1: n = 0"):
        generate_faces(model, pd.DataFrame({"identity": [0, 1], "n": [1, 0]}), 3)


def test_a_non_generator_checkpoint_is_named(tmp_path):
    bad = tmp_path / "evaluator.pt"
    torch.save({"weights": {}}, bad)
    with pytest.raises(ValueError, match="evaluator.pt: not a generator checkpoint"):
        prepare_generator(bad, tmp_path)


def test_a_baseline_registered_in_the_local_store_loads_and_generates(tmp_path, isolated_mlflow, monkeypatch):
    import mlflow

    from pipeline.tracking import stage_run
    from tests.conftest import REPO

    import time

    ckpt = _checkpoints(tmp_path)["cvae"]
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
    with stage_run("train_baseline", {"seed": 0}, REPO / "params.yaml") as t:
        t.log_model(ckpt, "lrlivae-baseline-cvae", tags={"kind": "cvae"})
        time.sleep(2.5)  # a training stage samples CPU and memory use
    assert not t.pending()
    assert "MLFLOW_TRACKING_URI" not in os.environ  # the stage run left the process's setting as it was
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{isolated_mlflow / 'mlflow.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{isolated_mlflow / 'mlflow.db'}")
    (version,) = mlflow.MlflowClient().search_model_versions("name = 'lrlivae-baseline-cvae'")
    assert version.run_id == t.run_id and version.tags["kind"] == "cvae" and len(version.tags["checkpoint_sha256"]) == 64
    model = mlflow.pyfunc.load_model(f"models:/lrlivae-baseline-cvae/{version.version}")
    assert model.metadata.metadata["identities"] == ["a", "b", "c"]
    faces = model.predict(pd.DataFrame({"identity": [2], "n": [5]}))
    assert faces.shape == (5, 64, 64, 3) and faces.dtype == np.uint8
    # MLflow 3 conventions: an alias per registration (champion outside DVC experiments), the experiment
    # opens as model training in the UI, training stages carry system metrics
    client = mlflow.MlflowClient()
    assert client.get_model_version_by_alias("lrlivae-baseline-cvae", "champion").version == version.version
    assert mlflow.pyfunc.load_model("models:/lrlivae-baseline-cvae@champion").metadata.run_id == t.run_id
    exp = client.get_experiment_by_name("lrlivae")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert any(k.startswith("system/cpu_utilization") for k in client.get_run(t.run_id).data.metrics)
    monkeypatch.setenv("DVC_EXP_NAME", "wry-gaol")
    from pipeline.mlflow_model import model_alias

    assert model_alias() == "exp-wry-gaol"
