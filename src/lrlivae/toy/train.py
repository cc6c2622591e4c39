"""Training both toy models (Sec. 4.1): Adam(lr 5e-4), `epochs` passes over a fixed training set.

ours (Lr-LiVAE), Algorithm 1 with the image model's own steps (lrlivae.train.steps):
    `gm_pretrain_epochs` epochs of GM steps (L_GM = L_cls + lambda_lkd L_lkd, Eq. 9), then per batch
    `n_gm` GM steps and one joint step, each network on its own terms:
        Encoder^s  rec_s L_rec + lambda_lkd L_lkd (Eq. 7)
        Encoder^u  adv_e L_E^adv (Eq. 5) + lambda_kl L_kl (Eq. 3) + lambda_rec L_rec
        adv. clf.  L_C^adv (Eq. 4)
        Decoder    rec_dec L_rec + gan_g L_GD^adv
        D          L_D^adv (Eq. 10) on the real point, the reconstruction and a prior sample

cVAE-GAN (Bao et al. 2017), per batch one step with the same discriminator and the same D loss:
        Encoder    lambda_kl L_kl + lambda_rec L_rec
        Generator  rec_dec L_rec + fm (L_GD + L_GC), mean feature matching on D's penultimate features h
                   (the image baseline's functions, lrlivae.baselines.losses):
                   L_GD = 1/2 || mean_i h(x_i) - mean_i h(x_p,i) ||^2                   (Eq. 7)
                   L_GC = mean_c 1/2 || mean_{i: y_i = c} h(x_i) - mean_{i: y_i = c} h(x_p,i) ||^2   (Eq. 8)
                   (cVAE-GAN takes L_GC from an auxiliary classifier's features; here the features of the
                   class-conditional discriminator, per class, play that role). x_p = G(z, y), z ~ N(0, I).
                   cVAE-GAN's pairwise feature term ||h(x) - h(x')||^2 is left out: the 2-D point itself
                   is the reconstruction target.
L_rec is the mean squared error over the two coordinates, L_kl the KL averaged over latent dimensions (as
the image model), L_lkd summed over z_s dimensions.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Annotated, Callable, Literal

import numpy as np
import torch
from pydantic import Field

from lrlivae import losses
from lrlivae.baselines.losses import class_mean_feature_matching, mean_feature_matching
from lrlivae.priors import randn
from lrlivae.toy.data import N_CLASSES
from lrlivae.toy.models import ToyCVAEGAN, ToyDiscriminator, ToyLrLiVAE
from lrlivae.train.steps import LossWeights, gm_step, joint_step, scale_grad

MODELS = ("ours", "cvaegan")


@dataclass
class ToyConfig:
    """Everything that shapes a toy run (the stage fills it from params.yaml: toy)."""

    epochs: Annotated[int, Field(ge=1)] = 50
    batch_size: Annotated[int, Field(ge=2)] = 64
    lr: Annotated[float, Field(gt=0, le=1)] = 5e-4
    beta1: Annotated[float, Field(ge=0, lt=1)] = 0.0  # Appendix B.4
    beta2: Annotated[float, Field(ge=0, lt=1)] = 0.9
    hidden: Annotated[tuple[int, ...], Field(min_length=1, description="MLP hidden units (encoders, D; the "
                                             "decoder reversed)")] = (32, 64, 64)
    zs_dim: Annotated[int, Field(ge=1, description="ours: label-relevant code")] = 2
    zu_dim: Annotated[int, Field(ge=1, description="ours: label-irrelevant code")] = 2
    z_dim: Annotated[int, Field(ge=1, description="cVAE-GAN: its code (the label is a one-hot input)")] = 2
    adv_hidden: Annotated[int, Field(ge=1)] = 32
    gm_var_init: Annotated[float, Field(gt=0, lt=100, description="ours: initial GM prior variances "
                                        "(lrlivae.priors)")] = 0.1
    gm_mean_init: Annotated[float, Field(ge=0)] = 1.0  # ours: mean scale of the GM prior
    lambda_kl: float = LossWeights.lambda_kl  # both models' encoders
    lambda_rec: float = LossWeights.lambda_rec
    rec_dec: Annotated[float, Field(gt=0, description="both decoders")] = 10.0
    lambda_lkd: float = LossWeights.lambda_lkd  # ours
    rec_s: Annotated[float, Field(ge=0)] = 1.0
    adv_e: Annotated[float, Field(ge=0)] = 1.0
    gan_g: Annotated[float, Field(ge=0, description="ours: generator GAN weight")] = 1.0
    gan_loss: Literal["bce", "hinge"] = "bce"
    n_gm: Annotated[int, Field(ge=0, le=100, description="GM steps per joint step (the toy's own; top-level "
                               "n_gm is the faces')")] = 1
    gm_pretrain_epochs: Annotated[int, Field(ge=0)] = 1
    fm: Annotated[float, Field(ge=0, description="cVAE-GAN: weight of the mean feature matching terms "
                               "L_GD + L_GC")] = 1.0

    def weights(self) -> LossWeights:
        return LossWeights(lambda_lkd=self.lambda_lkd, lambda_kl=self.lambda_kl, lambda_rec=self.lambda_rec,
                           rec_s=self.rec_s, rec_dec=self.rec_dec, adv_e=self.adv_e, gan_g=self.gan_g,
                           gan_loss=self.gan_loss, lkd_reduction="sum", kl_reduction="mean", rec_reduction="mean")

    def to_dict(self) -> dict:
        return asdict(self)


def cvaegan_step(model: ToyCVAEGAN, disc: ToyDiscriminator, opt_g, opt_d, x: torch.Tensor, y: torch.Tensor,
                 cfg: ToyConfig, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """One cVAE-GAN step; fills .grad of the encoder, generator and D (the caller steps the optimisers)."""
    w = cfg.weights()
    opt_g.zero_grad(set_to_none=True)
    opt_d.zero_grad(set_to_none=True)
    b = x.shape[0]
    mu, logvar = model.encode(x, y)  # (B, z_dim)
    z = mu + torch.exp(0.5 * logvar) * randn(tuple(mu.shape), generator=generator)  # (B, z_dim)
    kl = losses.kl_loss(mu, logvar, "mean")
    x_rec = model.decode(scale_grad(z, cfg.lambda_rec / cfg.rec_dec), y)  # (B, 2); encoder sees lambda_rec
    rec = losses.rec_loss(x, x_rec, "mean")
    x_p = model.decode(randn((b, model.z_dim), generator=generator), y)  # (B, 2)
    h = disc.features(torch.cat([x, x_rec, x_p], 0))  # (3B, F), one D call
    logits = disc.head(h, torch.cat([y, y, y], 0))  # (3B,)
    d_real, d_rec, d_p = logits.split(b)
    d_loss = (losses.d_loss_bce if w.gan_loss == "bce" else losses.d_loss_hinge)(d_real, d_rec, d_p)
    h_real, h_p = h[:b], h[2 * b:]
    fm_d = mean_feature_matching(h_real, h_p)  # L_GD (Bao et al. Eq. 7)
    fm_c = class_mean_feature_matching(h_real, y, h_p, y)  # L_GC (Eq. 8), D's features per class
    total = cfg.rec_dec * rec + cfg.lambda_kl * kl + cfg.fm * (fm_d + fm_c)
    d_params = list(disc.parameters())
    d_grads = torch.autograd.grad(d_loss, d_params, retain_graph=True)
    total.backward(inputs=list(model.parameters()))  # D gets none of the generator-side gradient
    for p, g in zip(d_params, d_grads):
        p.grad = g
    return {"loss/cvaegan/rec": rec, "loss/cvaegan/kl": kl, "loss/cvaegan/fm_d": fm_d, "loss/cvaegan/fm_c": fm_c,
            "loss/cvaegan/d": d_loss, "loss/cvaegan/total": total, "d/real": d_real.mean(), "d/sample": d_p.mean()}


# ------------------------------------------------------------------------------------- the loop
@dataclass
class ToyRun:
    model: torch.nn.Module
    disc: ToyDiscriminator
    history: list[dict] = field(default_factory=list)  # per epoch: {"epoch": e, <name>: epoch mean}
    snapshots: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # epoch -> (pts, labels)


class _Batches:
    """Endless shuffled batches of row indices, a fresh permutation per pass (incomplete tail dropped)."""

    def __init__(self, n: int, batch: int, rng: np.random.Generator) -> None:
        self.n, self.batch, self.rng = n, min(batch, n), rng
        self.per_epoch = n // self.batch
        self._perm, self._i = rng.permutation(n), 0

    def next(self) -> np.ndarray:
        if self._i + self.batch > self.n:
            self._perm, self._i = self.rng.permutation(self.n), 0
        rows = self._perm[self._i : self._i + self.batch]
        self._i += self.batch
        return rows


def adam(params, cfg: ToyConfig) -> torch.optim.Adam:
    """Adam(lr, (beta1, beta2)); the fused kernel where this torch has it (about 5x faster on tiny nets)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), foreach=True)


def build(kind: str, cfg: ToyConfig) -> tuple[torch.nn.Module, ToyDiscriminator]:
    if kind == "ours":
        model = ToyLrLiVAE(N_CLASSES, cfg.zs_dim, cfg.zu_dim, cfg.hidden, cfg.adv_hidden, cfg.gm_var_init,
                           cfg.gm_mean_init)
    elif kind == "cvaegan":
        model = ToyCVAEGAN(N_CLASSES, cfg.z_dim, cfg.hidden)
    else:
        raise ValueError(f"model must be one of {MODELS}, got {kind!r}")
    return model, ToyDiscriminator(N_CLASSES, cfg.hidden)


@torch.no_grad()
def sample_classes(model: torch.nn.Module, n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n_per_class generated points of every class from fixed noise: ((C n, 2) float32, (C n,) int64)."""
    y = torch.arange(N_CLASSES).repeat_interleave(n_per_class)  # (C n,)
    pts = model.generate(y, torch.Generator().manual_seed(seed))  # (C n, 2)
    return pts.numpy().astype(np.float32), y.numpy()


def train_toy(kind: str, points: np.ndarray, labels: np.ndarray, cfg: ToyConfig, seed: int,
              snapshot_epochs=(), snapshot_per_class: int = 1000, snapshot_seed: int = 0,
              on_epoch: Callable[[dict], None] | None = None) -> ToyRun:
    """Train model `kind` ("ours" | "cvaegan") on points (N, 2), labels (N,); deterministic in `seed`.

    After each epoch in `snapshot_epochs`, `snapshot_per_class` points per class are generated from noise
    seeded with `snapshot_seed` (the same noise for every epoch and model) and kept in run.snapshots.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    noise = torch.Generator().manual_seed(seed + 1)
    model, disc = build(kind, cfg)
    run = ToyRun(model, disc)
    x_all, y_all = torch.from_numpy(np.asarray(points, np.float32)), torch.from_numpy(np.asarray(labels, np.int64))
    opt_d = adam(disc.parameters(), cfg)
    batches = _Batches(len(x_all), cfg.batch_size, rng)
    w = cfg.weights()
    if kind == "ours":
        opt_gm = adam([*model.enc_s.parameters(), *model.prior.parameters()], cfg)
        opt_g = adam([p for n in ("enc_s", "enc_u", "dec", "adv") for p in getattr(model, n).parameters()], cfg)
        gm_batches = _Batches(len(x_all), cfg.batch_size, np.random.default_rng(seed + 2))

        def gm() -> None:
            rows = gm_batches.next()
            gm_step(model, opt_gm, x_all[rows], y_all[rows], w)
            opt_gm.step()

        for _ in range(cfg.gm_pretrain_epochs * gm_batches.per_epoch):  # Algorithm 1's GM pre-training
            gm()
    else:
        opt_g = adam(model.parameters(), cfg)
    for epoch in range(1, cfg.epochs + 1):
        sums: dict[str, torch.Tensor] = {}
        for _ in range(batches.per_epoch):
            rows = batches.next()
            x, y = x_all[rows], y_all[rows]  # (B, 2), (B,)
            if kind == "ours":
                for _ in range(cfg.n_gm):
                    gm()
                _, scalars = joint_step(model, disc, opt_g, opt_d, x, y, w, noise)
            else:
                scalars = cvaegan_step(model, disc, opt_g, opt_d, x, y, cfg, noise)
            opt_g.step()
            opt_d.step()
            for k, v in scalars.items():
                sums[k] = sums.get(k, 0.0) + v.detach()
        row = {"epoch": epoch, **{k: float(v) / batches.per_epoch for k, v in sums.items()}}
        run.history.append(row)
        if epoch in snapshot_epochs:
            run.snapshots[epoch] = sample_classes(model, snapshot_per_class, snapshot_seed)
        if on_epoch is not None:
            on_epoch(row)
    return run
