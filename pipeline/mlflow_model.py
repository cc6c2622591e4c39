"""Trained generators as MLflow models: logging and registering a slim checkpoint as a pyfunc model
(the model itself, pipeline.face_generator, is what MLflow rebuilds on load).

`mlflow.pyfunc.load_model("models:/lrlivae-train_joint/1").predict(df)` generates faces:
input  a DataFrame, one row per request: `identity` (class index, 0 .. n_classes - 1; the names are in
       the model's metadata, `identities`), optional `n` (faces for that identity, default 1) and `seed`
       (default 0: the same request gives the same faces);
output uint8 RGB images (sum of n, S, S, 3), the rows' faces one request after another.

The slim checkpoint (`generator.pt`) holds only the generator's weights, its config and the identity list
(a plain dict, `torch.load(..., weights_only=True)`), not the optimiser state of the DVC checkpoint.
Loading needs this project installed (`lrlivae` and `pipeline` importable). This module imports nothing
of the library, so logging a model adds nothing to what a stage depends on.
"""
from __future__ import annotations

import hashlib
import os
import re
import warnings
from pathlib import Path

import numpy as np

GENERATOR_FILE = "generator.pt"


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def slim_checkpoint(checkpoint: str | Path, out: str | Path) -> dict:
    """Write the generator part of a stage checkpoint (Lr-LiVAE or baseline) to `out`; return its meta."""
    import torch

    try:
        st = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{checkpoint}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    family = "baseline" if "baseline_config" in st else "lrlivae"
    cfg_key = "baseline_config" if family == "baseline" else "model_config"
    if cfg_key not in st or "model" not in st:
        raise ValueError(f"{checkpoint}: not a generator checkpoint (no {cfg_key} or weights)")
    slim = {"family": family, "config": st[cfg_key], "model": st["model"], "identities": list(st.get("identities", [])),
            "stage": st.get("stage", ""), "kind": st.get("kind", "")}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(slim, out)
    size = int(slim["config"]["net"]["image_size"] if family == "baseline" else slim["config"]["image_size"])
    return {"family": family, "identities": slim["identities"], "image_size": size, "stage": slim["stage"],
            "kind": slim["kind"]}


def signature(meta: dict):
    """The model's signature and input example: a generator reads requests (identity, n, seed) and returns
    (N, S, S, 3) uint8 faces; the evaluator reads (N, S, S, 3) uint8 faces and returns (N, C) p(y|x)."""
    import pandas as pd
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    s = int(meta["image_size"])
    faces = Schema([TensorSpec(np.dtype(np.uint8), (-1, s, s, 3))])
    if meta.get("model_type") == "evaluator":
        probs = Schema([TensorSpec(np.dtype(np.float64), (-1, len(meta["identities"])))])
        return ModelSignature(inputs=faces, outputs=probs), np.zeros((1, s, s, 3), np.uint8)
    inputs = Schema([ColSpec("long", "identity"), ColSpec("long", "n", required=False),
                     ColSpec("long", "seed", required=False)])
    return ModelSignature(inputs=inputs, outputs=faces), pd.DataFrame({"identity": [0], "n": [2], "seed": [0]})


def prepare_generator(checkpoint: str | Path, work_dir: str | Path) -> tuple[Path, dict, str]:
    """(slim checkpoint path, its meta, the stage checkpoint's sha256): what `log_pyfunc` logs."""
    slim_path = Path(work_dir) / GENERATOR_FILE
    return slim_path, slim_checkpoint(checkpoint, slim_path), file_sha256(checkpoint)


def model_alias() -> str:
    """The registry alias of a version registered now: `exp-<name>` inside a DVC experiment, else `champion`
    (the workspace's own pipeline): `models:/lrlivae-finetune_semi@champion`."""
    exp = re.sub(r"[^A-Za-z0-9_-]", "-", os.environ.get("DVC_EXP_NAME", ""))
    return f"exp-{exp}" if exp else "champion"


def log_pyfunc(path: str | Path, meta: dict, sha: str, registered_name: str, tags: dict | None = None,
               alias: str | None = None):
    """Log a model file (a slim generator checkpoint, or the evaluator when meta["model_type"] says so) as a
    pyfunc model of the active run and register it under `registered_name`; tag the version with the stage
    checkpoint's sha256 and point `alias` at it. Returns (ModelInfo, version)."""
    import pandas as pd
    import torch

    import mlflow

    kind = meta.get("model_type", "generator")
    code = {"generator": "face_generator_pyfunc.py", "evaluator": "evaluator_pyfunc.py"}[kind]
    with warnings.catch_warnings():
        # "add type hints": the signature is given; the inference's hint on integer columns: none is missing
        warnings.simplefilter("ignore", UserWarning)
        sig, example = signature(meta)
        info = mlflow.pyfunc.log_model(
            name=kind, python_model=str(Path(__file__).with_name(code)), artifacts={kind: str(path)},
            signature=sig, input_example=example,
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}",
                              f"pandas=={pd.__version__}"],
            metadata={**{k: meta.get(k, "") for k in ("identities", "stage", "kind", "image_size")},
                      "checkpoint_sha256": sha},
            registered_model_name=registered_name, await_registration_for=60,
        )
    version = getattr(info, "registered_model_version", None)
    if version is not None:
        client = mlflow.MlflowClient()
        for k, v in {"checkpoint_sha256": sha, **(tags or {})}.items():
            client.set_model_version_tag(registered_name, str(version), k, str(v))
        if alias:
            client.set_registered_model_alias(registered_name, alias, str(version))
    return info, version


def registered_version(client, name: str, sha: str) -> str | None:
    """The version of registered model `name` whose checkpoint has this sha256 (the newest), or None."""
    try:
        found = client.search_model_versions(f"name = '{name}' and tags.checkpoint_sha256 = '{sha}'")
    except Exception:  # a registry without tag search: look through the versions
        found = [v for v in client.search_model_versions(f"name = '{name}'") if v.tags.get("checkpoint_sha256") == sha]
    return str(max(int(v.version) for v in found)) if found else None
