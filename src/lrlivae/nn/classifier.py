"""Adversarial classifier q_omega(c | z_u) on the label-irrelevant code (Sec. 3.2, Eqs. 4-5).

fc(adv_hidden)-ReLU-fc(C) (paper Appendix B.2: 256 and C units). It is trained to predict the label from
z_u (Eq. 4) while Encoder^u is trained to make its prediction uniform (Eq. 5).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from lrlivae.nn.config import ModelConfig


class AdversarialClassifier(nn.Module):
    """z_u (B, zu_dim) -> class logits (B, n_classes)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(cfg.zu_dim, cfg.adv_hidden), nn.ReLU(inplace=True),
                                 nn.Linear(cfg.adv_hidden, cfg.n_classes))

    def forward(self, zu: torch.Tensor) -> torch.Tensor:
        return self.net(zu)  # (B, n_classes)
