"""Checkpoints: plain dicts of tensors and Python values, loadable with weights_only=True, written
atomically (temporary name, fsync, rename) so a kill at any moment leaves the previous checkpoint whole;
and a Trainer's state in one (`trainer_state`, `restore_trainer`): the model, discriminator, optimisers,
sampler positions, RNG states and step, enough to resume exactly where the run stood.
"""
from __future__ import annotations

import io
from dataclasses import asdict
from pathlib import Path

import torch

from lrlivae.io import atomic_write_bytes


def save_checkpoint(path: str | Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: checkpoint not found; run the stage that writes it first") from None
    except Exception as e:
        raise ValueError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None


def rng_state() -> dict:
    """The global RNG states a training step may touch (torch CPU, and CUDA when present)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


CHECKPOINT_FORMAT = "lrlivae-checkpoint-1"


def trainer_state(t, finished: bool) -> dict:
    """The checkpoint of a Trainer `t` (lrlivae.train.loop) as it stands; `finished`: the run is done."""
    return {
        "format": CHECKPOINT_FORMAT,
        "finished": finished,
        "fingerprint": t.fingerprint,
        "step": t.step,
        "mode": t.s.mode,
        "settings": {k: v for k, v in asdict(t.s).items() if k != "weights"},
        "weights": asdict(t.w),
        "model": t.model.state_dict(),
        "disc": t.disc.state_dict() if t.disc is not None else None,
        "opt_gm": t.opt_gm.state_dict() if t.opt_gm is not None else None,
        "opt_g": t.opt_g.state_dict() if t.opt_g is not None else None,
        "opt_d": t.opt_d.state_dict() if t.opt_d is not None else None,
        "sampler_gm": t.gm_sampler.state_dict(),
        "sampler_joint": t.joint_sampler.state_dict(),
        "rng": {**rng_state(), "generator": t.generator.get_state()},
        "gm_epochs": t.gm_epochs,
        "history": t.history,
        **t.extra_state,
    }


def restore_trainer(t, st: dict) -> None:
    """Put Trainer `t` back where checkpoint `st` (of `trainer_state`) stood."""
    t.model.load_state_dict(st["model"])
    if t.disc is not None and st.get("disc") is not None:
        t.disc.load_state_dict(st["disc"])
    if t.opt_gm is not None:
        t.opt_gm.load_state_dict(st["opt_gm"])
    if t.opt_g is not None:
        t.opt_g.load_state_dict(st["opt_g"])
    if t.opt_d is not None:
        t.opt_d.load_state_dict(st["opt_d"])
    t.gm_sampler.load_state_dict(st["sampler_gm"])
    t.joint_sampler.load_state_dict(st["sampler_joint"])
    set_rng_state(st["rng"])
    t.generator.set_state(st["rng"]["generator"])
    t.step = int(st["step"])
    t.last_saved_step = t.step
    t.history = list(st.get("history", []))


def unfinished_run(path: Path, fingerprint: str, map_location: str | torch.device = "cpu") -> dict | None:
    """The checkpoint at `path` if it is an unfinished one of the run `fingerprint` names, else None."""
    if not path.exists():
        return None
    try:
        st = load_checkpoint(path, map_location=map_location)
    except ValueError:
        return None
    if st.get("format") != CHECKPOINT_FORMAT or st.get("finished") or st.get("fingerprint") != fingerprint:
        return None
    return st
