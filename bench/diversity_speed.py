"""Speed of the intra-class diversity metric (paper Eq. 12): all pairs of a class in batches of
`--pair-batch` MS-SSIM evaluations against the naive one-pair-per-call loop, on the same images.

Images: `--classes` x `--per-class` crops from an aligned set (`--data data/aligned/labeled`, the first
identities, first images of each) when given, else structured random 64x64 images (a coloured gradient
with a bright disc and mild noise). Both paths must give the same diversity (checked, 1e-6).

    python bench/diversity_speed.py [--data data/aligned/labeled] [--threads 1] [--out reports/diversity_speed.json]

Not part of the test run; about half a minute on one CPU core.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lrlivae.evaluate.diversity import intra_class_diversity, intra_class_diversity_loop  # noqa: E402


def structured_images(n: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        img = rng.uniform(40, 200, 3) * (0.6 + 0.4 * xx[..., None] * rng.uniform(0, 1, 3))
        cx, cy, r = rng.uniform(0.2, 0.8, 3) * [1, 1, 0.4]
        img[((xx - cx) ** 2 + (yy - cy) ** 2) < r**2] = rng.uniform(150, 255, 3)
        out[i] = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
    return out


def load_images(args) -> tuple[np.ndarray, np.ndarray, str]:
    if args.data:
        from lrlivae.data.aligned import AlignedFaces

        ds = AlignedFaces(args.data)
        labels = ds.labels()
        rows = np.concatenate([np.flatnonzero(labels == c)[: args.per_class] for c in range(args.classes)])
        return ds.images(rows), labels[rows], f"aligned set {args.data}"
    n = args.classes * args.per_class
    return structured_images(n, 64, args.seed), np.repeat(np.arange(args.classes), args.per_class), "structured random"


def timed(fn, repeat: int) -> tuple[float, float]:
    best, value = float("inf"), float("nan")
    for _ in range(repeat):
        t = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t)
    return best, value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="an aligned set folder (faces.npy + index.parquet)")
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--per-class", type=int, default=40)
    ap.add_argument("--pair-batch", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs of the batched path")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="write the figures as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    images, labels, source = load_images(args)
    counts = np.bincount(labels)
    pairs = int(sum(n * (n - 1) // 2 for n in counts))
    dev = args.device
    intra_class_diversity(images[:4], np.zeros(4, int), device=dev)  # warm-up
    t_batch, d_batch = timed(lambda: intra_class_diversity(images, labels, pair_batch=args.pair_batch, device=dev),
                             args.repeat)
    t_loop, d_loop = timed(lambda: intra_class_diversity_loop(images, labels, device=dev), 1)
    if abs(d_batch - d_loop) > 1e-6:
        raise SystemExit(f"batched ({d_batch}) and loop ({d_loop}) diversities differ")
    report = {
        "source": source, "images": int(len(images)), "classes": int(len(counts)), "image_size": int(images.shape[1]),
        "pairs": pairs, "pair_batch": args.pair_batch, "threads": args.threads, "device": dev, "diversity": d_batch,
        "batched_seconds": t_batch, "loop_seconds": t_loop,
        "batched_pairs_per_s": pairs / t_batch, "loop_pairs_per_s": pairs / t_loop, "speedup": t_loop / t_batch,
    }
    print(f"{source}: {len(counts)} classes, {len(images)} images of {images.shape[1]} px, {pairs} pairs, "
          f"{args.threads} thread(s), {dev}")
    print(f"diversity           {d_batch:.6f} (both paths)")
    print(f"batched ({args.pair_batch:>5}/call) {t_batch:8.2f} s  {pairs / t_batch:10.0f} pairs/s")
    print(f"one pair per call   {t_loop:8.2f} s  {pairs / t_loop:10.0f} pairs/s")
    print(f"speed-up            {t_loop / t_batch:8.1f}x")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
