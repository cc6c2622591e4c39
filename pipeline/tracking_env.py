"""Where MLflow logs and how quietly: the repo root, the commit, the tracking URI (MLFLOW_TRACKING_URI, else
sqlite:///<repo root>/mlflow.db), whether a server answers, and the environment MLflow reads."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator


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


def tracking_uri(root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or default_uri(root)


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


@contextlib.contextmanager
def keep_env_uri() -> Iterator[None]:
    """Restore MLFLOW_TRACKING_URI afterwards: mlflow.set_tracking_uri also sets it in os.environ, which
    would carry one stage's store (or fallback) over to whatever the process does next."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before


def quiet_mlflow() -> None:
    """Bounded HTTP calls, no progress bars, no alembic chatter."""
    import logging

    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.models.model", "mlflow.pyfunc",
                 "mlflow.store.model_registry.abstract_store", "mlflow.system_metrics",
                 "mlflow.system_metrics.system_metrics_monitor"):
        logging.getLogger(name).setLevel(logging.WARNING)
