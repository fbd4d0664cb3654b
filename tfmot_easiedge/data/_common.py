"""What every data reader shares: the loaded-data record, label checks and :func:`make_data`.

The error type and the value checks live in :mod:`tfmot_easiedge.data.batches`, for every package.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from tfmot_easiedge.data.batches import DataError, check_finite, is_float


@dataclasses.dataclass(frozen=True)
class LoadedData:
    """Images and integer labels held in memory, as :func:`tfmot_easiedge.data.load_data` returns them.

    Attributes:
        x: ``float32 [N, ...]`` inputs (raw 0..255 pixel values unless a rescale was applied).
        y: ``int64 [N]`` class indices.
        num_classes: the number of classes: from the class names when the source names them (an image
            folder, CIFAR-10, an ``.npz`` with ``class_names``, one-hot labels), else ``max(y) + 1``.
        class_names: the class names when the source has them, else None.
        source: a short description of where the data came from (for logs and reports).

    Example:
        >>> d = LoadedData(np.zeros((2, 4, 4, 3), "float32"), np.array([0, 1]), 2)
        >>> len(d), d.image_shape
        (2, (4, 4, 3))
    """

    x: np.ndarray
    y: np.ndarray
    num_classes: int
    class_names: tuple[str, ...] | None = None
    source: str = ""

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def image_shape(self) -> tuple[int, ...]:
        """The shape of one example, without the batch axis."""
        return tuple(int(d) for d in self.x.shape[1:])

    def subset(self, n: int | None, *, seed: int = 0) -> LoadedData:
        """``n`` examples drawn without replacement with ``seed``; all of them, in order, when ``n`` is None or >= N."""
        if n is None or n >= len(self):
            return self
        index = np.sort(np.random.default_rng(seed).choice(len(self), int(n), replace=False))
        return dataclasses.replace(self, x=self.x[index], y=self.y[index])

    def describe(self) -> dict:
        """A JSON-able summary: source, example count, example shape, class count."""
        return {"source": self.source, "examples": len(self), "image_shape": list(self.image_shape),
                "num_classes": self.num_classes}


def as_labels(y: Any, what: str) -> tuple[np.ndarray, int | None]:
    """``(int64 labels [N], class count if one-hot else None)`` from ``[N]``, ``[N, 1]`` or one-hot ``[N, C]`` labels.

    Raises:
        DataError: labels that are not non-negative integers, or of another shape.

    Example:
        >>> as_labels(np.array([[0, 1], [1, 0]]), "y")
        (array([1, 0]), 2)
    """
    y = np.asarray(y)
    classes = None
    if y.ndim == 2 and y.shape[1] > 1:
        classes = int(y.shape[1])
        y = np.argmax(y, axis=1)
    elif y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{what}: labels have shape {y.shape}; expected [N] class indices or one-hot [N, classes]")
    if y.size and not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise DataError(f"{what}: labels have dtype {y.dtype}; expected integer class indices")
    if y.size and np.issubdtype(y.dtype, np.floating) and not np.array_equal(y, np.round(y)):
        raise DataError(f"{what}: labels are not whole numbers; expected integer class indices")
    if y.size and y.min() < 0:
        raise DataError(f"{what}: labels contain {int(y.min())}; expected class indices >= 0")
    return y.astype(np.int64), classes


def make_data(x: Any, y: Any, source: str, *, class_names: Sequence[str] | None = None,
              num_classes: int | None = None) -> LoadedData:
    """Checks ``x``/``y`` and returns a :class:`LoadedData` (``x`` as float32).

    Raises:
        DataError: empty data, mismatched lengths, bad labels, more label values than named classes, or
            inputs that are NaN or inf (see :func:`check_finite`).
    """
    x = np.asarray(x)
    if x.ndim == 0 or x.shape[0] == 0:
        raise DataError(f"{source}: no examples")
    y, one_hot_classes = as_labels(y, source)
    if len(y) != x.shape[0]:
        raise DataError(f"{source}: x has {x.shape[0]} examples but y has {len(y)}; expected the same number")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise DataError(f"{source}: x has dtype {x.dtype}; expected numbers")
    check_finite(x, source)
    names = tuple(str(n) for n in class_names) if class_names is not None else None
    count = num_classes or one_hot_classes or (len(names) if names else None) or int(y.max()) + 1
    if int(y.max()) >= count:
        raise DataError(f"{source}: labels go up to {int(y.max())} but there are {count} classes")
    with np.errstate(over="ignore"):  # an overflow to inf is reported below
        x32 = x.astype(np.float32, copy=False)
    if x32 is not x and is_float(x.dtype) and x.dtype.itemsize > 4:  # finite float64 may overflow float32
        check_finite(x32, f"{source} (as float32)")
    return LoadedData(x32, y, int(count), names, source)
