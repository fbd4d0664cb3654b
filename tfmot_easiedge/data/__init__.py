"""Dataset loaders: CIFAR-10 from local TFRecords (or Keras's download), arrays and datasets."""
from tfmot_easiedge.data.cifar10 import cifar10_dir, load_cifar10, load_cifar10_arrays

__all__ = ["cifar10_dir", "load_cifar10", "load_cifar10_arrays"]
