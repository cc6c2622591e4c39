"""A folder of real photographs as a DVC experiment, in a scratch repository: `dvc exp run -S
align.labeled.root=... -S align.unlabeled.root=...` runs align through compare on 5 people x 6 photos
(labeled) and 3 other people (unlabeled), made offline from scikit-image's LFW subset; running it again
runs nothing; a changed evaluate setting reruns only the stages that read it; `dvc exp show` lists it."""
from __future__ import annotations

import json
import sys

import pandas as pd
import pytest

pytest.importorskip("dlib")
pytest.importorskip("skimage")

from tests.photo_folder import make_photo_folder  # noqa: E402
from tests.test_dvc import _sh, scratch_repo  # noqa: E402,F401  (the fixture)
from tests.test_training_stages import train_params  # noqa: E402
from tests.conftest import write_params  # noqa: E402

FACE_STAGES = ("align", "train_gm", "train_joint", "finetune_semi", "train_evaluator", "evaluate",
               "train_baseline@cvae", "train_baseline@cgan", "train_baseline@cvaegan", "evaluate_baseline@cvae",
               "evaluate_baseline@cgan", "evaluate_baseline@cvaegan", "compare")


def _ran(out: str) -> set[str]:
    return {s for s in FACE_STAGES if f"Running stage '{s}'" in out}


@pytest.mark.slow
def test_photo_folder_as_an_experiment(scratch_repo, tmp_path_factory):
    root, env = scratch_repo
    photos = tmp_path_factory.mktemp("photos")
    labeled = make_photo_folder(photos / "labeled", people=5, photos_per_person=6)
    unlabeled = make_photo_folder(photos / "unlabeled", people=3, photos_per_person=6, first=20)
    p = train_params()
    p["evaluate"]["identity_judge_per_class"] = 2
    write_params(root / "params.yaml", p)
    _sh(["git", "add", "-A"], root, env)
    _sh(["git", "commit", "-qm", "tiny settings"], root, env)
    dvc = [sys.executable, "-m", "dvc"]
    where = ["-S", f"align.labeled.root={labeled}", "-S", f"align.unlabeled.root={unlabeled}"]

    out = _sh(dvc + ["exp", "run", "-n", "photos", *where, "compare"], root, env)
    assert _ran(out) == set(FACE_STAGES), out
    align = json.loads((root / "reports/align.json").read_text())
    assert align["labeled_identities"] == 5 and align["unlabeled_accepted"] >= 15
    people = pd.read_csv(root / "reports/align_people.csv")
    assert len(people) == 8 and (people["status"] == "kept").all() and (people["test"] >= 1).all()
    ours = json.loads((root / "reports/evaluate.json").read_text())
    assert "identity_judge/accuracy" in ours  # photos: dlib's descriptor judges identity
    comparison = json.loads((root / "reports/comparison.json").read_text())
    flat = json.dumps(comparison)
    assert all(f"/{kind}" in flat for kind in ("cvae", "cgan", "cvaegan", "ours")), flat[:500]

    again = _sh(dvc + ["exp", "run", *where, "compare"], root, env)
    assert _ran(again) == set(), again
    changed = _sh(dvc + ["exp", "run", *where, "-S", "evaluate.splits=3", "compare"], root, env)
    assert _ran(changed) == {"evaluate", "evaluate_baseline@cvae", "evaluate_baseline@cgan",
                             "evaluate_baseline@cvaegan", "compare"}, changed

    shown = _sh(dvc + ["exp", "show", "--json"], root, env)
    assert "photos" in shown and str(labeled) in shown  # the experiment, with its photo folder as a param


@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", "server"])
def test_queued_sweep_with_two_workers(scratch_repo, store, tmp_path_factory):
    """`dvc exp run --queue -S lambda_lkd=a,b,c` then `dvc queue start -j 2`: three experiments, three rows in
    `dvc exp show`, three parent runs in the store (the default sqlite file, or a tracking server), and no
    store error in any stage's log."""
    root, env = scratch_repo
    env.pop("MLFLOW_TRACKING_URI")  # the default store, <repo>/mlflow.db, as a user has it
    server = None
    if store == "server":
        from tests.mlflow_server import MlflowServer

        server = MlflowServer(tmp_path_factory.mktemp("server")).start()
        env["MLFLOW_TRACKING_URI"] = server.uri
    try:
        _queued_sweep(root, env, server.uri if server else f"sqlite:///{root / 'mlflow.db'}")
    finally:
        if server is not None:
            server.kill()


def _queued_sweep(root, env, uri: str) -> None:
    import time

    import mlflow

    write_params(root / "params.yaml", train_params())
    _sh(["git", "add", "-A"], root, env)
    _sh(["git", "commit", "-qm", "tiny settings"], root, env)
    dvc = [sys.executable, "-m", "dvc"]
    _sh(dvc + ["repro", "align"], root, env)  # the sweep's experiments share the aligned sets from the cache
    _sh(dvc + ["exp", "run", "--queue", "-S", "lambda_lkd=0.05,0.1,0.2", "evaluate"], root, env)
    _sh(dvc + ["queue", "start", "-j", "2"], root, env)
    deadline = time.time() + 1200
    while time.time() < deadline:
        status = _sh(dvc + ["queue", "status"], root, env)
        if status.count("Success") + status.count("Failed") >= 3:
            break
        time.sleep(10)
    _sh(dvc + ["queue", "stop", "--kill"], root, env) if "Running" in status else None
    assert status.count("Success") == 3, status
    logs = "".join(_sh(dvc + ["queue", "logs", line.split()[0]], root, env)
                   for line in status.splitlines() if "Success" in line)
    assert "database is locked" not in logs and "MLflow logging failed" not in logs
    import io

    shown = pd.read_csv(io.StringIO(_sh(dvc + ["exp", "show", "--csv"], root, env)))
    exps = shown[shown["Experiment"].notna() & (shown["Experiment"].astype(str) != "")]
    col = next(c for c in shown.columns if c == "lambda_lkd" or c.endswith(":lambda_lkd"))
    assert sorted(exps[col].astype(float)) == [0.05, 0.1, 0.2], shown.to_string()
    client = mlflow.MlflowClient(uri)
    exp_id = client.get_experiment_by_name("lrlivae").experiment_id
    parents = client.search_runs([exp_id], "tags.run_type = 'pipeline' and tags.dvc_exp_name != ''")
    assert sorted(p.data.params["lambda_lkd"] for p in parents) == ["0.05", "0.1", "0.2"]
    for p in parents:
        kids = client.search_runs([exp_id], f"tags.mlflow.parentRunId = '{p.info.run_id}'")
        assert {"train_gm", "train_joint", "finetune_semi", "evaluate"} <= {k.data.tags["stage"] for k in kids}
