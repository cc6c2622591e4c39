"""What a stage run logs, as replayable operations, and the parent run of a pipeline execution.

Every logging call of a stage is one operation (a plain dict: tags, params, metrics, artifact, dataset,
model, scored, parent, parent_metrics, parent_tags, end), applied at once through `MlflowClient` and kept in the
stage's journal; what could not be applied is written to the pending folder and replayed later by
`lrlivae mlflow-sync` (pipeline.mlflow_sync) with the same `apply`.

Parent run: the stage runs of one pipeline execution (one `dvc repro`, one `dvc exp run`) nest under one
run tagged `run_type = pipeline` and `execution_key = <key>`. The key is the DVC experiment name and its
baseline commit when DVC runs an experiment (DVC_EXP_NAME, DVC_EXP_BASELINE_REV), else the git commit and
the params-file hash, so every stage of the execution computes the same key. Found by that tag or
created; two stages creating it at once both keep the oldest and the other is deleted. The parent holds
the params that differ from the schema defaults (and the paper's symbols, always), a `params_changed`
tag listing them, and the headline metrics of each stage (HEADLINE).
"""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

EXPERIMENT = "lrlivae"
PAPER_SYMBOLS = ("seed", "lambda_lkd", "lambda_kl", "lambda_rec", "n_gm")

# stage -> {metric the stage logs: name on the parent run}; evaluate-like names get "/<model>" when a
# stage scores another model than ours (evaluate_baseline@cvae, evaluate's train_joint model).
_EVAL = ("inception_score", "inception_score_std", "inception_score_real", "fcd", "generated_class_accuracy",
         "intra_class_diversity", "zs_accuracy", "zu_probe_accuracy", "z_probe_accuracy", "disentanglement_gap",
         "inpaint_psnr_eyes", "inpaint_psnr_mouth", "inpaint_psnr_half", "precision", "recall_per_class",
         "sharpness_ratio", "two_sample_accuracy")
_JUDGE = ("identity_judge/accuracy", "identity_judge/auc", "identity_judge/margin")  # real photo sources
_DATA = [f"{s}_{k}" for s in ("labeled", "unlabeled") for k in (
    "identities", "accepted", "rejected", "rejected_no_face", "rejected_file", "people_left_out", "photos_left_out",
    "train", "val", "test")]
HEADLINE: dict[str, dict[str, str]] = {
    "align": {k: f"data/{k}" for k in _DATA},
    "train_gm": {"gm_test_accuracy": "train_gm/gm_test_accuracy"},
    "train_joint": {k: f"train_joint/{k}" for k in ("gm_test_accuracy", "recon_mse_test", "zs_probe_accuracy",
                                                     "zu_probe_accuracy")},
    "finetune_semi": {"after_verification_auc": "verification_auc", "before_verification_auc": "verification_auc_before",
                      "after_swap_identity_follows_source": "swap_identity_follows_source",
                      "after_swap_nuisance_follows_source": "swap_nuisance_follows_source",
                      "gm_labeled_test_accuracy": "finetune_semi/gm_labeled_test_accuracy",
                      "identity_judge/after_swap_follows_zs": "identity_judge/swap_follows_zs"},
    "train_evaluator": {"evaluator_test_accuracy": "evaluator_test_accuracy"},
    "evaluate": {k: k for k in _EVAL + _JUDGE},
    "evaluate_baseline": {k: k for k in _EVAL + _JUDGE},
    "train_baseline": {"recon_mse_test": "train_baseline/recon_mse_test"},
    "compare": {"label_free_identity": "label_free_identity", "label_free_nuisance": "label_free_nuisance"},
    "toy": {k: f"toy/{k}" for k in ("ours_std_ratio_y", "cvaegan_std_ratio_y", "ours_swd", "cvaegan_swd", "real_swd")},
}


def headline(stage: str, metrics: dict, model: str | None = None) -> dict[str, float]:
    """The parent-run names and values of a stage's headline metrics (`<name>/<model>` for other models)."""
    table = HEADLINE.get(stage, {})
    out = {}
    for k, v in metrics.items():
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if k in table:
            out[f"{table[k]}/{model}" if model else table[k]] = float(v)
            continue
        base, _, sub = k.partition("/")  # compare logs `<metric>/<model>`
        if sub and base in table:
            out[f"{table[base]}/{sub}"] = float(v)
    return out


def params_diff(params: dict) -> tuple[dict[str, str], dict[str, str]]:
    """(params for the parent run, the changed ones): the flattened params that differ from the schema
    defaults (pipeline.params), the former plus the paper's symbols whatever their value."""
    from pipeline.params import Params, flatten

    flat = {k: str(v) for k, v in flatten(params).items()}
    try:
        defaults = {k: str(v) for k, v in flatten(Params().model_dump(mode="json")).items()}
    except Exception:  # the schema has required fields: compare with nothing
        defaults = {}
    changed = {k: v for k, v in flat.items() if defaults.get(k) != v}
    return {k: v for k, v in flat.items() if k in PAPER_SYMBOLS or k in changed}, changed


def changed_since(root: Path, params_path: str | Path, rev: str) -> dict[str, str] | None:
    """The keys of the params file whose values differ from the file at commit `rev`, as written in the two
    files (`dvc exp run -S lambda_lkd=0.2` -> {'lambda_lkd': '0.2'}; a key removed: '(default)'). None where
    the commit's file cannot be read (not in git, an overlay of another file)."""
    import subprocess

    import yaml

    from pipeline.params import _read_yaml, flatten

    try:
        rel = Path(params_path).resolve().relative_to(Path(root).resolve()).as_posix()
        out = subprocess.run(["git", "-C", str(root), "show", f"{rev}:{rel}"], capture_output=True, text=True,
                             timeout=10)
        if out.returncode:
            return None
        old = yaml.safe_load(out.stdout) or {}
        if not isinstance(old, dict) or "base" in old:
            return None
        new = flatten(_read_yaml(Path(params_path)))
    except Exception:  # noqa: BLE001 - a description only: never stops a stage
        return None
    old = flatten(old)
    return {k: str(new.get(k, "(default)")) for k in sorted(set(new) | set(old)) if new.get(k) != old.get(k)}


def execution(root: Path, params: dict, params_path: str | Path, commit: str, phash: str) -> dict:
    """The parent-run description every stage of one pipeline execution computes alike."""
    exp = os.environ.get("DVC_EXP_NAME", "")
    base = os.environ.get("DVC_EXP_BASELINE_REV", "") or commit
    if exp:
        key, name = f"exp:{exp}@{base[:12]}", exp
    else:
        key, name = f"repro:{commit[:12]}:{phash}", f"repro@{commit[:7]}-{phash[:6]}"
    diff, changed = params_diff(params)
    since = changed_since(root, params_path, base)
    if since is not None:  # what this execution changed against its baseline commit
        changed = ", ".join(f"{k}={v}" for k, v in since.items()) or f"(as committed in {base[:7]})"
    else:
        changed = ", ".join(f"{k}={v}" for k, v in changed.items()) or "(schema defaults)"
    tags = {"execution_key": key, "run_type": "pipeline", "stage": "pipeline", "git_commit": commit, "dvc_exp_name": exp,
            "dvc_exp_baseline": base, "params_hash": phash, "params_changed": changed[:5000],
            "mlflow.runName": name}
    return {"key": key, "name": name, "params": diff, "tags": tags}


EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}  # the UI opens it on its training runs


def ensure_experiment(client, uri: str, root: Path) -> str:
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        try:
            location = (root / "mlruns").as_uri() if uri.startswith("sqlite:") else None
            return client.create_experiment(EXPERIMENT, artifact_location=location, tags=EXPERIMENT_TAGS)
        except Exception:  # created meanwhile by another stage
            exp = client.get_experiment_by_name(EXPERIMENT)
            if exp is None:
                raise
    for k, v in EXPERIMENT_TAGS.items():
        if exp.tags.get(k) != v:
            client.set_experiment_tag(exp.experiment_id, k, v)
    return exp.experiment_id


def _parents(client, exp_id: str, key: str):
    q = key.replace("'", "")
    runs = client.search_runs([exp_id], f"tags.execution_key = '{q}' and tags.run_type = 'pipeline'", max_results=50)
    return sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))


def find_or_create_parent(client, exp_id: str, ex: dict) -> str:
    """The parent run of execution `ex` (pipeline.tracking_ops.execution): the oldest with its key."""
    found = _parents(client, exp_id, ex["key"])
    if found:
        return found[0].info.run_id
    from mlflow.entities import Param, RunTag

    run = client.create_run(exp_id, run_name=ex["name"], tags=ex["tags"])
    mine = run.info.run_id
    items = [Param(k, v[:6000]) for k, v in ex["params"].items()]
    for i in range(0, len(items), 100):
        client.log_batch(mine, params=items[i : i + 100])
    client.log_batch(mine, tags=[RunTag(k, v) for k, v in ex["tags"].items()])
    found = _parents(client, exp_id, ex["key"])
    oldest = found[0].info.run_id if found else mine
    if oldest != mine:  # another stage created it at the same moment: keep the oldest
        client.delete_run(mine)
    return oldest


def _metrics(client, run_id: str, metrics: dict, step, ts: int) -> None:
    from mlflow.entities import Metric

    items = [Metric(k, float(v), ts, int(step or 0)) for k, v in metrics.items()]
    for i in range(0, len(items), 1000):
        client.log_batch(run_id, metrics=items[i : i + 1000])


def _file(op: dict, key: str, ctx: dict) -> Path | None:
    p = Path(op[key])
    if not p.is_absolute():
        p = Path(ctx.get("base", ".")) / p
    if not p.exists():
        if ctx.get("replay_done") and op.get("done"):
            return None  # logged before to a run that is gone; the file was not kept
        raise FileNotFoundError(f"{p} (kept for MLflow) no longer exists")
    return p


def apply(client, run_id: str, op: dict, ctx: dict) -> None:
    """Apply one logging operation to run `run_id` (ctx: parent_id, base folder of relative files)."""
    from mlflow.entities import Param, RunTag

    kind = op["op"]
    if kind == "tags":
        client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in op["tags"].items()])
    elif kind == "params":
        items = [Param(k, str(v)[:6000]) for k, v in op["params"].items()]
        for i in range(0, len(items), 100):
            client.log_batch(run_id, params=items[i : i + 100])
    elif kind == "metrics":
        _metrics(client, run_id, op["metrics"], op.get("step"), op["ts"])
    elif kind == "artifact":
        p = _file(op, "path", ctx)
        if p is not None:
            client.log_artifact(run_id, str(p), artifact_path=op.get("artifact_path"))
    elif kind == "dataset":
        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        d = op["dataset"]
        client.log_inputs(run_id, datasets=[DatasetInput(Dataset(**d), [InputTag(MLFLOW_DATASET_CONTEXT, op["context"])])])
    elif kind == "model":
        _apply_model(client, run_id, op, ctx)
    elif kind == "scored":
        from pipeline.mlflow_model import registered_version

        version = registered_version(client, op["registered_name"], op["sha"])
        t = op["tag"]
        tags = {t: op["registered_name"], f"{t}_version": version or "not registered", f"{t}_sha256": op["sha"]}
        if version:
            tags[f"{t}_uri"] = f"models:/{op['registered_name']}/{version}"
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    elif kind == "parent":
        exp_id = client.get_run(run_id).info.experiment_id
        ctx["parent_id"] = find_or_create_parent(client, exp_id, op["execution"])
        client.set_tag(run_id, "mlflow.parentRunId", ctx["parent_id"])
        client.update_run(ctx["parent_id"], status="RUNNING")
    elif kind == "parent_metrics":
        if ctx.get("parent_id"):
            _metrics(client, ctx["parent_id"], op["metrics"], 0, op["ts"])
    elif kind == "parent_tags":
        if ctx.get("parent_id"):
            from mlflow.entities import RunTag

            client.log_batch(ctx["parent_id"], tags=[RunTag(k, v) for k, v in op["tags"].items()])
    elif kind == "end":
        client.set_terminated(run_id, status=op["status"], end_time=op["ts"])
        if ctx.get("parent_id"):
            client.set_terminated(ctx["parent_id"], status=op["status"], end_time=op["ts"])
    else:
        raise ValueError(f"unknown MLflow operation {kind!r}")


def _apply_model(client, run_id: str, op: dict, ctx: dict) -> None:
    import mlflow
    from mlflow.entities import RunTag

    from pipeline.mlflow_model import log_pyfunc

    path = _file(op, "file", ctx)
    if path is None:
        return
    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        info, version = log_pyfunc(path, op["meta"], op["sha"], op["registered_name"], op.get("tags"), op.get("alias"))
    else:
        with mlflow.start_run(run_id=run_id, nested=active is not None):
            info, version = log_pyfunc(path, op["meta"], op["sha"], op["registered_name"], op.get("tags"),
                                       op.get("alias"))
    tags = {"registered_model": op["registered_name"], "registered_model_version": str(version),
            "model_uri": f"models:/{op['registered_name']}/{version}", "logged_model_uri": info.model_uri}
    if op.get("alias"):
        tags["model_alias_uri"] = f"models:/{op['registered_name']}@{op['alias']}"
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])


def registered_name(checkpoint_state: dict) -> str:
    """`lrlivae-<stage>` (`lrlivae-baseline-<kind>` for the baselines)."""
    if "baseline_config" in checkpoint_state:
        return f"lrlivae-baseline-{checkpoint_state.get('kind', 'model')}"
    return f"lrlivae-{checkpoint_state.get('stage') or 'model'}"


def dataset_entity(data_dir: Path) -> dict:
    """An MLflow Dataset entity (as a dict) for an aligned set: name, digest, source, schema, profile."""
    import warnings

    import mlflow.data
    import pandas as pd

    index = pd.read_parquet(data_dir / "index.parquet")
    digest = hashlib.sha256("".join(_file_digest(data_dir / f) for f in ("faces.npy", "index.parquet"))
                            .encode()).hexdigest()[:16]
    name = f"aligned/{data_dir.name}"
    # "the source can be interpreted in multiple ways" (a local folder), and the schema inference's hint on
    # integer columns (the index holds no missing values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ds = mlflow.data.from_pandas(index, source=str(data_dir.resolve()), name=name, digest=digest)
        e = ds._to_mlflow_entity()
    return {"name": e.name, "digest": e.digest, "source_type": e.source_type, "source": e.source,
            "schema": e.schema, "profile": e.profile}


def _file_digest(path: Path, limit: int = 1 << 20) -> str:
    """sha256 of a file's size and first / last MiB (cheap, and changes whenever the data does)."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(limit))
        f.seek(max(0, size - limit))
        h.update(f.read(limit))
    return h.hexdigest()


def now_ms() -> int:
    return int(time.time() * 1000)
