"""Shared fixtures: a shrunken copy of the real params.yaml, and an isolated MLflow store."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def tiny_params(**overrides) -> dict:
    """The real params.yaml, shrunk so every stage runs in seconds on CPU."""
    p = yaml.safe_load((REPO / "params.yaml").read_text())
    p["synth"]["labeled"] = {"n_identities": 4, "images_per_identity": 8}
    p["synth"]["unlabeled"] = {"n_identities": 2, "images_per_identity": 8}  # >= one batch of 8 train rows
    p["synth"]["workers"] = 1
    p["align"]["workers"] = 1
    p["toy"].update({"seeds": [0], "n_per_class": 32, "epochs": 2, "batch_size": 16, "eval_per_class": 40,
                     "swd_projections": 16, "figure_epochs": [1, 2], "figure_per_class": 20})
    for key, value in overrides.items():
        node = p
        *parents, last = key.split(".")
        for k in parents:
            node = node[k]
        node[last] = value
    return p


def write_params(path: Path, params: dict) -> Path:
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def closed_port() -> int:
    """A loopback port with nothing listening on it."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def isolated_mlflow(tmp_path, monkeypatch):
    """Every run logs into tmp_path (as when DVC runs a stage with DVC_ROOT set)."""
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    return tmp_path
