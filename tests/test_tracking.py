"""MLflow tracking: one tagged run per stage; an unreachable server never stops a stage."""
from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest

from pipeline.mlflow_sync import pending_records
from pipeline.tracking import stage_run
from tests.conftest import REPO, closed_port


def _runs(root):
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("lrlivae")
    return client, client.search_runs([exp.experiment_id], "tags.run_type = 'stage'")


def test_unreachable_server_falls_back_to_local_store(isolated_mlflow, monkeypatch, capsys):
    root = isolated_mlflow
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("DVC_EXP_NAME", "exp-test")
    with stage_run("align", {"seed": 3, "align": {"size": 64}}, REPO / "params.yaml") as t:
        t.log_metrics({"labeled_accepted": 10, "ignored": "text"})
        t.log_image(np.zeros((8, 8, 3), np.uint8), "grid.png")
    err = capsys.readouterr().err
    assert err.count("is unreachable") == 1 and str(root / "mlflow.db") in err
    client, runs = _runs(root)
    assert len(runs) == 1
    run = runs[0]
    assert run.data.tags["stage"] == "align"
    assert run.data.tags["dvc_exp_name"] == "exp-test"
    assert len(run.data.tags["params_hash"]) == 12
    assert run.data.params["align.size"] == "64" and run.data.params["seed"] == "3"
    assert run.data.metrics["labeled_accepted"] == 10
    assert run.info.status == "FINISHED"
    arts = [a.path for a in client.list_artifacts(run.info.run_id, "images")]
    assert arts == ["images/grid.png"]
    assert (root / "mlruns").is_dir()


def test_logging_error_mid_run_does_not_stop_the_stage(isolated_mlflow, monkeypatch, capsys):
    with stage_run("synth", {"seed": 0}, REPO / "params.yaml") as t:
        def boom(*a, **k):
            raise ConnectionError("server went away")

        monkeypatch.setattr(mlflow.MlflowClient, "log_batch", boom)
        t.log_metrics({"a": 1.0})
        t.log_metrics({"b": 2.0})  # warned once, then silent
        done = True
    assert done
    err = capsys.readouterr().err
    assert err.count("MLflow logging failed (ConnectionError: server went away)") == 1
    assert "2 metric batch(es)" in err and "mlflow-pending" in err  # says what was not logged, and where
    (record,) = pending_records(isolated_mlflow)
    rec = json.loads((record / "record.json").read_text())
    assert [op["metrics"] for op in rec["ops"] if op["op"] == "metrics"] == [{"a": 1.0}, {"b": 2.0}]


def test_failed_stage_marks_run_failed(isolated_mlflow):
    with pytest.raises(RuntimeError):
        with stage_run("align", {}, REPO / "params.yaml"):
            raise RuntimeError("bad")
    _, runs = _runs(isolated_mlflow)
    assert runs[0].info.status == "FAILED"
