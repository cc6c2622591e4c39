"""The schema of params.yaml, validated on load.

Paper symbols are top-level keys (so `dvc exp run -S lambda_lkd=0.1` works as written); stage settings
are grouped under the stage's name. An unknown key, a wrong type or an out-of-range value stops the
command before any work, with a message naming the key.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


# ---------------------------------------------------------------------------------------------- synth
class SynthSet(Strict):
    n_identities: int = Field(ge=1, le=100_000)
    images_per_identity: int = Field(ge=1, le=100_000)


class SynthParams(Strict):
    labeled: SynthSet = SynthSet(n_identities=40, images_per_identity=60)
    unlabeled: SynthSet = SynthSet(n_identities=10, images_per_identity=40)
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
SourceKind = Literal["synthetic", "facescrub", "casia", "imagefolder", "cifar10", "cifar100"]


class AlignSource(Strict):
    """Which source feeds a set. Its location on disk is a path, so it lives in dvc.yaml."""

    source: SourceKind = "synthetic"
    n_identities: Optional[int] = Field(default=None, ge=1, description="pick this many identities at random (CASIA: 200)")
    drop_labels: bool = False


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
    unlabeled: AlignSource = AlignSource(drop_labels=True)
    detector: Literal["opencv", "face_alignment", "annotations", "dlib_hog", "dlib_cnn"] = "opencv"
    landmarks: Literal["face_alignment", "annotations", "none", "dlib"] = "annotations"
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


# ---------------------------------------------------------------------------------------------- model
class ModelParams(Strict):
    """The architecture (lrlivae.nn.config.ModelConfig); n_classes and image size come from the data."""

    arch: Literal["small", "paper_faces", "paper_cifar"] = "small"
    width: float = Field(default=1.0, gt=0, le=16, description="channel multiplier of the small nets")
    zs_dim: int = Field(default=32, ge=1, le=4096)
    zu_dim: int = Field(default=32, ge=1, le=4096)
    enc_hidden: Optional[int] = Field(default=None, ge=1)
    adv_hidden: int = Field(default=256, ge=1)
    disc_hidden: Optional[int] = Field(default=None, ge=1)
    gm_var_min: float = Field(default=1e-3, gt=0)
    gm_var_max: float = Field(default=1e2, gt=0)
    gm_var_init: float = Field(default=1.0, gt=0)
    gm_mean_init: float = Field(default=1.0, ge=0)


# ---------------------------------------------------------------------------------------------- training
class TrainCommon(Strict):
    steps: int = Field(ge=1, description="GM steps (train_gm) or Algorithm 1 iterations (train_joint)")
    batch_size: int = Field(default=64, ge=2, le=65536)
    lr: float = Field(default=5e-4, gt=0, le=1)
    beta1: float = Field(default=0.0, ge=0, lt=1)
    beta2: float = Field(default=0.9, ge=0, lt=1)
    sigma_lr_decay: float = Field(default=0.01, gt=0, le=1, description="GM variance lr factor ...")
    sigma_lr_decay_epochs: float = Field(default=2.0, ge=0, description="... after this many GM epochs")
    margin: float = Field(default=0.0, ge=0, description="GM-loss margin alpha")
    lkd_reduction: Literal["mean", "sum"] = "sum"
    checkpoint_every: int = Field(default=100, ge=1)
    log_every: int = Field(default=10, ge=1)
    device: str = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"
    grid_classes: int = Field(default=8, ge=1, description="classes shown in the per-epoch sample grid")
    gm_shift: int = Field(default=0, ge=0, le=16, description="GM steps: random shifts of up to this many pixels")
    gm_flip: bool = Field(default=False, description="GM steps: random left-right mirrors of the batch images")
    gm_color: float = Field(default=0.0, ge=0.0, le=0.5, description="GM steps: random light gain / warmth of each image, strength a")
    gm_refit: Literal["none", "end", "epoch"] = Field(
        default="none", description="set Sigma_c to the variance of the class's training codes: at the end, or every epoch")


class TrainGMParams(TrainCommon):
    steps: int = Field(default=150, ge=1)


class TrainJointParams(TrainCommon):
    steps: int = Field(default=400, ge=1)
    rec_s: float = Field(default=1.0, ge=0, description="L_rec weight in the Encoder^s update")
    rec_dec: float = Field(default=10.0, gt=0, description="L_rec weight in the decoder update")
    adv_e: float = Field(default=1.0, ge=0, description="L_E^adv weight in the Encoder^u update")
    gan_g: float = Field(default=1.0, ge=0, description="generator GAN weight; 0 turns the discriminator off")
    gan_loss: Literal["hinge", "bce"] = "hinge"
    adv_input: Literal["sample", "mean"] = Field(
        default="sample", description="the adversarial classifier reads the sampled z_u or its mean")
    gan_fake_weight: float = Field(default=1.0, gt=0, le=1,
                                   description="weight of the reconstruction and sample terms in the D loss")
    kl_reduction: Literal["mean", "sum"] = "mean"
    rec_reduction: Literal["mean", "sum"] = "mean"


# ---------------------------------------------------------------------------------------------- fetch_facescrub
class FetchFaceScrubParams(Strict):
    """Downloading FaceScrub from its list files (lrlivae.data.download.fetch_facescrub)."""

    workers: int = Field(default=8, ge=1, le=256, description="concurrent downloads")
    per_host: int = Field(default=2, ge=1, le=64, description="at most this many at a time from one host")
    timeout: float = Field(default=10.0, gt=0, le=600, description="seconds for connecting and for each read")
    retries: int = Field(default=3, ge=0, le=20, description="retries of transient failures")
    backoff: float = Field(default=0.5, ge=0, le=60, description="first retry delay in seconds, doubled each retry")
    max_bytes: int = Field(default=20_000_000, ge=1_000, le=2_000_000_000, description="larger bodies are rejected")
    lists: list[str] = Field(default=[], description="list files (facescrub_actors.txt, ...); --list overrides")


class FinetuneSemiParams(TrainJointParams):
    steps: int = Field(default=200, ge=1)
    mix_labeled: float = Field(default=0.0, ge=0, le=1, description="fraction of steps on a labeled batch")
    semi_n_gm: int = Field(default=0, ge=0, le=16, description="GM steps on labeled batches per fine-tuning step")
    pseudo_label_threshold: float = Field(
        default=0.0, ge=0, le=1, description="unlabeled z_s with max GM posterior >= this follow that class (0: off)")
    swap_pairs: int = Field(default=400, ge=10, description="random swap pairs measured")
    predictor_epochs: int = Field(default=30, ge=1, description="epochs of the factor predictor")
    grid_size: int = Field(default=6, ge=1, description="rows and columns of the swap figure")
    identity_judge: Union[Literal["auto"], bool] = Field(
        default="auto", description="dlib descriptor on the swaps; auto: on for real photo sources, off for synthetic")
    identity_judge_pairs: int = Field(default=100, ge=2, le=100_000, description="swap pairs the judge reads")


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
    lambda_lkd: float = Field(default=0.1, ge=0)
    lambda_kl: float = Field(default=1.0, ge=0, description="both encoders")
    lambda_rec: float = Field(default=10.0, ge=0, description="both encoders")
    rec_s: float = Field(default=1.0, ge=0)
    rec_dec: float = Field(default=10.0, gt=0, description="both decoders")
    adv_e: float = Field(default=1.0, ge=0)
    gan_g: float = Field(default=1.0, ge=0, description="ours: generator GAN weight")
    gan_loss: Literal["bce", "hinge"] = "bce"
    n_gm: int = Field(default=1, ge=0, le=100)
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


# ---------------------------------------------------------------------------------------------- root
class Params(Strict):
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    # Paper symbols (Algorithm 1, Eq. 9). Defaults for the synthetic set are chosen by measurement.
    lambda_lkd: float = Field(default=0.1, ge=0.0)
    lambda_kl: float = Field(default=1.0, ge=0.0)
    lambda_rec: float = Field(default=10.0, ge=0.0)
    n_gm: int = Field(default=3, ge=0, le=100)
    synth: SynthParams = SynthParams()
    align: AlignParams = AlignParams()
    model: ModelParams = ModelParams()
    train_gm: TrainGMParams = TrainGMParams()
    train_joint: TrainJointParams = TrainJointParams()
    finetune_semi: FinetuneSemiParams = FinetuneSemiParams()
    train_evaluator: TrainEvaluatorParams = TrainEvaluatorParams()
    evaluate: EvaluateParams = EvaluateParams()
    fetch_facescrub: FetchFaceScrubParams = FetchFaceScrubParams()
    toy: ToyParams = ToyParams()
    baselines: BaselinesParams = BaselinesParams()


class ParamsError(ValueError):
    """params.yaml is missing, unreadable or invalid; the message names the key."""


def _format_errors(path: Path, err: ValidationError) -> str:
    lines = [f"{path}: invalid parameters:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling and where it is nested)"
        elif "input" in e and e["type"] != "missing" and not isinstance(e["input"], dict):
            msg = f"{msg} (got {e['input']!r})"
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def merge_overlay(base: dict, overlay: dict) -> dict:
    """`overlay` deep-merged over `base` (mappings merge key by key; any other value replaces)."""
    out = dict(base)
    for k, v in overlay.items():
        out[k] = merge_overlay(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """A params mapping from a file; a top-level `base: <file>` (relative to this file) makes the file an
    overlay: only the keys it names change, merged over the base file's values (profiles/ use this)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ParamsError(f"{path}: parameters file not found") from None
    except OSError as e:
        raise ParamsError(f"{path}: cannot read parameters file: {e}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: the top level must be a mapping of keys, got {type(raw).__name__}")
    if "base" in raw:
        base_path = (path.parent / str(raw.pop("base"))).resolve()
        if base_path in seen or base_path == path.resolve():
            raise ParamsError(f"{path}: `base` refers back to {base_path} (a loop of overlays)")
        raw = merge_overlay(_read_yaml(base_path, seen + (path.resolve(),)), raw)
    return raw


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml (or an overlay of it, see `_read_yaml`); raise ParamsError with a
    message naming each bad key."""
    path = Path(path)
    raw = _read_yaml(path)
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        raise ParamsError(_format_errors(path, e)) from None


def params_hash(path: str | Path) -> str:
    """sha256 of the params file's bytes (first 12 hex digits), used to tag runs."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def flatten(d: dict, prefix: str = "") -> dict[str, object]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists and tuples become their string form."""
    out: dict[str, object] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
