"""Benchmark: synth + align wall time, align frames/s for 1 and 2 workers, and batch loading speed.

Prints the figures and writes them as JSON (--out). Runs on the default params.yaml sets unless told
otherwise. Not part of the test run.

    python bench/align_speed.py --out reports/bench_align.json
    python bench/align_speed.py --loader-only data/aligned/labeled     # the loader comparison alone
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lrlivae.data.aligned import AlignedFaces, to_float_tensor  # noqa: E402
from pipeline.align_workers import align_records  # noqa: E402
from pipeline.params import load_params  # noqa: E402


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def loader_speed(faces_dir: Path, tmp: Path, batch: int = 64, n_batches: int = 200) -> dict:
    """Shuffled float batches from faces.npy (memory map) vs decoding the same crops from PNG files."""
    from PIL import Image

    ds = AlignedFaces(faces_dir)
    n = len(ds)
    rng = np.random.default_rng(0)
    # faces.npy: shuffled batches -> float tensors in [-1, 1]
    t = time.perf_counter()
    count = 0
    for _ in range(n_batches):
        rows = rng.choice(n, size=batch, replace=False)
        x = ds.batch(rows)
        count += x.shape[0]
    npy_rate = count / (time.perf_counter() - t)
    # PNG: write each crop once, then decode shuffled batches the same way
    png_dir = tmp / "png"
    png_dir.mkdir()
    for i in range(n):
        Image.fromarray(np.asarray(ds.faces[i])).save(png_dir / f"{i}.png")
    t = time.perf_counter()
    count = 0
    for _ in range(max(10, n_batches // 10)):
        rows = rng.choice(n, size=batch, replace=False)
        imgs = np.stack([np.asarray(Image.open(png_dir / f"{r}.png").convert("RGB")) for r in rows])
        x = to_float_tensor(imgs)
        count += x.shape[0]
    png_rate = count / (time.perf_counter() - t)
    return {"npy_images_per_s": npy_rate, "png_images_per_s": png_rate, "npy_over_png": npy_rate / png_rate}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    ap.add_argument("--loader-only", metavar="ALIGNED_SET", default=None,
                    help="measure only the batch loading speed, on this aligned set (e.g. data/aligned/labeled)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (1 on a machine that is busy)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.loader_only:
        with tempfile.TemporaryDirectory() as d:
            results = loader_speed(Path(args.loader_only), Path(d))
        for k, v in results.items():
            print(f"{k:32s} {v:12.2f}")
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
        return
    params = load_params(args.params)
    from lrlivae.data.synthetic import generate_set
    from lrlivae.data.sources import list_source
    from pipeline.align import align_set

    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        cfg = params.synth
        (_, t_synth) = timed(
            lambda: [
                generate_set(tmp / "raw" / name, n_identities=s.n_identities, images_per_identity=s.images_per_identity,
                             seed=params.seed, set_name=name, identity_offset=off, frame_size=tuple(cfg.frame_size),
                             workers=cfg.workers, progress=False)
                for name, s, off in (("labeled", cfg.labeled, 0), ("unlabeled", cfg.unlabeled, cfg.labeled.n_identities))
            ]
        )
        results["synth_seconds"] = t_synth
        (_, t_align) = timed(
            lambda: [
                align_set(name, getattr(params.align, name), tmp / "raw" / name, [], tmp / "aligned" / name, params)
                for name in ("labeled", "unlabeled")
            ]
        )
        results["align_seconds"] = t_align
        results["synth_plus_align_seconds"] = t_synth + t_align
        records = list_source("synthetic", tmp / "raw" / "labeled").records
        for workers in (1, 2):
            cfg_w = params.align.for_source("synthetic").model_copy(update={"workers": workers})
            (_, t) = timed(lambda: list(align_records(records, cfg_w, desc=f"workers={workers}")))
            results[f"align_frames_per_s_workers{workers}"] = len(records) / t
        results.update(loader_speed(tmp / "aligned" / "labeled", tmp))
        shutil.rmtree(tmp / "raw", ignore_errors=True)
    for k, v in results.items():
        print(f"{k:32s} {v:12.2f}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
