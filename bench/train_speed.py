"""Benchmark: images per second of the joint step (Algorithm 1 lines 9-28, including the n_gm GM steps'
share excluded) for each architecture, on CPU or GPU, fp32 or bf16.

    python bench/train_speed.py                          # CPU, every architecture, small batches
    python bench/train_speed.py --device cuda --arch paper_faces --batch 96 --precision fp32 bf16
    python bench/train_speed.py --arch small --zu 8 --dec-depth 1 --cyc-s 0.1 --threads 1   # a setting's cost

Prints one line per (architecture, precision) and writes JSON with --out. Not part of the test run.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lrlivae.nn.config import ModelConfig  # noqa: E402
from lrlivae.nn.model import build_discriminator, build_model  # noqa: E402
from lrlivae.train.steps import LossWeights, gm_step, joint_step  # noqa: E402


def bench(arch: str, batch: int, device: str, precision: str, n_classes: int, iters: int, warmup: int,
          zs: int | None, zu: int | None, width: float, dec_depth: int = 0, dec_width: float | None = None,
          weights: dict | None = None) -> dict:
    over = {"n_classes": n_classes}
    if arch == "small":
        over.update(width=width, zs_dim=zs or 32, zu_dim=zu or 32, dec_depth=dec_depth, dec_width=dec_width)
    cfg = ModelConfig.preset(arch, **over)
    torch.manual_seed(0)
    model, disc = build_model(cfg).to(device), build_discriminator(cfg).to(device)
    opt_g = torch.optim.Adam([p for n in ("enc_s", "enc_u", "dec", "adv") for p in getattr(model, n).parameters()],
                             lr=5e-4, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(disc.parameters(), lr=5e-4, betas=(0.0, 0.9))
    opt_gm = torch.optim.Adam(list(model.enc_s.parameters()) + list(model.prior.parameters()), lr=5e-4, betas=(0.0, 0.9))
    w = LossWeights(**(weights or {}))
    x = torch.rand(batch, 3, cfg.image_size, cfg.image_size, device=device) * 2 - 1
    y = torch.randint(n_classes, (batch,), device=device)
    g = torch.Generator(device=device).manual_seed(0)
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if precision == "bf16" and device.startswith("cuda") else None

    def step(kind: str):
        if ctx is not None:
            ctx.__enter__()
        if kind == "joint":
            joint_step(model, disc, opt_g, opt_d, x, y, w, g)
        else:
            gm_step(model, opt_gm, x, y, w)
        if ctx is not None:
            ctx.__exit__(None, None, None)
        (opt_g if kind == "joint" else opt_gm).step()
        if kind == "joint":
            opt_d.step()

    out = {"arch": arch, "batch": batch, "device": device, "precision": precision}
    for kind in ("joint", "gm"):
        for _ in range(warmup):
            step(kind)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(iters):
            step(kind)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        dt = (time.perf_counter() - t) / iters
        out[f"{kind}_images_per_s"] = batch / dt
        out[f"{kind}_seconds_per_step"] = dt
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", nargs="+", default=["small", "paper_cifar", "paper_faces"])
    ap.add_argument("--batch", type=int, default=None, help="default: 64 (small), 32 (paper nets on CPU), 96 on GPU")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    ap.add_argument("--classes", type=int, default=40)
    ap.add_argument("--iters", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--zs", type=int, default=None)
    ap.add_argument("--zu", type=int, default=None)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--dec-depth", type=int, default=0, help="ModelConfig.dec_depth (small)")
    ap.add_argument("--dec-width", type=float, default=None, help="ModelConfig.dec_width (small)")
    ap.add_argument("--cyc-s", type=float, default=0.0, help="LossWeights.cyc_s")
    ap.add_argument("--cyc-u", type=float, default=0.0, help="LossWeights.cyc_u")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    gpu = args.device.startswith("cuda")
    if gpu:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    results = []
    for arch in args.arch:
        batch = args.batch or (96 if gpu else (64 if arch == "small" else 32))
        iters = args.iters or (50 if gpu else (10 if arch == "small" else 3))
        for prec in args.precision:
            r = bench(arch, batch, args.device, prec, args.classes, iters, warmup=5 if gpu else 1,
                      zs=args.zs, zu=args.zu, width=args.width, dec_depth=args.dec_depth,
                      dec_width=args.dec_width, weights={"cyc_s": args.cyc_s, "cyc_u": args.cyc_u})
            results.append(r)
            print(f"{arch:12s} {prec:5s} batch {batch:4d}  joint {r['joint_images_per_s']:9.1f} img/s "
                  f"({r['joint_seconds_per_step']*1000:8.1f} ms/step)   gm {r['gm_images_per_s']:9.1f} img/s", flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
