"""MLflow tracking for stage runs: one run per stage execution, nested under one parent run per pipeline
execution (pipeline.tracking_ops), with its models registered and its data sets logged as inputs.

Tracking URI: `MLFLOW_TRACKING_URI` if set, else `sqlite:///<repo root>/mlflow.db` with artifacts in
`<repo root>/mlruns`. The repo root is `DVC_ROOT` when DVC runs the stage (so temporary and queued
experiments log to the same store), else the enclosing git work tree, else the working directory.

A stage never fails because of tracking: when the configured server is unreachable at the start, the
run warns once and logs to the default sqlite store instead, and says where. When logging fails later
(the server went away), the stage warns once, stops calling MLflow, finishes, and writes what was not
logged to `<repo root>/mlflow-pending/` (pipeline.mlflow_sync), saying what; `lrlivae mlflow-sync`, or
the next stage run against the same store, logs it. HTTP calls are bounded by
MLFLOW_HTTP_REQUEST_TIMEOUT (default here 10 s) and MLFLOW_HTTP_REQUEST_MAX_RETRIES (default here 1).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from pipeline import tracking_ops as ops
from pipeline.tracking_env import (
    _server_reachable,
    _warn,
    default_uri,
    git_commit,
    keep_env_uri,
    quiet_mlflow,
    repo_root,
    tracking_uri,
)
from pipeline.tracking_ops import EXPERIMENT  # noqa: F401  (re-exported)


class Tracker:
    """A failure-tolerant journal of one stage run: every call becomes an operation applied at once;
    after the first failure nothing more is sent and the rest is kept for the pending folder."""

    def __init__(self, client, run_id: str | None, uri: str, stage: str):
        self._client = client
        self.run_id = run_id
        self.uri = uri
        self.stage = stage
        self.ops: list[dict] = []
        self._ctx: dict = {}
        self._broken = run_id is None
        self.failure = "" if run_id else "no run could be started"
        self._scratch = Path(tempfile.mkdtemp(prefix="lrlivae-mlflow-"))

    @property
    def parent_id(self) -> str | None:
        return self._ctx.get("parent_id")

    def _op(self, op: dict) -> None:
        op["done"] = False
        op.setdefault("ts", ops.now_ms())
        self.ops.append(op)
        if self._broken:
            return
        try:
            ops.apply(self._client, self.run_id, op, self._ctx)
            op["done"] = True
        except Exception as e:  # tracking must never stop a stage
            self._broken = True
            self.failure = f"{type(e).__name__}: {str(e)[:300]}"
            _warn(f"MLflow logging failed ({self.failure}); the stage goes on, and what is not logged is kept "
                  f"for `lrlivae mlflow-sync`")

    def log_params(self, params: dict) -> None:
        self._op({"op": "params", "params": {k: str(v)[:6000] for k, v in params.items()}})

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        clean = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if clean:
            self._op({"op": "metrics", "metrics": clean, "step": step})

    def log_headline(self, metrics: dict, model: str | None = None) -> None:
        """The stage's headline metrics (tracking_ops.HEADLINE) onto the parent run."""
        head = ops.headline(self.stage, metrics, model)
        if head:
            self._op({"op": "parent_metrics", "metrics": head})

    def set_parent_tags(self, tags: dict) -> None:
        """Tags on the parent run (what the execution's data set was, for example)."""
        self._op({"op": "parent_tags", "tags": {k: str(v)[:5000] for k, v in tags.items()}})

    def log_result(self, metrics: dict, step: int | None = None, model: str | None = None) -> None:
        """The stage's final metrics: on its run, and the headline ones on the parent run."""
        self.log_metrics(metrics, step=step)
        self.log_headline(metrics, model)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if not Path(path).exists():  # a missing file is the stage's business, not a tracking failure
            _warn(f"{path} does not exist; not logged to MLflow")
            return
        self._op({"op": "artifact", "path": str(Path(path).resolve()), "artifact_path": artifact_path})

    def log_image(self, image, name: str) -> None:
        """Log an (H, W, 3) uint8 array as a PNG artifact under images/."""
        from PIL import Image

        d = Path(tempfile.mkdtemp(dir=self._scratch))
        Image.fromarray(image).save(d / name)
        self.log_artifact(d / name, artifact_path="images")

    def set_tags(self, tags: dict) -> None:
        self._op({"op": "tags", "tags": {k: str(v) for k, v in tags.items()}})

    def log_dataset(self, data_dir: str | Path, context: str = "training") -> None:
        """The aligned set in `data_dir` as a dataset input (its index table, digest of faces + index)."""
        try:
            entity = ops.dataset_entity(Path(data_dir))
        except Exception as e:
            _warn(f"{data_dir}: not logged as an MLflow dataset ({type(e).__name__}: {e})")
            return
        self._op({"op": "dataset", "dataset": entity, "context": context})

    def log_model(self, checkpoint: str | Path, registered_name: str, tags: dict | None = None,
                  evaluator_meta: dict | None = None) -> None:
        """Log the generator of `checkpoint` (or, given `evaluator_meta` = identities and image_size, the
        evaluator file itself) as an MLflow pyfunc model and register it as `registered_name`."""
        from pipeline.mlflow_model import file_sha256, prepare_generator

        work = Path(tempfile.mkdtemp(dir=self._scratch))
        try:
            if evaluator_meta is not None:
                path, meta, sha = work / Path(checkpoint).name, {**evaluator_meta, "model_type": "evaluator"}, \
                    file_sha256(checkpoint)
                shutil.copy2(checkpoint, path)
            else:
                path, meta, sha = prepare_generator(checkpoint, work)
        except Exception as e:
            _warn(f"{checkpoint}: the model is not logged to MLflow ({type(e).__name__}: {e})")
            return
        from pipeline.mlflow_model import model_alias

        self._op({"op": "model", "file": str(path), "meta": meta, "sha": sha,
                  "registered_name": registered_name, "tags": tags or {}, "alias": model_alias()})

    def log_scored_model(self, checkpoint: str | Path, state: dict, tag: str = "scored_model") -> None:
        """Tag the run with the registered version of the model in `checkpoint` (its loaded dict `state`
        names the stage), found by the checkpoint's sha256."""
        from pipeline.mlflow_model import file_sha256

        self._op({"op": "scored", "registered_name": ops.registered_name(state), "sha": file_sha256(checkpoint),
                  "tag": tag})

    def pending(self) -> list[dict]:
        return [op for op in self.ops if not op["done"]]


TRAINING_STAGES = ("train_gm", "train_joint", "finetune_semi", "train_evaluator", "train_baseline")


def _start(mlflow, uri: str, root: Path, run_name: str):
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(uri)
    exp_id = ops.ensure_experiment(client, uri, root)
    mlflow.set_experiment(experiment_id=exp_id)
    _sync_before(root, uri)
    system = run_name.split("@")[0] in TRAINING_STAGES  # CPU, memory (and GPU) use, every 10 s
    return client, mlflow.start_run(run_name=run_name, experiment_id=exp_id, log_system_metrics=system)


def _sync_before(root: Path, uri: str) -> None:
    """Log the pending records first written for this store (a stage that lost its server earlier)."""
    from pipeline.mlflow_sync import pending_records, sync_pending

    if not pending_records(root):
        return
    try:
        done = sync_pending(root, uri, only_uri=uri)
    except Exception as e:
        _warn(f"pending MLflow records not logged yet ({type(e).__name__}: {e})")
        return
    ok = [r for r in done if r.ok]
    if ok:
        print(f"[lrlivae] logged {len(ok)} pending MLflow record(s) to {uri}", file=sys.stderr, flush=True)


def _open(mlflow, root: Path, run_name: str):
    uri = tracking_uri(root)
    if uri.startswith(("http://", "https://")) and not _server_reachable(uri):
        fallback = default_uri(root)
        _warn(f"MLflow server {uri} is unreachable; logging locally to {fallback} (artifacts in {root / 'mlruns'})")
        uri = fallback
    try:
        return (*_start(mlflow, uri, root, run_name), uri)
    except Exception as e:
        fallback = default_uri(root)
        if uri == fallback:
            _warn(f"MLflow store {uri} failed ({type(e).__name__}: {e}); what the stage logs is kept for later")
            return None, None, uri
        _warn(f"MLflow store {uri} failed ({type(e).__name__}: {e}); logging locally to {fallback}")
        try:
            return (*_start(mlflow, fallback, root, run_name), fallback)
        except Exception as e2:
            _warn(f"MLflow store {fallback} failed too ({type(e2).__name__}: {e2}); what the stage logs is kept for later")
            return None, None, fallback


@contextlib.contextmanager
def stage_run(stage: str, params: dict, params_path: str | Path) -> Iterator[Tracker]:
    """Open one MLflow run for a stage execution, nested under its execution's parent run, tagged and
    with every param logged; on exit end it and keep what could not be logged in the pending folder."""
    with keep_env_uri():
        with _stage_run(stage, params, params_path) as tracker:
            yield tracker


@contextlib.contextmanager
def _stage_run(stage: str, params: dict, params_path: str | Path) -> Iterator[Tracker]:
    from pipeline.mlflow_sync import describe, write_pending
    from pipeline.params import flatten, params_hash

    quiet_mlflow()
    import mlflow

    root = repo_root()
    exp_name = os.environ.get("DVC_EXP_NAME", "")
    run_name = f"{stage}" + (f"@{exp_name}" if exp_name else "")
    client, active, uri = _open(mlflow, root, run_name)
    tracker = Tracker(client, active.info.run_id if active else None, uri, stage)
    commit = git_commit(root)
    phash = params_hash(params_path) if Path(params_path).exists() else ""
    execution = ops.execution(root, params, params_path, commit, phash)
    tracker.set_tags({"stage": stage, "git_commit": commit, "dvc_exp_name": exp_name, "params_hash": phash,
                      "execution_key": execution["key"], "run_type": "stage"})
    tracker._op({"op": "parent", "execution": execution})
    tracker.log_params(flatten(params))
    status = "FAILED"
    try:
        yield tracker
        status = "FINISHED"
    finally:
        tracker._op({"op": "end", "status": status})
        if active is not None:
            with contextlib.suppress(Exception):
                mlflow.end_run(status=status)  # the fluent run state; the store was told by the "end" op
        left = tracker.pending()
        if left:
            record = {"format": 1, "stage": stage, "uri": uri, "run_id": tracker.run_id, "run_name": run_name,
                      "start_time": tracker.ops[0]["ts"], "failure": tracker.failure, "ops": tracker.ops}
            try:
                where = write_pending(root, record)
                _warn(f"MLflow did not get {describe(left)} of stage {stage} ({tracker.failure}); kept in {where}; "
                      f"`lrlivae mlflow-sync` logs them (the next stage run against {uri} tries too)")
            except OSError as e:
                _warn(f"MLflow did not get {describe(left)} of stage {stage}, and keeping them failed too: {e}")
        shutil.rmtree(tracker._scratch, ignore_errors=True)
