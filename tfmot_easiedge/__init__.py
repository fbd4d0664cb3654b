"""tfmot-easiedge: global filter pruning (EasiEdge) for Keras 3 CNNs."""
from tfmot_easiedge._version import __version__

__all__ = ["__version__"]
