"""Plan + model -> slim model (channels removed) or masked model (channels cut at their consumers).

``rewrite.clone`` is the one graph clone every rebuilt model goes through (``slim``, ``masked_copy``,
``prune_filters`` and the ADMM state's unwrapped view), so they all keep the original's I/O structure.
"""
from tfmot_easiedge.rewrite.batchnorm import recalibrate_batchnorm
from tfmot_easiedge.rewrite.slim import masked_copy, slim

__all__ = ["masked_copy", "recalibrate_batchnorm", "slim"]
