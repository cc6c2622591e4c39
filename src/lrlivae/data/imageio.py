"""Moved to lrlivae.imageio (faces/ and data/ both read it; neither imports the other). This name stays an alias."""
import sys

from lrlivae import imageio as _moved

sys.modules[__name__] = _moved
