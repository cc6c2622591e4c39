"""MLflow tracking: one tagged run per stage; an unreachable server never stops a stage."""
from __future__ import annotations

import json
import os

import mlflow
import numpy as np
import pytest

from pipeline.tracking import stage_run
from pipeline.tracking_store import pending_records
from tests.conftest import REPO, closed_port


def _runs(root):
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("lrlivae")
    return client, client.search_runs([exp.experiment_id], "tags.run_type = 'stage'")


def test_unreachable_server_keeps_the_result_for_sync(isolated_mlflow, monkeypatch, capsys):
    from pipeline.tracking_store import sync_pending

    root = isolated_mlflow
    server = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    monkeypatch.setenv("DVC_EXP_NAME", "exp-test")
    with stage_run("align", {"seed": 3, "align": {"size": 64}}, REPO / "params.yaml") as t:
        t.log_metrics({"labeled_accepted": 10, "ignored": "text"})
        t.log_image(np.zeros((8, 8, 3), np.uint8), "grid.png")
    err = capsys.readouterr().err
    assert err.count(f"MLflow logging to {server} failed") == 1 and "MLflow did not get" in err
    assert os.environ["MLFLOW_TRACKING_URI"] == server  # the process's setting is as it was
    (record,) = pending_records(root)
    assert json.loads((record / "record.json").read_text())["uri"] == server
    local = f"sqlite:///{root / 'mlflow.db'}"
    assert sync_pending(root, local, only_uri=local) == []  # meant for the server: left for it
    (res,) = sync_pending(root, local)  # `lrlivae mlflow-sync --tracking-uri ...`
    assert res[1], res[3]
    client, runs = _runs(root)
    (run,) = runs
    assert run.info.run_id == res[2] and run.info.run_name == "align@exp-test"
    assert run.data.tags["stage"] == "align" and run.data.tags["dvc_exp_name"] == "exp-test"
    assert len(run.data.tags["params_hash"]) == 12 and run.data.tags["mlflow.source.git.commit"]
    assert run.data.params["align.size"] == "64" and run.data.params["seed"] == "3"
    assert run.data.metrics["labeled_accepted"] == 10
    assert run.info.status == "FINISHED"
    assert [a.path for a in client.list_artifacts(run.info.run_id, "images")] == ["images/grid.png"]
    assert (root / "mlruns").is_dir() and not pending_records(root)


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
    assert err.count("failed (ConnectionError: server went away)") == 1
    assert "2 metric batch(es)" in err and "mlflow-pending" in err  # says what was not logged, and where
    (record,) = pending_records(isolated_mlflow)
    rec = json.loads((record / "record.json").read_text())
    assert [m for m, step, ts in rec["metrics"]] == [{"a": 1.0}, {"b": 2.0}] and "end" not in rec["done"]


def test_failed_stage_marks_run_failed(isolated_mlflow):
    with pytest.raises(RuntimeError):
        with stage_run("align", {}, REPO / "params.yaml"):
            raise RuntimeError("bad")
    _, runs = _runs(isolated_mlflow)
    assert runs[0].info.status == "FAILED"


def _parents(root):
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("lrlivae")
    return client, client.search_runs([exp.experiment_id], "tags.run_type = 'pipeline'")


def test_stages_of_one_execution_share_one_parent(isolated_mlflow, monkeypatch, tmp_path):
    params = {"seed": 0, "lambda_lkd": 0.05, "toy": {"epochs": 3}}
    p1 = tmp_path / "p1.yaml"
    p1.write_text("lambda_lkd: 0.05\n")
    for stage in ("train_gm", "train_joint"):
        with stage_run(stage, params, p1) as t:
            t.log_result({"gm_test_accuracy": 0.5, "other": 1.0})
    client, parents = _parents(isolated_mlflow)
    (parent,) = parents
    kids = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(k.data.tags["stage"] for k in kids) == ["train_gm", "train_joint"]
    assert parent.data.metrics == {"train_gm/gm_test_accuracy": 0.5, "train_joint/gm_test_accuracy": 0.5}
    assert parent.data.params["lambda_lkd"] == "0.05" and parent.data.params["toy.epochs"] == "3"
    assert "seed" in parent.data.params and "lambda_lkd=0.05" in parent.data.tags["params_changed"]
    # another params file: another execution; a DVC experiment: keyed and named by its name
    p2 = tmp_path / "p2.yaml"
    p2.write_text("lambda_lkd: 0.2\n")
    with stage_run("train_gm", params, p2):
        pass
    monkeypatch.setenv("DVC_EXP_NAME", "sunny-lake")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "a" * 40)
    for _ in range(2):
        with stage_run("train_gm", params, p2):
            pass
    _, parents = _parents(isolated_mlflow)
    assert len(parents) == 3
    exp_parent = [p for p in parents if p.data.tags["dvc_exp_name"] == "sunny-lake"]
    assert [p.info.run_name for p in exp_parent] == ["sunny-lake"]
    assert exp_parent[0].data.tags["execution_key"] == "exp:sunny-lake@" + "a" * 12


def test_parent_created_twice_at_once_keeps_the_oldest(isolated_mlflow, monkeypatch):
    from pipeline import tracking_parent as tracking_ops

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{isolated_mlflow / 'mlflow.db'}")
    exp_id = client.create_experiment("lrlivae")
    ex = tracking_ops.execution(isolated_mlflow, {"seed": 1}, REPO / "params.yaml", "c" * 40, "h" * 12)
    first = tracking_ops.find_or_create_parent(client, exp_id, ex)
    real = tracking_ops._parents
    calls = []

    def racing(*a):  # the second stage searched before the first had created the parent
        calls.append(1)
        return [] if len(calls) == 1 else real(*a)

    monkeypatch.setattr(tracking_ops, "_parents", racing)
    assert tracking_ops.find_or_create_parent(client, exp_id, ex) == first
    live = client.search_runs([exp_id], "tags.run_type = 'pipeline'")
    assert [r.info.run_id for r in live] == [first]


def test_sync_replays_into_a_new_run_when_the_store_lost_it(isolated_mlflow, monkeypatch, capsys):
    from pipeline.tracking_store import sync_pending

    root = isolated_mlflow
    boom_store = root / "other"
    boom_store.mkdir()
    art = root / "report.md"
    art.write_text("# report\n")
    with stage_run("evaluate", {"seed": 2}, REPO / "params.yaml") as t:
        monkeypatch.setattr(mlflow.MlflowClient, "log_batch", lambda *a, **k: (_ for _ in ()).throw(OSError("down")))
        t.log_result({"inception_score": 2.5, "fcd": 7.0}, step=3)
        t.set_tags({"mlflow.runName": "evaluate@ours"})  # a stage that names its run
        t.log_artifact(art)  # a stage output: the record names it
        t.log_image(np.full((4, 4, 3), 7, np.uint8), "grid.png")  # made for MLflow: the record keeps a copy
    monkeypatch.undo()
    (record,) = pending_records(root)
    assert [p.name for p in (record / "images").rglob("*.png")] == ["grid.png"] and not (record / "report.md").exists()
    other = f"sqlite:///{boom_store / 'mlflow.db'}"
    (res,) = sync_pending(root, other)
    assert res[1], res[3]
    client = mlflow.MlflowClient(other)
    run = client.get_run(res[2])
    assert run.data.tags["stage"] == "evaluate" and run.data.params["seed"] == "2"
    assert run.info.run_name == "evaluate@ours"
    assert run.data.metrics == {"inception_score": 2.5, "fcd": 7.0} and run.info.status == "FINISHED"
    assert sorted(a.path for a in client.list_artifacts(run.info.run_id)) == ["images", "report.md"]
    assert [a.path for a in client.list_artifacts(run.info.run_id, "images")] == ["images/grid.png"]
    parent = client.get_run(run.data.tags["mlflow.parentRunId"])
    assert parent.data.metrics == {"inception_score": 2.5, "fcd": 7.0}
    assert not pending_records(root)


def test_headline_names():
    from pipeline.tracking_parent import headline

    assert headline("evaluate", {"inception_score": 3.0, "seconds": 9.0}) == {"inception_score": 3.0}
    assert headline("evaluate", {"fcd": 5.0}, model="train_joint") == {"fcd/train_joint": 5.0}
    assert headline("evaluate_baseline", {"inception_score": 2.0}, model="cvae") == {"inception_score/cvae": 2.0}
    assert headline("finetune_semi", {"after_verification_auc": 0.9, "before_verification_auc": 0.7}) == {
        "verification_auc": 0.9, "verification_auc_before": 0.7}
    assert headline("compare", {"label_free_identity/ours": 0.1, "fcd/ours": 3.0}) == {"label_free_identity/ours": 0.1}
    assert headline("synth", {"images": 10}) == {}


def test_params_changed_names_what_differs_from_the_baseline_commit(tmp_path):
    import subprocess

    from pipeline.tracking_parent import changed_since

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    git("config", "user.email", "t@localhost")
    git("config", "user.name", "t")
    (tmp_path / "params.yaml").write_text("seed: 0\nlambda_lkd: 0.1\ntrain_joint: {steps: 750}\n")
    git("add", "params.yaml")
    git("commit", "-qm", "params")
    assert changed_since(tmp_path, tmp_path / "params.yaml", "HEAD") == {}
    (tmp_path / "params.yaml").write_text("seed: 0\nlambda_lkd: 0.2\ntrain_joint: {steps: 750, lr: 0.001}\n")
    assert changed_since(tmp_path, tmp_path / "params.yaml", "HEAD") == {"lambda_lkd": "0.2", "train_joint.lr": "0.001"}
    (tmp_path / "params.yaml").write_text("lambda_lkd: 0.1\ntrain_joint: {steps: 750}\n")
    assert changed_since(tmp_path, tmp_path / "params.yaml", "HEAD") == {"seed": "(default)"}
    (tmp_path / "other.yaml").write_text("seed: 1\n")
    assert changed_since(tmp_path, tmp_path / "other.yaml", "HEAD") is None  # not in the commit
    assert changed_since(tmp_path, tmp_path / "params.yaml", "no-such-rev") is None
