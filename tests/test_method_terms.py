"""The additions to Algorithm 1 that make the method hold on its own data: the decoder's class term on
prior samples (cls_dec), pseudo-labels for confident unlabeled codes, and the prior refit in the loop."""
from __future__ import annotations

import numpy as np
import torch

from lrlivae.nn.model import build_discriminator, build_model
from lrlivae.train.loop import Trainer, TrainSettings
from lrlivae.train.steps import LossWeights, gm_logits_frozen, joint_forward, joint_step
from tests.test_train_steps import C, tiny_cfg, tiny_data


def test_cls_dec_trains_the_decoder_only_and_leaves_encoder_bn_statistics_alone():
    torch.manual_seed(0)
    cfg = tiny_cfg()
    model, disc = build_model(cfg), build_discriminator(cfg)
    x = torch.rand(8, 3, 32, 32) * 2 - 1
    y = torch.arange(8) % C
    w = LossWeights(cls_dec=2.0, gan_g=0.0)
    t = joint_forward(model, disc, x, y, w, torch.Generator().manual_seed(1))
    assert "cls_dec" in t and t["cls_dec"].item() > 0
    named = {"enc_s": model.enc_s, "enc_u": model.enc_u, "adv": model.adv, "prior": model.prior}
    for name, module in named.items():
        g = torch.autograd.grad(t["cls_dec"], list(module.parameters()), retain_graph=True, allow_unused=True)
        assert all(gi is None or gi.abs().max() == 0 for gi in g), f"{name} gets a cls_dec gradient"
    g = torch.autograd.grad(t["cls_dec"], list(model.dec.parameters()), retain_graph=True, allow_unused=True)
    assert any(gi is not None and gi.abs().max() > 0 for gi in g)
    # the frozen pass runs Encoder^s in eval mode: its running statistics do not see generated images
    bn = [m for m in model.enc_s.modules() if isinstance(m, torch.nn.BatchNorm2d)][0]
    before = bn.running_mean.clone()
    model.train()
    gm_logits_frozen(model, torch.rand(4, 3, 32, 32))
    torch.testing.assert_close(bn.running_mean, before)
    assert model.enc_s.training
    # cls_dec is added to the step's total with its weight; unlabeled batches have no such term
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    _, scalars = joint_step(model, None, opt, None, x, y, w, torch.Generator().manual_seed(1))
    assert "loss/joint/cls_dec" in scalars
    assert "cls_dec" not in joint_forward(model, None, x, None, w, torch.Generator().manual_seed(1))


def test_cls_dec_off_leaves_the_joint_step_unchanged():
    torch.manual_seed(0)
    cfg = tiny_cfg()
    model, disc = build_model(cfg), build_discriminator(cfg)
    x, y = torch.rand(8, 3, 32, 32) * 2 - 1, torch.arange(8) % C
    state_m = {k: v.clone() for k, v in model.state_dict().items()}
    state_d = {k: v.clone() for k, v in disc.state_dict().items()}
    a = joint_forward(model, disc, x, y, LossWeights(), torch.Generator().manual_seed(3))
    model.load_state_dict(state_m)  # batch-norm statistics and the power iteration moved
    disc.load_state_dict(state_d)
    b = joint_forward(model, disc, x, y, LossWeights(cls_dec=0.0), torch.Generator().manual_seed(3))
    for k in ("rec", "lkd", "kl", "d", "g"):
        torch.testing.assert_close(a[k], b[k])


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
    Trainer(model, None, faces, np.arange(48), labels, s, tmp_path / "m.pt", "fp").run()
    from lrlivae.data.aligned import to_float_tensor

    model.eval()
    with torch.no_grad():
        zs = model.enc_s(to_float_tensor(faces)).double()
    for c in range(C):
        z = zs[labels == c]
        var = (z - model.prior.means[c].double()).pow(2).mean(0)
        torch.testing.assert_close(model.prior.variances[c].double(), var.clamp(min=1.05e-3), rtol=1e-3, atol=1e-6)
