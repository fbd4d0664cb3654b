"""``check_fits(model, data)``: a clear error before training when data and model do not match."""
from __future__ import annotations

from tfmot_easiedge.data._common import DataError, LoadedData


def model_io(model) -> tuple[tuple, int]:
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


def check_fits(model, data: LoadedData, what: str = "data") -> None:
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
