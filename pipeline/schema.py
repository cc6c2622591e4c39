"""params.yaml schema, part 1: the data stages (synth, align, fetch_facescrub), the model and the training
stages; pipeline.params loads. A section that fills a library config is built from that config's fields
(`library_fields`): their types, bounds, descriptions and defaults live in the library, once."""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from lrlivae.fetch.download import FetchOptions
from lrlivae.nn.config import DATA_FIELDS, ModelConfig
from lrlivae.train.settings import TrainSettings
from lrlivae.train.steps import LossWeights


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


def library_fields(config: Any, only: tuple[str, ...] | None = None, exclude: tuple[str, ...] = (),
                   **defaults: Any) -> dict[str, tuple[Any, Any]]:
    """Field definitions for a params section from a library config (a dataclass, or an instance of one
    whose values are the defaults): each field's annotated type (bounds and description included) and its
    default; `defaults` give a stage's own default to a field the library leaves without one."""
    cls = config if isinstance(config, type) else type(config)
    hints = typing.get_type_hints(cls, include_extras=True)
    out = {}
    for f in dataclasses.fields(cls):
        if (only is not None and f.name not in only) or f.name in exclude:
            continue
        if f.name in defaults:
            default = defaults[f.name]
        elif not isinstance(config, type):
            default = getattr(config, f.name)
        elif f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = ...
        out[f.name] = (hints[f.name], default)
    return out


def section(name: str, doc: str, *parts: dict[str, tuple[Any, Any]], base: type[Strict] = Strict) -> type[Strict]:
    """A params section (a Strict model, or a subclass of `base`) with the fields of `parts` (`library_fields`)."""
    return create_model(name, __base__=base, __doc__=doc, **{k: v for part in parts for k, v in part.items()})


def values_for(part: BaseModel, config: type) -> dict[str, Any]:
    """A section's values of the fields a library config has (the keyword arguments that fill it)."""
    names = {f.name for f in dataclasses.fields(config)}
    return {k: v for k, v in part if k in names}


# ---------------------------------------------------------------------------------------------- synth
class SynthSet(Strict):
    n_identities: int = Field(ge=1, le=100_000)
    images_per_identity: int = Field(ge=1, le=100_000)


class LabeledSynthSet(SynthSet):
    n_identities: int = Field(default=40, ge=1, le=100_000)
    images_per_identity: int = Field(default=60, ge=1, le=100_000)


class UnlabeledSynthSet(SynthSet):
    """Identities never seen in `labeled`."""

    n_identities: int = Field(default=10, ge=1, le=100_000)
    images_per_identity: int = Field(default=40, ge=1, le=100_000)


class SynthParams(Strict):
    labeled: LabeledSynthSet = LabeledSynthSet()
    unlabeled: UnlabeledSynthSet = UnlabeledSynthSet()
    frame_size: tuple[int, int] = (128, 160)
    workers: int = Field(default=2, ge=1, le=256)

    @field_validator("frame_size")
    @classmethod
    def _frame_range(cls, v):
        lo, hi = v
        if not (64 <= lo <= hi <= 2048):
            raise ValueError(f"must be [min, max] with 64 <= min <= max <= 2048, got {list(v)}")
        return v


# ---------------------------------------------------------------------------------------------- align
SourceKind = Literal["auto", "synthetic", "facescrub", "casia", "imagefolder", "cifar10", "cifar100"]
SYNTHETIC_MARKER = "meta.parquet"  # the built-in set's folder holds it (lrlivae.data.synthetic)


class AlignSource(Strict):
    """Which folder feeds a set and what it holds. `root` is the one path in params.yaml: the data a run
    reads is a choice of the experiment (`dvc exp run -S align.labeled.root=/data/photos`); dvc.yaml reads
    it as the align stage's dependency."""

    root: str = Field(default="", description="the set's folder (one sub-folder per person for photos); an "
                      "absolute path for data outside the repository (queued experiments run in a copy of it)")
    source: SourceKind = Field(default="auto", description="auto: the built-in synthetic set where `root` holds "
                               "its meta.parquet, else a folder of photos (imagefolder)")
    n_identities: Optional[int] = Field(default=None, ge=1, description="pick this many identities at random (CASIA: 200)")
    drop_labels: bool = False

    def resolved(self) -> str:
        """The source kind that reads `root`: `source` unless auto; auto -> synthetic where root holds the
        synthetic set's marker, imagefolder where root is another folder, "" where root is not there."""
        if self.source != "auto":
            return self.source
        from pathlib import Path

        root = Path(self.root) if self.root else None
        if root is None or not root.is_dir():
            return ""
        return "synthetic" if (root / SYNTHETIC_MARKER).is_file() else "imagefolder"


class UnlabeledSource(AlignSource):
    """The unlabeled set: its labels are dropped unless said otherwise."""

    drop_labels: bool = True


class Split(Strict):
    train: float = Field(default=0.7, gt=0, lt=1)
    val: float = Field(default=0.1, ge=0, lt=1)
    test: float = Field(default=0.2, gt=0, lt=1)

    @model_validator(mode="after")
    def _sums_to_one(self):
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must be 1, got {total:g}")
        return self


class OpenCVDetector(Strict):
    scale_factor: float = Field(default=1.1, gt=1.0, le=2.0)
    min_neighbors: int = Field(default=4, ge=0, le=50)
    min_size: int = Field(default=24, ge=8, le=1024)
    equalize: bool = Field(default=False, description="histogram-equalise the grey image before detecting")


class DlibOptions(Strict):
    """Options of the dlib backends (detector dlib_hog / dlib_cnn, landmarks dlib)."""

    upsample: int = Field(default=1, ge=0, le=4, description="double the image this many times before detecting "
                          "(HOG finds faces down to ~80 px at 0, ~40 px at 1)")
    min_score: float = Field(default=0.0, ge=-3.0, le=10.0, description="HOG: SVM threshold (negative finds more, "
                             "and more false faces); CNN: minimum confidence")
    max_side: int = Field(default=800, ge=64, le=8192, description="detect on a copy reduced to this longest side")
    landmark_model: Literal["68", "5"] = Field(
        default="5", description="5: dlib's own model (eyes fix the alignment); 68: iBUG 300-W model (its "
        "training data is for non-commercial use), reduced to the template's 5 points")


class AlignParams(Strict):
    labeled: AlignSource = AlignSource()
    unlabeled: UnlabeledSource = UnlabeledSource()
    detector: Literal["auto", "opencv", "face_alignment", "annotations", "dlib_hog", "dlib_cnn"] = Field(
        default="auto", description="auto: opencv (Viola-Jones) on the synthetic set, dlib_hog on photos")
    landmarks: Literal["auto", "face_alignment", "annotations", "none", "dlib"] = Field(
        default="auto", description="auto: the renderer's annotations on the synthetic set, dlib's 5 points on photos")
    min_photos: int = Field(default=3, ge=1, description="a labeled person with fewer accepted photos is left out, "
                            "with the reason in the align stage's people table (a person needs train and test photos)")
    device: str = "cpu"
    size: int = Field(default=64, ge=16, le=512)
    margin: float = Field(default=0.2, ge=0.0, le=2.0, description="box crops: margin per edge, fraction of the box side")
    min_score: float = Field(default=0.0, description="drop detections scoring below this")
    split: Split = Split()
    min_accept_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    max_pixels: int = Field(default=50_000_000, ge=10_000)
    workers: int = Field(default=2, ge=1, le=256)
    opencv: OpenCVDetector = OpenCVDetector()
    dlib: DlibOptions = DlibOptions()

    def for_source(self, source: str) -> "AlignParams":
        """A copy with `auto` detector / landmarks resolved for one set's source kind."""
        synthetic = source == "synthetic"
        det = self.detector if self.detector != "auto" else ("opencv" if synthetic else "dlib_hog")
        lms = self.landmarks if self.landmarks != "auto" else ("annotations" if synthetic else "dlib")
        return self.model_copy(update={"detector": det, "landmarks": lms})


# ---------------------------------------------------------------------------------------------- model
ModelParams = section("ModelParams", "The architecture (lrlivae.nn.config.ModelConfig); the number of classes and "
                      "the image size come from the data.",
                      library_fields(ModelConfig, exclude=DATA_FIELDS + ("logvar_bound",)))  # logvar_bound: fixed


# ---------------------------------------------------------------------------------------------- training
TRAIN_STAGES = ("train_gm", "train_joint", "finetune_semi")
PAPER_SYMBOLS = ("lambda_lkd", "lambda_kl", "lambda_rec")  # top-level keys of params.yaml (with n_gm, seed)
SHARED_SETTINGS = ("batch_size", "lr", "beta1", "beta2", "sigma_lr_decay", "sigma_lr_decay_epochs", "checkpoint_every",
                   "log_every", "precision", "gm_shift", "gm_flip", "gm_color", "gm_refit", "dec_bn_refresh",
                   "dec_bn_match", "dec_bn_match_mode")
SHARED_WEIGHTS = ("margin", "lkd_reduction")


class StageDevice(Strict):
    """What a training stage runs on and shows, beside its library settings."""

    device: str = "auto"
    grid_classes: int = Field(default=8, ge=1, description="classes shown in the per-epoch sample grid")


TrainShared = section(
    "TrainShared", "params.yaml `train:`, the settings the three training stages share (lrlivae.train.settings."
    "TrainSettings, lrlivae.train.steps.LossWeights); a stage's own section overrides any of them for that stage.",
    library_fields(TrainSettings, only=SHARED_SETTINGS), library_fields(LossWeights, only=SHARED_WEIGHTS),
    base=StageDevice)
# `steps` has no library default: each stage's own is given here
TrainGMParams = section("TrainGMParams", "train_gm: GM steps on Encoder^s and the prior.",
                        library_fields(TrainSettings, only=("steps",), steps=1200), base=TrainShared)
TrainJointParams = section(
    "TrainJointParams", "train_joint: Algorithm 1, every network on its own loss terms.",
    library_fields(TrainSettings, only=("steps", "d_lr_mult", "n_d"), steps=400),
    library_fields(LossWeights, exclude=PAPER_SYMBOLS + SHARED_WEIGHTS), base=TrainShared)


# ---------------------------------------------------------------------------------------------- fetch_facescrub
class FetchFaceScrubParams(section("FetchSettings", "", library_fields(FetchOptions, exclude=(
        "user_agent", "host_give_up", "progress")))):
    """Downloading FaceScrub from its list files (lrlivae.fetch.download.fetch_facescrub, FetchOptions)."""

    lists: list[str] = Field(default=[], description="list files (facescrub_actors.txt, ...); --list overrides")


class FinetuneSemiParams(section("FinetuneSemiSettings", "", library_fields(
        TrainSettings, only=("steps", "mix_labeled", "semi_n_gm", "pseudo_label_threshold"), steps=200),
        base=TrainJointParams)):
    """finetune_semi: Algorithm 1 on unlabeled faces (Sec. 3.6), and the swap measurements after it."""

    swap_pairs: int = Field(default=400, ge=10, description="random swap pairs measured")
    predictor_epochs: int = Field(default=30, ge=1, description="epochs of the factor predictor")
    grid_size: int = Field(default=6, ge=1, description="rows and columns of the swap figure")
    identity_judge: Union[Literal["auto"], bool] = Field(
        default="auto", description="dlib descriptor on the swaps; auto: on for real photo sources, off for synthetic")
    identity_judge_pairs: int = Field(default=100, ge=2, le=100_000, description="swap pairs the judge reads")
