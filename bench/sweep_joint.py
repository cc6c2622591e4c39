"""Ablation sweep of the joint stage: train many variants of train_joint from one train_gm checkpoint, in
parallel worker processes, and score each by the `evaluate` protocol (lrlivae.evaluate.protocol.score_model).

    # here (params.yaml is read once, into plain settings the workers need no pipeline for)
    python bench/sweep_joint.py base --params params.yaml --out sweep_base.json
    # anywhere the library imports (a GPU machine, or this one)
    python bench/sweep_joint.py run --base sweep_base.json --variants variants.json --out OUT \
        [--init models/train_gm/model.pt] [--data data/aligned/labeled] \
        [--evaluator models/train_evaluator/evaluator.pt] [--device cuda] [--jobs 8]

variants.json is a list of {"name": str, "model": {ModelConfig overrides}, "settings": {TrainSettings
overrides}, "weights": {LossWeights overrides}, "score_at": [iterations to score at, default the last]}.
A variant whose model overrides change Encoder^s or the prior (width, zs_dim) first runs its own train_gm
with the base's GM settings; any other variant starts from --init, taking every tensor whose name and
shape match (a new decoder or discriminator starts fresh). Each scored point is written to
OUT/<name>@<iterations>.json as soon as it is measured (the model is scored on the CPU, as `evaluate`
does), and OUT/summary.tsv lists them all at the end. Not part of the test run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from dataclasses import asdict, fields, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

SUMMARY_KEYS = ("generated_class_accuracy", "inception_score", "fcd", "intra_class_diversity", "zs_accuracy",
                "zu_probe_accuracy", "precision", "recall", "precision_per_class", "recall_per_class",
                "sharpness_ratio", "two_sample_accuracy", "train_eval_gap", "d_gap_last_fifth", "train_seconds")
ENC_KEYS = ("width", "zs_dim", "enc_hidden", "arch")


def write_base(params_path: Path, out: Path) -> None:
    """The train_gm and train_joint settings and the model section of a params file, as plain JSON."""
    from pipeline.params import load_params
    from pipeline.training import train_settings

    params = load_params(params_path)
    base = {"seed": params.seed, "model": params.model.model_dump(mode="json")}
    for stage in ("train_gm", "train_joint"):
        s = train_settings(params, stage)
        base[stage] = {"settings": {k: v for k, v in asdict(s).items() if k != "weights"}, "weights": asdict(s.weights)}
    out.write_text(json.dumps(base, indent=1))
    print(f"wrote {out}")


def _settings(block: dict, settings: dict, weights: dict, steps: int | None = None):
    from lrlivae.train.settings import TrainSettings
    from lrlivae.train.steps import LossWeights

    known_s = {f.name for f in fields(TrainSettings)} - {"weights"}
    known_w = {f.name for f in fields(LossWeights)}
    merged_s, merged_w = {**block["settings"], **settings}, {**block["weights"], **weights}
    for name, merged, known in (("settings", merged_s, known_s), ("weights", merged_w, known_w)):
        if set(merged) - known:  # a base written by another version of the code: its extra keys are dropped
            print(f"[sweep] ignoring unknown {name} keys {sorted(set(merged) - known)}", flush=True)
    s = TrainSettings(**{k: v for k, v in merged_s.items() if k in known_s},
                      weights=LossWeights(**{k: v for k, v in merged_w.items() if k in known_w}))
    return replace(s, steps=steps) if steps is not None else s


def _load_matching(model, state: dict) -> int:
    own = model.state_dict()
    kept = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(kept, strict=False)
    return len(own) - len(kept)


def run_variant(v: dict, base: dict, args: dict) -> list[dict]:
    import torch

    from lrlivae.data.aligned import AlignedFaces
    from lrlivae.evaluate.classifier import load_evaluator
    from lrlivae.evaluate.protocol import EvalProtocol, score_model
    from lrlivae.nn.config import ModelConfig
    from lrlivae.nn.model import build_discriminator, build_model
    from lrlivae.train.checkpoint import load_checkpoint
    from lrlivae.train.loop import CheckpointSpec, Hooks, TrainData, Trainer

    torch.set_num_threads(1)
    name, out = v["name"], Path(args["out"])
    device = torch.device(args["device"])
    seed = int(v.get("settings", {}).get("seed", base["seed"]))
    torch.manual_seed(seed)
    ds = AlignedFaces(args["data"])
    init = load_checkpoint(Path(args["init"]), map_location="cpu")
    ids = list(init["identities"])
    labels, rows = ds.labels(ids), ds.labeled_rows("train", ids)
    cfg = ModelConfig.from_dict({**init["model_config"], **v.get("model", {})})
    model = build_model(cfg).to(device)
    work = out / "ckpt" / name
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    gm_epochs = float(init.get("gm_epochs", 0.0))
    if any(k in v.get("model", {}) for k in ENC_KEYS):
        gm = _settings(base["train_gm"], {"seed": seed}, {})
        trainer = Trainer(model, None, TrainData(ds.faces, rows, labels), gm,
                          CheckpointSpec(work / "gm.pt", f"{name}-gm"), device=device)
        trainer.run()
        gm_epochs = trainer.gm_epochs
    else:
        skipped = _load_matching(model, init["model"])
        print(f"[{name}] {skipped} tensors start fresh", flush=True)
    disc = build_discriminator(cfg).to(device)
    score_at = sorted(v.get("score_at") or [v.get("settings", {}).get("steps", base["train_joint"]["settings"]["steps"])])
    ev, _ = load_evaluator(Path(args["evaluator"]), "cpu")
    settings = _settings(base["train_joint"], v.get("settings", {}), v.get("weights", {}), steps=score_at[0])
    extra = {"stage": "train_joint", "model_config": cfg.to_dict(), "identities": ids}
    logged: list[tuple[int, float]] = []  # (step, d/gap): D(real) - D(sample) as training logs it

    def log_fn(scalars: dict, step: int) -> None:
        if "d/gap" in scalars:
            logged.append((step, float(scalars["d/gap"])))

    trainer = Trainer(model, disc, TrainData(ds.faces, rows, labels), settings,
                      CheckpointSpec(work / "model.pt", name, extra), device=device, gm_epochs_before=gm_epochs,
                      hooks=Hooks(log_fn))
    results, train_s = [], time.perf_counter() - t0
    for steps in score_at:
        trainer.s = replace(settings, steps=steps)
        t1 = time.perf_counter()
        trainer.run()
        train_s += time.perf_counter() - t1
        model.to("cpu")
        m, _ = score_model(model, ev, ds, ids, EvalProtocol(), base["seed"], "cpu")
        model.to(device)
        tail = [g for st, g in logged if st > 0.8 * steps]
        if tail:
            m["d_gap_last_fifth"] = float(sum(tail) / len(tail))
        m.update(name=name, steps=steps, train_seconds=train_s, device=str(device), d_gap_curve=logged)
        (out / f"{name}@{steps}.json").write_text(json.dumps(m, indent=1))
        print(f"[{name}@{steps}] " + " ".join(f"{k}={m[k]:.4g}" for k in SUMMARY_KEYS if k in m), flush=True)
        results.append(m)
        trainer.disc.train()
    return results


def _worker(payload):
    v, base, args = payload
    try:
        return run_variant(v, base, args)
    except Exception:  # one broken variant must not stop the sweep
        msg = traceback.format_exc()
        print(f"[{v['name']}] FAILED\n{msg}", flush=True)
        Path(args["out"], f"{v['name']}.error.txt").write_text(msg)
        return []


def run_sweep(args: argparse.Namespace) -> None:
    import multiprocessing as mp

    base = json.loads(Path(args.base).read_text())
    variants = json.loads(Path(args.variants).read_text())
    if args.only:
        variants = [v for v in variants if v["name"] in set(args.only)]
    names = [v["name"] for v in variants]
    if len(set(names)) != len(names):
        raise SystemExit("variant names must be unique")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shared = {"out": str(out), "device": args.device, "data": str(args.data), "init": str(args.init),
              "evaluator": str(args.evaluator)}
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    t0 = time.perf_counter()
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.jobs, maxtasksperchild=1) as pool:
        results = [r for rs in pool.imap_unordered(_worker, [(v, base, shared) for v in variants]) for r in rs]
    rows = sorted(results, key=lambda m: (m["name"], m["steps"]))
    lines = ["\t".join(("name", "steps") + SUMMARY_KEYS)]
    lines += ["\t".join([m["name"], str(m["steps"])] + [f"{m.get(k, float('nan')):.4g}" for k in SUMMARY_KEYS])
              for m in rows]
    (out / "summary.tsv").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"sweep: {len(variants)} variants, {len(rows)} scored points in {time.perf_counter() - t0:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("base", help="write the base settings from a params file")
    b.add_argument("--params", type=Path, default=Path("params.yaml"))
    b.add_argument("--out", type=Path, required=True)
    r = sub.add_parser("run", help="train and score the variants")
    r.add_argument("--base", type=Path, required=True)
    r.add_argument("--variants", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--init", type=Path, default=Path("models/train_gm/model.pt"))
    r.add_argument("--data", type=Path, default=Path("data/aligned/labeled"))
    r.add_argument("--evaluator", type=Path, default=Path("models/train_evaluator/evaluator.pt"))
    r.add_argument("--device", default="cpu")
    r.add_argument("--jobs", type=int, default=2)
    r.add_argument("--only", nargs="*", help="run only these variant names")
    args = ap.parse_args()
    if args.cmd == "base":
        write_base(args.params, args.out)
    else:
        run_sweep(args)


if __name__ == "__main__":
    main()
