"""Comparing experiments as a user does, against a real `mlflow server` (sqlite + served artifacts on a
free loopback port): two pipeline executions with different params give exactly two parent runs, each
with its stage runs nested, its headline metrics and registered models that load and generate faces;
a server killed in the middle of a stage loses nothing: the stage finishes, says what was not logged,
and `lrlivae mlflow-sync` logs it once the server is back."""
from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import yaml

from pipeline.cli import app
from pipeline.tracking_store import pending_records
from tests.conftest import REPO, copy_dvc_yaml, write_params
from tests.mlflow_server import MlflowServer
from tests.test_training_stages import make_aligned, train_params


PLOTTED = {k: v for e in yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"] for k, v in e.items()}


def _cli(args):
    r = CliRunner().invoke(app, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output


def _execution(root: Path, name: str, params: Path, stages: tuple[str, ...], evaluator: Path) -> None:
    """Run the given stages of one pipeline execution, with its own model and report folders."""
    m, rep = f"models/{name}", f"reports/{name}"
    common = ["--params", str(params)]
    if "train_gm" in stages:
        _cli(["train-gm", *common, "--out", f"{m}/train_gm", "--metrics", f"{rep}/train_gm.json",
              "--curves", f"{rep}/curves/train_gm.json"])
    _cli(["train-joint", *common, "--init", f"{m}/train_gm/model.pt", "--out", f"{m}/train_joint",
          "--metrics", f"{rep}/train_joint.json", "--curves", f"{rep}/curves/train_joint.json"])
    if "train_evaluator" in stages:
        _cli(["train-evaluator", *common, "--out", str(evaluator.parent), "--metrics", f"{rep}/train_evaluator.json"])
    _cli(["evaluate", *common, "--model", f"{m}/train_joint/model.pt", "--evaluator", str(evaluator),
          "--metrics", f"{rep}/evaluate.json", "--figures", f"{rep}/figures", "--report", f"{rep}/evaluate.md"])


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    copy_dvc_yaml(tmp_path)
    make_aligned(tmp_path / "data/aligned/labeled")
    return tmp_path


def test_two_executions_give_two_parent_runs_with_nested_stages_and_registered_models(workdir, monkeypatch):
    server = MlflowServer(workdir / "server").start()
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
        base = write_params(workdir / "base.yaml", train_params())
        swept = write_params(workdir / "swept.yaml", train_params(lambda_lkd=0.05))
        evaluator = workdir / "models/train_evaluator/evaluator.pt"
        # `dvc repro`, then `dvc exp run -S lambda_lkd=0.05` (which does not rerun train_evaluator)
        _execution(workdir, "base", base, ("train_gm", "train_joint", "train_evaluator", "evaluate"), evaluator)
        _execution(workdir, "swept", swept, ("train_gm", "train_joint", "evaluate"), evaluator)

        client = mlflow.MlflowClient(server.uri)  # the REST client
        exp = client.get_experiment_by_name("lrlivae")
        parents = client.search_runs([exp.experiment_id], "tags.run_type = 'pipeline'")
        assert len(parents) == 2
        by_lkd = {p.data.params["lambda_lkd"]: p for p in parents}
        assert set(by_lkd) == {"0.1", "0.05"}
        assert "lambda_lkd=0.05" in by_lkd["0.05"].data.tags["params_changed"]
        assert "lambda_lkd" not in by_lkd["0.1"].data.tags["params_changed"]  # the schema default
        expected = {"0.1": {"train_gm", "train_joint", "train_evaluator", "evaluate"},
                    "0.05": {"train_gm", "train_joint", "evaluate"}}
        for lkd, parent in by_lkd.items():
            pid = parent.info.run_id
            kids = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{pid}'")
            stages = {k.data.tags["stage"]: k for k in kids}
            assert set(stages) == expected[lkd] and len(kids) == len(stages)
            assert parent.info.status == "FINISHED" and all(k.info.status == "FINISHED" for k in kids)
            assert {k.data.tags["execution_key"] for k in kids} == {parent.data.tags["execution_key"]}
            # the headline metrics, as in the reports
            name = "base" if lkd == "0.1" else "swept"
            ev = json.loads((workdir / f"reports/{name}/evaluate.json").read_text())
            joint = json.loads((workdir / f"reports/{name}/train_joint.json").read_text())
            for k in ("inception_score", "fcd", "generated_class_accuracy", "zs_accuracy", "intra_class_diversity"):
                assert parent.data.metrics[k] == pytest.approx(ev[k]), k
            assert parent.data.metrics["train_joint/gm_test_accuracy"] == pytest.approx(joint["gm_test_accuracy"])
            assert ("evaluator_test_accuracy" in parent.data.metrics) == (lkd == "0.1")
            # the model registered under a version that points at its run; evaluate names the version it scored
            tj = stages["train_joint"]
            version = client.get_model_version("lrlivae-train_joint", tj.data.tags["registered_model_version"])
            assert version.run_id == tj.info.run_id
            assert stages["evaluate"].data.tags["scored_model"] == "lrlivae-train_joint"
            assert stages["evaluate"].data.tags["scored_model_version"] == version.version
            # the aligned set as a dataset input, with its digest
            (inp,) = client.get_run(tj.info.run_id).inputs.dataset_inputs
            assert inp.dataset.name == "aligned/labeled" and len(inp.dataset.digest) == 16
            assert {t.key: t.value for t in inp.tags}["mlflow.data.context"] == "training"
            curves = json.loads((workdir / f"reports/{name}/curves/train_joint.json").read_text())
            assert len(curves) == 3 and {"step", "loss/joint/rec", "loss/gm/cls"} <= set(curves[0])
            for stage in ("train_gm", "train_joint"):  # the fields dvc.yaml plots are the ones training logs
                rows = json.loads((workdir / f"reports/{name}/curves/{stage}.json").read_text())
                assert set(PLOTTED[f"reports/curves/{stage}.json"]["y"]) <= set(rows[-1]), stage
        assert sorted(v.version for v in client.search_model_versions("name = 'lrlivae-train_joint'")) == ["1", "2"]
        assert len(client.search_model_versions("name = 'lrlivae-train_gm'")) == 2

        # a registered version generates faces for a given identity, reproducibly
        mlflow.set_tracking_uri(server.uri)
        model = mlflow.pyfunc.load_model("models:/lrlivae-train_joint/1")
        req = pd.DataFrame({"identity": [0, 3], "n": [2, 1], "seed": [5, 5]})
        faces = model.predict(req)
        assert faces.shape == (3, 64, 64, 3) and faces.dtype == np.uint8
        np.testing.assert_array_equal(model.predict(req), faces)
        assert model.metadata.get_input_schema().input_names() == ["identity", "n", "seed"]
        with pytest.raises(Exception, match="identity 9"):
            model.predict(pd.DataFrame({"identity": [9]}))
        # the evaluator too: faces in, p(y|x) out
        (ev_version,) = client.search_model_versions("name = 'lrlivae-train_evaluator'")
        ev_run = client.get_run(ev_version.run_id)
        assert ev_run.data.tags["stage"] == "train_evaluator"
        assert ev_run.data.tags["mlflow.parentRunId"] == by_lkd["0.1"].info.run_id
        probs = mlflow.pyfunc.load_model("models:/lrlivae-train_evaluator/1").predict(faces)
        assert probs.shape == (3, 4) and np.allclose(probs.sum(1), 1)
    finally:
        server.kill()


def test_server_killed_mid_stage_loses_nothing_and_sync_logs_it(workdir, monkeypatch):
    import pipeline.training as training

    server = MlflowServer(workdir / "server").start()
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
        write_params(workdir / "params.yaml", train_params())
        measure = training.quality_metrics

        def crash_then_measure(*a, **k):  # the server dies after training, before the results are logged
            server.kill()
            return measure(*a, **k)

        monkeypatch.setattr(training, "quality_metrics", crash_then_measure)
        out = _cli(["train-gm", "--curves", "reports/curves/train_gm.json"])
        # the stage finished and wrote its outputs; it says what was not logged and where it is kept
        metrics = json.loads((workdir / "reports/train_gm.json").read_text())
        assert (workdir / "models/train_gm/model.pt").exists() and (workdir / "reports/curves/train_gm.json").exists()
        assert "MLflow did not get" in out and "model lrlivae-train_gm" in out and "mlflow-sync" in out
        (record,) = pending_records(workdir)
        rec = json.loads((record / "record.json").read_text())
        assert rec["run_id"] and "model lrlivae-train_gm" not in rec["done"] and (record / rec["models"][0]["file"]).exists()

        server.start()  # back, on the same port and store
        monkeypatch.setattr(training, "quality_metrics", measure)
        sync = _cli(["mlflow-sync"])
        assert "1 of 1 record(s) logged" in sync
        assert not pending_records(workdir) and not list((workdir / "mlflow-pending").iterdir())
        client = mlflow.MlflowClient(server.uri)
        run = client.get_run(rec["run_id"])  # the same run, completed
        assert run.info.status == "FINISHED"
        assert run.data.metrics["gm_test_accuracy"] == pytest.approx(metrics["gm_test_accuracy"])
        assert "acc/gm/val" in run.data.metrics  # logged before the crash
        assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")] == ["checkpoint/model.pt"]
        (version,) = client.search_model_versions("name = 'lrlivae-train_gm'")
        assert version.run_id == run.info.run_id
        parent = client.get_run(run.data.tags["mlflow.parentRunId"])
        assert parent.data.metrics["train_gm/gm_test_accuracy"] == pytest.approx(metrics["gm_test_accuracy"])
        assert parent.info.status == "FINISHED"
        assert "nothing pending" in _cli(["mlflow-sync"])
    finally:
        server.kill()
