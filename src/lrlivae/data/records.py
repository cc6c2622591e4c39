"""Moved to lrlivae.records (faces/ and data/ both read it; neither imports the other). This name stays an alias."""
import sys

from lrlivae import records as _moved

sys.modules[__name__] = _moved
