"""Checks before training or writing: ``check_fits`` (data against model), ``check_finite`` (no NaN/inf inputs),
``check_finite_weights`` (no NaN/inf weights)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tfmot_easiedge.data._common import LoadedData
from tfmot_easiedge.data.batches import DataError, check_finite, is_float, non_finite_kinds

if TYPE_CHECKING:
    import keras

__all__ = ["check_finite", "check_finite_weights", "check_fits", "model_io", "non_finite_weight"]


def model_io(model: keras.Model) -> tuple[tuple, int]:
    """``(input shape without the batch axis, output units)`` of a single-input, single-output classifier.

    Raises:
        DataError: several inputs or outputs, or an output that is not ``[batch, classes]``.
    """
    inputs, outputs = list(model.inputs or []), list(model.outputs or [])
    if len(inputs) != 1 or len(outputs) != 1:
        raise DataError(f"model {model.name!r} has {len(inputs)} inputs and {len(outputs)} outputs; expected a "
                        "classifier with one image input and one output")
    out_shape = tuple(outputs[0].shape)
    if len(out_shape) != 2 or out_shape[-1] is None or out_shape[-1] < 2:
        raise DataError(f"model {model.name!r} has output shape {out_shape}; expected [batch, classes] with one "
                        "unit per class (2 or more)")
    return tuple(inputs[0].shape[1:]), int(out_shape[-1])


def check_fits(model: keras.Model, data: LoadedData, what: str = "data") -> None:
    """Raises when ``data``'s example shape or classes do not fit ``model``'s input and output.

    A model input size of None accepts any size. The labels must be smaller than the number of output
    units; when the data names its classes (image folder, CIFAR-10, ``class_names``) or is one-hot, the
    class count must equal it.

    Raises:
        DataError: naming what was got and what the model expects.

    Example:
        >>> import keras, numpy as np
        >>> m = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(), keras.layers.Dense(2)])
        >>> try:
        ...     check_fits(m, LoadedData(np.zeros((2, 4, 4, 1), "float32"), np.array([0, 1]), 2))
        ... except ValueError as e:
        ...     print(e)
        data: examples have shape (4, 4, 1) but model 'sequential' expects (4, 4, 3)
    """
    expected, units = model_io(model)
    got = data.image_shape
    label = f"{what} ({data.source})" if data.source else what
    if len(got) != len(expected) or any(e is not None and e != g for e, g in zip(expected, got)):
        raise DataError(f"{label}: examples have shape {got} but model {model.name!r} expects {expected}")
    top = int(data.y.max())
    if top >= units:
        raise DataError(f"{label}: labels go up to {top} but model {model.name!r} has {units} output units")
    if data.num_classes > units or (data.class_names is not None and data.num_classes != units):
        raise DataError(f"{label}: has {data.num_classes} classes but model {model.name!r} has {units} output units")


def check_finite_weights(model: keras.Model, what: str = "model") -> None:
    """Raises when a weight of ``model`` (trainable or not, nested models included) holds NaN or inf.

    Call it before saving or converting a model: a diverged training run leaves weights that are NaN,
    and every runtime would load them without complaint. Integer (quantized) weights are not checked.

    Args:
        model: a Keras model (or layer).
        what: what the model is, for the message.

    Raises:
        ValueError: a one-line message naming the first weight (by its path, which starts with its
            layer) with non-finite values, what they are and how many.

    Example:
        >>> import keras
        >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, name="d")], name="net")
        >>> check_finite_weights(m)
        >>> _ = m.layers[0].bias.assign([float("nan")])
        >>> try:
        ...     check_finite_weights(m)
        ... except ValueError as e:
        ...     print(e)
        model 'net': weight 'net/d/bias' of layer 'd' contains NaN (1 of 1 values); its weights must be finite
    """
    problem = non_finite_weight(model)
    if problem is not None:
        name = getattr(model, "name", None)
        label = f"{what} {name!r}" if name else what
        raise ValueError(f"{label}: {problem}; its weights must be finite")


def non_finite_weight(model: keras.Model) -> str | None:
    """Describes the first weight of ``model`` holding NaN or inf (``"weight 'net/d/bias' of layer 'd'
    contains NaN (1 of 1 values)"``), or None when every floating-point weight is finite."""
    seen: set[int] = set()
    for layer in _layers(model):
        for v in getattr(layer, "weights", []):
            if id(v) in seen:
                continue
            seen.add(id(v))
            values = np.asarray(v.numpy() if hasattr(v, "numpy") else v)
            if not is_float(values.dtype):
                continue
            finite = np.isfinite(values)
            if finite.all():
                continue
            path = getattr(v, "path", None) or getattr(v, "name", "?")
            return (f"weight {path!r} of layer {layer.name!r} contains {non_finite_kinds(values[~finite])} "
                    f"({int((~finite).sum())} of {values.size} values)")
    return None


def _layers(model) -> list:
    """The innermost layers of ``model`` first, so that a weight is named with the layer that owns it."""
    from tfmot_easiedge import _keras_compat as kc  # deferred: the rest of this module needs no Keras

    layers = kc.flatten_layers(model, recursive=True)
    leaves = [l for l in layers if not kc.flatten_layers(l, recursive=False)]
    return [*leaves, *layers, model]
