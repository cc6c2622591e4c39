"""Each loss of lrlivae.losses against a direct computation (torch.distributions, explicit formulas, float64)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from lrlivae import losses as L


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _ref_log_prob_per_class(z, means, variances):
    """float64 reference: log N(z; mu_c, diag var_c) via torch.distributions, (B, C)."""
    z, means, std = z.double(), means.double(), variances.double().sqrt()
    return Normal(means.unsqueeze(0), std.unsqueeze(0)).log_prob(z.unsqueeze(1)).sum(-1)


# --------------------------------------------------------------------------- L_lkd (Eq. 7)
def test_lkd_loss_matches_normal_log_prob():
    g = _gen()
    z, mu, logvar = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    ref = -Normal(mu, torch.exp(0.5 * logvar)).log_prob(z)  # (6, 5)
    torch.testing.assert_close(L.lkd_loss(z, mu, logvar, "sum"), ref.sum(1).mean())
    torch.testing.assert_close(L.lkd_loss(z, mu, logvar, "mean"), ref.mean())
    torch.testing.assert_close(L.lkd_loss(z, mu, logvar), ref.sum(1).mean())  # default "sum": the log-density
    torch.testing.assert_close(L.lkd_loss(z, mu, logvar, "mean"), L.lkd_loss(z, mu, logvar, "sum") / 5)


def test_lkd_loss_broadcasts_a_single_gaussian():
    z, mu, logvar = torch.randn(4, 3), torch.randn(3), torch.randn(3)
    expected = L.lkd_loss(z, mu.expand(4, 3), logvar.expand(4, 3), "sum")
    torch.testing.assert_close(L.lkd_loss(z, mu, logvar, "sum"), expected)


@pytest.mark.parametrize("var", [1.19, 0.82, 50.0, 1e-3])
def test_lkd_loss_high_dim_is_finite_where_a_product_of_variances_is_not(var):
    d = 512
    variances = torch.full((d,), var)
    det = torch.prod(variances)  # what a density-as-product implementation would need: inf or denormal/0
    assert not torch.isfinite(det) or det < 1e-38
    z = torch.randn(8, d, generator=_gen(1)) * math.sqrt(var)
    mu = torch.zeros(8, d)
    got = L.lkd_loss(z, mu, variances.log().expand(8, d), "sum")
    ref = -Normal(mu.double(), variances.double().sqrt()).log_prob(z.double()).sum(1).mean()
    assert torch.isfinite(got)
    torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-3)


# --------------------------------------------------------------------------- L_cls and L_GM (Eqs. 8, 9)
def test_gm_logits_and_cls_loss_match_bayes_rule():
    g = _gen(2)
    z, means = torch.randn(7, 4, generator=g), torch.randn(3, 4, generator=g)
    variances = torch.rand(3, 4, generator=g) + 0.2
    y = torch.tensor([0, 1, 2, 0, 1, 2, 1])
    logits = L.gm_logits(z, means, variances.log())
    torch.testing.assert_close(logits.double(), _ref_log_prob_per_class(z, means, variances), rtol=1e-5, atol=1e-5)
    log_joint = _ref_log_prob_per_class(z, means, variances) + math.log(1 / 3)  # log N + log p(c)
    posterior = log_joint.exp() / log_joint.exp().sum(1, keepdim=True)  # q(c | z), Eq. 8
    ref = -posterior[torch.arange(7), y].log().mean()
    torch.testing.assert_close(L.cls_loss(logits, y).double(), ref, rtol=1e-5, atol=1e-5)


def test_cls_loss_512_dims_with_variance_products_out_of_float32_range():
    d, C = 512, 4
    g = _gen(3)
    means = torch.randn(C, d, generator=g) * 0.3
    # class variances whose products over 512 dims overflow (1.19^512) or underflow (0.82^512) in float32
    variances = torch.tensor([1.19, 0.82, 1.0, 1.05]).unsqueeze(1).expand(C, d).contiguous()
    assert not torch.isfinite(variances.prod(1)).all() or (variances.prod(1) < 1e-40).any()
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    z = means[y] + torch.randn(6, d, generator=g) * variances[y].sqrt()
    logits = L.gm_logits(z, means, variances.log())
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(logits.double(), _ref_log_prob_per_class(z, means, variances), rtol=1e-6, atol=2e-2)
    ref = F.cross_entropy(_ref_log_prob_per_class(z, means, variances), y)
    torch.testing.assert_close(L.cls_loss(logits, y).double(), ref, rtol=1e-4, atol=1e-4)
    total = L.gm_loss(z, y, means, variances.log(), lambda_lkd=0.1, lkd_reduction="sum")
    assert torch.isfinite(total)


def test_gm_margin_scales_the_true_class_distance():
    g = _gen(4)
    z, means = torch.randn(5, 3, generator=g), torch.randn(4, 3, generator=g)
    logvars = torch.randn(4, 3, generator=g) * 0.3
    y = torch.tensor([0, 1, 2, 3, 1])
    alpha = 0.5
    maha = ((z[:, None] - means[None]) ** 2 / logvars.exp()[None]).sum(-1)  # (B, C)
    scale = 1 + alpha * F.one_hot(y, 4).float()
    ref = -0.5 * (3 * math.log(2 * math.pi) + logvars.sum(-1)[None] + scale * maha)
    torch.testing.assert_close(L.gm_logits(z, means, logvars, y=y, alpha=alpha), ref)
    with_margin = L.gm_loss_terms(z, y, means, logvars, alpha=alpha).cls
    without = L.gm_loss_terms(z, y, means, logvars).cls
    assert with_margin > without
    with pytest.raises(ValueError):
        L.gm_logits(z, means, logvars, alpha=alpha)


def test_gm_loss_is_cls_plus_weighted_lkd():
    g = _gen(5)
    z, means, logvars = torch.randn(6, 4, generator=g), torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    y = torch.tensor([2, 1, 0, 0, 1, 2])
    for red in ("mean", "sum"):
        terms = L.gm_loss_terms(z, y, means, logvars, lkd_reduction=red)
        torch.testing.assert_close(terms.lkd, L.lkd_loss(z, means[y], logvars[y], red))
        torch.testing.assert_close(terms.cls, L.cls_loss(L.gm_logits(z, means, logvars), y))
        total = L.gm_loss(z, y, means, logvars, lambda_lkd=0.3, lkd_reduction=red)
        torch.testing.assert_close(total, terms.cls + 0.3 * terms.lkd)


# --------------------------------------------------------------------------- KL (Eq. 3) and active units
def test_kl_loss_matches_torch_distributions():
    g = _gen(6)
    mu, logvar = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    ref = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(torch.zeros(5), torch.ones(5)))  # (8, 5)
    torch.testing.assert_close(L.kl_loss(mu, logvar, "sum"), ref.sum(1).mean())
    torch.testing.assert_close(L.kl_loss(mu, logvar, "mean"), ref.mean())
    torch.testing.assert_close(L.kl_loss(mu, logvar), ref.mean())
    torch.testing.assert_close(L.kl_per_dim(mu, logvar), ref.mean(0))
    assert L.kl_loss(torch.zeros(3, 4), torch.zeros(3, 4)) == 0


def test_active_units_counts_dims_whose_posterior_mean_varies():
    g = _gen(7)
    mu = torch.randn(200, 6, generator=g)
    mu[:, 1] = 0.3  # constant: inactive
    mu[:, 4] = 0.05 * torch.randn(200, generator=g)  # Var ~ 0.0025 < 0.01: inactive
    assert L.active_units(mu) == 4
    assert L.active_units(mu, threshold=1e-4) == 5


# --------------------------------------------------------------------------- adversarial classifier (Eqs. 4, 5)
def test_adversarial_losses():
    g = _gen(8)
    logits, y = torch.randn(5, 4, generator=g), torch.tensor([0, 3, 1, 2, 2])
    log_q = logits.log_softmax(1)
    torch.testing.assert_close(L.adv_classifier_loss(logits, y), -log_q[torch.arange(5), y].mean())
    torch.testing.assert_close(L.adv_encoder_loss(logits), -(log_q * 0.25).sum(1).mean())
    # the encoder's loss is minimal (log C) when the classifier is uniform
    torch.testing.assert_close(L.adv_encoder_loss(torch.zeros(5, 4)), torch.tensor(math.log(4.0)))
    assert L.adv_encoder_loss(logits) > math.log(4.0)


# --------------------------------------------------------------------------- reconstruction
def test_rec_loss_reductions():
    g = _gen(9)
    x, x_rec = torch.rand(3, 3, 8, 8, generator=g), torch.rand(3, 3, 8, 8, generator=g)
    torch.testing.assert_close(L.rec_loss(x, x_rec), F.mse_loss(x_rec, x))
    torch.testing.assert_close(L.rec_loss(x, x_rec, "sum"), 0.5 * ((x - x_rec) ** 2).sum() / 3)
    with pytest.raises(ValueError):
        L.rec_loss(x, x_rec, "none")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        L.kl_loss(x[:, 0, 0], x[:, 0, 0], "batchmean")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- GAN terms
def test_hinge_losses():
    real, rec, sample = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([-2.0, 0.0]), torch.tensor([0.5, -0.5, 3.0])
    d = L.d_loss_hinge(real, rec, sample)
    expected = (0 + 0.5 + 2.0) / 3 + (0 + 1.0) / 2 + (1.5 + 0.5 + 4.0) / 3
    torch.testing.assert_close(d, torch.tensor(expected))
    torch.testing.assert_close(L.g_loss_hinge(rec, sample), -(rec.mean() + sample.mean()))
    torch.testing.assert_close(L.d_loss_hinge(real, rec, None), torch.tensor((0 + 0.5 + 2.0) / 3 + 0.5))
    torch.testing.assert_close(L.g_loss_hinge(None, sample), -sample.mean())


def test_bce_losses_match_log_sigmoid_and_are_stable():
    g = _gen(10)
    real, rec, sample = (torch.randn(6, generator=g, dtype=torch.float64) for _ in range(3))
    sig = torch.sigmoid
    d_ref = -(sig(real).log().mean() + (1 - sig(rec)).log().mean() + (1 - sig(sample)).log().mean())
    g_ref = -(sig(rec).log().mean() + sig(sample).log().mean())
    torch.testing.assert_close(L.d_loss_bce(real, rec, sample), d_ref)
    torch.testing.assert_close(L.g_loss_bce(rec, sample), g_ref)
    big = torch.tensor([-200.0, 200.0])
    assert torch.isfinite(L.d_loss_bce(big, big, big)) and torch.isfinite(L.g_loss_bce(big, big))
    torch.testing.assert_close(L.d_loss_bce(torch.tensor([-200.0]), torch.tensor([200.0]), None),
                               torch.tensor(400.0))


@pytest.mark.parametrize("loss", [L.d_loss_hinge, L.d_loss_bce])
def test_d_loss_fake_weight_balances_real_against_the_two_fakes(loss):
    # A discriminator that cannot tell images apart outputs one value v for all of them. With the three-term
    # loss (fake_weight 1) the fakes outweigh the real images two to one, so v is pushed down (hinge: to -1,
    # where every fake term has zero gradient and the real term alone moves D); with fake_weight 0.5 the
    # real images weigh as much as the fakes together and v = 0 is a stationary point.
    v = torch.zeros(8, requires_grad=True)
    for fake_weight, expected_sign in ((1.0, 1.0), (0.5, 0.0)):
        (g,) = torch.autograd.grad(loss(v, v, v, fake_weight=fake_weight), v)
        assert torch.sign(g.sum()).item() == expected_sign, (fake_weight, g.sum())
    assert torch.allclose(loss(v, v, v), loss(v, v, v, fake_weight=1.0))
