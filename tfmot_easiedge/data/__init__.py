"""Data sources: ``load_data(spec)`` for CIFAR-10, TFRecords, image folders and ``.npz`` files; ``check_fits``,
``check_finite`` (NaN/inf inputs) and ``check_finite_weights`` (NaN/inf weights).

CIFAR-10 helpers (``load_cifar10`` and friends) read the local TFRecords or Keras's download. Input adaptation
for every package (``iterate_batches``, ``input_specs``, ``as_input_arrays``, shape and finite checks) is in
:mod:`tfmot_easiedge.data.batches`.
"""
from tfmot_easiedge.data._common import LoadedData, make_data
from tfmot_easiedge.data.batches import DataError, check_finite
from tfmot_easiedge.data.checks import check_finite_weights, check_fits
from tfmot_easiedge.data.cifar10 import cifar10_dir, load_cifar10, load_cifar10_arrays
from tfmot_easiedge.data.sources import load_data, parse_rescale

__all__ = ["DataError", "LoadedData", "check_finite", "check_finite_weights", "check_fits", "cifar10_dir",
           "load_cifar10", "load_cifar10_arrays", "load_data", "make_data", "parse_rescale"]
