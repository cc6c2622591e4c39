"""Networks of Lr-LiVAE: encoders, decoder, adversarial classifier, projection discriminator, the model."""
from lrlivae.nn.classifier import AdversarialClassifier
from lrlivae.nn.config import ARCHS, ModelConfig
from lrlivae.nn.decoder import Decoder
from lrlivae.nn.discriminator import Discriminator, frozen_spectral_norm
from lrlivae.nn.encoders import EncoderS, EncoderU
from lrlivae.nn.model import (Encoded, Generated, LrLiVAE, Reconstruction, build_discriminator, build_model,
                              count_parameters)

__all__ = [
    "ARCHS", "AdversarialClassifier", "Decoder", "Discriminator", "Encoded", "EncoderS", "EncoderU",
    "Generated", "LrLiVAE", "ModelConfig", "Reconstruction", "build_discriminator", "build_model",
    "count_parameters", "frozen_spectral_norm",
]
