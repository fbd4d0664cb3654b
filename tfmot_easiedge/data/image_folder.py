"""An image folder with one sub-folder per class (``root/cat/1.jpg``, ``root/dog/2.png``), via Keras.

The image size is taken from the first image found; images of other sizes are resized to it by
``keras.utils.image_dataset_from_directory``. Class indices follow the sorted sub-folder names.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tfmot_easiedge.data._common import LoadedData, make_data
from tfmot_easiedge.data.batches import DataError

if TYPE_CHECKING:
    import os

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".gif")
_COLOR_MODES = {1: "grayscale", 3: "rgb", 4: "rgba"}


def class_folders(root: Path) -> list[Path]:
    """The class sub-folders of ``root`` that hold at least one image, sorted by name."""
    return sorted(d for d in root.iterdir() if d.is_dir() and _first_image(d) is not None)


def _first_image(folder: Path) -> Path | None:
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            return path
    return None


def _image_size(path: Path) -> tuple[int, int]:
    import tensorflow as tf

    try:
        image = tf.io.decode_image(tf.io.read_file(str(path)), expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as e:
        raise DataError(f"{path}: not a readable image ({e.message.splitlines()[0]})") from None
    return int(image.shape[0]), int(image.shape[1])


def read_image_folder(root: str | os.PathLike, *, channels: int = 3, limit: int | None = None,
                      verbose: bool = False) -> LoadedData:
    """Loads an image folder (see the module docstring) into float32 arrays of raw 0..255 pixels.

    Args:
        root: the folder whose sub-folders are the classes.
        channels: 1 (grayscale), 3 (RGB) or 4 (RGBA).
        limit: keep only the first ``limit`` images (in class, then file-name order).
        verbose: let Keras print how many files and classes it found.

    Raises:
        DataError: no class sub-folder with images, an unreadable image, or an unsupported channel count.

    Example:
        >>> data = read_image_folder("flowers/")  # doctest: +SKIP
        >>> data.class_names  # doctest: +SKIP
        ('daisy', 'rose')
    """
    import keras
    import tensorflow as tf

    root = Path(root)
    if channels not in _COLOR_MODES:
        raise DataError(f"{root}: cannot decode images to {channels} channels; expected 1, 3 or 4")
    classes = class_folders(root)
    if not classes:
        raise DataError(f"{root}: no class sub-folders with images ({', '.join(IMAGE_SUFFIXES)}) found")
    first = _first_image(classes[0])
    assert first is not None  # class_folders keeps the folders holding an image
    size = _image_size(first)
    batch_size = 256
    try:
        ds = keras.utils.image_dataset_from_directory(
            str(root), labels="inferred", label_mode="int", class_names=[c.name for c in classes],
            color_mode=_COLOR_MODES[channels], batch_size=batch_size, image_size=size, shuffle=False,
            verbose=verbose)
        if limit is not None:
            ds = ds.take(-(-int(limit) // batch_size))
        xs, ys = [], []
        for x, y in ds:
            xs.append(x.numpy())
            ys.append(y.numpy())
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as e:
        bad = _first_unreadable(classes)
        if bad is not None:
            raise DataError(f"{root}: {bad[0]} is not a readable image ({bad[1]}); remove or replace it") from None
        raise DataError(f"{root}: an image could not be read ({e.message.splitlines()[0]})") from None
    if not xs:
        raise DataError(f"{root}: no images")
    x, y = np.concatenate(xs), np.concatenate(ys)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return make_data(x, y, str(root), class_names=[c.name for c in classes])


def _first_unreadable(classes) -> tuple[Path, str] | None:
    """The first image file (in class, then name order) that TensorFlow cannot decode, with the reason."""
    import tensorflow as tf

    for folder in classes:
        for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            try:
                tf.io.decode_image(tf.io.read_file(str(path)), expand_animations=False)
            except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as e:
                return path, e.message.splitlines()[0].split("}}")[-1].split(" [Op:")[0].strip()
    return None
