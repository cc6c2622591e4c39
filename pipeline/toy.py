"""Stage `toy`: the toy example of Sec. 4.1 / Fig. 2, Lr-LiVAE ("ours") against cVAE-GAN.

Protocol (fixed): for every seed in `toy.seeds`, a training set of `n_per_class` points per class is drawn
(lrlivae.toy.data, seed = the seed) and both models are trained on it (lrlivae.toy.train). After the last
epoch (and after each figure epoch) `eval_per_class` points per class are generated from noise seeded with
`eval_seed` and compared, class by class, with a held-out real set of the same size drawn from the known
distribution with `eval_seed`:
  std_ratio_y   std of the generated y / std of the real y (the label-irrelevant dimension; 1 is ideal)
  std_ratio_x   the same along x (context)
  swd           sliced W1 distance, `swd_projections` directions drawn from `eval_seed`
Reported per class, per seed and averaged over classes and seeds; `real_*` compares a second real draw with
the held-out set (the noise floor of each number). The paper's claim (ours covers the label-irrelevant
dimension better, cVAE-GAN keeps it "within a limited value range") is tested by counting the seeds where
ours' std_ratio_y is closer to 1 and where ours' swd is lower. Fig. 2 is drawn from the first seed.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from lrlivae.io import atomic_write_bytes, atomic_write_json, replace_dir, save_png, temp_dir_beside
from lrlivae.toy import MODELS, ToyConfig, class_metrics, sample_half_circles, train_toy
from lrlivae.toy.data import N_CLASSES
from lrlivae.toy.figure import fig2
from pipeline.params import Params
from pipeline.schema import values_for
from pipeline.plots import write_toy_spread
from pipeline.tracking import stage_run

NAMES = {"ours": "Lr-LiVAE (ours)", "cvaegan": "cVAE-GAN"}
MEASURES = ("std_ratio_y", "std_ratio_x", "swd")


def toy_config(p: Params) -> ToyConfig:
    """The toy's config: its own section, and the paper's loss weights from the top level of params.yaml
    like every other stage (so `dvc exp run -S lambda_lkd=X` reaches it too)."""
    return ToyConfig(**values_for(p.toy, ToyConfig), lambda_lkd=p.lambda_lkd, lambda_kl=p.lambda_kl,
                     lambda_rec=p.lambda_rec)


def summarise(per_seed: dict[str, list[dict]], seeds: list[int]) -> dict[str, float]:
    """Flat metrics from per-seed class_metrics dicts: means over classes and seeds, spreads, per class, per seed."""
    out: dict[str, float] = {}
    for kind, rows in per_seed.items():
        for name in MEASURES:
            vals = np.array([r[name] for r in rows])
            out[f"{kind}_{name}"] = float(vals.mean())
            out[f"{kind}_{name}_seed_std"] = float(vals.std())
            for s, v in zip(seeds, vals):
                out[f"{kind}_{name}_seed{s}"] = float(v)
            for c in range(N_CLASSES):
                out[f"{kind}_{name}_class{c}"] = float(np.mean([r[f"{name}_class{c}"] for r in rows]))
    ours, cvae = per_seed["ours"], per_seed["cvaegan"]
    out["seeds_ours_std_ratio_y_closer_to_1"] = float(sum(
        abs(o["std_ratio_y"] - 1) < abs(c["std_ratio_y"] - 1) for o, c in zip(ours, cvae)))
    out["seeds_ours_swd_lower"] = float(sum(o["swd"] < c["swd"] for o, c in zip(ours, cvae)))
    out["seeds_cvaegan_std_ratio_y_below_1"] = float(sum(c["std_ratio_y"] < 1 for c in cvae))
    out["n_seeds"] = float(len(seeds))
    return out


def verdict(m: dict[str, float]) -> str:
    n = int(m["n_seeds"])
    closer, lower = int(m["seeds_ours_std_ratio_y_closer_to_1"]), int(m["seeds_ours_swd_lower"])
    spread = (f"Along y (label-irrelevant) ours' generated std is {m['ours_std_ratio_y']:.2f} x the real one, "
              f"cVAE-GAN's {m['cvaegan_std_ratio_y']:.2f} x; ours is closer to 1 in {closer} of {n} seeds. ")
    dist = (f"Sliced Wasserstein distance to the real points: ours {m['ours_swd']:.3f}, cVAE-GAN "
            f"{m['cvaegan_swd']:.3f} (two real draws: {m['real_swd']:.3f}); ours is lower in {lower} of {n} seeds. ")
    if closer == n and lower == n:
        return (spread + dist + "**The claim held**: ours covers the label-irrelevant dimension better and matches "
                "the data better.")
    if closer == n:
        over = " (ours overshoots: its samples spread wider than the data)" if m["ours_std_ratio_y"] > 1 else ""
        return (spread + dist + "**The claim held only in part**: cVAE-GAN's samples are the more conservative along y"
                f"{over}, but ours matches the real distribution better in only {lower} of {n} seeds.")
    if closer == 0 and lower == 0:
        return spread + dist + "**The claim did not hold** with these settings."
    return spread + dist + "**The claim held in some seeds only**; see the per-seed numbers."


def _report(m: dict[str, float], seeds: list[int], fig_rel: str) -> str:
    lines = ["# Toy example (Sec. 4.1, Fig. 2)", "", verdict(m), "",
             "| model | std_ratio_y | std_ratio_x | swd |", "|---|---|---|---|"]
    for kind in MODELS:
        lines.append(f"| {NAMES[kind]} | " + " | ".join(
            f"{m[f'{kind}_{n}']:.3f} ± {m[f'{kind}_{n}_seed_std']:.3f}" for n in MEASURES) + " |")
    lines.append("| real (second draw) | " + " | ".join(f"{m[f'real_{n}']:.3f}" for n in MEASURES) + " |")
    lines += ["", f"Means over the 3 classes and {len(seeds)} seeds (± std over seeds). Per class (mean over seeds):",
              "", "| model | class | std_ratio_y | std_ratio_x | swd |", "|---|---|---|---|---|"]
    for kind in MODELS:
        for c in range(N_CLASSES):
            vals = " | ".join(f"{m[f'{kind}_{n}_class{c}']:.3f}" for n in MEASURES)
            lines.append(f"| {NAMES[kind]} | {c} | {vals} |")
    lines += ["", "Per seed (mean over classes):", "", "| model | seed | std_ratio_y | swd |", "|---|---|---|---|"]
    for kind in MODELS:
        for s in seeds:
            ratio, swd = m[f"{kind}_std_ratio_y_seed{s}"], m[f"{kind}_swd_seed{s}"]
            lines.append(f"| {NAMES[kind]} | {s} | {ratio:.3f} | {swd:.3f} |")
    lines += ["", f"Wall time: {m['seconds']:.0f} s.", "", f"![Fig. 2]({fig_rel})", ""]
    return "\n".join(lines)


def run(params: Params, params_path: Path, metrics_path: Path, figures_dir: Path, report_path: Path,
        curves: Path | None = None) -> dict:
    """Train and measure (protocol above); `curves`: the y-spread (std_ratio_y, mean over seeds) per figure
    epoch of each model and of a second real draw, as JSON rows (a DVC plot)."""
    p, cfg = params.toy, toy_config(params)
    seeds = list(p.seeds)
    real, real_y = sample_half_circles(p.eval_per_class, spacing=p.spacing, noise=p.noise, seed=p.eval_seed)
    metric = lambda g, gy: class_metrics(g, gy, real, real_y, N_CLASSES, p.swd_projections, p.eval_seed)  # noqa: E731
    per_seed: dict[str, list[dict]] = {k: [] for k in MODELS}
    shown: dict[str, dict] = {}
    spread: dict[int, dict[str, list[float]]] = {}  # epoch -> model -> std_ratio_y per seed
    with stage_run("toy", params.model_dump(mode="json"), params_path) as tracker:
        t0 = time.perf_counter()
        for seed in seeds:
            pts, ys = sample_half_circles(p.n_per_class, spacing=p.spacing, noise=p.noise, seed=seed)
            for kind in MODELS:
                t = time.perf_counter()
                res = train_toy(kind, pts, ys, cfg, seed, snapshot_epochs=set(p.figure_epochs) | {p.epochs},
                                snapshot_per_class=p.eval_per_class, snapshot_seed=p.eval_seed)
                for row in res.history:
                    tracker.log_metrics({f"{kind}/seed{seed}/{k}": v for k, v in row.items() if k != "epoch"},
                                        step=row["epoch"])
                for e, (g, gy) in sorted(res.snapshots.items()):
                    at = metric(g, gy)
                    tracker.log_metrics({f"{kind}/seed{seed}/{k}": v for k, v in at.items() if k in MEASURES}, step=e)
                    spread.setdefault(e, {}).setdefault(kind, []).append(at["std_ratio_y"])
                per_seed[kind].append(metric(*res.snapshots[p.epochs]))
                if seed == seeds[0]:
                    shown[kind] = res.snapshots
                r = per_seed[kind][-1]
                print(f"toy: {kind} seed {seed}: std_ratio_y {r['std_ratio_y']:.3f}, swd {r['swd']:.4f} "
                      f"({time.perf_counter() - t:.1f}s)", flush=True)
        m = summarise(per_seed, seeds)
        floor = metric(*sample_half_circles(p.eval_per_class, spacing=p.spacing, noise=p.noise, seed=p.eval_seed + 1))
        m.update({f"real_{k}": floor[k] for k in MEASURES})
        m["seconds"] = time.perf_counter() - t0
        if curves is not None:
            write_toy_spread(curves, {e: {**{k: float(np.mean(v)) for k, v in by.items()}, "real": floor["std_ratio_y"]}
                                      for e, by in spread.items()})
        tmp = temp_dir_beside(figures_dir)
        img = fig2({k: shown[k] for k in MODELS}, list(p.figure_epochs), real[:: max(1, p.eval_per_class // 300)],
                   row_names=NAMES, max_per_class=p.figure_per_class)
        save_png(tmp / "fig2.png", img)
        replace_dir(tmp, figures_dir)
        atomic_write_json(metrics_path, m)
        fig_rel = os.path.relpath(Path(figures_dir) / "fig2.png", Path(report_path).parent)
        atomic_write_bytes(report_path, _report(m, seeds, Path(fig_rel).as_posix()).encode())
        tracker.log_result(m)
        tracker.log_artifact(Path(figures_dir) / "fig2.png", artifact_path="images")
        tracker.log_artifact(report_path)
    print(f"toy: ours std_ratio_y {m['ours_std_ratio_y']:.3f} swd {m['ours_swd']:.4f}; cVAE-GAN std_ratio_y "
          f"{m['cvaegan_std_ratio_y']:.3f} swd {m['cvaegan_swd']:.4f}; {m['seconds']:.0f}s")
    return m
