"""What the training stages share: build the model from params and data, run the Trainer with MLflow
logging, and measure the result. `train_gm` and `train_joint` are thin callers of `run_training`."""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from lrlivae.data.aligned import AlignedFaces
from lrlivae.data.synthetic.factors import FACTOR_KINDS
from lrlivae.io import atomic_write_json
from lrlivae.nn.config import ModelConfig
from lrlivae.nn.model import build_discriminator, build_model
from lrlivae.train import distributed as ddp
from lrlivae.train import monitor
from lrlivae.train.checkpoint import load_checkpoint
from lrlivae.train.loop import CheckpointSpec, Hooks, NonFiniteLoss, TrainData, Trainer, TrainSettings
from lrlivae.train.steps import LossWeights
from pipeline.params import Params, TrainShared
from pipeline.schema import values_for
from pipeline.plots import write_curves
from pipeline.tracking import stage_run


class TrainingError(RuntimeError):
    pass


MODES = {"train_gm": "gm", "train_joint": "joint", "finetune_semi": "semi"}


def _file_digest(path: Path, limit: int = 1 << 20) -> str:
    """sha256 of a file's size and first/last MiB (cheap, and changes whenever the data does)."""
    h = hashlib.sha256(str(path.stat().st_size).encode())
    with open(path, "rb") as f:
        h.update(f.read(limit))
        f.seek(max(0, path.stat().st_size - limit))
        h.update(f.read(limit))
    return h.hexdigest()


def fitting_batch_size(name: str, batch_size: int, world: int, rows: dict[str, int]) -> int:
    """The batch size a training stage can use: `batch_size`, or, when a set's training rows hold fewer than
    one batch per process, as many rows as the smallest set gives each process (said once); an error below
    2 rows per process. rows: {set path: its training rows}."""
    where, n = min(rows.items(), key=lambda kv: kv[1])
    if n >= batch_size * world:
        return batch_size
    fitted = n // world
    if fitted < 2:
        raise TrainingError(f"{where}: {n} training rows are too few to train on ({name} = {batch_size} x {world} "
                            "processes; at least 2 rows per process are needed); add photos to the set")
    print(f"[lrlivae] {where}: {n} training rows are fewer than one batch ({name} = {batch_size} x {world} "
          f"processes); training with batches of {fitted}", flush=True)
    return fitted


def model_config(params: Params, image_size: int, n_classes: int) -> ModelConfig:
    """The model's config: params.yaml `model`, with the image size and the number of classes of the data."""
    return ModelConfig(**params.model.model_dump(), image_size=image_size, n_classes=n_classes)


def train_settings(params: Params, stage: str) -> TrainSettings:
    """The library's TrainSettings of a training stage: its params section, the seed and the paper symbols."""
    cfg = getattr(params, stage)
    weights = LossWeights(**values_for(cfg, LossWeights), lambda_lkd=params.lambda_lkd, lambda_kl=params.lambda_kl,
                          lambda_rec=params.lambda_rec)
    return TrainSettings(**values_for(cfg, TrainSettings), mode=MODES[stage], n_gm=params.n_gm, seed=params.seed,
                         weights=weights)


def load_model(path: Path, device="cpu"):
    """Rebuild a trained model from its checkpoint alone (no params.yaml needed)."""
    st = load_checkpoint(path, map_location=device)
    cfg = ModelConfig.from_dict(st["model_config"])
    model = build_model(cfg).to(device)
    model.load_state_dict(st["model"])
    model.eval()
    return model, st


def _factor_columns(index) -> list[str]:
    return [c for c in index.columns if c.startswith("f_")]


def quality_metrics(model, ds: AlignedFaces, identities: list[str], device, mode: str) -> dict:
    """The stage's measured figures on the held-out splits (see docs/guide.md: Training)."""
    labels = ds.labels(identities)
    tr, va, te = (ds.labeled_rows(s, identities) for s in ("train", "val", "test"))
    out: dict[str, float] = {}
    codes = {name: monitor.encode_rows(model, ds.faces, rows, device) for name, rows in (("train", tr), ("val", va), ("test", te))}
    for name, rows in (("val", va), ("test", te)):
        if len(rows):
            out[f"gm_{name}_accuracy"] = monitor.gm_accuracy(model, codes[name].zs, labels[np.sort(rows)])
    if mode == "gm" or not len(te):
        return out
    y_tr, y_te = labels[np.sort(tr)], labels[np.sort(te)]
    out["recon_mse_test"] = monitor.reconstruction_mse(model, ds.faces, te, device)
    out["chance_accuracy"] = 1.0 / len(identities)
    out["zs_probe_accuracy"] = monitor.probe_accuracy(codes["train"].zs, y_tr, codes["test"].zs, y_te)
    out["zu_probe_accuracy"] = monitor.probe_accuracy(codes["train"].mu, y_tr, codes["test"].mu, y_te)
    stats = monitor.latent_stats(codes["test"])
    out.update({k: v for k, v in stats.items() if k != "zu_kl_per_dim"})
    out["zu_dim"] = model.cfg.zu_dim
    index = ds.index
    tr_i, te_i = index.iloc[np.sort(tr)], index.iloc[np.sort(te)]
    for col in _factor_columns(index):
        f_tr, f_te = tr_i[col].to_numpy(), te_i[col].to_numpy()
        if not np.issubdtype(f_tr.dtype, np.number) or np.std(f_tr) == 0:
            continue
        name = col[2:]
        kind = FACTOR_KINDS.get(name)
        discrete = kind == "discrete" if kind else (np.allclose(f_tr, np.round(f_tr)) and len(np.unique(f_tr)) <= 12)
        for code in ("zs", "zu"):
            z_tr = codes["train"].zs if code == "zs" else codes["train"].mu
            z_te = codes["test"].zs if code == "zs" else codes["test"].mu
            if discrete:
                out[f"factor_{name}_{code}_acc"] = monitor.probe_accuracy(z_tr, f_tr.astype(int), z_te, f_te.astype(int))
            else:
                out[f"factor_{name}_{code}_r2"] = monitor.probe_r2(z_tr, f_tr, z_te, f_te)
    return out


@dataclasses.dataclass
class StageData:
    """The sets a training stage reads: `ds` the one it trains on, `lab` the labeled one (the same set except
    in finetune_semi), with the rows and labels the Trainer gets."""

    ds: AlignedFaces
    lab: AlignedFaces
    identities: list[str]
    lab_labels: np.ndarray
    lab_rows: np.ndarray
    rows: np.ndarray
    labels: np.ndarray


def stage_data(mode: str, data_dir: Path, labeled_dir: Path | None, init: dict | None,
               init_checkpoint: Path | None) -> StageData:
    ds = AlignedFaces(data_dir)
    lab = AlignedFaces(labeled_dir) if mode == "semi" else ds
    identities = list(init["identities"]) if init else lab.identities
    if not identities:
        raise TrainingError(f"{data_dir}: the set has no identities; training needs a labeled set")
    if init and set(identities) != set(lab.identities):
        raise TrainingError(f"{init_checkpoint} was trained on other identities than {labeled_dir or data_dir} holds")
    lab_labels = lab.labels(identities)
    lab_rows = lab.labeled_rows("train", identities)
    if mode == "semi":  # unlabeled: every training row, no label is read
        rows, labels = ds.split_indices("train"), np.full(len(ds), -1, dtype=np.int64)
    else:
        rows, labels = lab_rows, lab_labels
    return StageData(ds, lab, identities, lab_labels, lab_rows, rows, labels)


def stage_model(params: Params, mode: str, init: dict | None, image_size: int, n_classes: int, device):
    """(ModelConfig, model, discriminator or None): from the init checkpoint when given, else from params."""
    model_cfg = ModelConfig.from_dict(init["model_config"]) if init else model_config(params, image_size, n_classes)
    model = build_model(model_cfg).to(device)
    if init:
        model.load_state_dict(init["model"])
    disc = build_discriminator(model_cfg).to(device) if mode != "gm" else None
    if disc is not None and init is not None and init.get("disc") is not None:
        disc.load_state_dict(init["disc"])
    return model_cfg, model, disc


def fingerprint(what: dict, data_dirs: list[Path]) -> str:
    """The run's identity for resuming: what it trains (settings, model, seed, world) and its data's digest."""
    what = {**what, "data": [_file_digest(Path(d) / f) for d in dict.fromkeys(data_dirs)
                             for f in ("faces.npy", "index.parquet")]}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def epoch_monitor(tracker, model, d: StageData, mode: str, device, seed: int, grid_classes: list[int]):
    """The Trainer's on_epoch: GM accuracy and z_u statistics on the labeled val rows, sample and
    reconstruction grids (joint and semi)."""
    val_rows = d.lab.labeled_rows("val", d.identities)
    recon_rows = d.ds.split_indices("val")[:16] if len(d.ds.split_indices("val")) else d.rows[:16]

    def on_epoch(trainer: Trainer, epoch: int) -> None:
        step = trainer.step
        if len(val_rows):
            codes = monitor.encode_rows(model, d.lab.faces, val_rows, device)
            m = {"acc/gm/val": monitor.gm_accuracy(model, codes.zs, d.lab_labels[np.sort(val_rows)])}
            if mode != "gm":
                stats = monitor.latent_stats(codes)
                m.update({"zu/active_units": stats["zu_active_units"], "zu/kl_per_dim_mean": stats["zu_kl_per_dim_mean"]})
                m.update({f"zu_kl/dim_{j:03d}": float(v) for j, v in enumerate(stats["zu_kl_per_dim"])})
            tracker.log_metrics(m, step=step)
        if mode != "gm":
            tracker.log_image(monitor.sample_grid(model, grid_classes, 8, seed=seed), f"samples_epoch{epoch:03d}.png")
            tracker.log_image(monitor.recon_grid(model, d.ds.faces, recon_rows, device), f"recon_epoch{epoch:03d}.png")

    return on_epoch


def run_trainer(trainer) -> None:
    try:
        trainer.run()
    except NonFiniteLoss as e:
        raise TrainingError(str(e)) from None


def finish_stage(tracker, trainer, metrics: dict, metrics_path: Path, curves_path: Path | None, ckpt: Path,
                 registered_name: str, model_tags: dict, model: str | None = None) -> None:
    """What every training stage (ours and the baselines) does with its result: the metrics file, the loss
    curves (a DVC plot), the MLflow run's metrics (headline ones on the parent), checkpoint and model."""
    atomic_write_json(metrics_path, metrics)
    if curves_path is not None:
        write_curves(curves_path, trainer.history)
    tracker.log_result(metrics, step=trainer.step, model=model)
    tracker.log_artifact(ckpt, artifact_path="checkpoint")
    tracker.log_model(ckpt, registered_name, tags=model_tags)


def run_training(stage: str, params: Params, params_path: Path, data_dir: Path, out_dir: Path,
                 metrics_path: Path, init_checkpoint: Path | None = None, labeled_dir: Path | None = None,
                 final_metrics=None, curves_path: Path | None = None) -> dict:
    """Train one stage. train_gm / train_joint: `data_dir` is the labeled set. finetune_semi: `data_dir` is
    the unlabeled set and `labeled_dir` the labeled one (validation GM accuracy, optional mixing).
    final_metrics(model, device) -> dict replaces the default measurements when given. curves_path: the
    logged loss terms per logged step as JSON rows (a DVC plot). MLflow: the run gets the data sets as
    inputs, the final metrics (headline ones on the parent run) and the model, registered as lrlivae-<stage>."""
    cfg: TrainShared = getattr(params, stage)
    mode = MODES[stage]
    info, device = ddp.init_from_env(cfg.device)
    torch.manual_seed(params.seed)
    init = load_checkpoint(init_checkpoint, map_location="cpu") if init_checkpoint else None
    d = stage_data(mode, data_dir, labeled_dir, init, init_checkpoint)
    data_dirs = [data_dir, labeled_dir or data_dir]
    counts = {str(data_dir): len(d.rows), **({str(labeled_dir): len(d.lab_rows)} if mode == "semi" else {})}
    batch = fitting_batch_size(f"{stage}.batch_size", cfg.batch_size, info.world, counts)
    model_cfg, model, disc = stage_model(params, mode, init, d.ds.faces.shape[1], len(d.identities), device)
    settings = dataclasses.replace(train_settings(params, stage), batch_size=batch)
    run_id = fingerprint({
        "stage": stage, "cfg": {**cfg.model_dump(mode="json"), "batch_size": batch}, "model": model_cfg.to_dict(),
        "seed": params.seed, "lambda": [params.lambda_lkd, params.lambda_kl, params.lambda_rec, params.n_gm],
        "world": info.world, "init": _file_digest(init_checkpoint) if init_checkpoint else None}, data_dirs)
    ckpt = Path(out_dir) / "model.pt"
    extra = {"stage": stage, "model_config": model_cfg.to_dict(), "identities": d.identities}
    grid_classes = list(range(min(cfg.grid_classes, len(d.identities))))
    track = stage_run(stage, params.model_dump(mode="json"), params_path) if info.is_main else contextlib.nullcontext()
    with track as tracker:
        for data in dict.fromkeys(data_dirs) if tracker is not None else ():
            tracker.log_dataset(data, context="training")
        train_data = TrainData(d.ds.faces, d.rows, d.labels,
                               labeled=(d.lab.faces, d.lab_rows, d.lab_labels) if mode == "semi" else None)
        hooks = Hooks(log_fn=lambda m, step: tracker.log_metrics(m, step=step),
                      on_epoch=epoch_monitor(tracker, model, d, mode, device, params.seed, grid_classes)
                      ) if info.is_main else Hooks()
        trainer = Trainer(model, disc, train_data, settings, CheckpointSpec(ckpt, run_id, extra), device=device,
                          dist=info, hooks=hooks, gm_epochs_before=float(init.get("gm_epochs", 0.0)) if init else 0.0)
        run_trainer(trainer)
        if not info.is_main:
            return {}
        if final_metrics is not None:
            metrics = final_metrics(model, device, tracker)
        else:
            metrics = quality_metrics(model, d.ds, d.identities, device, mode)
        metrics["steps"] = trainer.step
        if batch != cfg.batch_size:
            metrics["batch_size"], metrics["batch_size_clamped_from"] = batch, cfg.batch_size
        metrics.update(monitor.d_gap_last_fifth(trainer.history, trainer.step))
        finish_stage(tracker, trainer, metrics, metrics_path, curves_path, ckpt, f"lrlivae-{stage}", {"stage": stage})
    print(f"{stage}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if not k.startswith("factor_")))
    return metrics
