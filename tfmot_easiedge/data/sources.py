"""``load_data(spec)``: one entry point for every data source the command line accepts.

Specs:
    * ``cifar10`` or ``cifar10:SPLIT`` (``train``/``test``): the local CIFAR-10 TFRecords when
      :func:`~tfmot_easiedge.data.cifar10_dir` finds them, else ``keras.datasets.cifar10`` (downloaded
      once, then read from Keras's cache).
    * a TFRecord file, or a directory of them, in the CIFAR-10 layout (see :mod:`.tfrecord`).
    * an image folder with one sub-folder per class (see :mod:`.image_folder`).
    * an ``.npz`` archive with ``x`` and ``y`` (see :mod:`.npz`).

Everything is loaded into memory as arrays (a :class:`LoadedData`): the pruning pipeline needs random
calibration subsets, class counts and shape checks before training, and datasets of the size edge
models are pruned on (CIFAR-10: 600 MB as float32) fit. For larger data, call the Python API with a
``tf.data.Dataset``.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from tfmot_easiedge.data._common import LoadedData, make_data
from tfmot_easiedge.data.batches import DataError, check_finite
from tfmot_easiedge.data.cifar10 import CLASS_NAMES, load_cifar10_arrays
from tfmot_easiedge.data.image_folder import read_image_folder
from tfmot_easiedge.data.npz import read_npz
from tfmot_easiedge.data.tfrecord import SUFFIXES as TFRECORD_SUFFIXES
from tfmot_easiedge.data.tfrecord import dataset_arrays, read_tfrecords, tfrecord_files

SPLITS = ("train", "test")


def parse_rescale(text: str | float | None) -> tuple[float, float] | None:
    """Parses ``"SCALE"`` or ``"SCALE,OFFSET"`` (each a number or a fraction like ``1/255``) into ``(scale, offset)``.

    Inputs become ``x * scale + offset``, as ``keras.layers.Rescaling`` does: ``1/255`` maps pixels to
    [0, 1], ``1/127.5,-1`` to [-1, 1].

    Example:
        >>> parse_rescale("1/255")
        (0.00392156862745098, 0.0)
        >>> parse_rescale("1/127.5,-1")
        (0.00784313725490196, -1.0)
    """
    if text is None:
        return None
    if isinstance(text, (int, float)):
        text = float(text)
        if not np.isfinite(text):
            raise DataError(f"rescale {text!r}: the scale must be a finite number, e.g. 1/255")
        return text, 0.0
    parts = str(text).split(",")
    try:
        if len(parts) > 2:
            raise ValueError
        values = [_number(p) for p in parts]
    except (ValueError, ZeroDivisionError):
        raise DataError(f"rescale {text!r} does not parse: expected SCALE or SCALE,OFFSET, e.g. 1/255 or "
                        "1/127.5,-1") from None
    if not all(np.isfinite(values)):
        raise DataError(f"rescale {text!r}: SCALE and OFFSET must be finite numbers, e.g. 1/255 or 1/127.5,-1")
    return values[0], values[1] if len(values) == 2 else 0.0


def _number(text: str) -> float:
    numerator, slash, denominator = text.strip().partition("/")
    return float(numerator) / float(denominator) if slash else float(numerator)


def _cifar10(split: str, limit: int | None, allow_download: bool) -> LoadedData:
    if split not in SPLITS:
        raise DataError(f"cifar10 split {split!r} does not exist; expected one of {', '.join(SPLITS)}")
    try:
        x, y = load_cifar10_arrays(split, limit=limit, allow_download=allow_download)
    except FileNotFoundError as e:
        raise DataError(str(e)) from None
    return make_data(x, y, f"cifar10:{split}", class_names=CLASS_NAMES)


def _tfrecords(path: Path, split: str, limit: int | None, channels: int) -> LoadedData:
    files = tfrecord_files(path, split)
    if not files:
        raise DataError(f"{path}: no TFRecord files ({', '.join(TFRECORD_SUFFIXES)})")
    x, y = dataset_arrays(read_tfrecords(files, limit=limit, channels=channels), str(path))
    return make_data(x, y, ", ".join(str(f) for f in files))


def _read(spec: str, split: str, limit, channels: int, verbose: bool, allow_download: bool) -> LoadedData:
    name, _, spec_split = spec.partition(":")
    if name.lower() == "cifar10" and not os.path.exists(spec):
        return _cifar10(spec_split or split, limit, allow_download)
    path = Path(spec).expanduser()
    if not path.exists():
        raise DataError(f"data not found: {spec} (expected cifar10[:SPLIT], a TFRecord file or folder, an image "
                        "folder or an .npz file)")
    if path.is_dir():
        if (path / split).is_dir():  # a folder holding train/ and test/ splits
            path = path / split
        if tfrecord_files(path, split):
            return _tfrecords(path, split, limit, channels)
        return read_image_folder(path, channels=channels, limit=limit, verbose=verbose)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return read_npz(path, limit=limit)
    if suffix in TFRECORD_SUFFIXES:
        return _tfrecords(path, split, limit, channels)
    raise DataError(f"{spec}: unknown data format {suffix or '(no suffix)'}; expected .npz, "
                    f"{', '.join(TFRECORD_SUFFIXES)}, an image folder or cifar10")


def load_data(spec: str, *, split: str = "train", limit: int | None = None, rescale: str | float | None = None,
              channels: int = 3,
              verbose: bool = False, allow_download: bool = True) -> LoadedData:
    """Loads labelled images from ``spec`` (see the module docstring) into memory.

    Args:
        spec: ``cifar10[:SPLIT]``, a TFRecord file or folder, an image folder, or an ``.npz`` file.
        split: the split to read where the source has several (CIFAR-10, a folder of ``train``/``test``
            sub-folders or of ``train.tfrecord``/``test.tfrecord``); ``cifar10:SPLIT`` overrides it.
        limit: keep only the first ``limit`` examples.
        rescale: ``x * scale + offset`` applied to the inputs: a float, ``(scale, offset)`` or a string for
            :func:`parse_rescale`; None keeps raw pixel values (0..255 floats).
        channels: channels to decode encoded images to (TFRecords, image folders): 1, 3 or 4.
        verbose: let Keras report what it found in an image folder.
        allow_download: for ``cifar10`` without local TFRecords, let Keras download the data.

    Returns:
        A :class:`LoadedData` with float32 ``x``, int64 ``y`` and the class count.

    Raises:
        DataError: (a ``ValueError``) missing, empty, corrupt or inconsistent data, inputs that are NaN or
            inf (before or after the rescale; the message names the first such example), or a bad ``rescale``.

    Example:
        >>> data = load_data("cifar10:test", limit=16, rescale="1/255")  # doctest: +SKIP
        >>> data.x.shape, data.num_classes, float(data.x.max()) <= 1.0  # doctest: +SKIP
        ((16, 32, 32, 3), 10, True)
    """
    if limit is not None and limit < 1:
        raise DataError(f"limit must be >= 1, got {limit}")
    data = _read(str(spec), split, limit, channels, verbose, allow_download)
    scale_offset = rescale if isinstance(rescale, tuple) else parse_rescale(rescale)
    if scale_offset is not None:
        scale, offset = scale_offset
        with np.errstate(over="ignore", invalid="ignore"):  # reported by check_finite
            data = dataclasses.replace(data, x=(data.x * np.float32(scale) + np.float32(offset)).astype(np.float32))
        check_finite(data.x, f"{data.source} (after rescale {scale:g},{offset:g})")  # large scales overflow
    return data
