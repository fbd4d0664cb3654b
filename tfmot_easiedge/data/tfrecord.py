"""Image-classification TFRecords in the CIFAR-10 layout: ``image`` (encoded JPEG/PNG/BMP/GIF bytes), ``label`` (int64).

A path names one file, or a directory: its ``<split>.tfrecord`` when there is one, else every
``*.tfrecord``/``*.tfrecords``/``*.tfrec`` file in it, in name order.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tfmot_easiedge.data.batches import DataError

if TYPE_CHECKING:
    from collections.abc import Sequence

    import tensorflow as tf

SUFFIXES = (".tfrecord", ".tfrecords", ".tfrec")


def tfrecord_files(path: str | os.PathLike, split: str | None = None) -> list[Path]:
    """The TFRecord files a path names (see the module docstring); empty for a directory without any.

    Example:
        >>> import tempfile
        >>> tfrecord_files(tempfile.mkdtemp())
        []
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if split is not None:
        for suffix in SUFFIXES:
            if (path / f"{split}{suffix}").is_file():
                return [path / f"{split}{suffix}"]
    return sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)


def read_tfrecords(files: Sequence[str | os.PathLike], *, limit: int | None = None, channels: int = 3,
                   image_shape: Sequence[int] | None = None) -> tf.data.Dataset:
    """An unbatched ``tf.data.Dataset`` of ``(uint8 image [H, W, channels], int64 label)`` from TFRecord files.

    Args:
        files: TFRecord paths.
        limit: keep only the first ``limit`` records.
        channels: colour channels to decode to (1, 3 or 4).
        image_shape: the known ``(H, W, C)`` of every image, set as the static shape (None: dynamic).
    """
    import tensorflow as tf

    spec = {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)}

    def decode(record):
        example = tf.io.parse_single_example(record, spec)
        image = tf.io.decode_image(example["image"], channels=channels, expand_animations=False)
        if image_shape is not None:
            image.set_shape(image_shape)
        return image, example["label"]

    ds = tf.data.TFRecordDataset([str(f) for f in files])
    if limit is not None:
        ds = ds.take(int(limit))
    return ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)


def dataset_arrays(ds: tf.data.Dataset, what: str, batch_size: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Reads an unbatched ``(image, label)`` dataset into ``(x [N, ...], y [N])`` arrays.

    Raises:
        DataError: a corrupt record or image, images of different sizes, or no examples.
    """
    import tensorflow as tf

    xs, ys = [], []
    try:
        for image, label in ds.batch(batch_size):
            xs.append(image.numpy())
            ys.append(label.numpy())
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
        detail = e.message.splitlines()[0] if e.message else type(e).__name__
        if "Cannot batch tensors with different shapes" in detail or "shapes" in detail.lower():
            raise DataError(f"{what}: images have different sizes; expected one size for all") from None
        raise DataError(f"{what}: corrupt TFRecord data ({detail})") from None
    if not xs:
        raise DataError(f"{what}: no examples")
    return np.concatenate(xs), np.concatenate(ys).astype(np.int64)
