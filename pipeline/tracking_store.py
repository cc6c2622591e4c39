"""The MLflow store: where it is, and logging a stage's result into it (`publish`), at the stage's end or
later from `<repo root>/mlflow-pending/` (`sync_pending`, `lrlivae mlflow-sync`).

A pending record is a folder: `record.json` (pipeline.tracking.Tracker.result: the run's id and store, its
params, tags, metric batches not logged, the stage's output files by path, the files made for MLflow
(pictures, model files) under the folder, and the parts already logged) beside those files. It is written
whole (renamed into place), claimed by renaming before it is synced (two processes never log it twice),
and removed once every part is logged.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

from pipeline import tracking_parent as parent

PENDING = "mlflow-pending"


def warn(msg: str) -> None:
    print(f"[lrlivae] warning: {msg}", file=sys.stderr, flush=True)


def git_output(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def repo_root() -> Path:
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
    return Path(git_output(Path.cwd(), "rev-parse", "--show-toplevel") or Path.cwd()).resolve()


def tracking_uri(root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / 'mlflow.db'}"


@contextlib.contextmanager
def keep_env_uri() -> Iterator[None]:
    """Restore MLFLOW_TRACKING_URI afterwards (mlflow.set_tracking_uri also sets it in os.environ)."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        yield
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        if before is not None:
            os.environ["MLFLOW_TRACKING_URI"] = before


def quiet_mlflow() -> None:
    """Bounded HTTP calls, no progress bars, no alembic chatter."""
    import logging

    for k, v in {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}.items():
        os.environ.setdefault(k, v)
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.models.model", "mlflow.pyfunc", "mlflow.system_metrics",
                 "mlflow.store.model_registry.abstract_store", "mlflow.system_metrics.system_metrics_monitor"):
        logging.getLogger(name).setLevel(logging.WARNING)


def metric_entities(batches):
    from mlflow.entities import Metric

    return [Metric(k, v, ts, step) for m, step, ts in batches for k, v in m.items()]


def result_parts(r: dict) -> list[str]:
    return (["params and metrics"] * bool(r["params"] or r["tags"] or r["metrics"]) + [f"file {i}" for i in range(len(r["artifacts"]))]
            + [f"data set {i}" for i in range(len(r["datasets"]))] + [f"model {m['name']}" for m in r["models"]]
            + ["scored model"] * bool(r["scored"]) + ["parent run", "end"])


def publish(client, run_id: str, parent_id: str | None, r: dict, files: Path) -> None:
    """Log result `r` (Tracker.result) into run `run_id`, each part once (`r["done"]` names those logged);
    relative file paths are under `files`."""
    import mlflow
    from mlflow.entities import Param, RunTag

    from pipeline.mlflow_model import log_pyfunc, registered_version

    def tags(run, t):
        client.log_batch(run, tags=[RunTag(k, str(v)) for k, v in t.items()])

    def run():
        client.log_batch(run_id, metrics=metric_entities(r["metrics"]), params=[Param(k, v) for k, v in r["params"].items()],
                         tags=[RunTag(k, v) for k, v in r["tags"].items()])

    def artifact(path, to):
        if (files / path).exists():  # a stage output changed since: the current one is in its own run
            client.log_artifact(run_id, str(files / path), artifact_path=to)

    def dataset(d, context):
        client.log_inputs(run_id, datasets=[dataset_input(Path(d), context)])

    def model(m):
        active = mlflow.active_run()
        with (contextlib.nullcontext() if active and active.info.run_id == run_id else
              mlflow.start_run(run_id=run_id, nested=active is not None)):
            info, version = log_pyfunc(files / m["file"], m["meta"], m["sha"], m["name"], m["tags"], m["alias"])
        tags(run_id, {"registered_model": m["name"], "registered_model_version": version, "logged_model_uri":
                      info.model_uri, "model_uri": f"models:/{m['name']}/{version}",
                      "model_alias_uri": f"models:/{m['name']}@{m['alias']}"})

    def scored():
        for name, sha, t in r["scored"]:
            version = registered_version(client, name, sha)
            tags(run_id, {t: name, f"{t}_version": version or "not registered", f"{t}_sha256": sha,
                          **({f"{t}_uri": f"models:/{name}/{version}"} if version else {})})

    def to_parent():
        if parent_id:
            client.log_batch(parent_id, metrics=metric_entities([[r["parent_metrics"], 0, r["start"]]]),
                             tags=[RunTag(k, v) for k, v in r["parent_tags"].items()])

    def end():
        client.set_terminated(run_id, status=r["status"])
        if parent_id:
            client.set_terminated(parent_id, status=r["status"])

    steps = {"params and metrics": run, "scored model": scored, "parent run": to_parent, "end": end,
             **{f"file {i}": (lambda a=a: artifact(*a)) for i, a in enumerate(r["artifacts"])},
             **{f"data set {i}": (lambda d=d: dataset(*d)) for i, d in enumerate(r["datasets"])},
             **{f"model {m['name']}": (lambda m=m: model(m)) for m in r["models"]}}
    for part in result_parts(r):
        if part not in r["done"]:
            steps[part]()
            r["done"].append(part)


def aligned_digest(data_dir: str | Path, limit: int = 1 << 20) -> str:
    """16 hex digits that change whenever an aligned set's faces.npy or index.parquet does: sha256 of each
    file's size and first and last MiB (cheap on large sets)."""
    h = hashlib.sha256()
    for name in ("faces.npy", "index.parquet"):
        path, part = Path(data_dir) / name, hashlib.sha256(str((Path(data_dir) / name).stat().st_size).encode())
        with open(path, "rb") as f:
            part.update(f.read(limit))
            f.seek(max(0, path.stat().st_size - limit))
            part.update(f.read(limit))
        h.update(part.hexdigest().encode())
    return h.hexdigest()[:16]


def dataset_input(data_dir: Path, context: str):
    """An aligned set as an MLflow dataset input: its index table, named and with the digest of `aligned_digest`."""
    import warnings

    import mlflow.data
    import pandas as pd
    from mlflow.entities import DatasetInput, InputTag

    with warnings.catch_warnings():  # "a local folder can be read in several ways"; the integer-column hint
        warnings.simplefilter("ignore", UserWarning)
        ds = mlflow.data.from_pandas(pd.read_parquet(data_dir / "index.parquet"), source=str(data_dir),
                                     name=f"aligned/{data_dir.name}", digest=aligned_digest(data_dir))
        return DatasetInput(ds._to_mlflow_entity(), [InputTag("mlflow.data.context", context)])


def pending_records(root: Path) -> list[Path]:
    d = Path(root) / PENDING
    return sorted(p for p in d.iterdir() if (p / "record.json").is_file() and not p.name.startswith(".")) \
        if d.is_dir() else []


def sync_pending(root: Path, uri: str, only_uri: str | None = None, announce: bool = False) -> list[tuple]:
    """Log every pending record (those first meant for `only_uri`, when given) to the store at `uri`: into
    the same run where the store still has it, else a new one. Returns (record, ok, run id, message)."""
    import mlflow

    out = []
    for d in pending_records(root):
        claimed = d.with_name("." + d.name + ".syncing")  # one process per record
        try:
            r = json.loads((d / "record.json").read_text())
            if only_uri and r.get("uri") != only_uri:
                continue
            os.replace(d, claimed)
        except (OSError, ValueError) as e:
            out.append((d, False, None, f"not readable: {e}"))
            continue
        try:
            client = mlflow.MlflowClient(uri)
            exp_id = parent.ensure_experiment(client, uri, Path(root))
            pid = parent.find_or_create_parent(client, exp_id, r["execution"])
            with contextlib.suppress(Exception):
                if client.get_run(r["run_id"]).info.lifecycle_stage == "active":
                    pid = None  # the same run, nested already
            if pid:  # a new run, named as the stage named it
                tags = {"mlflow.runName": r["run_name"], **r["tags"], "mlflow.parentRunId": pid}
                r["run_id"] = client.create_run(exp_id, r["start"], tags, tags["mlflow.runName"]).info.run_id
                r["done"] = []
            with keep_env_uri():
                mlflow.set_tracking_uri(uri)
                publish(client, r["run_id"], pid or client.get_run(r["run_id"]).data.tags.get("mlflow.parentRunId"), r,
                        claimed)
            shutil.rmtree(claimed, ignore_errors=True)
            out.append((d, True, r["run_id"], "logged"))
        except Exception as e:  # noqa: BLE001
            (claimed / "record.json").write_text(json.dumps(r, indent=1))
            os.replace(claimed, d)
            out.append((d, False, r.get("run_id"), f"{type(e).__name__}: {e}"))
    if announce and any(ok for _, ok, _, _ in out):
        print(f"[lrlivae] logged {sum(ok for _, ok, _, _ in out)} pending MLflow record(s) to {uri}", file=sys.stderr)
    return out
