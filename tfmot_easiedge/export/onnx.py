"""Keras model -> ONNX through tf2onnx (Keras's own ``model.export(format="onnx")``), verified with onnxruntime."""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfmot_easiedge import _files, _optional
from tfmot_easiedge.data import batches, checks
from tfmot_easiedge.export import _common

if TYPE_CHECKING:
    from collections.abc import Sequence

    import keras

# Opset 17 is read by every maintained runtime (onnxruntime >= 1.13, TensorRT >= 8.6, OpenVINO) and has
# LayerNormalization; tf2onnx 1.16-1.17 writes opsets 13..18.
DEFAULT_OPSET = 17
MIN_OPSET = 13
DEFAULT_TOLERANCE = 1e-3
_VERIFY_CHUNK = 64
_PURPOSE = "ONNX export"


def _check_opset(opset) -> int:
    tf2onnx = _optional.import_optional("tf2onnx", "onnx", _PURPOSE)
    supported = sorted(getattr(getattr(tf2onnx, "constants", None), "OPSET_TO_IR_VERSION", {}) or [])
    opset = DEFAULT_OPSET if opset is None else opset
    if not isinstance(opset, int) or isinstance(opset, bool) or opset < MIN_OPSET or (
            supported and opset > supported[-1]):
        top = supported[-1] if supported else "?"
        raise ValueError(f"opset must be an int in [{MIN_OPSET}, {top}] (tf2onnx "
                         f"{getattr(tf2onnx, '__version__', '?')}); got {opset!r}")
    return opset


def write_onnx(model: keras.Model, path: str | os.PathLike, opset: int) -> None:
    """Converts with ``model.export(format="onnx")``, which patches tf2onnx for NumPy 2 before using it."""
    _optional.import_optional("tf2onnx", "onnx", _PURPOSE)
    if not getattr(model, "_called", True):
        # Keras refuses to export a model never called ("The model provided has never called"), even a
        # functional one whose inputs are known; one forward pass on a random sample sets the flag.
        sample = batches.random_inputs(batches.input_specs(model), 1)
        model(sample[0] if len(sample) == 1 else sample, training=False)
    with warnings.catch_warnings():
        # Keras's tf2onnx patch defines np.object for NumPy 2 and NumPy warns about it.
        warnings.simplefilter("ignore", FutureWarning)
        model.export(str(path), format="onnx", opset_version=opset, verbose=False)


def session_runner(model_path: str | os.PathLike, specs: Sequence[batches.InputSpec] | None = None, *,
                   threads: int | None = None) -> tuple[_common.RunFn, Any, str]:
    """An onnxruntime CPU session for ``model_path`` as a ``RunFn``; returns (run, session, runtime name)."""
    ort = _optional.import_optional("onnxruntime", "onnx", "running an ONNX file")
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    onnx_names = [i.name for i in session.get_inputs()]

    def run(batch):
        names = onnx_names
        if specs is not None and len(specs) > 1 and all(s.name in onnx_names for s in specs):
            names = [s.name for s in specs]  # tf2onnx keeps the Keras input names
        return session.run(None, dict(zip(names, batch)))

    return run, session, _optional.package_version(ort)


def onnx(model: keras.Model, path: str | os.PathLike, *, opset: int | None = None, overwrite: bool = False,
         verify: bool = True, sample_inputs: Any = None, tolerance: float | None = DEFAULT_TOLERANCE
         ) -> _common.ExportResult:
    """Exports ``model`` to an ``.onnx`` file with tf2onnx, verified with onnxruntime against Keras.

    The graph keeps Keras's NHWC layout (tf2onnx inserts the transposes around convolutions), the Keras
    input names, and a dynamic batch dimension.

    Args:
        model: a functional or Sequential Keras model built from ``keras.Input``.
        path: the ``.onnx`` file to write.
        opset: ONNX opset version; default :data:`DEFAULT_OPSET` (17).
        overwrite: replace an existing ``path`` (else FileExistsError).
        verify: run the file with onnxruntime and compare it with Keras before writing it.
        sample_inputs: inputs for the check (array, list/dict of arrays, ``(x, y)``, ``tf.data.Dataset``);
            default 8 seeded random samples of the model's input shape.
        tolerance: largest accepted max relative difference (None: measure only).

    Returns:
        An :class:`ExportResult` with ``format="onnx"``, ``precision="float32"``.

    Raises:
        MissingDependencyError: tf2onnx (or, with ``verify``, onnxruntime) is not installed.
        ValueError: an opset tf2onnx cannot write, or a weight of ``model`` (or a sample) holding NaN or inf.
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ExportVerificationError: onnxruntime's outputs differ from Keras beyond ``tolerance``.

    Example:
        >>> from tfmot_easiedge import export
        >>> export.onnx(model, "model.onnx").max_rel_diff < 1e-4  # doctest: +SKIP
        True
    """
    watch = _common.Stopwatch()
    opset = _check_opset(opset)
    if verify:
        _optional.import_optional("onnxruntime", "onnx", "verifying an ONNX export")
    specs = batches.input_specs(model)
    checks.check_finite_weights(model)  # a diverged model would convert, and verify, without complaint
    final = _files.check_target(path, overwrite)
    inputs = _common.verification_inputs(specs, sample_inputs) if verify else None
    metrics, runtime = None, ""
    with _files.atomic_output(final, overwrite=overwrite) as tmp:
        write_onnx(model, tmp, opset)
        if verify:
            assert inputs is not None  # made above when verifying
            run, _, runtime = session_runner(tmp, specs)
            metrics = _common.verify(model, lambda b: _common.run_in_chunks(run, b, _VERIFY_CHUNK), inputs,
                                     what=f"ONNX (opset {opset})", tolerance=tolerance)
    return _common.make_result("onnx", Path(final), "float32", metrics, runtime, watch)
