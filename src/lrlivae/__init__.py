"""Lr-LiVAE: a VAE whose latent space is split into label-relevant (z_s) and label-irrelevant (z_u)
dimensions (Zheng and Sun, CVPR 2019)."""

__version__ = "0.1.0"
