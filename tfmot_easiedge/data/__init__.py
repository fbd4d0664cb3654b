"""Data sources: ``load_data(spec)`` for CIFAR-10, TFRecords, image folders and ``.npz`` files; ``check_fits``,
``check_finite`` (NaN/inf inputs) and ``check_finite_weights`` (NaN/inf weights).

CIFAR-10 helpers (``load_cifar10`` and friends) read the local TFRecords or Keras's download.
"""
from tfmot_easiedge.data._common import DataError, LoadedData
from tfmot_easiedge.data.checks import check_finite, check_finite_weights, check_fits
from tfmot_easiedge.data.cifar10 import cifar10_dir, load_cifar10, load_cifar10_arrays
from tfmot_easiedge.data.sources import load_data, parse_rescale

__all__ = ["DataError", "LoadedData", "check_finite", "check_finite_weights", "check_fits", "cifar10_dir",
           "load_cifar10", "load_cifar10_arrays", "load_data", "parse_rescale"]
