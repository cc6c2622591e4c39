"""params.yaml schema, part 2: evaluation, the baselines and the toy example (sections built from the library
configs they fill: lrlivae.evaluate.protocol.EvalProtocol, lrlivae.baselines, lrlivae.toy.train.ToyConfig)."""
from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import Field, model_validator

from lrlivae.baselines import BaselineConfig, BaselineWeights
from lrlivae.evaluate.classifier import EvaluatorTraining
from lrlivae.evaluate.protocol import EvalProtocol
from lrlivae.toy.train import ToyConfig
from lrlivae.train.settings import TrainSettings
from pipeline.schema import PAPER_SYMBOLS, StageDevice, Strict, library_fields, section


# ---------------------------------------------------------------------------------------------- evaluation
class TrainEvaluatorParams(section("TrainEvaluatorSettings", "", library_fields(
        EvaluatorTraining, only=("epochs", "batch_size", "lr", "optimizer")))):
    """train_evaluator: the classifier behind IS and FCD (lrlivae.evaluate.classifier.EvaluatorTraining)."""


class EvaluateParams(section("EvalSettings", "", library_fields(EvalProtocol))):
    """evaluate: the fixed protocol (lrlivae.evaluate.protocol.EvalProtocol) and the figures."""

    figure_classes: int = Field(default=8, ge=1)
    identity_judge: Union[Literal["auto"], bool] = Field(
        default="auto", description="dlib descriptor identity figures; auto: on for real photo sources only")
    identity_judge_per_class: int = Field(default=10, ge=1, le=10_000,
                                          description="generated samples and real test crops per class it reads")


# ---------------------------------------------------------------------------------------------- baselines
class BaselineCommon(section("BaselineSettings", "", library_fields(
        TrainSettings, only=("steps", "batch_size", "lr", "beta1", "beta2", "checkpoint_every", "log_every",
                             "precision"), steps=600, checkpoint_every=50),
        library_fields(BaselineConfig, only=("z_dim",), z_dim=32), base=StageDevice)):
    """Settings every baseline shares (stages train_baseline@<kind>): the loop's (TrainSettings; `steps`
    updates of every network) and z's size; the nets are sized by `model`."""

    dec_depth: Optional[int] = Field(default=None, ge=0, le=8,
                                     description="the baselines' own model.dec_depth (None: model.dec_depth)")


class BaselineKind(Strict):
    steps: Optional[int] = Field(default=None, ge=1, description="overrides baselines.common.steps")


def _kind(kind: str, weights: tuple[str, ...], **own) -> type[Strict]:
    """The section of one baseline: its loss weights (lrlivae.baselines.BaselineWeights.for_kind) and steps."""
    return section(f"{kind.upper()}Params", f"baselines.{kind}: the loss weights of {kind} and its own steps.",
                   library_fields(BaselineWeights.for_kind(kind), only=weights), own, base=BaselineKind)


CVAEParams = _kind("cvae", ("rec", "kl"))
CGANParams = _kind("cgan", ("gan_loss",), steps=(Optional[int], Field(default=1000, ge=1,
                                                                    description="overrides baselines.common.steps")))
CVAEGANParams = _kind("cvaegan", ("rec", "kl", "fm_d", "fm_c", "gd", "gc", "gan_loss"))


class BaselinesParams(Strict):
    common: BaselineCommon = BaselineCommon()
    cvae: CVAEParams = CVAEParams()
    cgan: CGANParams = CGANParams()
    cvaegan: CVAEGANParams = CVAEGANParams()


# ---------------------------------------------------------------------------------------------- toy
class ToyParams(section("ToySettings", "", library_fields(ToyConfig, exclude=PAPER_SYMBOLS))):
    """The toy example (Sec. 4.1, Fig. 2; lrlivae.toy): Lr-LiVAE against cVAE-GAN on three half circles. The
    models and their training: lrlivae.toy.train.ToyConfig (lambda_lkd, lambda_kl, lambda_rec: the top-level
    paper symbols); the data, the seeds and the measurements below."""

    seeds: list[int] = Field(default=[0, 1, 2], min_length=1, description="one training set and run per seed")
    n_per_class: int = Field(default=1000, ge=2, description="training points per class")
    spacing: float = Field(default=2.2, gt=0, description="horizontal distance of the half circles (App. B.1)")
    noise: float = Field(default=0.15, ge=0, description="std of the Gaussian noise (App. B.1)")
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
