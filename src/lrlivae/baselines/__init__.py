"""The label-conditioned baselines of the paper's comparison: cVAE, cGAN (projection discriminator) and
cVAE-GAN, built from Lr-LiVAE's blocks and trained by its loop (Sec. 4.2, Tables 1, 2, 5, 6)."""
from lrlivae.baselines.models import (HAS_DISCRIMINATOR, HAS_ENCODER, KINDS, NAMES, CGAN, CVAE, CVAEGAN,
                                      BaselineConfig, LabelBound, build_baseline, build_discriminator)
from lrlivae.baselines.steps import STEPS, BaselineWeights

__all__ = ["BaselineConfig", "BaselineWeights", "CGAN", "CVAE", "CVAEGAN", "HAS_DISCRIMINATOR", "HAS_ENCODER",
           "KINDS", "LabelBound", "NAMES", "STEPS", "build_baseline", "build_discriminator"]
