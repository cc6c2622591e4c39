"""One training step per baseline, each returning (generator-side total, named scalars) like
`lrlivae.train.steps.joint_step`, so the shared loop drives them. Each fills the .grad of every trained
parameter; the caller steps the optimisers (after an all-reduce under data parallelism).

cvae_step     (Sohn et al.)   E, G:  rec * L_rec + kl * L_kl
cgan_step     (Miyato and Koyama)  one D call on [x; G(z, c)] with labels c (projection, spectral norm):
                              D:  hinge  mean relu(1 - D(x, c)) + mean relu(1 + D(G(z, c), c))
                              G:  -mean D(G(z, c), c)
cvaegan_step  (Bao et al., Algorithm 1)  z ~ q(z | x, c), x_f = G(z, c); z_p ~ N(0, I), x_p = G(z_p, c);
              one D call on [x; x_f; x_p]; C's features of [x; x_f; x_p] in eval mode (its batch norm from
              running statistics, so no image reaches another's features), C's logits of x in train mode:
                              D:  -log D(x) - log(1 - D(x_f)) - log(1 - D(x_p))       (BCE, or hinge)
                              C:  -log P(c | x)                                         (real images)
                              E:  kl * L_KL + L_G
                              G:  L_G + gd * L_GD + gc * L_GC
              L_G = rec * L_rec(x, x_f) + fm_d * 1/2||f_D(x) - f_D(x_f)||^2 + fm_c * 1/2||f_C(x) - f_C(x_f)||^2
              (Eq. 6), L_GD (Eq. 7) and L_GC (Eq. 8) match the mean features of x_p to those of x (per class
              for C); they reach only G (x_p does not depend on the encoder). G has no direct GAN term:
              Bao et al.'s asymmetric training.
Fake images for class c use the batch's own labels, so every class in a batch has real and generated
members for L_GC. D's and C's gradients are taken separately (torch.autograd.grad) from their one forward
call, so the spectral-norm power iteration advances once per step and no generator term reaches them.
L_rec is the mean squared error over pixels and L_kl the KL averaged over z dimensions, the reductions
Lr-LiVAE's weights are given for.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from pydantic import Field

from lrlivae import losses
from lrlivae.baselines import losses as blosses
from lrlivae.baselines.models import disc_features
from lrlivae.priors import randn


@dataclass
class BaselineWeights:
    """Loss weights of one baseline (each uses the fields its step names)."""

    rec: Annotated[float, Field(ge=0, description="L_rec weight (mean squared error)")] = 10.0  # cvae, cvaegan
    kl: Annotated[float, Field(ge=0, description="KL weight (mean over z dims)")] = 0.1  # cvae, cvaegan
    fm_d: Annotated[float, Field(ge=0, description="pairwise D-feature matching in L_G")] = 0.002  # cvaegan
    fm_c: Annotated[float, Field(ge=0, description="pairwise C-feature matching in L_G")] = 0.002  # cvaegan
    gd: Annotated[float, Field(ge=0, description="L_GD, mean D-feature matching (generator)")] = 0.002  # cvaegan
    gc: Annotated[float, Field(ge=0, description="L_GC, class-mean C-feature matching (generator)")] = 0.002
    gan_loss: Literal["hinge", "bce"] = "hinge"  # cgan, cvaegan: the discriminator's loss

    @classmethod
    def for_kind(cls, kind: str, **overrides) -> "BaselineWeights":
        """The defaults of one baseline: cVAE-GAN trains its discriminator with cross-entropy (Bao et al.)."""
        return cls(**{**KIND_DEFAULTS.get(kind, {}), **overrides})


KIND_DEFAULTS: dict[str, dict] = {"cvaegan": {"gan_loss": "bce"}}


def _zero(*opts) -> None:
    for o in opts:
        if o is not None:
            o.zero_grad(set_to_none=True)


def _sample_z(n: int, z_dim: int, like: torch.Tensor, generator) -> torch.Tensor:
    return randn((n, z_dim), generator=generator, device=like.device, dtype=like.dtype)  # (n, z_dim)


def _d_loss(w: BaselineWeights, d_real, d_rec, d_sample) -> torch.Tensor:
    if w.gan_loss == "hinge":
        return losses.d_loss_hinge(d_real, d_rec, d_sample)
    return losses.d_loss_bce(d_real, d_rec, d_sample)


def _own_grads(loss: torch.Tensor, params: list) -> list:
    """Gradients of `loss` for `params` only (kept aside, assigned after the generator's backward)."""
    return list(torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True))


def _assign(params: list, grads: list) -> None:
    for p, g in zip(params, grads):
        p.grad = g


def _out(kind: str, terms: dict, total: torch.Tensor) -> dict:
    out = {(k if "/" in k else f"loss/{kind}/{k}"): v.detach() for k, v in terms.items()}
    out[f"loss/{kind}/total"] = total.detach()
    return out


def cvae_step(model, disc, opt_g, opt_d, x, y, w: BaselineWeights, generator=None):
    """cVAE: rec * ||x - G(z, c)||^2 (pixel mean) + kl * KL(q(z | x, c) || N(0, I)) (mean over dims)."""
    _zero(opt_g)
    rec = model.reconstruct(x, y, sample=True, generator=generator)
    t = {"rec": losses.rec_loss(x, rec.x_rec, "mean"), "kl": losses.kl_loss(rec.mu, rec.logvar, "mean")}
    total = w.rec * t["rec"] + w.kl * t["kl"]
    total.backward()
    return total, _out("cvae", t, total)


def cgan_step(model, disc, opt_g, opt_d, x, y, w: BaselineWeights, generator=None):
    """cGAN with a projection discriminator; one D call on [real; fake], fakes for the batch's labels."""
    _zero(opt_g, opt_d)
    b = x.shape[0]
    x_fake = model.decode(_sample_z(b, model.cfg.z_dim, x, generator), y)  # (B, C, H, W)
    d_real, d_fake = disc(torch.cat([x, x_fake], 0), torch.cat([y, y], 0)).split(b)  # (B,) each
    t = {"d": _d_loss(w, d_real, None, d_fake),
         "g": losses.g_loss_hinge(None, d_fake) if w.gan_loss == "hinge" else losses.g_loss_bce(None, d_fake)}
    t["d/real"], t["d/fake"] = d_real.mean(), d_fake.mean()
    d_params = [p for p in disc.parameters() if p.requires_grad]
    d_grads = _own_grads(t["d"], d_params)
    total = t["g"]
    total.backward()
    _assign(d_params, d_grads)
    return total, _out("cgan", t, total)


@contextlib.contextmanager
def _frozen_batch_norm(module):
    """Run `module` in eval mode (batch norm from its running statistics), gradients still flowing."""
    was = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was)


def cvaegan_terms(model, disc, x, y, w: BaselineWeights, generator=None) -> dict[str, torch.Tensor]:
    """Every loss term of Bao et al.'s Algorithm 1 from one forward pass (see the module docstring)."""
    b = x.shape[0]
    mu, logvar = model.encode(x, y)  # (B, z_dim) each
    z = mu + torch.exp(0.5 * logvar) * randn(tuple(mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
    x_f = model.decode(z, y)  # (B, C, H, W) reconstruction
    x_p = model.decode(_sample_z(b, model.cfg.z_dim, x, generator), y)  # (B, C, H, W) prior sample
    both = torch.cat([x, x_f, x_p], 0)  # (3B, C, H, W)
    d_logit, f_d = disc_features(disc, both)  # (3B,), (3B, k)
    with _frozen_batch_norm(model.cls):  # per-image features: no row reaches another through batch statistics
        _, f_c = model.cls(both)  # (3B, k)
    c_logit, _ = model.cls(x)  # (B, n_classes), trained on the real batch
    (d_real, d_rec, d_p), (fd_r, fd_f, fd_p), (fc_r, fc_f, fc_p) = d_logit.split(b), f_d.split(b), f_c.split(b)
    t = {
        "kl": losses.kl_loss(mu, logvar, "mean"),
        "rec": losses.rec_loss(x, x_f, "mean"),
        "fm_d": blosses.pairwise_feature_matching(fd_r, fd_f),
        "fm_c": blosses.pairwise_feature_matching(fc_r, fc_f),
        "gd": blosses.mean_feature_matching(fd_r, fd_p),
        "gc": blosses.class_mean_feature_matching(fc_r, y, fc_p, y),
        "d": _d_loss(w, d_real, d_rec, d_p),
        "c": blosses.classifier_loss(c_logit, y),
    }
    t["g"] = w.rec * t["rec"] + w.fm_d * t["fm_d"] + w.fm_c * t["fm_c"]  # L_G
    t["d/real"], t["d/rec"], t["d/sample"] = d_real.mean(), d_rec.mean(), d_p.mean()
    t["acc/cvaegan/cls"] = (c_logit.argmax(1) == y).float().mean()
    return t


def cvaegan_step(model, disc, opt_g, opt_d, x, y, w: BaselineWeights, generator=None):
    """cVAE-GAN (Bao et al. Algorithm 1): E, G, D and C updated from one forward pass."""
    _zero(opt_g, opt_d)
    t = cvaegan_terms(model, disc, x, y, w, generator)
    d_params = [p for p in disc.parameters() if p.requires_grad]
    c_params = [p for p in model.cls.parameters() if p.requires_grad]
    d_grads = _own_grads(t["d"], d_params)  # the embedding (projection) is unused: None
    c_grads = _own_grads(t["c"], c_params)
    total = w.kl * t["kl"] + t["g"] + w.gd * t["gd"] + w.gc * t["gc"]
    total.backward()  # E and G; what reached D and C is overwritten below
    _assign(d_params, d_grads)
    _assign(c_params, c_grads)
    return total, _out("cvaegan", t, total)


STEPS = {"cvae": cvae_step, "cgan": cgan_step, "cvaegan": cvaegan_step}
