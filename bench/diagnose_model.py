"""Diagnose trained Lr-LiVAE checkpoints: where samples lose their class, how the codes sit against the
learned prior, and the generation metrics of `evaluate` (IS, FCD, generated-class accuracy, diversity).

    python bench/diagnose_model.py --data data/aligned/labeled --evaluator models/train_evaluator/evaluator.pt \
        models/train_joint/model.pt models/finetune_semi/model.pt [--out diag.json] [--per-class 50]

Prints one JSON object per checkpoint (lrlivae.evaluate.diagnose explains every key).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from lrlivae.data.aligned import AlignedFaces
from lrlivae.evaluate.classifier import accuracy, load_evaluator
from lrlivae.evaluate.diagnose import diagnose
from lrlivae.train import monitor
from pipeline.evaluate import generation_metrics
from pipeline.params import EvaluateParams
from pipeline.training import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--data", type=Path, default=Path("data/aligned/labeled"))
    ap.add_argument("--evaluator", type=Path, default=Path("models/train_evaluator/evaluator.pt"))
    ap.add_argument("--per-class", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-generation", action="store_true", help="skip IS / FCD / diversity")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    ds = AlignedFaces(args.data)
    ev, meta = load_evaluator(args.evaluator)
    results = {}
    for path in args.models:
        t0 = time.perf_counter()
        model, st = load_model(path)
        ids = list(st["identities"])
        labels = ds.labels(ids)
        tr, te = (np.sort(r[labels[r] >= 0]) for r in (ds.split_indices("train"), ds.split_indices("test")))
        c_tr, c_te = monitor.encode_rows(model, ds.faces, tr), monitor.encode_rows(model, ds.faces, te)
        x_te = np.asarray(ds.faces[te])
        m = {"evaluator_real_accuracy": accuracy(ev, x_te, labels[te]),
             "zs_accuracy": monitor.gm_accuracy(model, c_te.zs, labels[te]),
             "zu_probe_accuracy": monitor.probe_accuracy(c_tr.mu, labels[tr], c_te.mu, labels[te]),
             "zs_probe_accuracy": monitor.probe_accuracy(c_tr.zs, labels[tr], c_te.zs, labels[te]),
             "recon_mse_test": monitor.reconstruction_mse(model, ds.faces, te)}
        m.update(diagnose(model, ev, c_tr, labels[tr], c_te, labels[te], seed=args.seed))
        if not args.no_generation:
            cfg = EvaluateParams(per_class=args.per_class)
            m.update(generation_metrics(model, ev, len(ids), x_te, labels[te], cfg, args.seed, "cpu"))
        m["seconds"] = time.perf_counter() - t0
        results[str(path)] = m
        print(json.dumps({str(path): m}, indent=1), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
