"""Additions to Algorithm 1 measured on the synthetic set (docs/results.md): pseudo-labels for confident
unlabeled codes in fine-tuning, and the prior refit (the closed-form M-step of L_lkd) in the loop."""
from __future__ import annotations

import numpy as np
import torch

from lrlivae.nn.model import build_model
from lrlivae.train.loop import CheckpointSpec, TrainData, Trainer, TrainSettings
from lrlivae.train.steps import LossWeights, joint_forward
from tests.test_train_steps import C, tiny_cfg, tiny_data


def test_confident_unlabeled_codes_follow_their_class_the_rest_the_ambiguous_gaussian():
    torch.manual_seed(0)
    cfg = tiny_cfg()
    model = build_model(cfg)
    with torch.no_grad():  # far-apart, tight classes
        model.prior.means.copy_(torch.eye(C, cfg.zs_dim) * 50)
        model.prior.logvar_raw.fill_(0.0)
    x = torch.rand(6, 3, 32, 32) * 2 - 1
    zs = model.enc_s(x).detach()
    from lrlivae import losses
    from lrlivae.priors import ambiguous_gaussian

    with torch.no_grad():
        post = torch.softmax(losses.gm_logits(zs, model.prior.means, model.prior.logvars), 1)
    conf, c_hat = post.max(1)
    thr = float(conf.median())
    t = joint_forward(model, None, x, None, LossWeights(), torch.Generator().manual_seed(1), pseudo_label_threshold=thr)
    mu_t, var_t = ambiguous_gaussian(model.prior)
    known = conf >= thr
    target_mu = torch.where(known[:, None], model.prior.means[c_hat], mu_t.expand_as(zs))
    target_lv = torch.where(known[:, None], model.prior.logvars[c_hat], var_t.log().expand_as(zs))
    expected = losses.lkd_loss(zs, target_mu, target_lv, "sum")
    torch.testing.assert_close(t["lkd"], expected, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(t["pseudo_fraction"], known.float().mean())
    off = joint_forward(model, None, x, None, LossWeights(), torch.Generator().manual_seed(1))
    torch.testing.assert_close(off["lkd"], losses.lkd_loss(zs, mu_t.expand_as(zs), var_t.log().expand_as(zs), "sum"))


def test_loop_refits_the_prior_to_the_codes_at_the_end(tmp_path):
    torch.manual_seed(0)
    faces, labels = tiny_data(48)
    model = build_model(tiny_cfg())
    s = TrainSettings(mode="gm", steps=4, batch_size=8, gm_refit="end", checkpoint_every=100)
    Trainer(model, None, TrainData(faces, np.arange(48), labels), s, CheckpointSpec(tmp_path / "m.pt", "fp")).run()
    from lrlivae.data.aligned import to_float_tensor

    model.eval()
    with torch.no_grad():
        zs = model.enc_s(to_float_tensor(faces)).double()
    for c in range(C):
        z = zs[labels == c]
        var = (z - model.prior.means[c].double()).pow(2).mean(0)
        torch.testing.assert_close(model.prior.variances[c].double(), var.clamp(min=1.05e-3), rtol=1e-3, atol=1e-6)
