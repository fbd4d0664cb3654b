"""Keras model -> TensorFlow SavedModel (inference only), the input of the other converters."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfmot_easiedge import _files
from tfmot_easiedge.data import batches, checks
from tfmot_easiedge.export import _common

if TYPE_CHECKING:
    from collections.abc import Sequence

    import keras

DEFAULT_TOLERANCE = 1e-4


def write_saved_model(model: keras.Model, directory: str | os.PathLike) -> None:
    """Writes ``model.export(directory)`` (a Keras 3 ``ExportArchive`` with a ``serve`` endpoint) silently."""
    model.export(str(directory), format="tf_saved_model", verbose=False)


def load_signature_runner(directory: str | os.PathLike, specs: Sequence[batches.InputSpec]
                          ) -> tuple[_common.RunFn, str]:
    """A ``RunFn`` calling the ``serving_default`` signature of a SavedModel; returns (run, runtime name)."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(directory))
    signature = loaded.signatures["serving_default"]
    arg_names = list(signature.structured_input_signature[1])

    def run(batch):
        if len(specs) == 1 and len(arg_names) == 1:
            feed = {arg_names[0]: tf.constant(batch[0])}
        else:
            feed = {spec.name: tf.constant(arr) for spec, arr in zip(specs, batch)}
        return ordered_outputs(signature(**feed))

    run.keep_alive = loaded  # type: ignore[attr-defined]  # the signature needs the loaded object's variables
    return run, f"tensorflow {tf.__version__}"


def ordered_outputs(outputs: dict) -> list:
    """Signature outputs in Keras order: ``output_0, output_1, ...`` by index, else by sorted key."""
    keys = list(outputs)
    if all(k.startswith("output_") and k[7:].isdigit() for k in keys):
        keys.sort(key=lambda k: int(k[7:]))
    else:
        keys.sort()
    return [outputs[k].numpy() if hasattr(outputs[k], "numpy") else outputs[k] for k in keys]


def saved_model(model: keras.Model, path: str | os.PathLike, *, overwrite: bool = False, verify: bool = True,
                sample_inputs: Any = None, tolerance: float | None = DEFAULT_TOLERANCE) -> _common.ExportResult:
    """Exports ``model`` as an inference-only TensorFlow SavedModel directory with Keras's ``model.export``.

    The directory holds a ``serving_default`` signature whose inputs are named after the Keras inputs and
    whose outputs are ``output_0, output_1, ...``. It is written to a temporary directory next to ``path``,
    reloaded with ``tf.saved_model.load`` and compared with Keras, then renamed into place.

    Args:
        model: a functional or Sequential Keras model built from ``keras.Input``.
        path: the SavedModel directory to create.
        overwrite: replace an existing ``path`` (else FileExistsError).
        verify: reload the SavedModel and compare it with Keras.
        sample_inputs: inputs for the check (array, list/dict of arrays, ``tf.data.Dataset``); default
            8 seeded random samples of the model's input shape.
        tolerance: largest accepted max relative difference (None: measure only).

    Returns:
        An :class:`ExportResult` with ``format="saved_model"``.

    Raises:
        ValueError: a weight of ``model`` (or a sample) holding NaN or inf.
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ExportVerificationError: the reloaded model differs from Keras by more than ``tolerance``.

    Example:
        >>> import keras
        >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        >>> export.saved_model(m, "/tmp/dense_sm", overwrite=True).format  # doctest: +SKIP
        'saved_model'
    """
    watch = _common.Stopwatch()
    specs = batches.input_specs(model)
    checks.check_finite_weights(model)  # a diverged model would convert, and verify, without complaint
    final = _files.check_target(path, overwrite)
    inputs = _common.verification_inputs(specs, sample_inputs) if verify else None
    metrics, runtime = None, ""
    with _files.atomic_output(final, overwrite=overwrite) as tmp:
        write_saved_model(model, tmp)
        if verify:
            assert inputs is not None  # made above when verifying
            run, runtime = load_signature_runner(tmp, specs)
            metrics = _common.verify(model, lambda b: _common.run_in_chunks(run, b, 64), inputs,
                                     what="SavedModel", tolerance=tolerance)
            del run
    return _common.make_result("saved_model", Path(final), "float32", metrics, runtime, watch)
