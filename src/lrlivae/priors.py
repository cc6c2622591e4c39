"""Latent priors of Lr-LiVAE: the Gaussian mixture on z_s (Eq. 6), its moment-matched "ambiguous"
Gaussian (Eq. 11), and N(0, I) on z_u.

Everything is computed in log space. The log-density of a diagonal Gaussian is

    log N(z; mu, diag(var)) = -0.5 * sum_d [ log(2 pi) + log var_d + (z_d - mu_d)^2 / var_d ],

never through a product of variances (a product of 512 values of 1.19 is inf in float32, of 0.82 ~7e-45).

Variance bounds. The GM log-variances are stored as an unconstrained parameter `logvar_raw` and mapped
through a smooth soft clamp (a scaled tanh, see `soft_clamp`) into [log var_min, log var_max]
(default [log 1e-3, log 1e2]). The map is close to the identity in the middle of the range, so the
gradient is never cut off abruptly, and no optimiser step, however large, can leave the bounds.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

LOG_2PI = math.log(2.0 * math.pi)


# ---------------------------------------------------------------------------------------- helpers
def soft_clamp(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Smoothly squash x into [low, high]: centre + half * tanh((x - centre) / half).

    Slope 1 at the centre of the range, close to the identity well inside it, never a hard zero gradient.
    """
    centre, half = 0.5 * (low + high), 0.5 * (high - low)
    return centre + half * torch.tanh((x - centre) / half)


def soft_clamp_inverse(y: float, low: float, high: float) -> float:
    """The x with soft_clamp(x, low, high) == y (y strictly inside (low, high))."""
    centre, half = 0.5 * (low + high), 0.5 * (high - low)
    return centre + half * math.atanh((y - centre) / half)


def randn(
    shape: tuple[int, ...],
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """N(0, I) noise of `shape` on `device`; drawn on the generator's device when one is given."""
    if generator is None:
        return torch.randn(shape, device=device, dtype=dtype)
    eps = torch.randn(shape, generator=generator, device=generator.device, dtype=dtype)
    return eps.to(device) if device is not None else eps


def sample_standard_normal(
    n: int,
    dim: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """z_u ~ N(0, I): (n, dim)."""
    return randn((n, dim), generator=generator, device=device, dtype=dtype)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over the last dimension: (..., d) -> (...)."""
    return -0.5 * (LOG_2PI + z.pow(2)).sum(dim=-1)


def diag_gaussian_nll_elementwise(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """-log N(z_d; mu_d, exp(logvar_d)) per dimension: 0.5 * (log 2pi + logvar + (z - mu)^2 * exp(-logvar)).

    Shapes broadcast; the result has the broadcast shape (nothing is reduced).
    """
    return 0.5 * (LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar))


def mahalanobis_sq(z: torch.Tensor, means: torch.Tensor, logvars: torch.Tensor) -> torch.Tensor:
    """Squared Mahalanobis distance of every z to every class: sum_d (z_d - mu_cd)^2 / var_cd.

    z (B, d), means (C, d), logvars (C, d) -> (B, C). Computed directly from the differences (no
    |z|^2 - 2 z.mu + |mu|^2 expansion, which cancels catastrophically in float32); memory B * C * d.
    """
    diff = z.unsqueeze(1) - means.unsqueeze(0)  # (B, C, d)
    return (diff.pow(2) * torch.exp(-logvars).unsqueeze(0)).sum(dim=-1)  # (B, C)


def log_prob_per_class(z: torch.Tensor, means: torch.Tensor, logvars: torch.Tensor) -> torch.Tensor:
    """log N(z; mu_c, diag(exp(logvar_c))) for every class c: (B, d), (C, d), (C, d) -> (B, C)."""
    d = z.shape[-1]
    log_det = logvars.sum(dim=-1)  # (C,)
    return -0.5 * (d * LOG_2PI + log_det.unsqueeze(0) + mahalanobis_sq(z, means, logvars))  # (B, C)


# ---------------------------------------------------------------------------------------- GM prior
class GaussianMixturePrior(nn.Module):
    """p(z_s) = sum_c p(c) N(z_s; mu_c, Sigma_c), diagonal Sigma_c, uniform p(c) = 1/C (paper Eq. 6).

    Parameters (exposed separately so the variances can get their own learning-rate schedule,
    paper Appendix B.4: x0.01 after 2 epochs):
      means       (C, d)  mu_c, initialised from N(0, (mean_init^2 / d) I) so that |mu_c| is about
                          mean_init (default 1) whatever d is (about what a Glorot-initialised (C, d) matrix
                          gives when C ~ d); with unit variances the classes then start overlapping
                          (posterior near uniform, L_cls near log C) instead of saturated.
      logvar_raw  (C, d)  unconstrained; `logvars` = soft_clamp(logvar_raw) in [log var_min, log var_max],
                          initialised so that every variance equals var_init (default 1).
    """

    def __init__(
        self,
        n_classes: int,
        dim: int,
        *,
        var_min: float = 1e-3,
        var_max: float = 1e2,
        var_init: float = 1.0,
        mean_init: float = 1.0,
    ) -> None:
        super().__init__()
        if not 0 < var_min < var_init < var_max:
            raise ValueError(f"need 0 < var_min < var_init < var_max, got {var_min}, {var_init}, {var_max}")
        self.n_classes, self.dim = n_classes, dim
        self.logvar_min, self.logvar_max = math.log(var_min), math.log(var_max)
        self.means = nn.Parameter(torch.randn(n_classes, dim) * (mean_init / math.sqrt(dim)))
        raw0 = soft_clamp_inverse(math.log(var_init), self.logvar_min, self.logvar_max)
        self.logvar_raw = nn.Parameter(torch.full((n_classes, dim), raw0))

    # -------------------------------------------------------------- parameters
    @property
    def logvars(self) -> torch.Tensor:
        """log sigma_c^2, (C, d), always inside [log var_min, log var_max]."""
        return soft_clamp(self.logvar_raw, self.logvar_min, self.logvar_max)

    @property
    def variances(self) -> torch.Tensor:
        """sigma_c^2, (C, d)."""
        return torch.exp(self.logvars)

    @property
    def log_class_prior(self) -> torch.Tensor:
        """log p(c) = -log C for every class, (C,)."""
        return torch.full((self.n_classes,), -math.log(self.n_classes), device=self.means.device,
                          dtype=self.means.dtype)

    def mean_parameters(self) -> list[nn.Parameter]:
        return [self.means]

    def variance_parameters(self) -> list[nn.Parameter]:
        return [self.logvar_raw]

    # -------------------------------------------------------------- densities
    def log_prob_per_class(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; mu_c, Sigma_c) for every class: (B, d) -> (B, C)."""
        return log_prob_per_class(z, self.means, self.logvars)

    def posterior_logits(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; mu_c, Sigma_c) + log p(c): (B, C); log_softmax over classes gives log q(c | z) (Eq. 8)."""
        return self.log_prob_per_class(z) + self.log_class_prior

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """Mixture log-density log p(z) = logsumexp_c [log N(z; mu_c, Sigma_c) + log p(c)]: (B, d) -> (B,)."""
        return torch.logsumexp(self.posterior_logits(z), dim=1)

    def predict(self, z: torch.Tensor) -> torch.Tensor:
        """Most probable class under the GM posterior: (B, d) -> (B,) long."""
        return self.posterior_logits(z).argmax(dim=1)

    # -------------------------------------------------------------- sampling
    def sample(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """z_s ~ N(mu_y, Sigma_y) for each label in y (B,) -> (B, d); reparameterised (differentiable)."""
        mu = self.means[y]  # (B, d)
        std = torch.exp(0.5 * self.logvars[y])  # (B, d)
        eps = randn(tuple(mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + std * eps

    def extra_repr(self) -> str:
        return (f"n_classes={self.n_classes}, dim={self.dim}, "
                f"var_bounds=({math.exp(self.logvar_min):g}, {math.exp(self.logvar_max):g})")


# ---------------------------------------------------------------------------------------- Eq. 11
def moment_match(
    means: torch.Tensor, variances: torch.Tensor, weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Single diagonal Gaussian with the mixture's mean and per-dimension variance (paper Eq. 11).

        mu_t      = sum_c p(c) mu_c
        sigma_t^2 = sum_c p(c) sigma_c^2 + sum_c p(c) mu_c^2 - mu_t^2
                  = sum_c p(c) sigma_c^2 + sum_c p(c) (mu_c - mu_t)^2      (same value, no cancellation)

    means, variances (C, d); weights p(c) (C,) summing to 1, uniform when None -> (mu_t (d,), var_t (d,)).
    """
    if weights is None:
        weights = torch.full((means.shape[0],), 1.0 / means.shape[0], device=means.device, dtype=means.dtype)
    w = weights.unsqueeze(1)  # (C, 1)
    mu_t = (w * means).sum(dim=0)  # (d,)
    var_t = (w * variances).sum(dim=0) + (w * (means - mu_t).pow(2)).sum(dim=0)  # (d,)
    return mu_t, var_t


def ambiguous_gaussian(prior: GaussianMixturePrior) -> tuple[torch.Tensor, torch.Tensor]:
    """The ambiguous Gaussian N(mu_t, diag(var_t)) of a GM prior with uniform p(c) (Eq. 11): ((d,), (d,)).

    Used for the z_s of unlabeled data in semi-supervised fine-tuning (Sec. 3.6):
    L_lkd = -log N(z_s; mu_t, diag(var_t)). Differentiable w.r.t. the prior's parameters; detach if the
    prior should stay fixed.
    """
    return moment_match(prior.means, prior.variances)


# ---------------------------------------------------------------------------------------- refit
@torch.no_grad()
def refit_prior(prior: GaussianMixturePrior, zs: torch.Tensor, y: torch.Tensor, means: bool = False,
                min_count: int = 2) -> int:
    """Set each class's Sigma_c (and mu_c when `means`) to the maximum-likelihood estimate of L_lkd (Eq. 7)
    for the given codes: the per-dimension variance (and mean) of the z_s of class c.

    L_lkd summed over a class's codes is minimised over Sigma_c by exactly that variance, so this is the
    closed-form M-step of the likelihood term that the GM steps follow by gradient descent; it keeps the
    prior a model of where the codes are (prior samples z_s ~ N(mu_c, Sigma_c) then lie among the codes of
    person c). Variances are kept strictly inside the prior's bounds. zs (N, d), y (N,) long; classes with
    fewer than `min_count` codes are left as they are. Returns the number of classes refitted.
    """
    zs = zs.to(prior.means.device, torch.float64)
    y = y.to(prior.means.device)
    lo, hi = math.exp(prior.logvar_min), math.exp(prior.logvar_max)
    done = 0
    for c in range(prior.n_classes):
        z = zs[y == c]
        if len(z) < min_count:
            continue
        mu = z.mean(dim=0) if means else prior.means[c].double()
        var = (z - mu).pow(2).mean(dim=0).clamp(lo * 1.05, hi * 0.95)  # (d,) ML variance about mu_c
        raw = [soft_clamp_inverse(math.log(float(v)), prior.logvar_min, prior.logvar_max) for v in var]
        prior.logvar_raw[c] = torch.tensor(raw, dtype=prior.logvar_raw.dtype, device=prior.logvar_raw.device)
        if means:
            prior.means[c] = mu.to(prior.means.dtype)
        done += 1
    return done
