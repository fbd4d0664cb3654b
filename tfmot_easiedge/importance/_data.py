"""Calibration data in any common form -> batches of ``(x, y or None)``."""
from __future__ import annotations

from typing import Iterator

import numpy as np

from tfmot_easiedge.data._common import check_finite


def iterate_batches(data, batch_size: int = 64, max_examples: int | None = None,
                    input_rank: int | None = None, *, what: str = "calibration data") -> Iterator[tuple]:
    """Yields ``(x, y)`` batches from arrays, ``(x, y)`` tuples or a ``tf.data.Dataset``.

    A dataset may yield ``x``, ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``; it is used with the
    batching it has when its elements are already batched (rank of x = ``input_rank``, the model input's
    rank with the batch axis), else batched here. ``y`` is None when the data has no labels. Every batch
    of floating-point ``x`` is checked for NaN and inf as it is read (``what`` names the data in the message).

    Raises:
        ValueError: empty data, x and y of different lengths, or an ``x`` holding NaN or inf (a
            :class:`~tfmot_easiedge.data.DataError` naming the first such example by its index in ``data``).
    """
    import tensorflow as tf

    if data is None:
        raise ValueError("this importance criterion needs calibration data (arrays or a tf.data.Dataset)")
    seen = 0
    if isinstance(data, tf.data.Dataset):
        spec = data.element_spec
        spec = spec[0] if isinstance(spec, (tuple, list)) else spec
        if input_rank is not None and spec.shape.rank == input_rank - 1:
            data = data.batch(batch_size)
        for elem in data:
            x, y = _split(elem)
            if max_examples is not None:
                take = max_examples - seen
                if take <= 0:
                    break
                x, y = x[:take], None if y is None else y[:take]
            check_finite(x, what, offset=seen)
            seen += int(x.shape[0])
            yield x, y
    else:
        x, y = data if isinstance(data, (tuple, list)) else (data, None)
        x = np.asarray(x)
        if y is not None:
            y = np.asarray(y)
            if len(y) != len(x):
                raise ValueError(f"calibration x has {len(x)} examples but y has {len(y)}")
        n = len(x) if max_examples is None else min(len(x), max_examples)
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            check_finite(x[start:stop], what, offset=start)
            seen += stop - start
            yield x[start:stop], None if y is None else y[start:stop]
    if seen == 0:
        raise ValueError("calibration data is empty")


def _split(elem):
    if isinstance(elem, (tuple, list)):
        return elem[0], (elem[1] if len(elem) > 1 else None)
    if isinstance(elem, dict):
        raise ValueError("dict-structured datasets are not supported; map them to (x, y) tuples")
    return elem, None
