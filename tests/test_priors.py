"""GaussianMixturePrior (Eq. 6), its gradients and bounds, and the ambiguous Gaussian (Eq. 11)."""
from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal

from lrlivae import losses as L
from lrlivae.priors import (GaussianMixturePrior, ambiguous_gaussian, log_prob_per_class, moment_match,
                            sample_standard_normal, soft_clamp, soft_clamp_inverse, standard_normal_log_prob)


def _prior(C=3, d=4, seed=0, **kw) -> GaussianMixturePrior:
    torch.manual_seed(seed)
    return GaussianMixturePrior(C, d, **kw)


def _randomise(prior: GaussianMixturePrior, seed: int = 1) -> GaussianMixturePrior:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        prior.means.copy_(torch.randn(prior.means.shape, generator=g))
        prior.logvar_raw.copy_(torch.randn(prior.logvar_raw.shape, generator=g) * 0.5)
    return prior


# --------------------------------------------------------------------------- densities
def test_log_prob_per_class_matches_torch_distributions():
    prior = _randomise(_prior())
    z = torch.randn(5, 4)
    ref = Normal(prior.means[None].double(), prior.variances.sqrt()[None].double()).log_prob(z[:, None].double()).sum(-1)
    torch.testing.assert_close(prior.log_prob_per_class(z).double(), ref.detach(), rtol=1e-5, atol=1e-5)
    # posterior: Bayes rule with uniform p(c); mixture density: log-sum-exp
    post = prior.posterior_logits(z).log_softmax(1)
    torch.testing.assert_close(post.double(), (ref - ref.logsumexp(1, keepdim=True)).detach(), rtol=1e-5, atol=1e-5)
    mix = (ref.exp().mean(1)).log()
    torch.testing.assert_close(prior.log_prob(z).double(), mix.detach(), rtol=1e-5, atol=1e-5)
    assert prior.predict(z).shape == (5,)


def test_log_prob_per_class_512_dims_in_log_space():
    """Variances whose 512-fold product is inf / denormal in float32: log-space densities stay exact."""
    prior = _prior(C=2, d=512)
    with torch.no_grad():
        prior.means.zero_()
        prior.logvar_raw[0] = soft_clamp_inverse(math.log(1.19), prior.logvar_min, prior.logvar_max)
        prior.logvar_raw[1] = soft_clamp_inverse(math.log(0.82), prior.logvar_min, prior.logvar_max)
    var = prior.variances.detach()
    assert not torch.isfinite(var[0].prod()) and var[1].prod() < 1e-38  # the naive determinant fails
    z = torch.randn(6, 512)
    got = prior.log_prob_per_class(z)
    ref = Normal(torch.zeros(2, 512, dtype=torch.float64), var.double().sqrt()).log_prob(z[:, None].double()).sum(-1)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-2)


def test_standard_normal_helpers():
    z = torch.randn(4, 3)
    ref = Normal(0.0, 1.0).log_prob(z).sum(1)
    torch.testing.assert_close(standard_normal_log_prob(z), ref)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a, b = sample_standard_normal(5, 2, generator=g1), sample_standard_normal(5, 2, generator=g2)
    assert a.shape == (5, 2) and torch.equal(a, b)


# --------------------------------------------------------------------------- parameters, init and bounds
def test_init_and_separate_parameter_groups():
    prior = _prior(C=50, d=256)
    torch.testing.assert_close(prior.variances, torch.ones(50, 256), rtol=1e-5, atol=1e-6)
    norms = prior.means.norm(dim=1)
    assert 0.7 < norms.mean().item() < 1.3  # |mu_c| ~ 1 whatever d is
    means, logvars = prior.mean_parameters(), prior.variance_parameters()
    assert {id(p) for p in means}.isdisjoint({id(p) for p in logvars})
    assert {id(p) for p in means + logvars} == {id(p) for p in prior.parameters()}
    with pytest.raises(ValueError):
        GaussianMixturePrior(3, 4, var_min=1.0, var_init=0.5)


def test_variances_stay_in_bounds_after_huge_steps():
    prior = _prior(C=3, d=5, var_min=1e-3, var_max=1e2)
    # huge steps on the log-variances (the means get an ordinary step: they are unbounded by design)
    opt = torch.optim.SGD([{"params": prior.variance_parameters(), "lr": 1e6},
                           {"params": prior.mean_parameters(), "lr": 1e-2}])
    z = torch.randn(16, 5) * 30
    y = torch.randint(0, 3, (16,))
    for sign in (1.0, -1.0, 1.0):
        for _ in range(3):
            opt.zero_grad()
            loss = sign * L.gm_loss(z, y, prior.means, prior.logvars, lambda_lkd=0.1, lkd_reduction="sum")
            loss.backward()
            opt.step()
        var = prior.variances.detach()
        assert torch.isfinite(var).all()
        assert (var >= 1e-3 * (1 - 1e-5)).all() and (var <= 1e2 * (1 + 1e-5)).all()
        assert torch.isfinite(prior.log_prob_per_class(z)).all()


def test_soft_clamp():
    x = torch.linspace(-1e4, 1e4, 1001)
    y = soft_clamp(x, -3.0, 5.0)
    assert (y >= -3.0).all() and (y <= 5.0).all()
    centre = torch.tensor(1.0, requires_grad=True)
    soft_clamp(centre, -3.0, 5.0).backward()
    torch.testing.assert_close(centre.grad, torch.tensor(1.0))  # slope 1 at the centre of the range
    for target in (-2.5, 0.0, 4.9):
        torch.testing.assert_close(soft_clamp(torch.tensor(soft_clamp_inverse(target, -3.0, 5.0)), -3.0, 5.0),
                                   torch.tensor(target))


# --------------------------------------------------------------------------- gradients
def test_gradcheck_log_prob_per_class():
    """Gradients w.r.t. z, the means and the raw (soft-clamped) log-variances, in float64."""
    prior = _randomise(_prior(C=3, d=4)).double()
    z = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    means = prior.means.detach().clone().requires_grad_()
    raw = prior.logvar_raw.detach().clone().requires_grad_()

    def f(z, means, raw):
        return log_prob_per_class(z, means, soft_clamp(raw, prior.logvar_min, prior.logvar_max))

    assert torch.autograd.gradcheck(f, (z, means, raw))
    # the module computes exactly this function of its parameters
    torch.testing.assert_close(prior.log_prob_per_class(z), f(z, means, raw))


@pytest.mark.parametrize("alpha,red", [(0.0, "mean"), (0.3, "sum")])
def test_gradcheck_gm_loss(alpha, red):
    g = torch.Generator().manual_seed(5)
    z = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    means = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    logvars = (0.3 * torch.randn(4, 3, generator=g, dtype=torch.float64)).requires_grad_()
    y = torch.tensor([0, 1, 2, 3, 1, 0])
    assert torch.autograd.gradcheck(
        lambda z, m, lv: L.gm_loss(z, y, m, lv, lambda_lkd=0.1, alpha=alpha, lkd_reduction=red), (z, means, logvars))


def test_gm_loss_gradient_reaches_prior_parameters():
    prior = _randomise(_prior())
    z, y = torch.randn(8, 4, requires_grad=True), torch.randint(0, 3, (8,))
    L.gm_loss(z, y, prior.means, prior.logvars, lambda_lkd=0.1).backward()
    for p in (z, prior.means, prior.logvar_raw):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


# --------------------------------------------------------------------------- sampling
def test_sample_moments_and_reproducibility():
    prior = _randomise(_prior(C=3, d=4))
    y = torch.full((20000,), 2, dtype=torch.long)
    s = prior.sample(y, torch.Generator().manual_seed(0)).detach()
    torch.testing.assert_close(s.mean(0), prior.means[2].detach(), atol=0.05, rtol=0)
    torch.testing.assert_close(s.var(0), prior.variances[2].detach(), atol=0.05, rtol=0.05)
    a = prior.sample(y[:5], torch.Generator().manual_seed(1))
    b = prior.sample(y[:5], torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


# --------------------------------------------------------------------------- ambiguous Gaussian (Eq. 11)
def test_ambiguous_gaussian_closed_form_float64():
    prior = _randomise(_prior(C=5, d=3)).double()
    mu_t, var_t = ambiguous_gaussian(prior)
    m, v = prior.means.detach(), prior.variances.detach()
    p = 1.0 / 5
    mu_ref = (p * m).sum(0)
    var_ref = (p * v).sum(0) + (p * m**2).sum(0) - mu_ref**2  # Eq. 11 as printed
    torch.testing.assert_close(mu_t.detach(), mu_ref)
    torch.testing.assert_close(var_t.detach(), var_ref)
    assert mu_t.shape == (3,) and var_t.shape == (3,) and (var_t > 0).all()


def test_ambiguous_gaussian_matches_mixture_samples():
    prior = _randomise(_prior(C=4, d=3), seed=7)
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (200000,), generator=g)
    s = prior.sample(y, g).detach()
    mu_t, var_t = ambiguous_gaussian(prior)
    torch.testing.assert_close(s.mean(0), mu_t.detach(), atol=0.02, rtol=0)
    torch.testing.assert_close(s.var(0), var_t.detach(), atol=0.03, rtol=0.02)


def test_moment_match_with_weights_and_no_cancellation():
    means = torch.tensor([[1e4, 0.0], [1e4 + 2.0, 1.0]])  # large means: mu^2 - mu_t^2 cancels in float32
    variances = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    mu_t, var_t = moment_match(means, variances)
    torch.testing.assert_close(mu_t, torch.tensor([1e4 + 1.0, 0.5]))
    torch.testing.assert_close(var_t, torch.tensor([2.0 + 1.0, 3.0 + 0.25]))
    w = torch.tensor([0.25, 0.75])
    mu_w, var_w = moment_match(means.double(), variances.double(), w.double())
    m, v = means.double(), variances.double()
    mu_ref = 0.25 * m[0] + 0.75 * m[1]
    torch.testing.assert_close(mu_w, mu_ref)
    torch.testing.assert_close(var_w, 0.25 * v[0] + 0.75 * v[1] + 0.25 * m[0] ** 2 + 0.75 * m[1] ** 2 - mu_ref**2)


def test_refit_prior_sets_the_ml_variance_and_optionally_the_means():
    from lrlivae.priors import refit_prior

    prior = _prior(C=3, d=4)
    g = torch.Generator().manual_seed(3)
    y = torch.arange(3).repeat_interleave(500)
    scale = torch.tensor([0.1, 0.5, 2.0])[y][:, None]
    zs = prior.means.detach()[y] + 0.3 + scale * torch.randn(len(y), 4, generator=g)
    means_before = prior.means.detach().clone()
    assert refit_prior(prior, zs, y) == 3
    torch.testing.assert_close(prior.means.detach(), means_before)  # means untouched by default
    for c, s in enumerate((0.1, 0.5, 2.0)):
        z = zs[y == c].double()
        expected = (z - means_before[c].double()).pow(2).mean(0)  # about the prior mean: s^2 + 0.3^2
        torch.testing.assert_close(prior.variances[c].double(), expected, rtol=1e-4, atol=1e-6)
    refit_prior(prior, zs, y, means=True)
    for c, s in enumerate((0.1, 0.5, 2.0)):
        torch.testing.assert_close(prior.means[c], zs[y == c].mean(0), rtol=1e-5, atol=1e-5)
        assert torch.allclose(prior.variances[c], torch.full((4,), s * s), rtol=0.15)
    # codes tighter than the lower bound: the variance stays inside the prior's bounds
    refit_prior(prior, prior.means.detach()[y], y, means=True)
    assert float(prior.variances.detach().min()) >= prior_var_min(prior)
    # a class without codes is left alone
    before = prior.logvar_raw.detach().clone()
    assert refit_prior(prior, zs[y < 2], y[y < 2]) == 2
    torch.testing.assert_close(prior.logvar_raw[2].detach(), before[2])


def prior_var_min(prior) -> float:
    import math

    return math.exp(prior.logvar_min)
