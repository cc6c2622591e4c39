"""The two training steps of Algorithm 1, each returning named scalars (the loop logs them).

`gm_step` (lines 2-8): Encoder^s and the GM prior on L_GM = L_cls + lambda_lkd L_lkd (Eq. 9).

`joint_step` (lines 9-28): one forward pass, then every network's update from it:
    Encoder^s   L_rec * w.rec_s + lambda_lkd L_lkd                        (line 24)
    Encoder^u   L_E^adv * w.adv_e + lambda_kl L_kl + lambda_rec L_rec      (line 25)
    adv. clf.   L_C^adv                                                    (line 26)
    Decoder     L_rec * w.rec_dec + L_GD^adv * w.gan_g                     (line 27)
    Discrim.    L_D^adv on the real image, the reconstruction, a prior sample  (line 28)
Neither encoder receives a gradient from the discriminator, the adversarial classifier none from
L_E^adv, and the prior none at all (it is trained by the GM steps).

All generator-side updates come from ONE backward pass of a summed loss. Each network still sees only
its own terms, with its own weights, because:
  - the codes enter the reconstruction through `scale_grad`, an identity whose backward multiplies the
    gradient: the decoder sees rec_dec * L_rec, Encoder^s rec_s * L_rec, Encoder^u lambda_rec * L_rec;
  - the reconstruction the discriminator judges is decoded again from detached codes, in its own decoder
    call (same values; batch norm would otherwise couple it to the encoder-dependent batch);
  - L_E^adv runs the classifier with detached weights, L_C^adv runs it on a detached z_u;
  - the prior's means and variances enter detached.
`tests/test_train_steps.py` checks this against per-network gradients computed one by one.
The discriminator's gradient is taken separately (torch.autograd.grad) from the same forward call, so its
spectral-norm power iteration advances once per step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from pydantic import Field
from torch.func import functional_call

from lrlivae import losses
from lrlivae.nn.decoder import reconstruction_statistics
from lrlivae.priors import ambiguous_gaussian, randn


@dataclass
class LossWeights:
    """Weights of every loss term (paper symbols first)."""

    lambda_lkd: Annotated[float, Field(ge=0)] = 0.1  # L_lkd in L_GM (Eq. 9) and in the Encoder^s joint update
    lambda_kl: Annotated[float, Field(ge=0)] = 1.0  # L_kl in the Encoder^u update
    lambda_rec: Annotated[float, Field(ge=0)] = 10.0  # L_rec in the Encoder^u update
    rec_s: Annotated[float, Field(ge=0, description="L_rec weight in the Encoder^s update")] = 1.0
    rec_dec: Annotated[float, Field(gt=0, description="L_rec weight in the decoder update")] = 10.0
    adv_e: Annotated[float, Field(ge=0, description="L_E^adv weight in the Encoder^u update")] = 1.0
    gan_g: Annotated[float, Field(ge=0, description="generator GAN weight (L_GD^adv in the decoder update); "
                                  "0 turns the pixel discriminator off")] = 1.0
    margin: Annotated[float, Field(ge=0, description="GM-loss margin alpha")] = 0.0
    gan_loss: Literal["hinge", "bce"] = "hinge"
    adv_input: Annotated[Literal["sample", "mean"], Field(
        description="the adversarial classifier reads the sampled z_u or its mean mu_u")] = "sample"
    gan_fake_weight: Annotated[float, Field(gt=0, le=1, description="weight of the reconstruction and sample "
                                            "terms in the D loss (1: the authors' three terms)")] = 1.0
    gan_rec_weight: Annotated[float, Field(ge=0, le=1, description="weight of the reconstruction among D's fake "
                                           "terms (1: the authors'; 0: D tells real images from prior samples "
                                           "only)")] = 1.0
    r1: Annotated[float, Field(ge=0, le=100, description="R1 gradient penalty gamma on real images in the D loss "
                               "(0: off)")] = 0.0
    fm: Annotated[float, Field(ge=0, description="decoder: reconstruction distance to the image in D's second "
                               "feature map (0: off)")] = 0.0
    cyc_s: Annotated[float, Field(ge=0, description="decoder: ||Encoder^s(x_p') - z_s^p||^2 of prior samples, "
                                  "Encoder^s frozen (0: off)")] = 0.0
    cyc_u: Annotated[float, Field(ge=0, description="decoder: ||mu_u(x_p') - z_u^p||^2 of prior samples, "
                                  "Encoder^u frozen (0: off)")] = 0.0
    lkd_reduction: Literal["mean", "sum"] = "sum"
    kl_reduction: Literal["mean", "sum"] = "mean"
    rec_reduction: Literal["mean", "sum"] = "mean"

    def __post_init__(self) -> None:
        if self.rec_dec <= 0:
            raise ValueError("rec_dec (the decoder's reconstruction weight) must be > 0")


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):  # noqa: D102
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        return g * ctx.scale, None


def scale_grad(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity in the forward pass; multiplies the incoming gradient by `scale` in the backward pass."""
    return _ScaleGrad.apply(x, scale)


def _scalars(terms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in terms.items()}


def gm_step(model, opt_gm: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, w: LossWeights) -> dict:
    """Algorithm 1 lines 2-8: update Encoder^s, mu_c and Sigma_c on L_GM. Returns detached scalars."""
    zs = model.enc_s(x)  # (B, zs_dim)
    terms = losses.gm_loss_terms(zs, y, model.prior.means, model.prior.logvars, alpha=w.margin,
                                 lkd_reduction=w.lkd_reduction)
    total = terms.total(w.lambda_lkd)  # Eq. 9, as losses.gm_loss computes it
    opt_gm.zero_grad(set_to_none=True)
    total.backward()
    with torch.no_grad():
        acc = (model.prior.predict(zs) == y).float().mean()
    return total, _scalars({"loss/gm/cls": terms.cls, "loss/gm/lkd": terms.lkd, "loss/gm/total": total,
                            "acc/gm/train": acc})


def _d_terms(w: LossWeights, d_real, d_rec, d_sample):
    if w.gan_loss == "hinge":
        return (losses.d_loss_hinge(d_real, d_rec, d_sample, w.gan_fake_weight, w.gan_rec_weight),
                losses.g_loss_hinge(d_rec, d_sample))
    return (losses.d_loss_bce(d_real, d_rec, d_sample, w.gan_fake_weight, w.gan_rec_weight),
            losses.g_loss_bce(d_rec, d_sample))


def _frozen_eval(module, x: torch.Tensor):
    """module(x) with its weights detached and in eval mode: gradients reach x (and what made it) only, and
    batch-norm statistics do not move."""
    was_training = module.training
    module.eval()
    try:
        return functional_call(module, {k: v.detach() for k, v in module.named_parameters()}, (x,))
    finally:
        module.train(was_training)


def code_cycles(model, x_p: torch.Tensor, zs_p: torch.Tensor, zu_p: torch.Tensor, w: LossWeights) -> dict:
    """The codes a prior sample was decoded from, read back by the frozen encoders (InfoGAN's lower bound on
    the mutual information between a code and the image, Encoder^s / Encoder^u as the auxiliary posterior):
    cyc_s = ||Encoder^s(x_p) - z_s^p||^2 and cyc_u = ||mu_u(x_p) - z_u^p||^2 (sums over dims, batch means).
    Only the decoder learns from them."""
    t = {}
    if w.cyc_s > 0:
        t["cyc_s"] = (_frozen_eval(model.enc_s, x_p) - zs_p).pow(2).sum(dim=1).mean()
    if w.cyc_u > 0:
        t["cyc_u"] = (_frozen_eval(model.enc_u, x_p)[0] - zu_p).pow(2).sum(dim=1).mean()
    return t


def joint_forward(model, disc, x: torch.Tensor, y: torch.Tensor | None, w: LossWeights,
                  generator: torch.Generator | None = None,
                  pseudo_label_threshold: float = 0.0) -> dict[str, torch.Tensor]:
    """Algorithm 1 lines 10-23: every loss term of the joint step, from one forward pass.

    y=None is an unlabeled batch (Sec. 3.6): z_s is pulled toward the ambiguous Gaussian N(mu_t, Sigma_t)
    of Eq. 11 instead of N(mu_y, Sigma_y), the prior sample is drawn from it too, the discriminator uses
    only its unconditional part, and the label-dependent terms (L_E^adv, L_C^adv) are not computed.
    pseudo_label_threshold > 0: an unlabeled z_s whose GM posterior max_c q(c | z_s) reaches it is taken
    for a face of that known class (Sec. 3.6: "its z_s follows the same Gaussian mixture") and pulled
    toward N(mu_c, Sigma_c) instead; the posterior is read from detached codes.
    """
    zs = model.enc_s(x)  # (B, zs_dim)
    mu, logvar = model.enc_u(x)  # (B, zu_dim)
    eps = randn(tuple(mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
    zu = mu + torch.exp(0.5 * logvar) * eps  # (B, zu_dim), line 14
    t: dict[str, torch.Tensor] = {}
    target_mu, target_logvar = _zs_target(model.prior, zs, y, pseudo_label_threshold, t)  # (B, zs_dim) each
    t["lkd"] = losses.lkd_loss(zs, target_mu, target_logvar, w.lkd_reduction)  # line 18
    t["kl"] = losses.kl_loss(mu, logvar, w.kl_reduction)  # line 12
    if y is not None:
        t.update(_adversarial_terms(model, zu, mu, y, w))  # lines 15-16

    zs_dim = zs.shape[1]
    dec = lambda z: model.dec(z[:, :zs_dim], z[:, zs_dim:])  # noqa: E731  (B, zs+zu) -> (B, C, H, W)
    z_rec = torch.cat([scale_grad(zs, w.rec_s / w.rec_dec), scale_grad(zu, w.lambda_rec / w.rec_dec)], 1)
    with reconstruction_statistics(model):  # decoder statistics of use (dec_bn_match): those of encoder codes
        x_rec = dec(z_rec)  # line 19
    t["rec"] = losses.rec_loss(x, x_rec, w.rec_reduction)
    gan = w.gan_g > 0 and disc is not None
    if gan:
        # Separate decoder calls: batch norm couples the rows of a batch, so the images the discriminator
        # judges must come from batches that hold no encoder-dependent code. x_gan equals x_rec in value.
        with reconstruction_statistics(model):
            x_gan = dec(torch.cat([zs, zu], 1).detach())
    if gan or w.cyc_s > 0 or w.cyc_u > 0:
        zs_p = target_mu + torch.exp(0.5 * target_logvar) * randn(tuple(zs.shape), generator=generator,
                                                                   device=zs.device, dtype=zs.dtype)  # line 20
        zu_p = randn(tuple(zu.shape), generator=generator, device=zu.device, dtype=zu.dtype)
        x_p = dec(torch.cat([zs_p, zu_p], 1))  # line 21
        t.update(code_cycles(model, x_p, zs_p, zu_p, w))
    if gan:
        t.update(_gan_terms(disc, x, x_gan, x_p, y, w))  # lines 22-23
    t["x_rec"] = x_rec
    return t


def _zs_target(prior, zs: torch.Tensor, y: torch.Tensor | None, pseudo_label_threshold: float,
               t: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The Gaussian z_s is pulled toward (line 18), as (mean, log-variance), each (B, zs_dim), detached:
    N(mu_y, Sigma_y) for a labeled batch; for an unlabeled one the ambiguous Gaussian of Eq. 11, or the
    class of a confident pseudo-label (whose share of the batch goes into t["pseudo_fraction"])."""
    means, logvars = prior.means.detach(), prior.logvars.detach()  # (C, zs_dim)
    if y is not None:
        return means[y], logvars[y]
    mu_t, var_t = ambiguous_gaussian(prior)  # (zs_dim,) each, Eq. 11
    target_mu, target_logvar = mu_t.detach().expand_as(zs), var_t.detach().log().expand_as(zs)
    if pseudo_label_threshold > 0:
        with torch.no_grad():
            post = torch.softmax(prior.posterior_logits(zs.detach()), dim=1)  # (B, C), q(c | z_s)
            conf, c_hat = post.max(dim=1)
            known = (conf >= pseudo_label_threshold)[:, None]  # (B, 1)
        target_mu = torch.where(known, means[c_hat], target_mu)
        target_logvar = torch.where(known, logvars[c_hat], target_logvar)
        t["pseudo_fraction"] = known.float().mean()
    return target_mu, target_logvar


def _adversarial_terms(model, zu: torch.Tensor, mu: torch.Tensor, y: torch.Tensor, w: LossWeights) -> dict:
    """Lines 15-16: L_E^adv (Encoder^u fools the classifier, whose weights enter detached) and L_C^adv (the
    classifier learns y from a detached z_u)."""
    z_adv = zu if w.adv_input == "sample" else mu  # (B, zu_dim)
    frozen_adv = {k: v.detach() for k, v in model.adv.named_parameters()}
    return {"adv_e": losses.adv_encoder_loss(functional_call(model.adv, frozen_adv, (z_adv,))),  # line 15
            "adv_c": losses.adv_classifier_loss(model.adv(z_adv.detach()), y)}  # line 16


def _gan_terms(disc, x: torch.Tensor, x_gan: torch.Tensor, x_p: torch.Tensor, y: torch.Tensor | None,
               w: LossWeights) -> dict:
    """Lines 22-23: one discriminator call on [real; reconstruction; prior sample] (one power iteration):
    the D and G losses, the optional R1 penalty and feature-matching distance, and D's mean outputs."""
    t, b = {}, x.shape[0]
    x_real = x.detach().requires_grad_(True) if w.r1 > 0 else x
    d_in = (torch.cat([x_real, x_gan, x_p], 0), None if y is None else torch.cat([y, y, y], 0))
    if w.fm > 0:  # the same one call, also returning the feature map feature matching reads
        d_out, feats = disc(*d_in, return_features=True)  # (3B,), (3B, c, h, w)
        f_real, f_rec, _ = feats.split(b)
        t["fm"] = (f_rec - f_real.detach()).pow(2).mean()  # reaches the decoder only (codes detached)
    else:
        d_out = disc(*d_in)  # (3B,)
    d_real, d_rec, d_p = d_out.split(b)
    t["d"], t["g"] = _d_terms(w, d_real, d_rec, d_p)
    if w.r1 > 0:
        t["r1"] = losses.r1_penalty(d_real, x_real)
        t["d"] = t["d"] + w.r1 * t["r1"]
    t["d_real"], t["d_rec"], t["d_sample"] = d_real.mean(), d_rec.mean(), d_p.mean()
    t["d_gap"] = (d_real.mean() - d_p.mean()).detach()  # how far D tells real images from samples
    return t


def d_step(model, disc, opt_d: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor | None, w: LossWeights,
           generator: torch.Generator | None = None) -> dict:
    """A discriminator-only update before the joint step (TrainSettings.n_d): D learns to tell the batch's
    real images from fresh prior samples (and, with gan_rec_weight > 0, from their reconstructions) made by
    the current decoder without gradient, so that the joint step's generator update meets a D that has
    already seen this decoder (alternating rather than simultaneous updates). Fills D's .grad; the caller
    steps opt_d. Returns detached scalars."""
    prior = model.prior
    b = x.shape[0]
    with torch.no_grad():
        if y is None:
            mu_t, var_t = ambiguous_gaussian(prior)
            target_mu, target_logvar = mu_t.expand(b, -1), var_t.log().expand(b, -1)
        else:
            target_mu, target_logvar = prior.means[y], prior.logvars[y]  # (B, zs_dim)
        zs_p = target_mu + torch.exp(0.5 * target_logvar) * randn(tuple(target_mu.shape), generator=generator,
                                                                   device=x.device, dtype=x.dtype)
        zu_p = randn((b, model.cfg.zu_dim), generator=generator, device=x.device, dtype=x.dtype)
        fakes = [model.dec(zs_p, zu_p)]  # (B, C, H, W)
        if w.gan_rec_weight > 0:
            mu, logvar = model.enc_u(x)
            zu = mu + torch.exp(0.5 * logvar) * randn(tuple(mu.shape), generator=generator, device=x.device,
                                                      dtype=mu.dtype)
            with reconstruction_statistics(model):
                fakes.insert(0, model.dec(model.enc_s(x), zu))
    x_real = x.detach().requires_grad_(True) if w.r1 > 0 else x
    n = 1 + len(fakes)
    d_out = disc(torch.cat([x_real, *fakes], 0), None if y is None else torch.cat([y] * n, 0)).split(b)
    d_rec = d_out[1] if len(fakes) == 2 else None
    loss, _ = _d_terms(w, d_out[0], d_rec, d_out[-1])
    if w.r1 > 0:
        loss = loss + w.r1 * losses.r1_penalty(d_out[0], x_real)
    opt_d.zero_grad(set_to_none=True)
    loss.backward()
    return {"loss/d_step/d": loss.detach(), "d_step/gap": (d_out[0].mean() - d_out[-1].mean()).detach()}


def joint_step(model, disc, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer | None,
               x: torch.Tensor, y: torch.Tensor | None, w: LossWeights, generator: torch.Generator | None = None,
               pseudo_label_threshold: float = 0.0):
    """Algorithm 1 lines 9-28. Fills .grad of every trained parameter (the caller steps the optimisers,
    after an all-reduce under data parallelism). Returns (generator-side total, named scalars)."""
    opt_g.zero_grad(set_to_none=True)
    if opt_d is not None:
        opt_d.zero_grad(set_to_none=True)
    t = joint_forward(model, disc, x, y, w, generator, pseudo_label_threshold)
    total = w.rec_dec * t["rec"] + w.lambda_lkd * t["lkd"] + w.lambda_kl * t["kl"]
    if "adv_e" in t:  # labeled batch
        total = total + w.adv_e * t["adv_e"] + t["adv_c"]
    for k in ("fm", "cyc_s", "cyc_u"):  # the decoder-only terms, present when their weight is on
        if k in t:
            total = total + getattr(w, k) * t[k]
    d_grads = None
    if "d" in t:
        total = total + w.gan_g * t["g"]
        d_params = [p for p in disc.parameters() if p.requires_grad]
        d_grads = torch.autograd.grad(t["d"], d_params, retain_graph=True, allow_unused=True)  # no label: embedding unused
    total.backward()
    if d_grads is not None:
        for p, g in zip(d_params, d_grads):
            p.grad = g
    names = {"rec": "loss/joint/rec", "lkd": "loss/joint/lkd", "kl": "loss/joint/kl", "adv_e": "loss/joint/adv_e",
             "adv_c": "loss/joint/adv_c", "d": "loss/joint/d", "g": "loss/joint/g", "d_real": "d/real",
             "d_rec": "d/rec", "d_sample": "d/sample", "fm": "loss/joint/fm", "cyc_s": "loss/joint/cyc_s",
             "cyc_u": "loss/joint/cyc_u", "pseudo_fraction": "semi/pseudo_fraction", "r1": "loss/joint/r1",
             "d_gap": "d/gap"}
    out = {names[k]: v.detach() for k, v in t.items() if k in names}
    out["loss/joint/total"] = total.detach()
    return total, out
