"""The evaluator: a compact residual classifier trained on real aligned images. Its softmax gives
p(y|x) for the Inception Score (paper Sec. 4.2, App. B.5, where an Inception-ResNet-v1 played this
role) and its penultimate layer the features of the Frechet distance.

Architecture (`EvaluatorConfig`): a 3x3 stem conv (channels[0], stride image_size // 32, so the stages
always run at 32, 16 and 8 px), three stages of two BasicBlocks (He et al. 2016; default 16, 32, 64
channels; the 2nd and 3rd stage start with stride 2), global average pooling -> channels[2] features
-> fc(C).
Training protocol (`EvaluatorTraining`, fixed up to its fields): inputs in [-1, 1]; per image a random
shift of up to +-4 px (replicate padding, random crop) and a random horizontal flip (p = 0.5);
SGD (momentum 0.9, nesterov, default lr 0.05) or Adam, weight decay 5e-4, batch 32, a cosine
learning-rate decay to 0 over all steps; cross-entropy; 30 epochs; the last incomplete batch of an
epoch is dropped; at the end the batch-norm statistics are recomputed over the unaugmented training
images (`precise_bn`). On the built-in synthetic set (40 identities, 1600 training crops) this reached
0.98-0.99 test accuracy (seeds 0 and 1) in about 2.5 minutes on one CPU thread.
Checkpoints are plain dicts (config + state dict + caller's extras) readable with
`torch.load(..., weights_only=True)`.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Callable, Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import Field

from lrlivae.data.aligned import to_float_tensor
from lrlivae.encode import eval_batch, evaluating

FORMAT = "lrlivae-evaluator"


@dataclass
class EvaluatorConfig:
    n_classes: int
    image_size: int = 64
    channels: tuple[int, int, int] = (16, 32, 64)
    blocks: int = 2  # BasicBlocks per stage

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        if self.n_classes < 2 or self.image_size < 8 or len(self.channels) != 3 or self.blocks < 1:
            raise ValueError(f"invalid EvaluatorConfig: {self}")

    @property
    def stem_stride(self) -> int:
        return max(1, self.image_size // 32)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + self.shortcut(x))


class Evaluator(nn.Module):
    def __init__(self, cfg: EvaluatorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c0 = cfg.channels[0]
        self.stem = nn.Sequential(nn.Conv2d(3, c0, 3, cfg.stem_stride, 1, bias=False), nn.BatchNorm2d(c0),
                                  nn.ReLU(inplace=True))
        layers, c_in = [], c0
        for s, c in enumerate(cfg.channels):
            for b in range(cfg.blocks):
                layers.append(BasicBlock(c_in, c, stride=2 if (s > 0 and b == 0) else 1))
                c_in = c
        self.stages = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in, cfg.n_classes)

    @property
    def feature_dim(self) -> int:
        return self.fc.in_features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [-1, 1] -> (B, D) penultimate features."""
        return self.stages(self.stem(x)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))  # (B, C) logits


# ---------------------------------------------------------------------------- training
def augment(x: torch.Tensor, gen: torch.Generator, max_shift: int = 4, flip: bool = True) -> torch.Tensor:
    """Per image: random shift of up to +-max_shift px (replicate padding) and horizontal flip."""
    b, _, h, w = x.shape
    if max_shift <= 0 and not flip:
        return x
    p = F.pad(x, (max_shift,) * 4, mode="replicate")
    dy = torch.randint(0, 2 * max_shift + 1, (b,), generator=gen)
    dx = torch.randint(0, 2 * max_shift + 1, (b,), generator=gen)
    rows = (dy[:, None] + torch.arange(h))[:, :, None]  # (B, H, 1)
    cols = (dx[:, None] + torch.arange(w))[:, None, :]  # (B, 1, W)
    out = p.permute(0, 2, 3, 1)[torch.arange(b)[:, None, None], rows, cols].permute(0, 3, 1, 2)
    if not flip:
        return out.contiguous()
    flips = torch.rand(b, generator=gen) < 0.5
    return torch.where(flips[:, None, None, None], out.flip(-1), out).contiguous()


@dataclass
class EvaluatorTraining:
    """The evaluator's training protocol (module docstring); the defaults are the protocol's."""

    epochs: Annotated[int, Field(ge=1)] = 30
    batch_size: Annotated[int, Field(ge=2)] = 32  # the last incomplete batch of an epoch is dropped
    lr: Annotated[float, Field(gt=0)] = 0.05  # peak learning rate, decayed to 0 along a cosine over all steps
    optimizer: Literal["sgd", "adam"] = "sgd"  # sgd: momentum 0.9, nesterov
    weight_decay: float = 5e-4
    max_shift: int = 4  # augmentation: random shift of up to +-max_shift px ...
    flip: bool = True  # ... and a random horizontal flip
    seed: int = 0


def train_evaluator(images_u8: np.ndarray, labels: np.ndarray, training: EvaluatorTraining = EvaluatorTraining(),
                    *, val: tuple[np.ndarray, np.ndarray] | None = None,
                    progress: bool | Callable[[dict], None] = False,
                    channels: tuple[int, int, int] = (16, 32, 64), device: str | torch.device = "cpu") -> Evaluator:
    """Fit the evaluator on (N, S, S, 3) uint8 images with integer labels in [0, C), by `training`.

    `progress`: True prints one line per epoch; a callable gets {epoch, loss, train_acc, val_acc,
    seconds} after each epoch. The per-epoch records are also kept in `model.history`.
    """
    t = training
    images_u8, labels = _checked(images_u8, labels)
    n = len(images_u8)
    batch = min(t.batch_size, n)
    torch.manual_seed(t.seed)
    rng = np.random.default_rng(t.seed)
    gen = torch.Generator().manual_seed(t.seed)
    cfg = EvaluatorConfig(n_classes=int(labels.max()) + 1, image_size=images_u8.shape[1], channels=channels)
    model = Evaluator(cfg).to(device, memory_format=torch.channels_last)  # NHWC: about a fifth faster on CPU
    opt = _optimizer(model, t)
    steps_per_epoch = max(1, n // batch)
    total = t.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    y_all = torch.as_tensor(labels)
    model.history = []
    t0 = time.perf_counter()
    for epoch in range(t.epochs):
        model.train()
        perm = rng.permutation(n)
        batches = [np.sort(perm[k * batch : (k + 1) * batch]) for k in range(steps_per_epoch)]
        loss_sum, correct = _train_epoch(model, opt, sched, images_u8, y_all, batches, gen, t, device)
        seen = steps_per_epoch * batch
        if epoch == t.epochs - 1:  # final batch-norm statistics from the whole (unaugmented) training set
            precise_bn(model, images_u8, seed=t.seed)
        rec = {"epoch": epoch + 1, "loss": loss_sum / seen, "train_acc": correct / seen,
               "val_acc": accuracy(model, *val) if val is not None else float("nan"),
               "seconds": time.perf_counter() - t0}
        model.history.append(rec)
        if callable(progress):
            progress(rec)
        elif progress:
            print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items()), flush=True)
    model.eval()
    return model


def _checked(images_u8, labels) -> tuple[np.ndarray, np.ndarray]:
    """(N, S, S, 3) images and N labels >= 0 as arrays (int64 labels), or ValueError."""
    images_u8, labels = np.asarray(images_u8), np.asarray(labels, dtype=np.int64)
    if images_u8.ndim != 4 or images_u8.shape[1] != images_u8.shape[2] or len(images_u8) != len(labels):
        raise ValueError(f"need (N, S, S, 3) images and N labels, got {images_u8.shape} and {labels.shape}")
    if labels.min() < 0:
        raise ValueError("labels must be >= 0")
    return images_u8, labels


def _optimizer(model: Evaluator, t: EvaluatorTraining) -> torch.optim.Optimizer:
    if t.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=t.lr, momentum=0.9, nesterov=True, weight_decay=t.weight_decay)
    raise ValueError(f"optimizer must be 'adam' or 'sgd', got {t.optimizer!r}")


def _train_epoch(model: Evaluator, opt, sched, images_u8: np.ndarray, y_all: torch.Tensor, batches: list[np.ndarray],
                 gen: torch.Generator, t: EvaluatorTraining, device) -> tuple[float, int]:
    """One epoch of optimiser steps over `batches` (row indices) of augmented images. Returns (the sum of
    the batches' losses times their sizes, the number of correct training predictions)."""
    loss_sum, correct = 0.0, 0
    for idx in batches:
        x = augment(to_float_tensor(images_u8[idx]), gen, t.max_shift, t.flip).to(device)
        x = x.contiguous(memory_format=torch.channels_last)
        y = y_all[idx].to(device)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss_sum += float(loss.detach()) * len(idx)
        correct += int((logits.argmax(1) == y).sum())
    return loss_sum, correct


@torch.no_grad()
def precise_bn(model: Evaluator, images_u8: np.ndarray, batch: int = 256, seed: int = 0) -> None:
    """Replace every BatchNorm's running statistics by their average over the training images (no
    augmentation; shuffled batches of `batch`, equal weight each), so that eval-mode outputs do not
    depend on the last few optimiser steps."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
    model.train()
    dev = next(model.parameters()).device
    order = np.random.default_rng(seed).permutation(len(images_u8))
    for i in range(0, len(order), batch):
        model(to_float_tensor(images_u8[np.sort(order[i : i + batch])]).to(dev))
    for bn, m in zip(bns, momenta):
        bn.momentum = m
    model.eval()


# ---------------------------------------------------------------------------- inference
def _batches(model: Evaluator, images_u8: np.ndarray, fn, batch: int | None) -> np.ndarray:
    images_u8 = np.asarray(images_u8)
    out = []
    with evaluating(model):
        dev = next(model.parameters()).device
        batch = eval_batch(dev, batch)
        for i in range(0, len(images_u8), batch):
            out.append(fn(to_float_tensor(images_u8[i : i + batch]).to(dev)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def predict_probs(model: Evaluator, images_u8: np.ndarray, batch: int | None = None) -> np.ndarray:
    """p(y|x): (N, C) softmax probabilities (float64, rows sum to 1) for (N, S, S, 3) uint8 images."""
    p = _batches(model, images_u8, lambda x: F.softmax(model(x).double(), dim=1), batch).astype(np.float64)
    return p / p.sum(1, keepdims=True) if len(p) else p


def features(model: Evaluator, images_u8: np.ndarray, batch: int | None = None) -> np.ndarray:
    """(N, D) penultimate-layer features (after global pooling) for the Frechet distance."""
    return _batches(model, images_u8, model.features, batch)


def accuracy(model: Evaluator, images_u8: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy on (N, S, S, 3) uint8 images."""
    p = predict_probs(model, images_u8)
    return float((p.argmax(1) == np.asarray(labels)).mean()) if len(p) else float("nan")


# ---------------------------------------------------------------------------- checkpoints
def to_dict(model: Evaluator, **extra) -> dict:
    """A plain dict (format tag, config, CPU state dict, `extra` plain values) for torch.save."""
    return {"format": FORMAT, "version": 1, "config": model.cfg.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, **extra}


def from_dict(d: dict, device: str | torch.device = "cpu") -> Evaluator:
    """Rebuild an evaluator (eval mode) from `to_dict` output."""
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise ValueError(f"not an evaluator checkpoint (format tag {d.get('format') if isinstance(d, dict) else None!r})")
    model = Evaluator(EvaluatorConfig(**d["config"]))
    model.load_state_dict(d["state_dict"])
    return model.to(device).eval()


def save_evaluator(model: Evaluator, path: str | Path, **extra) -> None:
    """Write `to_dict(model, **extra)` atomically to `path`."""
    import io

    from lrlivae.io import atomic_write_bytes

    buf = io.BytesIO()
    torch.save(to_dict(model, **extra), buf)
    atomic_write_bytes(path, buf.getvalue())


def load_evaluator(path: str | Path, device: str | torch.device = "cpu") -> tuple[Evaluator, dict]:
    """(model, the checkpoint dict) from a file written by `save_evaluator` (weights_only load)."""
    d = torch.load(path, map_location="cpu", weights_only=True)
    return from_dict(d, device), d
