"""The pending folder: MLflow logging a stage could not do, kept on disk and logged later.

When the tracking store goes away in the middle of a stage, the stage finishes (its outputs and reports
are written regardless) and writes what was not logged to `<repo root>/mlflow-pending/<time>-<stage>-<id>/`:
`record.json` (the run's id, tracking URI, execution and its journal of operations, each marked done or
not; pipeline.tracking_ops) and `files/` (copies of the artifacts and the model not yet logged).
`lrlivae mlflow-sync` (and the start of every later stage run against the same store) replays each
record: into the same run when the store still has it, else into a new run; the record is removed once
everything in it is logged. A record being synced is renamed `*.syncing` first, so two processes never
log it twice.
"""
from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

PENDING = "mlflow-pending"
FORMAT = 1


def pending_dir(root: Path) -> Path:
    return Path(root) / PENDING


def pending_records(root: Path) -> list[Path]:
    d = pending_dir(root)
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if p.is_dir() and (p / "record.json").is_file()
                  and not p.name.startswith(".") and not p.name.endswith(".syncing"))


def write_pending(root: Path, record: dict) -> Path:
    """Write `record` (ops with file paths not yet logged are copied into files/) atomically; return its folder."""
    base = pending_dir(root)
    base.mkdir(parents=True, exist_ok=True)
    name = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{record.get('stage', 'run')}-{uuid.uuid4().hex[:8]}"
    tmp = base / f".{name}.tmp"
    (tmp / "files").mkdir(parents=True)
    for i, op in enumerate(record["ops"]):
        key = {"artifact": "path", "model": "file"}.get(op["op"])
        if key is None or op["done"]:
            continue
        src = Path(op[key])
        if not src.exists():
            op["missing"] = True
            continue
        rel = Path("files") / f"{i:05d}" / src.name
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, tmp / rel)
        op[key] = rel.as_posix()
    (tmp / "record.json").write_text(json.dumps(record, indent=1))
    os.replace(tmp, base / name)
    return base / name


def describe(ops: list[dict]) -> str:
    """'3 metric batches, 2 artifacts, the model lrlivae-train_joint' for the ops not done."""
    todo = [op for op in ops if not op["done"]]
    counts: dict[str, int] = {}
    for op in todo:
        counts[op["op"]] = counts.get(op["op"], 0) + 1
    parts = [f"{counts[k]} {label}" for k, label in (("metrics", "metric batch(es)"), ("params", "param batch(es)"),
                                                    ("tags", "tag batch(es)"), ("artifact", "artifact(s)"),
                                                    ("dataset", "dataset input(s)"),
                                                    ("parent_metrics", "headline batch(es) of the parent run"))
             if counts.get(k)]
    parts += [f"the model {op['registered_name']}" for op in todo if op["op"] == "model"]
    parts += ["the scored model version tag" for op in todo if op["op"] == "scored"]
    if counts.get("parent"):
        parts.append("the link to the parent run")
    if counts.get("end"):
        parts.append("the run's end status")
    return ", ".join(parts) or "nothing"


@dataclass
class SyncResult:
    record: Path
    ok: bool
    run_id: str | None
    message: str


def _sync_one(d: Path, root: Path, uri: str) -> SyncResult:
    import mlflow

    from pipeline.tracking_ops import apply, ensure_experiment

    claimed = d.with_name(d.name + ".syncing")
    try:
        os.replace(d, claimed)
    except OSError:
        return SyncResult(d, False, None, "taken by another process")
    rec = json.loads((claimed / "record.json").read_text())
    try:
        mlflow.set_tracking_uri(uri)
        client = mlflow.MlflowClient(uri)
        exp_id = ensure_experiment(client, uri, root)
        run_id, new = rec.get("run_id"), True
        if run_id:
            try:
                new = client.get_run(run_id).info.lifecycle_stage != "active"
            except Exception:
                new = True
        if new:
            run_id = client.create_run(exp_id, run_name=rec.get("run_name"), start_time=rec.get("start_time")).info.run_id
            rec["run_id"] = run_id
            for op in rec["ops"]:  # the run is gone (or never was): replay everything into the new one
                op["was_done"], op["done"] = op.get("was_done", op["done"]), False
        ctx = {"base": str(claimed), "replay_done": True}
        for op in rec["ops"]:
            if not op["done"] or op["op"] == "parent":  # the parent link gives ctx its parent id
                apply(client, run_id, dict(op, done=op.get("was_done", False)), ctx)
                op["done"] = True
    except Exception as e:
        (claimed / "record.json").write_text(json.dumps(rec, indent=1))
        os.replace(claimed, d)
        return SyncResult(d, False, rec.get("run_id"), f"{type(e).__name__}: {e}")
    shutil.rmtree(claimed, ignore_errors=True)
    return SyncResult(d, True, run_id, "logged")


def sync_pending(root: Path, uri: str, only_uri: str | None = None) -> list[SyncResult]:
    """Log every pending record (those first written for `only_uri`, when given) to the store at `uri`."""
    from pipeline.tracking_env import keep_env_uri

    with keep_env_uri():
        return _sync_all(root, uri, only_uri)


def _sync_all(root: Path, uri: str, only_uri: str | None) -> list[SyncResult]:
    out = []
    for d in pending_records(root):
        try:
            rec_uri = json.loads((d / "record.json").read_text()).get("uri")
        except (OSError, ValueError) as e:
            out.append(SyncResult(d, False, None, f"unreadable record: {e}"))
            continue
        if only_uri is not None and rec_uri != only_uri:
            continue
        out.append(_sync_one(d, root, uri))
    return out
