"""Benchmark: where the time of a training step goes, and how close it comes to the device's peak.

For each architecture x precision (optionally torch.compile'd), on one device:
  * GM step (gm_step + Adam) and joint step (joint_step + both Adams) on a fixed batch: images/s,
    seconds per step, FLOPs per step (torch.utils.flop_counter, counted once outside the timing, at the
    timed batch size) and model FLOP utilisation = achieved FLOP/s / the device's dense peak;
  * the joint step split into data (the Trainer's own batch gathering from a uint8 memory-mapped array),
    forward, backward and optimiser, synchronising the device between phases;
  * the spectral-norm share: the discriminator's forward + backward on a joint step's 3B images with and
    without its spectral-norm parametrizations (uncompiled runs only);
  * the training loop itself (Trainer._gm / _joint, n_gm GM steps + one joint step per iteration) with the
    background batch prefetch on and off: seconds per iteration and the share of it spent waiting for data;
  * an estimate of the paper's 320k iterations, from the measured iteration and from FLOPs at 40% of peak.

    python bench/step_profile.py --device cpu --arch small paper_faces --batch 4 --steps 2
    python bench/step_profile.py --device cuda --arch paper_faces --batch 96 --precision fp32 bf16 --out r.json
    python bench/step_profile.py --device cuda --arch paper_faces --batch 96 --precision bf16 --compile
    python bench/step_profile.py ... --profile traces/      # torch.profiler chrome trace per configuration

Peaks: a table keyed by torch.cuda.get_device_name() (dense tensor-core figures; fp32 runs count as tf32
when cuDNN may use it, PyTorch's default for convolutions), or --peak-tflops. Not part of the test run.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import lrlivae.train.steps as steps_mod  # noqa: E402
from lrlivae.nn.config import ModelConfig  # noqa: E402
from lrlivae.nn.model import build_discriminator, build_model  # noqa: E402
from lrlivae.train.loop import CheckpointSpec, TrainData, Trainer, TrainSettings  # noqa: E402
from lrlivae.train.speed import channels_last, compile_modules  # noqa: E402
from lrlivae.train.steps import LossWeights, gm_step, joint_step  # noqa: E402

PAPER_ITERATIONS = 320_000  # joint iterations of the paper's FaceScrub run, n_gm GM steps each
ESTIMATE_UTILISATION = 0.40
_H100 = {"bf16": 989e12, "tf32": 495e12, "fp32": 67e12}
PEAKS = {  # dense peak FLOP/s; matched against the device name in this order
    "H100 PCIe": {"bf16": 756e12, "tf32": 378e12, "fp32": 51e12},
    "H100": _H100,
    "H200": _H100,
    "A100": {"bf16": 312e12, "tf32": 156e12, "fp32": 19.5e12},
}


# ---------------------------------------------------------------------------------------------- figures
def device_peak(device: torch.device, precision: str, peak_tflops: float | None = None) -> tuple[float | None, str]:
    """(peak FLOP/s or None, where it comes from)."""
    if peak_tflops:
        return peak_tflops * 1e12, f"given: {peak_tflops} TFLOP/s"
    if device.type != "cuda":
        return None, "peak unknown"
    name = torch.cuda.get_device_name(device)
    kind = "bf16" if precision == "bf16" else ("tf32" if torch.backends.cudnn.allow_tf32 else "fp32")
    for key, peaks in PEAKS.items():
        if key in name:
            return peaks[kind], f"{key} dense {kind}"
    return None, f"peak unknown for {name}"


def rates(batch: int, flops: int | None, seconds: float, peak: float | None) -> dict:
    """Throughput figures of one step that takes `seconds` and does `flops`."""
    achieved = flops / seconds if flops else None
    return {"seconds_per_step": seconds, "images_per_s": batch / seconds,
            "tflop_per_step": flops / 1e12 if flops else None,
            "achieved_tflops": achieved / 1e12 if achieved else None,
            "mfu": achieved / peak if achieved and peak else None}


def hours_for(iterations: int, seconds_per_iteration: float) -> float:
    return iterations * seconds_per_iteration / 3600


def flop_estimate_hours(gm_flops: int, joint_flops: int, n_gm: int, peak: float,
                        utilisation: float = ESTIMATE_UTILISATION, iterations: int = PAPER_ITERATIONS) -> float:
    """Hours for `iterations` iterations (n_gm GM steps + one joint step each) at `utilisation` of `peak`."""
    return hours_for(iterations, (n_gm * gm_flops + joint_flops) / (utilisation * peak))


def summary(r: dict) -> str:
    """A few lines a person reads: one configuration's figures."""
    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    tag = f"{r['arch']} {r['precision']}{' compiled' if r['compile'] else ''} batch {r['batch']} on {r['device_name']}"
    lines = [tag + (f"  (compile failed: {r['compile_error'][:120]})" if r.get("compile_error") else "")]
    for kind in ("gm", "joint"):
        k = r[kind]
        lines.append(f"  {kind:5s} {k['images_per_s']:9.1f} img/s  {k['seconds_per_step'] * 1e3:9.2f} ms/step  "
                     f"{f(k['tflop_per_step'], '.4g')} TFLOP/step  {f(k['achieved_tflops'], '.4g')} TFLOP/s  "
                     f"MFU {f(k['mfu'], '.1%') if k['mfu'] is not None else r['peak_source']}")
    b = r.get("joint_phases")
    if b:
        lines.append("  joint phases (ms): " + ", ".join(f"{k} {v * 1e3:.2f}" if v is not None else f"{k} -"
                                                       for k, v in b.items() if k not in ("step", "data_share"))
                     + f"; data {b['data_share']:.1%} of the synchronised step")
    sn = r.get("spectral_norm")
    if sn:
        lines.append(f"  spectral norm: {sn['seconds'] * 1e3:.2f} ms of D's forward + backward "
                     f"({sn['share_of_joint_step']:.1%} of the joint step)")
    for name in ("loop_prefetch", "loop_direct"):
        lp = r.get(name)
        if lp:
            hits = f", prefetch hits {lp['prefetch_hits']}/{lp['batches']}" if lp["prefetch_hits"] is not None else ""
            lines.append(f"  {name}: {lp['seconds_per_iteration'] * 1e3:.2f} ms/iteration (n_gm {r['n_gm']}), "
                         f"data wait {lp['data_wait_share']:.1%}, loop overhead {lp['overhead_share']:+.1%}{hits}")
    est = r.get("estimate_320k")
    if est:
        lines.append(f"  320k iterations: {est['measured_hours']:.1f} h at the measured loop speed; "
                     + (f"{est['flop_hours_at_40pct_peak']:.1f} h from FLOPs at 40% of peak"
                        if est["flop_hours_at_40pct_peak"] is not None else "peak unknown"))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- setup
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, n: int, device: torch.device) -> float:
    """Mean seconds of fn() over n calls, the device synchronised before and after."""
    sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / n


def write_faces(folder: Path, n: int, size: int, seed: int = 0) -> np.ndarray:
    """n random uint8 faces in a .npy file, opened memory-mapped as the Trainer reads aligned sets."""
    path = folder / "faces.npy"
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
    rng = np.random.default_rng(seed)
    for i in range(0, n, 4096):
        arr[i : i + 4096] = rng.integers(0, 256, size=arr[i : i + 4096].shape, dtype=np.uint8)
    arr.flush()
    del arr
    return np.load(path, mmap_mode="r")


def build_trainer(arch: str, batch: int, device: torch.device, precision: str, classes: int, n_gm: int,
                  faces: np.ndarray, folder: Path, weights: LossWeights | None = None,
                  cfg_overrides: dict | None = None) -> Trainer:
    """A joint-mode Trainer over `faces` (labels cycle through the classes); its own batch path is measured."""
    cfg = ModelConfig.preset(arch, n_classes=classes, **(cfg_overrides or {}))
    torch.manual_seed(0)
    model, disc = build_model(cfg).to(device), build_discriminator(cfg).to(device)
    s = TrainSettings(mode="joint", steps=10**9, batch_size=batch, n_gm=n_gm, precision=precision,
                      checkpoint_every=10**9, log_every=10**9, weights=weights or LossWeights())
    labels = np.arange(len(faces)) % classes
    return Trainer(model, disc, TrainData(faces, np.arange(len(faces)), labels), s,
                   CheckpointSpec(folder / "bench.pt", "bench"), device=device)


def gm_once(t: Trainer, x: torch.Tensor, y: torch.Tensor) -> None:
    with t._autocast():
        gm_step(t.model, t.opt_gm, x, y, t.w)
    t.opt_gm.step()


def joint_once(t: Trainer, x: torch.Tensor, y: torch.Tensor) -> None:
    with t._autocast():
        joint_step(t.model, t.disc, t.opt_g, t.opt_d, x, y, t.w, t.generator)
    t.opt_g.step()
    if t.opt_d is not None:
        t.opt_d.step()


class _GlobalOnly:
    """FlopCounterMode's per-module tracker reduced to its one "Global" total: the tracker's backward hooks
    do not support torch.autograd.grad, which the joint step calls for the discriminator."""

    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def count_flops(t: Trainer, x: torch.Tensor, y: torch.Tensor) -> dict[str, int]:
    """FLOPs of one GM step and one joint step (forward and backward; matmuls and convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode

    out = {}
    for kind, fn in (("gm", gm_once), ("joint", joint_once)):
        counter = FlopCounterMode(display=False)
        counter.mod_tracker = _GlobalOnly()
        with counter:
            fn(t, x, y)
        out[kind] = int(counter.get_total_flops())
    return out


# ---------------------------------------------------------------------------------------------- measurements
def joint_phases(t: Trainer, n: int) -> dict:
    """Mean seconds of the joint step's phases: data (Trainer._batch, gathered on the spot), forward
    (joint_forward), backward (the rest of joint_step), optimiser; the device synchronised between phases."""
    dev, fwd = t.device, [0.0]
    original = steps_mod.joint_forward

    def forward(*a, **k):
        sync(dev)
        t0 = time.perf_counter()
        out = original(*a, **k)
        sync(dev)
        fwd[0] += time.perf_counter() - t0
        return out

    total = {"data": 0.0, "forward_backward": 0.0, "optimizer": 0.0}
    prefetch, t.prefetch = t.prefetch, False
    steps_mod.joint_forward = forward  # joint_step looks it up in its module at call time
    try:
        for _ in range(n):
            sync(dev)
            t0 = time.perf_counter()
            x, y = t._batch(t.joint_sampler)
            sync(dev)
            t1 = time.perf_counter()
            with t._autocast():
                joint_step(t.model, t.disc, t.opt_g, t.opt_d, x, y, t.w, t.generator)
            sync(dev)
            t2 = time.perf_counter()
            t.opt_g.step()
            if t.opt_d is not None:
                t.opt_d.step()
            sync(dev)
            t3 = time.perf_counter()
            total["data"] += t1 - t0
            total["forward_backward"] += t2 - t1
            total["optimizer"] += t3 - t2
    finally:
        steps_mod.joint_forward = original
        t.prefetch = prefetch
    separable = fwd[0] > 0  # joint_step still calls joint_forward
    return {"data": total["data"] / n,
            "forward": fwd[0] / n if separable else None,
            "backward": (total["forward_backward"] - fwd[0]) / n if separable else None,
            "forward_backward": total["forward_backward"] / n,
            "optimizer": total["optimizer"] / n,
            "step": sum(total.values()) / n}


def spectral_norm_cost(t: Trainer, x: torch.Tensor, y: torch.Tensor, n: int) -> float:
    """Seconds the spectral-norm parametrizations add to one discriminator forward + backward on 3B images."""
    from torch.nn.utils import parametrize

    plain = build_discriminator(t.model.cfg)
    for m in plain.modules():
        if parametrize.is_parametrized(m):
            for name in list(m.parametrizations.keys()):
                parametrize.remove_parametrizations(m, name, leave_parametrized=True)
    plain = plain.to(t.device)
    channels_last(plain)
    x3 = torch.cat([x, x, x]).detach().requires_grad_(True)
    y3 = torch.cat([y, y, y])

    def d_pass(d):
        with t._autocast():
            out = d(x3, y3)
        params = [p for p in d.parameters() if p.requires_grad]
        torch.autograd.grad(out.float().mean(), params + [x3])

    d_pass(t.disc), d_pass(plain)  # warm-up
    return timed(lambda: d_pass(t.disc), n, t.device) - timed(lambda: d_pass(plain), n, t.device)


def loop_iterations(t: Trainer, n: int, prefetch: bool, warmup: int = 1) -> dict:
    """The Trainer's own iterations (n_gm x _gm, then _joint): seconds per iteration and the time spent
    inside _batch (the data wait on the critical path)."""
    wait, calls = [0.0], [0]
    original = t._batch

    def batch(*a, **k):
        t0 = time.perf_counter()
        out = original(*a, **k)
        wait[0] += time.perf_counter() - t0
        calls[0] += 1
        return out

    t.prefetch = prefetch
    t._batch = batch  # instance attribute: _gm and _joint call it
    try:
        for _ in range(max(1, warmup)):  # warm-up (and the prefetcher's first, unprefetched batch)
            for _ in range(t.s.n_gm):
                t._gm()
            t._joint()
            t.step += 1
        hits0 = t._prefetcher.hits if t._prefetcher is not None else 0
        wait[0], calls[0] = 0.0, 0
        sync(t.device)
        t0 = time.perf_counter()
        for _ in range(n):
            for _ in range(t.s.n_gm):
                t._gm()
            t._joint()
            t.step += 1
        sync(t.device)
        dt = (time.perf_counter() - t0) / n
        hits = (t._prefetcher.hits - hits0) if t._prefetcher is not None else None
    finally:
        del t._batch
        t._stop_prefetch()
        t.prefetch = True
    return {"seconds_per_iteration": dt, "data_wait_s": wait[0] / n, "data_wait_share": wait[0] / n / dt,
            "batches": calls[0], "prefetch_hits": hits}


def profile_steps(t: Trainer, x, y, path: Path) -> None:
    """A torch.profiler chrome trace of two iterations (n_gm GM steps + one joint step), and the top ops."""
    from torch.profiler import ProfilerActivity, profile, record_function

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if t.device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(2):
            for _ in range(t.s.n_gm):
                with record_function("gm_step"):
                    gm_once(t, x, y)
            with record_function("joint_step"):
                joint_once(t, x, y)
        sync(t.device)
    path.parent.mkdir(parents=True, exist_ok=True)
    prof.export_chrome_trace(str(path))
    key = "self_cuda_time_total" if t.device.type == "cuda" else "self_cpu_time_total"
    path.with_suffix(".txt").write_text(prof.key_averages().table(sort_by=key, row_limit=30) + "\n")


def measure(arch: str, precision: str, compile_: bool, device: torch.device, batch: int, steps: int, warmup: int,
            classes: int, n_gm: int, faces: np.ndarray, folder: Path, peak_tflops: float | None = None,
            profile_dir: Path | None = None, weights: LossWeights | None = None,
            cfg_overrides: dict | None = None) -> dict:
    """Every figure of one configuration (see the module docstring)."""
    t = build_trainer(arch, batch, device, precision, classes, n_gm, faces, folder, weights, cfg_overrides)
    t.prefetch = False
    x, y = t._batch(t.joint_sampler)  # (B, 3, S, S), (B,)
    flops = count_flops(t, x, y)  # uncompiled, outside the timing
    peak, source = device_peak(device, precision, peak_tflops)
    r = {"arch": arch, "precision": precision, "compile": compile_, "compile_error": None, "batch": batch,
         "n_gm": n_gm, "classes": classes, "device": str(device),
         "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
         "peak_flops": peak, "peak_source": source, "flops": flops}
    sn = None if compile_ else spectral_norm_cost(t, x, y, steps)
    if compile_:
        compile_modules(t.model.enc_s, t.model.enc_u, t.model.dec, t.disc)
    t0 = time.perf_counter()
    try:
        for _ in range(max(warmup, 2 if compile_ else 1)):
            gm_once(t, x, y)
            joint_once(t, x, y)
        sync(device)
    except Exception as e:  # noqa: BLE001  (a failed compilation is a finding, not the end of the run)
        if not compile_:
            raise
        r["compile_error"] = f"{type(e).__name__}: {e}"
        print(f"torch.compile failed ({r['compile_error'][:2000]}); measuring uncompiled", flush=True)
        torch._dynamo.reset()
        t = build_trainer(arch, batch, device, precision, classes, n_gm, faces, folder, weights, cfg_overrides)
        x, y = t._batch(t.joint_sampler)
        gm_once(t, x, y)
        joint_once(t, x, y)
    r["warmup_seconds"] = time.perf_counter() - t0  # compilation included
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for kind, fn in (("gm", gm_once), ("joint", joint_once)):
        r[kind] = rates(batch, flops[kind], timed(lambda: fn(t, x, y), steps, device), peak)
    if device.type == "cuda":
        r["max_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    r["joint_phases"] = joint_phases(t, steps)
    r["joint_phases"]["data_share"] = r["joint_phases"]["data"] / r["joint_phases"]["step"]
    if sn is not None:
        r["spectral_norm"] = {"seconds": sn, "share_of_joint_step": sn / r["joint"]["seconds_per_step"]}
    bare = n_gm * r["gm"]["seconds_per_step"] + r["joint"]["seconds_per_step"]
    for name, prefetch in (("loop_prefetch", True), ("loop_direct", False)):
        lp = loop_iterations(t, steps, prefetch, warmup)
        lp["overhead_share"] = lp["seconds_per_iteration"] / bare - 1  # beyond the bare steps: data, checks, sync
        r[name] = lp
    r["estimate_320k"] = {
        "iterations": PAPER_ITERATIONS,
        "measured_hours": hours_for(PAPER_ITERATIONS, r["loop_prefetch"]["seconds_per_iteration"]),
        "flop_hours_at_40pct_peak": flop_estimate_hours(flops["gm"], flops["joint"], n_gm, peak) if peak else None,
    }
    if profile_dir is not None:
        profile_steps(t, x, y, Path(profile_dir) / f"{arch}_{precision}{'_compiled' if compile_ else ''}.json")
    return r


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", nargs="+", default=["small"], choices=["small", "paper_faces", "paper_cifar"])
    ap.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    ap.add_argument("--compile", action="store_true", help="torch.compile encoders, decoder and discriminator")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=None, help="default: 96 on CUDA, 4 on CPU")
    ap.add_argument("--steps", type=int, default=None, help="timed steps of each kind (default: 20 CUDA, 2 CPU)")
    ap.add_argument("--warmup", type=int, default=None, help="default: 3 on CUDA, 1 on CPU")
    ap.add_argument("--classes", type=int, default=530, help="identities (FaceScrub: 530)")
    ap.add_argument("--n-gm", type=int, default=3, help="GM steps per iteration (the paper: 3)")
    ap.add_argument("--rows", type=int, default=None, help="rows of the memory-mapped set (default: 40 batches)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the device's peak, if not in the table")
    ap.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark = True")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--profile", default=None, help="folder for torch.profiler chrome traces")
    ap.add_argument("--out", default=None, help="JSON file for every figure")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    if args.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    batch = args.batch or (96 if gpu else 4)
    steps, warmup = args.steps or (20 if gpu else 2), args.warmup or (3 if gpu else 1)
    results = []
    with tempfile.TemporaryDirectory(prefix="step_profile_") as tmp:
        for arch in args.arch:
            size = ModelConfig.preset(arch).image_size
            faces = write_faces(Path(tmp), args.rows or 40 * batch, size)
            for precision in args.precision:
                r = measure(arch, precision, args.compile, device, batch, steps, warmup, args.classes, args.n_gm,
                            faces, Path(tmp), args.peak_tflops, Path(args.profile) if args.profile else None)
                r["cudnn_benchmark"] = bool(torch.backends.cudnn.benchmark)
                r["tf32"] = {"cudnn": bool(torch.backends.cudnn.allow_tf32),
                             "matmul": bool(torch.backends.cuda.matmul.allow_tf32)}
                r["torch"] = torch.__version__
                results.append(r)
                print(summary(r), flush=True)
                if gpu:
                    torch.cuda.empty_cache()
            del faces
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
