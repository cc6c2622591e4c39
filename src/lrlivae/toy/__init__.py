"""The toy example of Sec. 4.1 / Fig. 2: three noisy half circles, x label-relevant and y not.

    data.py     the data set of Appendix B.1
    models.py   the MLP networks of Lr-LiVAE ("ours") and of cVAE-GAN (Bao et al. 2017)
    train.py    one training loop for both models (Algorithm 1 for ours; cVAE-GAN's feature matching)
    metrics.py  per-class std ratio along y and sliced Wasserstein distance to the real distribution
    figure.py   the Fig. 2 panel: generated points per class at several epochs, one row per model
"""
from lrlivae.toy.data import sample_half_circles
from lrlivae.toy.metrics import class_metrics, sliced_wasserstein, std_ratio
from lrlivae.toy.models import ToyCVAEGAN, ToyDiscriminator, ToyLrLiVAE
from lrlivae.toy.train import MODELS, ToyConfig, train_toy

__all__ = ["MODELS", "ToyCVAEGAN", "ToyConfig", "ToyDiscriminator", "ToyLrLiVAE", "class_metrics",
           "sample_half_circles", "sliced_wasserstein", "std_ratio", "train_toy"]
