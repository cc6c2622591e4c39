"""params.yaml schema, part 2: evaluation, the baselines and the toy example."""
from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import Field, model_validator

from pipeline.schema import Strict


# ---------------------------------------------------------------------------------------------- evaluation
class TrainEvaluatorParams(Strict):
    epochs: int = Field(default=30, ge=1)
    batch_size: int = Field(default=32, ge=2)
    lr: float = Field(default=0.05, gt=0)
    optimizer: Literal["sgd", "adam"] = "sgd"


class EvaluateParams(Strict):
    per_class: int = Field(default=50, ge=2, description="generated samples per class (paper: 100 for faces)")
    splits: int = Field(default=10, ge=1, description="Inception Score splits")
    figure_classes: int = Field(default=8, ge=1)
    identity_judge: Union[Literal["auto"], bool] = Field(
        default="auto", description="dlib descriptor identity figures; auto: on for real photo sources only")
    identity_judge_per_class: int = Field(default=10, ge=1, le=10_000,
                                          description="generated samples and real test crops per class it reads")
    nuisance_factors: list[str] = ["yaw", "pitch", "smile", "mouth_open", "eyes_closed", "light_x", "light_y",
                                   "light_strength", "bg_brightness"]


# ---------------------------------------------------------------------------------------------- baselines
class BaselineCommon(Strict):
    """Settings every baseline shares (stages train_baseline@<kind>); the nets are sized by `model`."""

    steps: int = Field(default=600, ge=1, description="training steps (one update of every network each)")
    batch_size: int = Field(default=64, ge=2, le=65536)
    lr: float = Field(default=5e-4, gt=0, le=1)
    beta1: float = Field(default=0.0, ge=0, lt=1)
    beta2: float = Field(default=0.9, ge=0, lt=1)
    z_dim: int = Field(default=32, ge=1, le=4096, description="size of z (the label enters as one-hot)")
    dec_depth: Optional[int] = Field(default=None, ge=0, le=8,
                                     description="the baselines' own model.dec_depth (None: model.dec_depth)")
    checkpoint_every: int = Field(default=50, ge=1)
    log_every: int = Field(default=10, ge=1)
    device: str = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"
    grid_classes: int = Field(default=8, ge=1, description="classes shown in the per-epoch sample grid")


class BaselineKind(Strict):
    steps: Optional[int] = Field(default=None, ge=1, description="overrides baselines.common.steps")


class CVAEParams(BaselineKind):
    rec: float = Field(default=10.0, ge=0, description="L_rec weight (mean squared error)")
    kl: float = Field(default=0.1, ge=0, description="KL weight (mean over z dims)")


class CGANParams(BaselineKind):
    steps: Optional[int] = Field(default=1000, ge=1, description="overrides baselines.common.steps")
    gan_loss: Literal["hinge", "bce"] = "hinge"


class CVAEGANParams(CVAEParams):
    fm_d: float = Field(default=0.002, ge=0, description="pairwise D-feature matching in L_G")
    fm_c: float = Field(default=0.002, ge=0, description="pairwise C-feature matching in L_G")
    gd: float = Field(default=0.002, ge=0, description="L_GD, mean D-feature matching (generator)")
    gc: float = Field(default=0.002, ge=0, description="L_GC, class-mean C-feature matching (generator)")
    gan_loss: Literal["hinge", "bce"] = "bce"


class BaselinesParams(Strict):
    common: BaselineCommon = BaselineCommon()
    cvae: CVAEParams = CVAEParams()
    cgan: CGANParams = CGANParams()
    cvaegan: CVAEGANParams = CVAEGANParams()


# ---------------------------------------------------------------------------------------------- toy
class ToyParams(Strict):
    """The toy example (Sec. 4.1, Fig. 2; lrlivae.toy): Lr-LiVAE against cVAE-GAN on three half circles."""

    seeds: list[int] = Field(default=[0, 1, 2], min_length=1, description="one training set and run per seed")
    n_per_class: int = Field(default=1000, ge=2, description="training points per class")
    spacing: float = Field(default=2.2, gt=0, description="horizontal distance of the half circles (App. B.1)")
    noise: float = Field(default=0.15, ge=0, description="std of the Gaussian noise (App. B.1)")
    epochs: int = Field(default=50, ge=1)
    batch_size: int = Field(default=64, ge=2)
    lr: float = Field(default=5e-4, gt=0, le=1)
    beta1: float = Field(default=0.0, ge=0, lt=1)
    beta2: float = Field(default=0.9, ge=0, lt=1)
    hidden: list[int] = Field(default=[32, 64, 64], min_length=1, description="MLP hidden units (encoders, D)")
    zs_dim: int = Field(default=2, ge=1, description="ours: label-relevant code")
    zu_dim: int = Field(default=2, ge=1, description="ours: label-irrelevant code")
    z_dim: int = Field(default=2, ge=1, description="cVAE-GAN: its code (the label is a one-hot input)")
    adv_hidden: int = Field(default=32, ge=1)
    gm_var_init: float = Field(default=0.1, gt=0, lt=100, description="ours: initial GM prior variances")
    gm_mean_init: float = Field(default=1.0, ge=0)
    # lambda_lkd, lambda_kl (both encoders), lambda_rec (both encoders): the top-level paper symbols
    rec_s: float = Field(default=1.0, ge=0)
    rec_dec: float = Field(default=10.0, gt=0, description="both decoders")
    adv_e: float = Field(default=1.0, ge=0)
    gan_g: float = Field(default=1.0, ge=0, description="ours: generator GAN weight")
    gan_loss: Literal["bce", "hinge"] = "bce"
    n_gm: int = Field(default=1, ge=0, le=100, description="GM steps per joint step (the toy's own; top-level n_gm is the faces')")
    gm_pretrain_epochs: int = Field(default=1, ge=0)
    fm: float = Field(default=1.0, ge=0, description="cVAE-GAN: weight of the mean feature matching terms")
    eval_per_class: int = Field(default=1000, ge=2, description="generated and held-out real points per class")
    eval_seed: int = Field(default=1234, ge=0, le=2**31 - 2)
    swd_projections: int = Field(default=128, ge=1)
    figure_epochs: list[int] = Field(default=[1, 5, 10, 25, 50], min_length=1)
    figure_per_class: int = Field(default=300, ge=1)

    @model_validator(mode="after")
    def _epochs_in_range(self):
        bad = [e for e in self.figure_epochs if not 1 <= e <= self.epochs]
        if bad:
            raise ValueError(f"figure_epochs must lie in [1, epochs={self.epochs}], got {bad}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {self.seeds}")
        return self
