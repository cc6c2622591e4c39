"""The parent run of a pipeline execution, and the experiment it lives in.

The stage runs of one execution (one `dvc repro`, one `dvc exp run`) nest under one run tagged
`run_type = pipeline` and `execution_key = <key>`: the DVC experiment's name and baseline commit inside
an experiment (DVC_EXP_NAME, DVC_EXP_BASELINE_REV), else the git commit and the params-file hash, so every
stage of the execution computes the same key. The parent holds the params that differ from their defaults
(and the paper's symbols), a `params_changed` tag naming what the execution changed against its baseline
commit's params file, and each stage's headline metrics (HEADLINE).
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

EXPERIMENT = "lrlivae"
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}  # the UI opens it on its training runs
PAPER_SYMBOLS = ("seed", "lambda_lkd", "lambda_kl", "lambda_rec", "n_gm")

# stage -> {metric the stage logs: its name on the parent run}; `<name>/<model>` where a stage scores another
# model than ours (evaluate_baseline@cvae, evaluate's train_joint model)
_EVAL = ("inception_score", "inception_score_std", "inception_score_real", "fcd", "generated_class_accuracy",
         "intra_class_diversity", "zs_accuracy", "zu_probe_accuracy", "z_probe_accuracy", "disentanglement_gap",
         "inpaint_psnr_eyes", "inpaint_psnr_mouth", "inpaint_psnr_half", "precision", "recall_per_class",
         "sharpness_ratio", "two_sample_accuracy", "identity_judge/accuracy", "identity_judge/auc",
         "identity_judge/margin")
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
    "evaluate": {k: k for k in _EVAL},
    "evaluate_baseline": {k: k for k in _EVAL},
    "train_baseline": {"recon_mse_test": "train_baseline/recon_mse_test"},
    "compare": {"label_free_identity": "label_free_identity", "label_free_nuisance": "label_free_nuisance"},
    "toy": {k: f"toy/{k}" for k in ("ours_std_ratio_y", "cvaegan_std_ratio_y", "ours_swd", "cvaegan_swd", "real_swd")},
}


def headline(stage: str, metrics: dict, model: str | None = None) -> dict[str, float]:
    """The parent-run names and values of a stage's headline metrics (`<name>/<model>` for other models)."""
    table, out = HEADLINE.get(stage, {}), {}
    for k, v in metrics.items():
        base, _, sub = k.partition("/")  # compare logs `<metric>/<model>`
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if k in table:
            out[f"{table[k]}/{model}" if model else table[k]] = float(v)
        elif sub and base in table:
            out[f"{table[base]}/{sub}"] = float(v)
    return out


def changed_since(root: Path, params_path: str | Path, rev: str) -> dict[str, str] | None:
    """The keys of the params file whose values differ from the file at commit `rev`, as written in the two
    files (`dvc exp run -S lambda_lkd=0.2` -> {'lambda_lkd': '0.2'}; a key removed: '(default)'). None where
    the commit's file cannot be read (not in git, an overlay of another file)."""
    import yaml

    from pipeline.params import _read_yaml, flatten

    try:
        rel = Path(params_path).resolve().relative_to(Path(root).resolve()).as_posix()
        out = subprocess.run(["git", "-C", str(root), "show", f"{rev}:{rel}"], capture_output=True, text=True,
                             timeout=10)
        old = yaml.safe_load(out.stdout) if not out.returncode else None
        if not isinstance(old, dict) or "base" in old:
            return None
        new, old = flatten(_read_yaml(Path(params_path))), flatten(old)
    except Exception:  # noqa: BLE001 - a description only: never stops a stage
        return None
    return {k: str(new.get(k, "(default)")) for k in sorted(set(new) | set(old)) if new.get(k) != old.get(k)}


def execution(root: Path, params: dict, params_path: str | Path, commit: str, phash: str) -> dict:
    """The parent run every stage of one pipeline execution computes alike: key, name, params, tags."""
    from pipeline.params import Params, flatten

    exp = os.environ.get("DVC_EXP_NAME", "")
    base = os.environ.get("DVC_EXP_BASELINE_REV", "") or commit
    key, name = (f"exp:{exp}@{base[:12]}", exp) if exp else (f"repro:{commit[:12]}:{phash}", f"repro@{commit[:7]}-{phash[:6]}")
    flat = {k: str(v) for k, v in flatten(params).items()}
    try:
        defaults = {k: str(v) for k, v in flatten(Params().model_dump(mode="json")).items()}
    except Exception:  # noqa: BLE001 - a schema with required fields: compare with nothing
        defaults = {}
    differ = {k: v for k, v in flat.items() if defaults.get(k) != v}
    since = changed_since(root, params_path, base)
    if since is not None:
        changed = ", ".join(f"{k}={v}" for k, v in since.items()) or f"(as committed in {base[:7]})"
    else:
        changed = ", ".join(f"{k}={v}" for k, v in differ.items()) or "(schema defaults)"
    tags = {"execution_key": key, "run_type": "pipeline", "stage": "pipeline", "git_commit": commit,
            "mlflow.source.git.commit": commit, "dvc_exp_name": exp, "dvc_exp_baseline": base, "params_hash": phash,
            "params_changed": changed[:5000]}
    params = {k: v[:6000] for k, v in flat.items() if k in PAPER_SYMBOLS or k in differ}
    return {"key": key, "name": name, "params": params, "tags": tags}


def ensure_experiment(client, uri: str, root: Path) -> str:
    """The experiment's id, created (artifacts beside a sqlite store in <root>/mlruns) where missing."""
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
    """The parent run of execution `ex` (see `execution`): the oldest with its key; two stages that create it
    at once both keep the oldest, and the other is deleted."""
    from mlflow.entities import Param

    found = _parents(client, exp_id, ex["key"])
    if found:
        return found[0].info.run_id
    mine = client.create_run(exp_id, run_name=ex["name"], tags=ex["tags"]).info.run_id
    client.log_batch(mine, params=[Param(k, v) for k, v in ex["params"].items()])  # the client splits batches
    found = _parents(client, exp_id, ex["key"])
    oldest = found[0].info.run_id if found else mine
    if oldest != mine:
        client.delete_run(mine)
    return oldest
