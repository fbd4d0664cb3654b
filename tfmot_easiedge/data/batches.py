"""Input adaptation, for every package: data in any common form -> checked batches or per-input arrays.

* :func:`iterate_batches` turns arrays, ``(x, y)`` tuples, dicts keyed by input name or a ``tf.data.Dataset``
  into ``(x, y or None)`` batches, checking each for NaN and inf as it is read (calibration, BN re-estimation,
  ADMM's Z-step);
* :func:`input_specs` and :func:`as_input_arrays` read a model's inputs and turn sample data into one
  ``[N, ...]`` array per input (export verification, int8 calibration, latency);
* :func:`check_batch`, :func:`input_rank`, :func:`check_finite` and :func:`non_finite_kinds`: the shape and
  value checks with messages that say what was got and what was expected.

Importing this module imports NumPy only; TensorFlow is touched only when the data already is a TensorFlow
object.
"""
from __future__ import annotations

import dataclasses
import sys
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

# A tf.data.Dataset or generator is read at most this far (an infinite ``.repeat()`` must not hang).
MAX_MATERIALIZED_SAMPLES = 10_000
# Random samples made when a model must be run and no data is given.
N_RANDOM_SAMPLES = 8
RANDOM_SEED = 0
#: Examples checked per pass of :func:`check_finite` are capped at about this many values, so that the
#: boolean mask it builds stays small next to the data.
_FINITE_CHUNK_VALUES = 1 << 22


class DataError(ValueError):
    """Data that cannot be used: missing, empty, corrupt, inconsistent, or not fitting the model."""


# --------------------------------------------------------------------------- value checks


def is_float(dtype: np.dtype) -> bool:
    """Floating or complex dtypes, including ml_dtypes' ``bfloat16``/``float8`` (kind ``V``).

    Example:
        >>> is_float(np.dtype("float16")), is_float(np.dtype("int8"))
        (True, False)
    """
    return dtype.kind in "fc" or (dtype.kind == "V" and "float" in dtype.name)


def non_finite_kinds(values: np.ndarray) -> str:
    """What ``values`` holds that is not finite: ``"NaN"``, ``"inf"``, ``"-inf"`` or several joined by "and".

    Example:
        >>> non_finite_kinds(np.array([1.0, np.nan, -np.inf]))
        'NaN and -inf'
    """
    if values.dtype.kind == "c":
        values = np.concatenate([values.real.ravel(), values.imag.ravel()])
    values = np.asarray(values, dtype=np.float64) if values.dtype.kind == "V" else values
    found = [name for name, test in (("NaN", np.isnan), ("inf", np.isposinf), ("-inf", np.isneginf))
             if test(values).any()]
    return " and ".join(found) or "non-finite values"


def check_finite(x: Any, what: str = "data", offset: int = 0) -> None:
    """Raises when a floating-point array holds NaN or inf, naming the first such example.

    Integer and boolean arrays (and anything that is not numbers) pass unchecked. The check is
    ``np.isfinite`` over the array, in slices of whole examples so that its mask stays small.

    Args:
        x: an array (or array-like: a ``tf.Tensor``, a list), batch first.
        what: what ``x`` is, for the message (``"calibration data"``, a file name).
        offset: the global index of ``x[0]`` when ``x`` is one batch of a larger whole, so that the message
            gives the example's index in the whole data.

    Raises:
        DataError: (a ``ValueError``) a one-line message with the first bad example's index, what it holds
            (NaN, inf, -inf) and how many values of ``x`` are not finite.

    Example:
        >>> check_finite(np.arange(6).reshape(3, 2))  # integers: nothing to check
        >>> try:
        ...     check_finite(np.array([[0.0, 1.0], [np.inf, np.nan]]), "batch", offset=64)
        ... except ValueError as e:
        ...     print(e)
        batch: example 65 contains NaN and inf (2 non-finite values in examples 64..65); expected finite numbers
    """
    arr = np.asarray(x)
    if not is_float(arr.dtype) or arr.size == 0:
        return
    if arr.ndim == 0:
        arr = arr.reshape(1)
    n = arr.shape[0]
    step = max(1, _FINITE_CHUNK_VALUES // max(1, arr[0].size))
    for start in range(0, n, step):
        finite = np.isfinite(arr[start:start + step])
        if finite.all():
            continue
        bad = ~finite.reshape(finite.shape[0], -1).all(axis=1)
        first = start + int(np.argmax(bad))
        count = int((~finite).sum()) + sum(int((~np.isfinite(arr[s:s + step])).sum())
                                           for s in range(start + step, n, step))
        raise DataError(f"{what}: example {offset + first} contains {non_finite_kinds(arr[first])} ({count} "
                        f"non-finite value{'s' if count != 1 else ''} in examples {offset}..{offset + n - 1}); "
                        "expected finite numbers")


def _check_finite_inputs(x: Any, what: str, offset: int) -> None:
    if isinstance(x, Mapping):
        for name, value in x.items():
            check_finite(value, f"{what} (input {name!r})", offset)
    else:
        check_finite(x, what, offset)


# --------------------------------------------------------------------------- shape checks


def input_rank(model: Any) -> int:
    """Rank (batch axis included) of the model's first input, e.g. 4 for images."""
    return len(model.inputs[0].shape)


def _fits(expected: tuple, got: tuple) -> bool:
    return len(got) == len(expected) and all(e is None or e == g for e, g in zip(expected, got))


def check_batch(model: Any, x: Any) -> None:
    """A clear error when a batch does not fit the model's input shape.

    ``x`` is an array for the model's first input, or a dict keyed by input name (each named input checked).

    Raises:
        ValueError: a shape (without the batch axis) that differs from the model's, or a dict without an
            input the model has.
    """
    if isinstance(x, Mapping):
        for tensor in model.inputs:
            name = getattr(tensor, "name", None)
            if name not in x:
                raise ValueError(f"calibration inputs have keys {sorted(x)}; expected the model input names "
                                 f"{[t.name for t in model.inputs]}")
            _check_one(tuple(tensor.shape[1:]), tuple(np.shape(x[name])[1:]), f" for input {name!r}")
        return
    _check_one(tuple(model.inputs[0].shape[1:]), tuple(np.shape(x)[1:]), "")


def _check_one(expected: tuple, got: tuple, where: str) -> None:
    if not _fits(expected, got):
        raise ValueError(f"calibration inputs have shape {got} per example{where} but the model expects {expected}")


# --------------------------------------------------------------------------- batches


def is_dataset(data: Any) -> bool:
    """True for a ``tf.data.Dataset`` (without importing TensorFlow when nothing has)."""
    tf = sys.modules.get("tensorflow")
    return tf is not None and hasattr(tf, "data") and isinstance(data, tf.data.Dataset)


def num_examples(x: Any) -> int:
    """Examples in ``x``: an array's first axis, or the common first axis of a dict's values.

    Raises:
        ValueError: dict values with different example counts.
    """
    if isinstance(x, Mapping):
        counts = {name: _length(value) for name, value in x.items()}
        if len(set(counts.values())) != 1:
            raise ValueError(f"inputs have different example counts {counts}; expected the same for every input")
        return next(iter(counts.values()))
    return _length(x)


def _length(value: Any) -> int:
    shape = getattr(value, "shape", None)  # a tensor's static shape: no copy to NumPy
    return int(shape[0]) if shape is not None and len(shape) and shape[0] is not None else len(value)


def _take(x: Any, start: int, stop: int) -> Any:
    if isinstance(x, Mapping):
        return {name: value[start:stop] for name, value in x.items()}
    return x[start:stop]


def _split(element: Any) -> tuple[Any, Any]:
    """``(x, y or None)`` of an element ``x``, ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``."""
    if isinstance(element, (tuple, list)):
        if not element:
            raise ValueError("got an empty tuple as a data element; expected x, (x, y) or (x, y, sample_weight)")
        return element[0], (element[1] if len(element) > 1 else None)
    return element, None


def _element_rank(spec: Any) -> int | None:
    spec = spec[0] if isinstance(spec, (tuple, list)) else spec
    if isinstance(spec, Mapping):
        spec = next(iter(spec.values()))
    return spec.shape.rank


def iterate_batches(data: Any, batch_size: int = 64, max_examples: int | None = None,
                    input_rank: int | None = None, *, what: str = "calibration data") -> Iterator[tuple]:
    """Yields ``(x, y)`` batches from arrays, ``(x, y)`` tuples, dicts of arrays, a ``tf.data.Dataset`` or a
    ``keras.utils.PyDataset`` (any object with ``__len__`` batches and ``__getitem__(i)`` returning batch i,
    used with its own batching).

    ``data`` (or each dataset element) may be ``x``, ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``, where
    ``x`` is an array or a dict ``{input name: array}`` (the Keras convention for named inputs; batches then
    keep it a dict). A dataset is used with the batching it has when its elements are already batched (rank
    of x = ``input_rank``, the model input's rank with the batch axis), else batched here. ``y`` is None when
    the data has no labels. Every batch of floating-point ``x`` is checked for NaN and inf as it is read
    (``what`` names the data in the message).

    Raises:
        ValueError: missing or empty data, x and y of different lengths, or an ``x`` holding NaN or inf (a
            :class:`DataError` naming the first such example by its index in ``data``).

    Example:
        >>> x, y = np.zeros((5, 3), "float32"), np.arange(5)
        >>> [(bx.shape, by.tolist()) for bx, by in iterate_batches((x, y), batch_size=2, max_examples=4)]
        [((2, 3), [0, 1]), ((2, 3), [2, 3])]
    """
    if data is None:
        raise ValueError("this importance criterion needs calibration data (arrays or a tf.data.Dataset)")
    if is_dataset(data):
        batches = _dataset_batches(data, batch_size, max_examples, input_rank)
    elif is_batch_sequence(data):
        batches = _sequence_batches(data, max_examples)
    else:
        batches = _array_batches(data, batch_size, max_examples)
    seen = 0
    for x, y in batches:
        _check_finite_inputs(x, what, seen)
        seen += num_examples(x)
        yield x, y
    if seen == 0:
        raise ValueError(f"{what} is empty; expected at least one example")


def is_batch_sequence(data: Any) -> bool:
    """A ``keras.utils.PyDataset`` (or the older ``Sequence``): batches by index, ``len()`` of them.

    Duck-typed (``__getitem__``, ``__len__`` and ``on_epoch_end``), so checking it imports no Keras.
    """
    return (not isinstance(data, (np.ndarray, tuple, list, Mapping)) and hasattr(data, "__getitem__")
            and hasattr(data, "__len__") and hasattr(data, "on_epoch_end"))


def _sequence_batches(data: Any, max_examples: int | None):
    return _up_to(max_examples, (data[i] for i in range(len(data))))


def _dataset_batches(data: Any, batch_size: int, max_examples: int | None, input_rank: int | None):
    if input_rank is not None and _element_rank(data.element_spec) == input_rank - 1:
        data = data.batch(batch_size)
    return _up_to(max_examples, data)


def _up_to(max_examples: int | None, elements: Any) -> Iterator[tuple]:
    """``(x, y)`` of each pre-batched element, the last one cut so that at most ``max_examples`` are yielded."""
    seen = 0
    for element in elements:
        x, y = _split(element)
        if max_examples is not None:
            take = max_examples - seen
            if take <= 0:
                break
            x, y = _take(x, 0, take), None if y is None else y[:take]
        seen += num_examples(x)
        yield x, y


def _array_batches(data: Any, batch_size: int, max_examples: int | None):
    x, y = _split(data) if isinstance(data, (tuple, list)) else (data, None)
    x = {k: np.asarray(v) for k, v in x.items()} if isinstance(x, Mapping) else np.asarray(x)
    if not isinstance(x, Mapping) and x.ndim == 0:
        raise ValueError(f"got data of type {type(data).__name__}; expected arrays, (x, y) tuples, a dict of "
                         "arrays keyed by input name, or a tf.data.Dataset")
    n_x = num_examples(x)
    if y is not None:
        y = np.asarray(y)
        if len(y) != n_x:
            raise ValueError(f"calibration x has {n_x} examples but y has {len(y)}")
    n = n_x if max_examples is None else min(n_x, max_examples)
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        yield _take(x, start, stop), None if y is None else y[start:stop]


# --------------------------------------------------------------------------- per-input arrays


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """Name, shape (with ``None`` for unknown sizes, batch first) and NumPy dtype of one model input."""

    name: str
    shape: tuple
    dtype: np.dtype


def input_specs(model: Any) -> list[InputSpec]:
    """The model's inputs, in ``model.inputs`` order.

    Raises:
        ValueError: the model has no symbolic inputs (a subclassed model, or a Sequential without Input).
    """
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise ValueError(
            f"cannot read the inputs of {type(model).__name__} {getattr(model, 'name', '')!r}: got no "
            "model.inputs; expected a functional or Sequential model built from keras.Input(...)"
        )
    return [InputSpec(t.name, tuple(t.shape), np.dtype(str(t.dtype))) for t in inputs]


def to_numpy(value: Any) -> np.ndarray:
    """A NumPy array of an array, a tensor (anything with ``.numpy()``) or an array-like."""
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


def _split_x(element: Any, n_inputs: int) -> Any:
    """The model-input part of an element that may be ``x``, ``(x,)``, ``(x, y)`` or ``(x, y, w)``."""
    if isinstance(element, dict):
        return element
    if isinstance(element, (tuple, list)):
        if n_inputs == 1 or isinstance(element[0], (tuple, list, dict)):
            return element[0]
        return element
    return element


def _per_input(x: Any, specs: Sequence[InputSpec]) -> list[np.ndarray]:
    """One array per model input, batch first, cast to the input dtype."""
    if isinstance(x, dict):
        missing = [s.name for s in specs if s.name not in x]
        if missing:
            raise ValueError(f"input dict has keys {sorted(x)}; expected the model input names "
                             f"{[s.name for s in specs]} (missing {missing})")
        values = [x[s.name] for s in specs]
    elif isinstance(x, (tuple, list)) and len(specs) > 1:
        values = list(x)
    else:
        values = [x]
    if len(values) != len(specs):
        raise ValueError(f"got {len(values)} input arrays; expected {len(specs)} (one per model input "
                         f"{[s.name for s in specs]})")
    arrays = []
    for spec, value in zip(specs, values):
        arr = to_numpy(value)
        if arr.ndim == len(spec.shape) - 1:  # a single unbatched sample
            arr = arr[None]
        if arr.ndim != len(spec.shape):
            raise ValueError(f"input {spec.name!r}: got an array of shape {arr.shape}; expected shape "
                             f"{spec.shape} (batch first) or one sample of shape {spec.shape[1:]}")
        arrays.append(arr.astype(spec.dtype, copy=False))
    return arrays


def _is_dataset_like(data: Any) -> bool:
    return type(data).__name__.endswith("Dataset") and hasattr(data, "as_numpy_iterator")


def _elements(data: Any) -> Iterator[Any]:
    if _is_dataset_like(data):
        return iter(data)
    if callable(data):
        return iter(data())
    if hasattr(data, "__iter__"):
        return iter(data)
    raise TypeError(f"got sample data of type {type(data).__name__}; expected an array, a list/tuple/dict "
                    "of arrays, a tf.data.Dataset, or a callable/iterable yielding samples")


def as_input_arrays(data: Any, specs: Sequence[InputSpec], *, limit: int | None = None) -> list[np.ndarray]:
    """Turns sample or representative data into one ``[N, ...]`` array per model input.

    ``data`` may be an array (single-input model), a list/tuple or dict of arrays (one per input), an
    ``(x, y)`` tuple (``y`` is ignored), a ``tf.data.Dataset`` of ``x`` or ``(x, y)`` (batched or not),
    or a callable / iterable yielding such elements (the ``representative_dataset`` convention of
    ``tf.lite``). Datasets and iterables are read up to ``MAX_MATERIALIZED_SAMPLES`` samples. Samples
    holding NaN or inf are refused (a ``ValueError`` naming the first one): they would calibrate int8
    ranges and verify an export on nothing.

    Example:
        >>> specs = [InputSpec("x", (None, 4), np.dtype("float32"))]
        >>> [a.shape for a in as_input_arrays((np.zeros((5, 4)), np.zeros(5)), specs)]
        [(5, 4)]
    """
    if isinstance(data, np.ndarray) or hasattr(data, "numpy") or isinstance(data, (tuple, list, dict)):
        arrays = _per_input(_split_x(data, len(specs)), specs)
    else:
        cap = min(limit or MAX_MATERIALIZED_SAMPLES, MAX_MATERIALIZED_SAMPLES)
        chunks: list[list[np.ndarray]] = []
        count = 0
        for element in _elements(data):
            chunk = _per_input(_split_x(element, len(specs)), specs)
            chunks.append(chunk)
            count += chunk[0].shape[0]
            if count >= cap:
                break
        if not chunks:
            raise ValueError("the sample data yielded no elements; expected at least one sample")
        arrays = [np.concatenate([c[i] for c in chunks]) for i in range(len(specs))]
    if len({a.shape[0] for a in arrays}) != 1:
        raise ValueError(f"input arrays have different sample counts {[a.shape[0] for a in arrays]}; "
                         "expected the same number of samples for every input")
    if limit is not None:
        arrays = [a[:limit] for a in arrays]
    if arrays[0].shape[0] == 0:
        raise ValueError("got 0 samples; expected at least one")
    for spec, arr in zip(specs, arrays):
        check_finite(arr, f"sample data for input {spec.name!r}")
    return arrays


def random_inputs(specs: Sequence[InputSpec], n: int = N_RANDOM_SAMPLES, *, seed: int = RANDOM_SEED,
                  batch_size: int | None = None) -> list[np.ndarray]:
    """Seeded random inputs: standard normal for floats, 0..255 for uint8, 0/1 for other integers.

    Example:
        >>> [a.shape for a in random_inputs([InputSpec("x", (None, 4), np.dtype("float32"))], 3)]
        [(3, 4)]
    """
    rng = np.random.default_rng(seed)
    arrays = []
    for spec in specs:
        inner = spec.shape[1:]
        if any(d is None for d in inner):
            raise ValueError(f"input {spec.name!r} has shape {spec.shape} with unknown sizes; pass sample "
                             "inputs (sample_inputs= / input_data=) so they can be run")
        shape = (batch_size or n, *inner)
        arr: np.ndarray
        if np.issubdtype(spec.dtype, np.floating):
            arr = rng.standard_normal(shape)
        elif spec.dtype == np.uint8:
            arr = rng.integers(0, 256, shape)
        elif np.issubdtype(spec.dtype, np.integer):
            arr = rng.integers(0, 2, shape)
        elif spec.dtype == np.bool_:
            arr = rng.integers(0, 2, shape).astype(bool)
        else:
            raise ValueError(f"input {spec.name!r}: cannot make random data of dtype {spec.dtype}; pass sample inputs")
        arrays.append(arr.astype(spec.dtype))
    return arrays


__all__ = [
    "MAX_MATERIALIZED_SAMPLES", "N_RANDOM_SAMPLES", "RANDOM_SEED", "DataError", "InputSpec", "as_input_arrays",
    "check_batch", "check_finite", "input_rank", "input_specs", "is_batch_sequence", "is_dataset", "is_float",
    "iterate_batches",
    "non_finite_kinds", "num_examples", "random_inputs", "to_numpy",
]
