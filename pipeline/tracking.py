"""MLflow tracking of stage runs: one run per stage execution, nested under its execution's parent run
(pipeline.tracking_parent), with its models registered and its data sets logged as inputs.

Tracking URI: `MLFLOW_TRACKING_URI` if set, else `sqlite:///<repo root>/mlflow.db` with artifacts in
`<repo root>/mlruns`; the repo root is `DVC_ROOT` when DVC runs the stage (temporary and queued experiments
log to the same store), else the enclosing git work tree, else the working directory.

What a stage logs: step metrics go to MLflow as they come; the stage's result (params, tags, final files,
models, data sets, the parent's headline metrics) is collected and logged once, when the stage ends, by
`publish` (pipeline.tracking_store). A stage never fails because of tracking: where the store does not
answer (at the start or later) the stage warns once, finishes, and its result waits in
`<repo root>/mlflow-pending/` (what was not logged: the stage's own output files by path, the pictures and
model files made for MLflow copied); `lrlivae mlflow-sync`, or the next stage run against that store, logs
it with the same `publish`. HTTP calls are bounded (MLFLOW_HTTP_REQUEST_TIMEOUT 10 s, one retry).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator

from pipeline import tracking_parent as parent
from pipeline.tracking_store import (PENDING, git_output, keep_env_uri, metric_entities, publish, quiet_mlflow,
                                     repo_root, result_parts, sync_pending, tracking_uri, warn)

TRAINING_STAGES = ("train_gm", "train_joint", "finetune_semi", "train_evaluator", "train_baseline")


class Tracker:
    """One stage run: `result` holds what the stage logs (a plain dict, written as the pending record)."""

    def __init__(self, stage: str, uri: str, execution: dict, params: dict, tags: dict):
        self.stage, self.uri, self.client, self.run_id, self.parent_id, self.failure = stage, uri, None, None, None, ""
        self.scratch = Path(tempfile.mkdtemp(prefix="lrlivae-mlflow-"))
        self.result = {"stage": stage, "uri": uri, "run_id": None, "execution": execution, "params": params,
                       "tags": tags, "metrics": [], "artifacts": [], "datasets": [], "models": [], "scored": [],
                       "parent_metrics": {}, "parent_tags": {}, "status": "RUNNING", "start": int(time.time() * 1000),
                       "done": []}

    def _failed(self, e: Exception) -> None:
        if not self.failure:
            self.failure = f"{type(e).__name__}: {str(e)[:300]}"
            warn(f"MLflow logging to {self.uri} failed ({self.failure}); the stage goes on, and what is not "
                  f"logged is kept for `lrlivae mlflow-sync`")

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        clean = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        batch = [clean, int(step or 0), int(time.time() * 1000)]
        if clean and self.run_id and not self.failure:
            try:
                return self.client.log_batch(self.run_id, metrics=metric_entities([batch]))
            except Exception as e:  # tracking must never stop a stage
                self._failed(e)
        if clean:
            self.result["metrics"].append(batch)

    def log_result(self, metrics: dict, step: int | None = None, model: str | None = None) -> None:
        """The stage's final metrics: on its run, and the headline ones on the parent run."""
        self.log_metrics(metrics, step=step)
        self.log_headline(metrics, model)

    def log_headline(self, metrics: dict, model: str | None = None) -> None:
        self.result["parent_metrics"].update(parent.headline(self.stage, metrics, model))

    def set_parent_tags(self, tags: dict) -> None:
        self.result["parent_tags"].update({k: str(v)[:5000] for k, v in tags.items()})

    def set_tags(self, tags: dict) -> None:
        self.result["tags"].update({k: str(v)[:5000] for k, v in tags.items()})

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if not Path(path).exists():  # a missing file is the stage's business, not a tracking failure
            return warn(f"{path} does not exist; not logged to MLflow")
        self.result["artifacts"].append([str(Path(path).resolve()), artifact_path])

    def log_image(self, image, name: str) -> None:
        """An (H, W, 3) uint8 array as a PNG artifact under images/."""
        from PIL import Image

        rel = f"images/{len(self.result['artifacts']):04d}/{name}"
        (self.scratch / rel).parent.mkdir(parents=True)
        Image.fromarray(image).save(self.scratch / rel)
        self.result["artifacts"].append([rel, "images"])

    def log_dataset(self, data_dir: str | Path, context: str = "training") -> None:
        self.result["datasets"].append([str(Path(data_dir).resolve()), context])

    def log_model(self, checkpoint: str | Path, registered_name: str, tags: dict | None = None,
                  evaluator_meta: dict | None = None) -> None:
        """The generator of `checkpoint` (or, given `evaluator_meta` = identities and image_size, the evaluator
        file itself) as a pyfunc model, registered as `registered_name` with the alias of this execution."""
        from pipeline.mlflow_model import file_sha256, model_alias, prepare_generator

        work = self.scratch / f"model{len(self.result['models'])}"
        try:
            if evaluator_meta is None:
                path, meta, sha = prepare_generator(checkpoint, work)
            else:
                path, meta, sha = work / Path(checkpoint).name, {**evaluator_meta, "model_type": "evaluator"}, \
                    file_sha256(checkpoint)
                work.mkdir()
                shutil.copy2(checkpoint, path)
        except Exception as e:  # noqa: BLE001
            return warn(f"{checkpoint}: the model is not logged to MLflow ({type(e).__name__}: {e})")
        self.result["models"].append({"file": path.relative_to(self.scratch).as_posix(), "meta": meta, "sha": sha,
                                      "name": registered_name, "tags": tags or {}, "alias": model_alias()})

    def log_scored_model(self, checkpoint: str | Path, state: dict, tag: str = "scored_model") -> None:
        """Tag the run with the registered version of the model in `checkpoint` (found by its sha256)."""
        from pipeline.mlflow_model import file_sha256

        name = f"lrlivae-baseline-{state.get('kind')}" if "baseline_config" in state else f"lrlivae-{state.get('stage')}"
        self.result["scored"].append([name, file_sha256(checkpoint), tag])

    def pending(self) -> list[str]:
        """What of the result is not logged (after the stage ended: what waits in mlflow-pending/)."""
        return [p for p in result_parts(self.result) if p not in self.result["done"]]


def _open(t: Tracker, root: Path) -> None:
    """Start the stage's run under its parent run (logging first what waits for this store), with its params."""
    import mlflow
    from mlflow.entities import Param

    try:
        mlflow.set_tracking_uri(t.uri)
        t.client = mlflow.MlflowClient(t.uri)
        exp_id = parent.ensure_experiment(t.client, t.uri, root)
        sync_pending(root, t.uri, only_uri=t.uri, announce=True)
        t.parent_id = parent.find_or_create_parent(t.client, exp_id, t.result["execution"])
        t.client.update_run(t.parent_id, status="RUNNING")
        t.run_id = t.result["run_id"] = mlflow.start_run(
            run_name=t.result["run_name"], experiment_id=exp_id, parent_run_id=t.parent_id, tags=t.result["tags"],
            log_system_metrics=t.stage in TRAINING_STAGES).info.run_id  # CPU, memory (GPU) every 10 s
        t.client.log_batch(t.run_id, params=[Param(k, v) for k, v in t.result["params"].items()])
    except Exception as e:  # noqa: BLE001
        t._failed(e)


@contextlib.contextmanager
def stage_run(stage: str, params: dict, params_path: str | Path) -> Iterator[Tracker]:
    """Open one MLflow run for a stage execution, nested under its execution's parent run, tagged and with
    every param logged; when the stage ends, log its result, or keep what was not logged in mlflow-pending/."""
    import mlflow

    from pipeline.params import flatten, params_hash

    with keep_env_uri():
        quiet_mlflow()
        root = repo_root()
        exp_name = os.environ.get("DVC_EXP_NAME", "")
        commit = git_output(root, "rev-parse", "HEAD") or "unknown"
        phash = params_hash(params_path) if Path(params_path).exists() else ""
        ex = parent.execution(root, params, params_path, commit, phash)
        tags = {"stage": stage, "git_commit": commit, "mlflow.source.git.commit": commit, "dvc_exp_name": exp_name,
                "params_hash": phash, "execution_key": ex["key"], "run_type": "stage"}
        t = Tracker(stage, tracking_uri(root), ex, {k: str(v)[:6000] for k, v in flatten(params).items()}, tags)
        t.result["run_name"] = stage + (f"@{exp_name}" if exp_name else "")
        _open(t, root)
        try:
            yield t
            t.result["status"] = "FINISHED"
        finally:
            t.result["status"] = "FINISHED" if t.result["status"] == "FINISHED" else "FAILED"
            _close(t, root)
            with contextlib.suppress(Exception):
                mlflow.end_run(status=t.result["status"])  # the fluent run's state (and its system metrics)


def _close(t: Tracker, root: Path) -> None:
    if t.run_id and not t.failure:
        try:
            publish(t.client, t.run_id, t.parent_id, t.result, t.scratch)
        except Exception as e:  # noqa: BLE001
            t._failed(e)
    left = t.pending()
    if not left:
        return shutil.rmtree(t.scratch, ignore_errors=True)
    what = ", ".join([f"{len(t.result['metrics'])} metric batch(es)"] * bool(t.result["metrics"]) + left)
    try:
        now = time.time()  # names sort as the stages ran: a model is registered before its scoring is synced
        d = Path(root) / PENDING / f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(now))}.{int(now % 1 * 1000):03d}-{t.stage}-{uuid.uuid4().hex[:8]}"
        d.parent.mkdir(parents=True, exist_ok=True)
        (t.scratch / "record.json").write_text(json.dumps(t.result, indent=1))
        shutil.move(str(t.scratch), d.with_name("." + d.name))  # then renamed whole: never half a record
        os.replace(d.with_name("." + d.name), d)
        warn(f"MLflow did not get {what} of stage {t.stage} ({t.failure}); kept in {d}; `lrlivae mlflow-sync` "
              f"logs them (the next stage run against {t.uri} tries too)")
    except OSError as e:
        warn(f"MLflow did not get {what} of stage {t.stage}, and keeping them failed too: {e}")
