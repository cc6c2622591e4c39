"""The face-alignment networks' pretrained weights and the per-process model cache.

The weights live in the torch hub checkpoint folder ($TORCH_HOME/hub/checkpoints, by default
~/.cache/torch/hub/checkpoints). When a file is missing a download is tried; if that fails
`MissingWeightsError` says which files to put where.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Callable

S3FD_FILE = "s3fd-619a316812.pth"
FAN_FILE = "2DFAN4-11f355bf06.pth.tar"
WEIGHT_URLS = {
    S3FD_FILE: "https://www.adrianbulat.com/downloads/python-fan/" + S3FD_FILE,
    FAN_FILE: "https://www.adrianbulat.com/downloads/python-fan/" + FAN_FILE,
}


class MissingWeightsError(RuntimeError):
    """Pretrained weights of a face-alignment network are not available and cannot be fetched."""


def checkpoint_dir() -> Path:
    """Where face-alignment looks for weights: torch hub's folder + "/checkpoints"."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def _download(url: str, dest: Path, timeout_s: float = 60.0) -> None:
    """Fetch url into dest atomically (a partial download never takes dest's name)."""
    import shutil
    import tempfile
    import urllib.request

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as resp:
            shutil.copyfileobj(resp, out, 1 << 20)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def ensure_weights(filenames: list[str] | tuple[str, ...], allow_download: bool = True) -> dict[str, Path]:
    """Paths of the named checkpoint files in `checkpoint_dir()`, downloading missing ones when
    allowed. Raises MissingWeightsError naming every file needed and where it must go."""
    folder = checkpoint_dir()
    paths = {f: folder / f for f in filenames}
    failure = ""
    for f, p in paths.items():
        if p.is_file():
            continue
        if not allow_download:
            failure = "downloads are disabled"
            break
        try:
            _download(WEIGHT_URLS[f], p)
        except Exception as e:  # noqa: BLE001 - any download failure gets the same advice
            failure = f"download failed: {type(e).__name__}: {e}"
            break
    missing = [f for f, p in paths.items() if not p.is_file()]
    if missing:
        lines = "\n".join(f"  {paths[f]}   (from {WEIGHT_URLS[f]})" for f in missing)
        raise MissingWeightsError(
            "face-alignment weights are missing and could not be fetched ("
            + (failure or "not found")
            + ").\nPlace these files (plain PyTorch state dicts) at:\n"
            + lines
            + "\nThe folder is $TORCH_HOME/hub/checkpoints (TORCH_HOME defaults to ~/.cache/torch)."
        )
    return paths


def resolve_device(device: str) -> str:
    """Map "auto" to "cuda" when available, else "cpu"; other device names pass through."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


_MODELS: dict[tuple, Any] = {}
_MODELS_LOCK = threading.Lock()


def cached_model(key: tuple, build: Callable[[], Any]) -> Any:
    """Build a network once per process per key."""
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = build()
        return _MODELS[key]
