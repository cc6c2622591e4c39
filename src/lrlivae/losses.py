"""Loss terms of Lr-LiVAE as small pure functions; each returns a scalar tensor.

Batch reduction is always the mean over the batch. The reduction over a sample's own elements
(latent dimensions or pixels) is explicit, "mean" or "sum", and the defaults are what the authors' code
ran, so that the paper's weights (lambda_lkd = 0.1, and weights 10 on L_rec and 1 on L_kl) apply as written:
  L_rec  "mean" over pixels   (= the paper's lambda_rec = 10 / N_pixel on the sum)
  L_kl   "mean" over z_u dims (= the paper's lambda_kl = 1 / N_zu on the sum)
  L_lkd  "sum" over z_s dims: the full negative log-density of Eq. 7, as in the authors' GM loss
         (their likelihood term sums the Mahalanobis distance and the log-determinant over dimensions).
         "mean" divides it by zs_dim; with it lambda_lkd must grow by zs_dim for the same effect.
"sum" for L_rec is 0.5 * ||x - x'||^2 per image (Algorithm 1); changing a reduction changes the
effective weight of the term, so the loop's weights must change with it.

Log-densities are computed in log space (lrlivae.priors), never through a product of variances.
"""
from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F

from lrlivae.priors import LOG_2PI, diag_gaussian_nll_elementwise, mahalanobis_sq

Reduction = Literal["mean", "sum"]


def _reduce(per_element: torch.Tensor, reduction: str) -> torch.Tensor:
    """(B, ...) -> scalar: mean over the batch of the per-sample mean / sum over the remaining dims."""
    if reduction == "mean":
        return per_element.mean()
    if reduction == "sum":
        return per_element.reshape(per_element.shape[0], -1).sum(dim=1).mean()
    raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


# --------------------------------------------------------------------------- label-relevant branch
def gm_logits(
    z: torch.Tensor,
    means: torch.Tensor,
    logvars: torch.Tensor,
    y: torch.Tensor | None = None,
    alpha: float = 0.0,
    log_class_prior: torch.Tensor | None = None,
) -> torch.Tensor:
    """Class logits of the GM posterior: log N(z; mu_k, Sigma_k) + log p(k), (B, d) -> (B, C).

        logit_k = -0.5 * [ d log 2pi + sum_j logvar_kj + (1 + alpha * I(k = y)) * M_k(z) ] + log p(k)

    with M_k(z) = sum_j (z_j - mu_kj)^2 / var_kj. alpha > 0 is the GM-loss classification margin (Wan et
    al. 2018): the true class's squared Mahalanobis distance is enlarged by (1 + alpha); it needs y.
    log_class_prior (C,): log p(k); None leaves it out (uniform p(k) is a constant that cancels in the softmax).
    """
    d = z.shape[-1]
    maha = mahalanobis_sq(z, means, logvars)  # (B, C)
    if alpha:
        if y is None:
            raise ValueError("a margin alpha > 0 needs the labels y")
        maha = maha * (1.0 + alpha * F.one_hot(y, means.shape[0]).to(maha.dtype))
    logits = -0.5 * (d * LOG_2PI + logvars.sum(dim=-1).unsqueeze(0) + maha)  # (B, C)
    if log_class_prior is not None:
        logits = logits + log_class_prior.unsqueeze(0)
    return logits


def cls_loss(log_probs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L_cls (Eq. 8) = -log [N(z; mu_y, Sigma_y) p(y) / sum_k N(z; mu_k, Sigma_k) p(k)], batch mean.

    log_probs (B, C): log N(z; mu_k, Sigma_k) + log p(k) (e.g. `gm_logits` or prior.posterior_logits);
    normalised over classes with log-softmax (log-sum-exp), so any class-independent constant cancels.
    """
    return F.cross_entropy(log_probs, y)


def lkd_loss(z: torch.Tensor, mu_y: torch.Tensor, logvar_y: torch.Tensor, reduction: Reduction = "sum") -> torch.Tensor:
    """L_lkd (Eq. 7) = -log N(z; mu_y, diag(exp(logvar_y))), batch mean.

    z, mu_y, logvar_y: (B, d) (mu_y, logvar_y may be (d,), e.g. the ambiguous Gaussian of Eq. 11).
    reduction over dims: "sum" (default; the paper's log-density and the authors' code, pairs with
    lambda_lkd = 0.1) is 0.5 * sum_j [log 2pi + logvar_j + (z_j - mu_j)^2 / var_j]; "mean" is that divided by d.
    """
    nll = diag_gaussian_nll_elementwise(z, mu_y, logvar_y)  # (B, d)
    return _reduce(nll, reduction)


class GMLossTerms(NamedTuple):
    cls: torch.Tensor  # L_cls, scalar
    lkd: torch.Tensor  # L_lkd, scalar

    def total(self, lambda_lkd: float) -> torch.Tensor:
        """L_GM = L_cls + lambda_lkd * L_lkd (Eq. 9)."""
        return self.cls + lambda_lkd * self.lkd


def gm_loss_terms(
    z: torch.Tensor,
    y: torch.Tensor,
    means: torch.Tensor,
    logvars: torch.Tensor,
    alpha: float = 0.0,
    lkd_reduction: Reduction = "sum",
) -> GMLossTerms:
    """The two terms of L_GM (Eq. 9) for z (B, d), labels y (B,), means / logvars (C, d); uniform p(c)."""
    logits = gm_logits(z, means, logvars, y=y, alpha=alpha)  # (B, C)
    return GMLossTerms(cls=cls_loss(logits, y), lkd=lkd_loss(z, means[y], logvars[y], lkd_reduction))


def gm_loss(
    z: torch.Tensor,
    y: torch.Tensor,
    means: torch.Tensor,
    logvars: torch.Tensor,
    lambda_lkd: float,
    alpha: float = 0.0,
    lkd_reduction: Reduction = "sum",
) -> torch.Tensor:
    """L_GM = L_cls + lambda_lkd * L_lkd (Eq. 9; Algorithm 1 line 5), with optional margin alpha."""
    return gm_loss_terms(z, y, means, logvars, alpha=alpha, lkd_reduction=lkd_reduction).total(lambda_lkd)


# --------------------------------------------------------------------------- label-irrelevant branch
def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Batch-mean KL(N(mu, exp(logvar)) || N(0, 1)) of each latent dimension: (B, d) -> (d,), in nats."""
    return (0.5 * (mu.pow(2) + torch.exp(logvar) - 1.0 - logvar)).mean(dim=0)


def kl_loss(mu: torch.Tensor, logvar: torch.Tensor, reduction: Reduction = "mean") -> torch.Tensor:
    """L_kl (Eq. 3) = KL(N(mu, diag(exp(logvar))) || N(0, I)) = 0.5 * sum_j (mu_j^2 + var_j - 1 - logvar_j).

    reduction over dims: "mean" (default; authors' code, lambda_kl = 1 on it = the paper's 1 / N_zu on the
    sum) or "sum" (the exact KL). Batch mean either way.
    """
    kl = 0.5 * (mu.pow(2) + torch.exp(logvar) - 1.0 - logvar)  # (B, d)
    return _reduce(kl, reduction)


def active_units(mu: torch.Tensor, threshold: float = 0.01) -> int:
    """Number of active latent units (Burda et al. 2016): dims j with Var_x[E[z_j | x]] > threshold.

    mu (N, d): posterior means over a data set (or a large batch); population variance over N.
    """
    return int((mu.var(dim=0, correction=0) > threshold).sum())


def adv_classifier_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L_C^adv (Eq. 4) = -log q_omega(y | z_u), batch mean. Trains the adversarial classifier."""
    return F.cross_entropy(logits, y)


def adv_encoder_loss(logits: torch.Tensor) -> torch.Tensor:
    """L_E^adv (Eq. 5) = -sum_c (1/C) log q_omega(c | z_u), batch mean: cross-entropy to the uniform 1/C.

    Minimum log C, reached when the classifier's prediction on z_u is uniform. Trains Encoder^u.
    """
    return -F.log_softmax(logits, dim=1).mean()


# --------------------------------------------------------------------------- reconstruction
def rec_loss(x: torch.Tensor, x_rec: torch.Tensor, reduction: Reduction = "mean") -> torch.Tensor:
    """L_rec, the l2 reconstruction error (Sec. 3.4).

    "mean" (default; authors' code): mean squared error over all pixels and channels.
    "sum": 0.5 * ||x - x'||^2 per image (Algorithm 1 line 20), mean over the batch.
    """
    sq = (x_rec - x).pow(2)  # (B, C, H, W)
    return _reduce(sq, "mean") if reduction == "mean" else 0.5 * _reduce(sq, reduction)


# --------------------------------------------------------------------------- pixel-domain GAN
# D outputs are logits (B,). The discriminator loss has three terms: real images, reconstructions x_f'
# and prior samples x_p' (Algorithm 1 lines 22-23); each is a batch mean and the three are summed.
# d_rec or d_sample may be None to leave that term out.
def _mean_or_zero(t: torch.Tensor | None, ref: torch.Tensor) -> torch.Tensor:
    return t.mean() if t is not None else ref.new_zeros(())


def d_loss_hinge(d_real: torch.Tensor, d_rec: torch.Tensor | None, d_sample: torch.Tensor | None,
                 fake_weight: float = 1.0, rec_weight: float = 1.0) -> torch.Tensor:
    """Hinge D loss: mean relu(1 - D(x)) + fake_weight * (rec_weight * mean relu(1 + D(x_f')) + mean relu(1 + D(x_p'))).

    fake_weight 1, rec_weight 1 is the three-term loss the authors ran. A reconstruction lies close to its
    own real image, so a D of bounded slope (spectral norm) scores the two alike; then their two terms
    cancel and only the sample term is left, which pulls D to -1 everywhere: the D stops telling real from
    generated. rec_weight 0 asks D to tell real images from prior samples only.
    """
    fake_rec = F.relu(1.0 + d_rec) if d_rec is not None and rec_weight else None
    fake_sample = F.relu(1.0 + d_sample) if d_sample is not None else None
    fake = rec_weight * _mean_or_zero(fake_rec, d_real) + _mean_or_zero(fake_sample, d_real)
    return F.relu(1.0 - d_real).mean() + fake_weight * fake


def g_loss_hinge(d_rec: torch.Tensor | None, d_sample: torch.Tensor | None) -> torch.Tensor:
    """Hinge generator loss: -mean D(x_f') - mean D(x_p')."""
    ref = d_rec if d_rec is not None else d_sample
    if ref is None:
        raise ValueError("g_loss_hinge needs at least one of d_rec, d_sample")
    return -_mean_or_zero(d_rec, ref) - _mean_or_zero(d_sample, ref)


def d_loss_bce(d_real: torch.Tensor, d_rec: torch.Tensor | None, d_sample: torch.Tensor | None,
               fake_weight: float = 1.0, rec_weight: float = 1.0) -> torch.Tensor:
    """Eq. 10 / Algorithm 1 line 22 with D = sigmoid(logit), via softplus (stable for any logit):

        -log D(x) - log(1 - D(x_f')) - log(1 - D(x_p'))
        = softplus(-l_real) + softplus(l_rec) + softplus(l_sample)      (batch means)
    """
    fake_rec = F.softplus(d_rec) if d_rec is not None and rec_weight else None
    fake_sample = F.softplus(d_sample) if d_sample is not None else None
    fake = rec_weight * _mean_or_zero(fake_rec, d_real) + _mean_or_zero(fake_sample, d_real)
    return F.softplus(-d_real).mean() + fake_weight * fake


def r1_penalty(d_real: torch.Tensor, x_real: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): 0.5 * E ||grad_x D(x)||^2 on real images (x_real must require grad);
    the graph is kept so the penalty itself can be differentiated (the D step adds gamma * this)."""
    (g,) = torch.autograd.grad(d_real.sum(), x_real, create_graph=True)
    return 0.5 * g.pow(2).reshape(g.shape[0], -1).sum(dim=1).mean()


def g_loss_bce(d_rec: torch.Tensor | None, d_sample: torch.Tensor | None) -> torch.Tensor:
    """L_GD^adv (Algorithm 1 line 23), non-saturating: -log D(x_f') - log D(x_p') = softplus(-l) terms."""
    ref = d_rec if d_rec is not None else d_sample
    if ref is None:
        raise ValueError("g_loss_bce needs at least one of d_rec, d_sample")
    rec = F.softplus(-d_rec) if d_rec is not None else None
    sample = F.softplus(-d_sample) if d_sample is not None else None
    return _mean_or_zero(rec, ref) + _mean_or_zero(sample, ref)
