"""Shared fixtures: a shrunken copy of the real params.yaml, and an isolated MLflow store."""
from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def set_param(p: dict, key: str, value) -> dict:
    """p[a][b][c] = value for key "a.b.c", creating the sections params.yaml leaves out."""
    node = p
    *parents, last = key.split(".")
    for k in parents:
        if not isinstance(node.get(k), dict):
            node[k] = {}
        node = node[k]
    node[last] = value
    return p


def tiny_params(**overrides) -> dict:
    """The real params.yaml, shrunk so every stage runs in seconds on CPU."""
    p = yaml.safe_load((REPO / "params.yaml").read_text())
    set_param(p, "synth.labeled", {"n_identities": 4, "images_per_identity": 8})
    set_param(p, "synth.unlabeled", {"n_identities": 2, "images_per_identity": 8})  # >= one batch of 8 train rows
    set_param(p, "synth.workers", 1)
    set_param(p, "align.workers", 1)
    for k, v in {"seeds": [0], "n_per_class": 32, "epochs": 2, "batch_size": 16, "eval_per_class": 40,
                 "swd_projections": 16, "figure_epochs": [1, 2], "figure_per_class": 20}.items():
        set_param(p, f"toy.{k}", v)
    for key, value in overrides.items():
        set_param(p, key, value)
    return p


def write_params(path: Path, params: dict) -> Path:
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def copy_dvc_yaml(root: Path) -> Path:
    """The real dvc.yaml copied into `root`, a stand-in repository root: the commands read their path
    defaults from the dvc.yaml of the repository they run in (DVC_ROOT, else the working directory)."""
    return Path(shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml"))


def closed_port() -> int:
    """A loopback port with nothing listening on it."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def isolated_mlflow(tmp_path, monkeypatch):
    """Every run logs into tmp_path, a stand-in repository root with the real dvc.yaml (as when DVC runs a
    stage with DVC_ROOT set)."""
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    copy_dvc_yaml(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    return tmp_path
