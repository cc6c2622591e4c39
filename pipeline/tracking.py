"""MLflow tracking for stage runs: one run per stage execution.

Tracking URI: `MLFLOW_TRACKING_URI` if set, else `sqlite:///<repo root>/mlflow.db` with artifacts in
`<repo root>/mlruns`. The repo root is `DVC_ROOT` when DVC runs the stage (so temporary and queued
experiments log to the same store), else the enclosing git work tree, else the working directory.

A stage never fails because of tracking: when the configured server is unreachable the run warns once,
logs to the default sqlite store instead and says where; any later logging error is warned about once
and logging is switched off for the rest of the stage.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import Iterator

EXPERIMENT = "lrlivae"


def repo_root() -> Path:
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, timeout=10, check=True
        )
        return Path(out.stdout.strip()).resolve()
    except (OSError, subprocess.SubprocessError):
        return Path.cwd().resolve()


def git_commit(root: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def default_uri(root: Path) -> str:
    return f"sqlite:///{root / 'mlflow.db'}"


def _server_reachable(uri: str, timeout: float = 3.0) -> bool:
    """True when an http(s) tracking server answers (any HTTP status counts as an answer)."""
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _warn(msg: str) -> None:
    print(f"[lrlivae] warning: {msg}", file=sys.stderr, flush=True)


class Tracker:
    """A thin, failure-tolerant wrapper around one active MLflow run."""

    def __init__(self, mlflow_module, run_id: str | None, uri: str):
        self._mlflow = mlflow_module
        self.run_id = run_id
        self.uri = uri
        self._broken = run_id is None

    def _call(self, fn_name: str, *args, **kwargs) -> None:
        if self._broken:
            return
        try:
            getattr(self._mlflow, fn_name)(*args, **kwargs)
        except Exception as e:  # tracking must never stop a stage
            self._broken = True
            _warn(f"MLflow logging failed ({type(e).__name__}: {e}); the stage goes on without tracking")

    def log_params(self, params: dict) -> None:
        items = [(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 90):
            self._call("log_params", dict(items[i : i + 90]))

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        clean = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if clean:
            self._call("log_metrics", clean, step=step)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._call("log_artifact", str(path), artifact_path=artifact_path)

    def log_image(self, image, name: str) -> None:
        """Log an (H, W, 3) uint8 array as a PNG artifact under images/."""
        if self._broken:
            return
        from PIL import Image

        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / name
            Image.fromarray(image).save(p)
            self._call("log_artifact", str(p), artifact_path="images")

    def set_tags(self, tags: dict) -> None:
        self._call("set_tags", {k: str(v) for k, v in tags.items()})


def _start(mlflow, uri: str, root: Path, run_name: str):
    mlflow.set_tracking_uri(uri)
    if uri.startswith("sqlite:"):
        exp = mlflow.get_experiment_by_name(EXPERIMENT)
        if exp is None:
            mlflow.create_experiment(EXPERIMENT, artifact_location=(root / "mlruns").as_uri())
    mlflow.set_experiment(EXPERIMENT)
    return mlflow.start_run(run_name=run_name)


@contextlib.contextmanager
def stage_run(stage: str, params: dict, params_path: str | Path) -> Iterator[Tracker]:
    """Open one MLflow run for a stage execution, tagged and with every param logged."""
    from pipeline.params import flatten, params_hash

    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    import logging

    for name in ("alembic", "mlflow.store.db.utils"):
        logging.getLogger(name).setLevel(logging.WARNING)
    import mlflow

    root = repo_root()
    uri = os.environ.get("MLFLOW_TRACKING_URI") or default_uri(root)
    if uri.startswith(("http://", "https://")) and not _server_reachable(uri):
        fallback = default_uri(root)
        _warn(f"MLflow server {uri} is unreachable; logging locally to {fallback} (artifacts in {root / 'mlruns'})")
        uri = fallback
    exp_name = os.environ.get("DVC_EXP_NAME", "")
    run_name = f"{stage}" + (f"@{exp_name}" if exp_name else "")
    active = None
    try:
        active = _start(mlflow, uri, root, run_name)
    except Exception as e:
        fallback = default_uri(root)
        if uri != fallback:
            _warn(f"MLflow store {uri} failed ({type(e).__name__}: {e}); logging locally to {fallback}")
            uri = fallback
            try:
                active = _start(mlflow, uri, root, run_name)
            except Exception as e2:
                _warn(f"MLflow store {uri} failed too ({type(e2).__name__}: {e2}); the stage runs without tracking")
        else:
            _warn(f"MLflow store {uri} failed ({type(e).__name__}: {e}); the stage runs without tracking")
    tracker = Tracker(mlflow, active.info.run_id if active else None, uri)
    tracker.set_tags(
        {
            "stage": stage,
            "git_commit": git_commit(root),
            "dvc_exp_name": exp_name,
            "params_hash": params_hash(params_path) if Path(params_path).exists() else "",
        }
    )
    tracker.log_params(flatten(params))
    status = "FAILED"
    try:
        yield tracker
        status = "FINISHED"
    finally:
        if active is not None:
            with contextlib.suppress(Exception):
                mlflow.end_run(status=status)
