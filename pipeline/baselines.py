"""Stages `train_baseline` and `evaluate_baseline` (one per baseline kind: cvae, cgan, cvaegan).

train_baseline: trains a baseline (lrlivae.baselines) with the shared loop on the aligned labeled TRAIN
split, with the architecture of `params.model` (the same blocks and sizes as Lr-LiVAE) and the settings
of `params.baselines`; writes models/baselines/<kind>/model.pt, a self-describing checkpoint (kind,
baseline config, identities; `load_baseline` rebuilds the model from it alone).

evaluate_baseline: the `evaluate` stage's protocol with the same evaluator (lrlivae.evaluate.protocol:
`generation_metrics` - Inception Score, intra-class diversity, FCD - and `inpainting_metrics`), plus,
for the baselines with an encoder (cVAE, cVAE-GAN; both read the true label, as the paper gives it to
cVAE-GAN for inpainting):
- z_probe_accuracy: a logistic probe of identity from the mean of q(z | x, c) (fitted on train-split
  codes, scored on the test split): the analogue of Lr-LiVAE's zu_probe_accuracy (label-free code);
- real photo sources: the identity_judge/* figures (dlib's descriptor; lrlivae.evaluate.identity.JudgeReference);
- synthetic data: the disentanglement table with the one-hot label as the label-relevant code (from_zs)
  and z as the label-irrelevant one (from_zu), and disentanglement_gap, as for Lr-LiVAE.
cGAN has no encoder: no inpainting, probes or disentanglement (reported as not applicable).
Outputs: reports/baselines/<kind>.json (metrics) and reports/baselines/<kind>/ (figures/, disentanglement.csv).
"""
from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from lrlivae.baselines import (HAS_ENCODER, BaselineConfig, BaselineWeights, LabelBound, build_baseline,
                               build_discriminator)
from lrlivae.baselines import evaluate as bev
from lrlivae.baselines.train import BaselineTrainer
from lrlivae.data.aligned import AlignedFaces, to_float_tensor
from lrlivae.data.synthetic.factors import FACTOR_KINDS
from lrlivae.evaluate import figures as figs
from lrlivae.evaluate.classifier import load_evaluator
from lrlivae.evaluate.probes import disentanglement_gap, disentanglement_table
from lrlivae.io import atomic_write_bytes, atomic_write_json
from lrlivae.train import distributed as ddp
from lrlivae.train import monitor
from lrlivae.train.checkpoint import load_checkpoint
from lrlivae.train.loop import CheckpointSpec, Hooks, TrainData, TrainSettings
from lrlivae.evaluate.protocol import generation_metrics, inpainting_metrics
from pipeline.evaluate import judge_reference, protocol, write_figures
from pipeline.params import Params
from pipeline.schema import values_for
from pipeline.tracking import stage_run
from pipeline.training import (TrainingError, fingerprint, finish_stage, fitting_batch_size, model_config,
                               run_trainer)


def baseline_config(params: Params, kind: str, image_size: int, n_classes: int) -> BaselineConfig:
    common = params.baselines.common
    net = model_config(params, image_size, n_classes)
    if common.dec_depth is not None:
        net = replace(net, dec_depth=common.dec_depth)
    return BaselineConfig(kind=kind, z_dim=common.z_dim, net=net)


def baseline_weights(params: Params, kind: str) -> BaselineWeights:
    return BaselineWeights.for_kind(kind, **getattr(params.baselines, kind).model_dump(exclude={"steps"}))


def load_baseline(path: Path, device="cpu"):
    """(model, discriminator or None, checkpoint dict) rebuilt from a baseline checkpoint alone; eval mode."""
    st = load_checkpoint(path, map_location=device)
    if "baseline_config" not in st:
        raise ValueError(f"{path}: not a baseline checkpoint (no baseline_config)")
    cfg = BaselineConfig.from_dict(st["baseline_config"])
    model = build_baseline(cfg).to(device)
    model.load_state_dict(st["model"])
    disc = build_discriminator(cfg)
    if disc is not None and st.get("disc") is not None:
        disc.to(device).load_state_dict(st["disc"])
        disc.eval()
    model.eval()
    return model, disc, st


def run_train_baseline(kind: str, params: Params, params_path: Path, data_dir: Path, out_dir: Path,
                       metrics_path: Path, curves_path: Path | None = None) -> dict:
    cfg = params.baselines.common
    steps = getattr(params.baselines, kind).steps or cfg.steps
    info, device = ddp.init_from_env(cfg.device)
    torch.manual_seed(params.seed)
    ds = AlignedFaces(data_dir)
    ids = ds.identities
    if not ids:
        raise TrainingError(f"{data_dir}: the set has no identities; training needs a labeled set")
    labels = ds.labels(ids)
    rows, val = ds.labeled_rows("train", ids), ds.labeled_rows("val", ids)
    batch = fitting_batch_size("baselines.common.batch_size", cfg.batch_size, info.world, {str(data_dir): len(rows)})
    bcfg = baseline_config(params, kind, ds.faces.shape[1], len(ids))
    model, disc = build_baseline(bcfg).to(device), build_discriminator(bcfg)
    disc = disc.to(device) if disc is not None else None
    weights = baseline_weights(params, kind)
    settings = TrainSettings(**{**values_for(cfg, TrainSettings), "steps": steps, "batch_size": batch}, mode="joint",
                             n_gm=0, seed=params.seed)
    run_id = fingerprint({"stage": "train_baseline", "kind": kind, "steps": steps, "weights": weights.__dict__,
                          "common": {**cfg.model_dump(mode="json"), "batch_size": batch}, "model": bcfg.to_dict(),
                          "seed": params.seed, "world": info.world}, [data_dir])
    ckpt = Path(out_dir) / "model.pt"
    extra = {"stage": "train_baseline", "kind": kind, "baseline_config": bcfg.to_dict(), "identities": ids}
    classes = list(range(min(cfg.grid_classes, len(ids))))
    recon_rows = val[:16] if len(val) else rows[:16]
    track = stage_run("train_baseline", params.model_dump(mode="json"), params_path) if info.is_main \
        else contextlib.nullcontext()
    with track as tracker:
        if tracker is not None:
            tracker.set_tags({"model": kind, "mlflow.runName": f"train_baseline@{kind}"})
            tracker.log_dataset(data_dir, context="training")

        def log_fn(metrics: dict, step: int) -> None:
            tracker.log_metrics({k: v for k, v in metrics.items() if k != "lr/gm_sigma"}, step=step)

        def on_epoch(trainer, epoch: int) -> None:
            tracker.log_image(figs.class_samples(model, classes, 8, seed=params.seed), f"samples_epoch{epoch:03d}.png")
            if HAS_ENCODER[kind]:
                grid = bev.recon_grid(model, ds.faces, recon_rows, labels, device)
                tracker.log_image(grid, f"recon_epoch{epoch:03d}.png")

        hooks = Hooks(log_fn, on_epoch) if info.is_main else Hooks()
        trainer = BaselineTrainer(model, disc, TrainData(ds.faces, rows, labels), settings, weights,
                                  CheckpointSpec(ckpt, run_id, extra), device=device, dist=info, hooks=hooks)
        t0 = time.perf_counter()
        run_trainer(trainer)
        if not info.is_main:
            return {}
        metrics = {"steps": trainer.step, "train_seconds": time.perf_counter() - t0}
        te = ds.labeled_rows("test", ids)
        if HAS_ENCODER[kind] and len(te):
            metrics["recon_mse_test"] = bev.reconstruction_mse(model, ds.faces, te, labels, device)
        finish_stage(tracker, trainer, metrics, metrics_path, curves_path, ckpt, f"lrlivae-baseline-{kind}",
                     {"stage": "train_baseline", "kind": kind}, model=kind)
    print(f"train_baseline {kind}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    return metrics


def _code_metrics(model, ds: AlignedFaces, labels, tr, te, params: Params, device, csv_path: Path) -> dict:
    """Identity probe from z and the disentanglement table (one-hot label as the label-relevant code)."""
    mu_tr, _ = bev.encode_rows(model, ds.faces, tr, labels, device)
    mu_te, _ = bev.encode_rows(model, ds.faces, te, labels, device)
    n = model.cfg.n_classes
    m = {"z_probe_accuracy": monitor.probe_accuracy(mu_tr, labels[tr], mu_te, labels[te]), "chance_accuracy": 1.0 / n}
    kinds = {k: v for k, v in FACTOR_KINDS.items() if f"f_{k}" in ds.index}
    if kinds:
        from lrlivae.data.synthetic import IDENTITY_FACTORS, NUISANCE_FACTORS

        onehot = lambda r: np.eye(n, dtype=np.float32)[labels[r]]  # noqa: E731  the label-relevant code
        f_tr = {k: ds.index[f"f_{k}"].to_numpy()[tr] for k in kinds}
        f_te = {k: ds.index[f"f_{k}"].to_numpy()[te] for k in kinds}
        table = disentanglement_table({"zs": onehot(tr), "zu": mu_tr}, {"zs": onehot(te), "zu": mu_te}, f_tr, f_te,
                                      kinds)
        nuisance = [k for k in NUISANCE_FACTORS if k in kinds and k in params.evaluate.nuisance_factors]
        m["disentanglement_gap"] = disentanglement_gap(table, [k for k in IDENTITY_FACTORS if k in kinds], nuisance)
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(csv_path, table.to_csv().encode())
    return m


def run_evaluate_baseline(kind: str, params: Params, params_path: Path, data_dir: Path, model_path: Path,
                          evaluator_path: Path, metrics_path: Path, out_dir: Path) -> dict:
    """Metrics to `metrics_path`; figures to out_dir/figures, the disentanglement table (baselines with an
    encoder, synthetic data) to out_dir/disentanglement.csv."""
    cfg = params.evaluate
    torch.manual_seed(params.seed)
    device = "cpu"
    ds = AlignedFaces(data_dir)
    model, _, st = load_baseline(model_path, device)
    if st["kind"] != kind:
        raise ValueError(f"{model_path} holds a {st['kind']} model, not {kind}")
    ev, ev_meta = load_evaluator(evaluator_path, device)
    ids = list(st["identities"])
    if list(ev_meta.get("identities", ids)) != ids:
        raise ValueError(f"{evaluator_path} was trained on other identities than {model_path}")
    labels = ds.labels(ids)
    tr, te = ds.labeled_rows("train", ids), ds.labeled_rows("test", ids)
    x_te, y_te = np.asarray(ds.faces[te]), labels[te]
    shutil.rmtree(out_dir, ignore_errors=True)
    figures_dir, csv_path = Path(out_dir) / "figures", Path(out_dir) / "disentanglement.csv"
    with stage_run("evaluate_baseline", params.model_dump(mode="json"), params_path) as tracker:
        tracker.set_tags({"model": kind, "mlflow.runName": f"evaluate_baseline@{kind}"})
        tracker.log_dataset(data_dir, context="evaluation")
        tracker.log_scored_model(model_path, st)
        t0 = time.perf_counter()
        m = generation_metrics(model, ev, len(ids), x_te, y_te, protocol(params), params.seed, device,
                               judge_reference(params, x_te, y_te), x_tr=np.asarray(ds.faces[tr]))
        classes = list(range(min(cfg.figure_classes, len(ids))))
        pics = {"samples": figs.class_samples(model, classes, 8, seed=params.seed),
                "vary_z": bev.vary_z(model, classes, 8, seed=params.seed)}
        if HAS_ENCODER[kind]:
            m.update(inpainting_metrics(LabelBound(model, y_te), to_float_tensor(x_te), ds.faces.shape[1]))
            m.update(_code_metrics(model, ds, labels, tr, te, params, device, csv_path))
            k = min(6, len(x_te))
            pics["inpainting"] = figs.inpainting_rows(LabelBound(model, y_te[:k]), x_te[:k])
        m["seconds"] = time.perf_counter() - t0
        write_figures(tracker, figures_dir, pics, st.get("history") or [])
        atomic_write_json(metrics_path, m)
        tracker.log_result(m, model=kind)
    print(f"evaluate_baseline {kind}: " + ", ".join(f"{k}={v:.4g}" for k, v in m.items()))
    return m
