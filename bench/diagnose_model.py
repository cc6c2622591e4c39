"""Score trained Lr-LiVAE checkpoints by the `evaluate` protocol (lrlivae.evaluate.protocol.score_model): where
samples lose their class, how the codes sit against the learned prior (lrlivae.evaluate.diagnose), and
the generation metrics (IS, FCD, generated-class accuracy, diversity), probes and inpainting.

    python bench/diagnose_model.py models/train_joint/model.pt models/finetune_semi/model.pt \
        [--data data/aligned/labeled] [--evaluator models/train_evaluator/evaluator.pt] [--out diag.json]

Prints one JSON object per checkpoint; the rows of docs/results.md were made with it.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from lrlivae.data.aligned import AlignedFaces
from lrlivae.evaluate.classifier import load_evaluator
from lrlivae.evaluate.protocol import score_model
from pipeline.evaluate import load_scored, protocol
from pipeline.params import load_params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--data", type=Path, default=Path("data/aligned/labeled"))
    ap.add_argument("--evaluator", type=Path, default=Path("models/train_evaluator/evaluator.pt"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"), help="its `evaluate` and `seed` are used")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    params = load_params(args.params)
    ds = AlignedFaces(args.data)
    ev, meta = load_evaluator(args.evaluator)
    results = {}
    for path in args.models:
        t0 = time.perf_counter()
        model, _, ids = load_scored(path, meta, args.evaluator, "cpu")
        m, _ = score_model(model, ev, ds, ids, protocol(params), params.seed, "cpu")
        m["seconds"] = time.perf_counter() - t0
        results[str(path)] = m
        print(json.dumps({str(path): m}, indent=1), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
