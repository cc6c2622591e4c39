"""Image -> ground-truth factor predictor, trained on real (rendered, aligned) images, used to measure what
a generated or swapped image shows. One small CNN with a regression output per continuous factor
(standardised) and a classification head per discrete factor.

Protocol (fixed): 4 stride-2 conv3x3 blocks (32, 64, 96, 128 channels, BN, ReLU), global average pool,
fc; Adam(1e-3); batch 64; random shifts of up to 2 px; `epochs` passes over the training crops.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lrlivae.data.aligned import to_float_tensor


def _trunk() -> nn.Sequential:
    layers, c_in = [], 3
    for c in (32, 64, 96, 128):
        layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
        c_in = c
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


@dataclass
class FactorSpec:
    continuous: list[str]
    discrete: dict[str, list]  # factor -> sorted class values


class FactorPredictor(nn.Module):
    def __init__(self, spec: FactorSpec):
        super().__init__()
        self.spec = spec
        self.trunk = _trunk()
        self.reg = nn.Linear(128, max(1, len(spec.continuous)))
        self.cls = nn.ModuleDict({k: nn.Linear(128, len(v)) for k, v in spec.discrete.items()})
        self.register_buffer("mean", torch.zeros(max(1, len(spec.continuous))))
        self.register_buffer("std", torch.ones(max(1, len(spec.continuous))))

    def forward(self, x):
        h = self.trunk(x)  # (B, 128)
        return self.reg(h), {k: head(h) for k, head in self.cls.items()}

    @torch.no_grad()
    def predict(self, images_u8: np.ndarray, batch: int = 256) -> dict[str, np.ndarray]:
        """Predicted factor values for (N, S, S, 3) uint8 images."""
        self.eval()
        out: dict[str, list] = {k: [] for k in self.spec.continuous + list(self.spec.discrete)}
        for i in range(0, len(images_u8), batch):
            reg, cls = self(to_float_tensor(images_u8[i : i + batch]))
            reg = reg * self.std + self.mean
            for j, k in enumerate(self.spec.continuous):
                out[k].append(reg[:, j].numpy())
            for k, logits in cls.items():
                out[k].append(np.asarray(self.spec.discrete[k])[logits.argmax(1).numpy()])
        return {k: np.concatenate(v) if v else np.zeros(0) for k, v in out.items()}


def _shift(x: torch.Tensor, rng: np.random.Generator, max_shift: int = 2) -> torch.Tensor:
    dx, dy = rng.integers(-max_shift, max_shift + 1, size=2)
    return torch.roll(x, shifts=(int(dy), int(dx)), dims=(2, 3))


def train_factor_predictor(images_u8: np.ndarray, factors: dict[str, np.ndarray], kinds: dict[str, str],
                           epochs: int = 8, seed: int = 0) -> FactorPredictor:
    """Fit the predictor on aligned crops and their ground-truth factors (kinds: 'continuous'/'discrete')."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    cont = [k for k in factors if kinds.get(k) == "continuous" and np.std(factors[k]) > 0]
    disc = {k: sorted(np.unique(factors[k]).tolist()) for k in factors if kinds.get(k) == "discrete"
            and len(np.unique(factors[k])) > 1}
    model = FactorPredictor(FactorSpec(cont, disc))
    if cont:
        y_reg = np.stack([factors[k] for k in cont], 1).astype(np.float32)
        model.mean.copy_(torch.as_tensor(y_reg.mean(0)))
        model.std.copy_(torch.as_tensor(y_reg.std(0) + 1e-8))
        y_reg = torch.as_tensor((y_reg - y_reg.mean(0)) / (y_reg.std(0) + 1e-8))
    y_cls = {k: torch.as_tensor(np.searchsorted(v, factors[k])) for k, v in disc.items()}
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    n = len(images_u8)
    model.train()
    for _ in range(epochs):
        for idx in np.array_split(rng.permutation(n), max(1, n // 64)):
            x = _shift(to_float_tensor(images_u8[np.sort(idx)]), rng)
            idx = np.sort(idx)
            reg, cls = model(x)
            loss = F.mse_loss(reg, y_reg[idx]) if cont else reg.sum() * 0
            for k, logits in cls.items():
                loss = loss + F.cross_entropy(logits, y_cls[k][idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model


def agreement(pred: dict[str, np.ndarray], truth: dict[str, np.ndarray], kinds: dict[str, str]) -> dict[str, float]:
    """Per factor: R^2 (continuous, clipped at 0) or accuracy (discrete) of predictions against truth."""
    from sklearn.metrics import r2_score

    out = {}
    for k, p in pred.items():
        t = np.asarray(truth[k])
        if kinds.get(k) == "discrete":
            out[k] = float((p == t).mean())
        else:
            out[k] = max(0.0, float(r2_score(t, p)))
    return out
