"""Plan + model -> slim model (channels removed) or masked model (channels cut at their consumers)."""
from tfmot_easiedge.rewrite.batchnorm import recalibrate_batchnorm
from tfmot_easiedge.rewrite.slim import masked_copy, slim

__all__ = ["masked_copy", "recalibrate_batchnorm", "slim"]
