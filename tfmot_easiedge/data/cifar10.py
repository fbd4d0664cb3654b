"""CIFAR-10 as TFRecords (``image`` JPEG bytes, ``label`` int64), found locally or downloaded by Keras.

The directory is looked up, in order, from the ``dirpath`` argument, the ``EASIEDGE_CIFAR10_DIR``
environment variable, and ``../shared/data/cifar10`` above the current directory or this package's checkout.
When none holds the TFRecords, :func:`load_cifar10_arrays` falls back to ``keras.datasets.cifar10``
(a download on first use, then Keras's cache).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tfmot_easiedge._network import download_failure_text, is_download_failure
from tfmot_easiedge.data.tfrecord import dataset_arrays, read_tfrecords

if TYPE_CHECKING:
    import tensorflow as tf

ENV_VAR = "EASIEDGE_CIFAR10_DIR"
_SPLITS = {"train": "train.tfrecord", "test": "test.tfrecord"}
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def cifar10_dir(dirpath: str | os.PathLike | None = None) -> Path | None:
    """Returns the directory holding ``train.tfrecord``/``test.tfrecord``, or None when none is found.

    Example:
        >>> d = cifar10_dir()
        >>> d is None or (d / "test.tfrecord").exists()
        True
    """
    if dirpath is not None:  # an explicit directory is used or refused, never silently replaced
        if (Path(dirpath) / _SPLITS["test"]).exists():
            return Path(dirpath).resolve()
        raise FileNotFoundError(f"no CIFAR-10 TFRecords ({', '.join(_SPLITS.values())}) in {dirpath}")
    candidates = []
    if os.environ.get(ENV_VAR):
        candidates.append(Path(os.environ[ENV_VAR]))
    here = Path(__file__).resolve()
    for base in [Path.cwd(), *Path.cwd().parents, *here.parents]:
        candidates.append(base / "shared" / "data" / "cifar10")
        candidates.append(base / ".." / "shared" / "data" / "cifar10")
    for cand in candidates:
        if (cand / _SPLITS["test"]).exists():
            return cand.resolve()
    return None


def load_cifar10(split: str = "train", *, dirpath: str | os.PathLike | None = None,
                 limit: int | None = None) -> tf.data.Dataset:
    """Returns a ``tf.data.Dataset`` of ``(uint8 image (32, 32, 3), int64 label)`` read from the TFRecords.

    Args:
        split: ``"train"`` or ``"test"``.
        dirpath: directory of the TFRecords; see the module docstring for the lookup order.
        limit: keep only the first ``limit`` records (the files are shuffled once, so a prefix is balanced).
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {sorted(_SPLITS)}, got {split!r}")
    d = cifar10_dir(dirpath)
    if d is None:
        raise FileNotFoundError(
            f"CIFAR-10 TFRecords not found; set {ENV_VAR} to the directory holding {_SPLITS[split]}"
        )
    return read_tfrecords([d / _SPLITS[split]], limit=limit, image_shape=(32, 32, 3))


def load_cifar10_arrays(split: str = "train", *, dirpath: str | os.PathLike | None = None, limit: int | None = None,
                        allow_download: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Returns ``(x uint8 [N, 32, 32, 3], y int64 [N])`` from the local TFRecords, else Keras's download.

    Example:
        >>> x, y = load_cifar10_arrays("test", limit=8)  # doctest: +SKIP
        >>> x.shape, y.shape  # doctest: +SKIP
        ((8, 32, 32, 3), (8,))
    """
    if cifar10_dir(dirpath) is not None:
        return dataset_arrays(load_cifar10(split, dirpath=dirpath, limit=limit), f"CIFAR-10 {split}")
    if not allow_download:
        raise FileNotFoundError(f"CIFAR-10 TFRecords not found; set {ENV_VAR}")
    import keras

    from tfmot_easiedge.data.batches import DataError

    try:
        (xtr, ytr), (xte, yte) = keras.datasets.cifar10.load_data()
    except Exception as e:  # noqa: BLE001 - Keras raises a bare Exception("URL fetch failure ...") offline
        if not is_download_failure(e):
            raise
        raise DataError(f"CIFAR-10: no local TFRecords (set {ENV_VAR} to the folder holding train.tfrecord and "
                        f"test.tfrecord) and the download failed ({download_failure_text(e)}); connect to "
                        "the internet or use local data") from None
    x, y = (xtr, ytr) if split == "train" else (xte, yte)
    y = y.reshape(-1).astype(np.int64)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return x, y
