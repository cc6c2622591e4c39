"""The one typed config every network of the model is built from.

`ModelConfig` describes the architecture (`arch`), the image and latent sizes, the number of classes
and the bounds of the learned and predicted variances. It round-trips through a dict of plain Python
values (`to_dict` / `from_dict`), so a checkpoint can carry it and rebuild the model on its own.

Architectures:
  "small"        a compact conv net for 64x64 CPU training; channel counts 16, 32, 64, 128 times `width`.
  "paper_faces"  the FaceScrub networks (paper Appendix B.2): VGG16-BN encoders (13 conv3x3 layers,
                 4 max-pools at 64x64), fc1024, mirrored decoder; discriminator of Table 4.
  "paper_cifar"  the CIFAR-10 networks of Table 3 (32x32 input).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Annotated, Any, Literal, get_args

from pydantic import Field

Arch = Literal["small", "paper_faces", "paper_cifar"]
DecUp = Literal["transpose", "resize"]
DecNorm = Literal["batch", "group", "none"]
DiscPool = Literal["mean", "sum"]
ARCHS, DEC_UP, DEC_NORM, DISC_POOL = (get_args(t) for t in (Arch, DecUp, DecNorm, DiscPool))
DATA_FIELDS = ("image_size", "channels", "n_classes")  # set from the data a model is trained on

# Hidden sizes used when the config leaves them as None.
_ENC_HIDDEN = {"small": 256, "paper_faces": 1024, "paper_cifar": 1024}
_DISC_HIDDEN = {"small": 256, "paper_faces": 1024, "paper_cifar": 512}

# Every architecture halves the image 4 times before its fully connected layers.
DOWNSAMPLE = 16

_PRESETS: dict[str, dict[str, Any]] = {
    "small": {},  # the defaults below
    "paper_faces": dict(image_size=64, zs_dim=512, zu_dim=512),
    "paper_cifar": dict(image_size=32, zs_dim=100, zu_dim=200),
}


@dataclass
class ModelConfig:
    """Architecture and prior settings of Lr-LiVAE (encoders, decoder, classifier, discriminator, prior).

    arch:             "small" | "paper_faces" | "paper_cifar".
    image_size:       input height = width; a multiple of 16.
    channels:         image channels (3 for RGB).
    zs_dim, zu_dim:   sizes of the label-relevant code z_s and the label-irrelevant code z_u.
    n_classes:        number of classes C (identities).
    width:            channel multiplier of the "small" nets: 1.0 = 16, 32, 64, 128 channels
                      (ignored by the paper architectures).
    dec_width:        the "small" decoder's own channel multiplier (None: `width`).
    dec_depth:        extra conv3x3-BN-ReLU layers at each scale of the "small" decoder (0: none).
    dec_head:         conv3x3-norm-ReLU layers of the "small" decoder at the image's full resolution, between
                      its last doubling (then to 16w channels, normalised) and a conv3x3 to the image channels
                      (0: the last doubling goes straight to the image channels).
    dec_up:           how the decoder doubles the image: "transpose" (a 4x4 / 5x5 transposed convolution, the
                      paper) or "resize" (nearest-neighbour upsampling then a conv3x3; no checkerboard,
                      Odena et al. 2016).
    dec_norm:         the decoder's normalisation: "batch" (BatchNorm, the paper: training-mode outputs depend
                      on the rest of the batch and differ from eval mode) or "group" (GroupNorm with 8 groups:
                      every image is normalised on its own, the same in training and in use) or "none".
    disc_pool:        how the discriminator pools its last feature map: "mean" or "sum" (sum keeps the
                      scale of the features under spectral normalisation, as SN-GAN's ResNet D does).
    enc_hidden:       width of the encoders' fc layer (None: 256 small, 1024 paper).
    adv_hidden:       hidden width of the adversarial classifier on z_u (paper: 256).
    disc_hidden:      width of the discriminator's fc layer and label embedding
                      (None: 256 small, 1024 paper_faces, 512 paper_cifar).
    logvar_bound:     Encoder^u log-variances are soft-clamped to (-logvar_bound, logvar_bound).
    gm_var_min/max:   bounds of the GM prior's per-class variances sigma_c^2.
    gm_mean_init:     GM means start as N(0, (gm_mean_init^2 / zs_dim) I), so |mu_c| is about gm_mean_init.
    gm_var_init:      initial GM variance (every class, every dimension).
    The Annotated bounds are checked where a config is read from a file (params.yaml); `validate` checks
    what every config must satisfy.
    """

    arch: Arch = "small"
    image_size: int = 64
    channels: int = 3
    zs_dim: Annotated[int, Field(ge=1, le=4096)] = 32
    zu_dim: Annotated[int, Field(ge=1, le=4096)] = 32
    n_classes: int = 10
    width: Annotated[float, Field(gt=0, le=16, description="channel multiplier of the small nets")] = 1.0
    dec_width: Annotated[float | None, Field(gt=0, le=16, description="the small decoder's own multiplier "
                                             "(None: width)")] = None
    dec_depth: Annotated[int, Field(ge=0, le=8, description="extra conv3x3 layers at each scale of the small "
                                    "decoder")] = 0
    dec_head: Annotated[int, Field(ge=0, le=4, description="conv3x3 layers of the small decoder at full "
                                   "resolution before its output conv (0: none)")] = 0
    dec_up: Annotated[DecUp, Field(description="decoder upsampling: transposed conv (paper) or nearest + "
                                   "conv3x3")] = "transpose"
    dec_norm: Annotated[DecNorm, Field(description="decoder normalisation: BatchNorm (paper), GroupNorm or none "
                                       "(same in training and use)")] = "batch"
    disc_pool: Annotated[DiscPool, Field(description="the discriminator's global pooling")] = "mean"
    enc_hidden: Annotated[int | None, Field(ge=1)] = None
    adv_hidden: Annotated[int, Field(ge=1)] = 256
    disc_hidden: Annotated[int | None, Field(ge=1)] = None
    logvar_bound: float = 10.0
    gm_var_min: Annotated[float, Field(gt=0)] = 1e-3
    gm_var_max: Annotated[float, Field(gt=0)] = 1e2
    gm_mean_init: Annotated[float, Field(gt=0)] = 1.0
    gm_var_init: Annotated[float, Field(gt=0)] = 1.0

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ derived sizes
    @property
    def enc_hidden_size(self) -> int:
        return self.enc_hidden if self.enc_hidden is not None else _ENC_HIDDEN[self.arch]

    @property
    def disc_hidden_size(self) -> int:
        return self.disc_hidden if self.disc_hidden is not None else _DISC_HIDDEN[self.arch]

    def small_channels(self, width: float | None = None) -> tuple[int, int, int, int]:
        """Channel counts of the four stride-2 blocks of the "small" nets (at `width`, default the config's)."""
        w = self.width if width is None else width
        return tuple(max(4, int(round(c * w))) for c in (16, 32, 64, 128))  # type: ignore[return-value]

    def decoder_channels(self) -> tuple[int, int, int, int]:
        return self.small_channels(self.dec_width)
    # ------------------------------------------------------------------ dict round trip
    def to_dict(self) -> dict[str, Any]:
        """Plain Python values only (str, int, float, None): safe for JSON, YAML and weights_only checkpoints."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        """Build from `to_dict()` output; unknown keys are an error, missing keys take defaults."""
        if not isinstance(d, dict):
            raise TypeError(f"ModelConfig.from_dict expects a dict, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig keys {unknown}; known keys: {sorted(known)}")
        return cls(**d)

    @classmethod
    def preset(cls, arch: str, **overrides: Any) -> "ModelConfig":
        """The paper's sizes for an architecture (faces: 64x64, z 512 + 512; cifar: 32x32, z 100 + 200)."""
        if arch not in _PRESETS:
            raise ValueError(f"unknown arch {arch!r}; expected one of {ARCHS}")
        return cls(**{"arch": arch, **_PRESETS[arch], **overrides})

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"ModelConfig.arch must be one of {ARCHS}, got {self.arch!r}")
        for name in ("image_size", "channels", "zs_dim", "zu_dim", "n_classes", "adv_hidden"):
            _check_int(name, getattr(self, name), minimum=1)
        for name in ("enc_hidden", "disc_hidden"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), minimum=1)
        _check_int("dec_depth", self.dec_depth, minimum=0)
        _check_int("dec_head", self.dec_head, minimum=0)
        for name, allowed in (("dec_up", DEC_UP), ("dec_norm", DEC_NORM), ("disc_pool", DISC_POOL)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"ModelConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.dec_width is not None:
            _check_positive_float("dec_width", self.dec_width)
        for name in ("width", "logvar_bound", "gm_var_min", "gm_var_max", "gm_mean_init", "gm_var_init"):
            _check_positive_float(name, getattr(self, name))
        step = DOWNSAMPLE
        if self.image_size % step or self.image_size < step:
            raise ValueError(
                f"ModelConfig.image_size must be a positive multiple of {step} for arch {self.arch!r}, "
                f"got {self.image_size}"
            )
        if not self.gm_var_min < self.gm_var_max:
            raise ValueError(f"gm_var_min ({self.gm_var_min}) must be below gm_var_max ({self.gm_var_max})")
        if not self.gm_var_min < self.gm_var_init < self.gm_var_max:
            raise ValueError(
                f"gm_var_init ({self.gm_var_init}) must lie strictly inside "
                f"(gm_var_min, gm_var_max) = ({self.gm_var_min}, {self.gm_var_max})"
            )


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"ModelConfig.{name} must be an int, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"ModelConfig.{name} must be >= {minimum}, got {value}")


def _check_positive_float(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"ModelConfig.{name} must be a number, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"ModelConfig.{name} must be a finite number > 0, got {value}")
