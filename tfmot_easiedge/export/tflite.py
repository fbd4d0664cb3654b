"""Keras model -> TensorFlow Lite flatbuffer (float32, float16, dynamic-range or full-integer int8).

The conversion goes Keras -> SavedModel (``model.export``, in a temporary directory) ->
``tf.lite.TFLiteConverter.from_saved_model``: in Keras 3 ``from_keras_model`` takes the same
detour internally but prints the endpoint summary, and ``from_concrete_functions`` needs the
trackable object kept alive by hand. The file is verified with LiteRT (``ai_edge_litert``) when
installed, else with ``tf.lite.Interpreter``.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tfmot_easiedge import _files, _optional
from tfmot_easiedge.data import batches, checks
from tfmot_easiedge.export import _common
from tfmot_easiedge.export.saved_model import ordered_outputs, write_saved_model

if TYPE_CHECKING:
    from collections.abc import Sequence

    import keras

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")
_ALIASES = {None: "float32", "none": "float32", "float32": "float32", "fp32": "float32",
            "float16": "float16", "fp16": "float16", "dynamic": "dynamic", "int8": "int8"}
# Largest accepted max relative difference for float exports (quantized ones are checked by top-1 only).
DEFAULT_TOLERANCE = {"float32": 1e-3, "float16": 5e-2}
_VERIFY_CHUNK = 32


def interpreter_class() -> tuple[Any, str]:
    """LiteRT's ``Interpreter`` when installed, else ``tf.lite.Interpreter``; returns (class, runtime name)."""
    try:
        import ai_edge_litert
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, f"ai_edge_litert {getattr(ai_edge_litert, '__version__', '')}".strip()
    except ImportError as err:
        import tensorflow as tf

        interpreter = getattr(getattr(tf, "lite", None), "Interpreter", None)
        if interpreter is None:
            raise _optional.MissingDependencyError(
                "running a .tflite file needs LiteRT (ai_edge_litert), which could not be imported "
                f"({err}), and this TensorFlow has no tf.lite.Interpreter. Install it with: "
                f"{_optional.install_hint('tflite')}", name="ai_edge_litert") from err
        return interpreter, f"tf.lite {tf.__version__}"


def make_interpreter(model_path: str | os.PathLike, num_threads: int | None = None) -> Any:
    """An interpreter for ``model_path`` (XNNPACK, LiteRT's default CPU delegate, applies itself)."""
    cls, _ = interpreter_class()
    with warnings.catch_warnings():
        # tf.lite.Interpreter warns that it is deprecated in favour of LiteRT; that is the fallback here.
        warnings.simplefilter("ignore")
        return cls(model_path=str(model_path), num_threads=num_threads)


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if detail["dtype"] in (np.float32, np.float16) or scale == 0:
        return x.astype(detail["dtype"])
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(detail["dtype"])


def _dequantize(q: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if scale == 0 or np.issubdtype(q.dtype, np.floating):
        return q
    return (q.astype(np.float32) - zero_point) * scale


def signature_runner(model_path: str | os.PathLike, specs: Sequence[batches.InputSpec], num_threads: int | None = None
                     ) -> _common.RunFn:
    """A ``RunFn`` for a .tflite file with a ``serving_default`` signature (float in, float out).

    Integer inputs/outputs of an ``int8_io`` model are (de)quantized with their scale and zero point so
    the function can be compared with Keras directly.
    """
    interpreter = make_interpreter(model_path, num_threads)
    runner = interpreter.get_signature_runner()
    in_details = runner.get_input_details()
    out_details = runner.get_output_details()

    def run(batch):
        if len(specs) == 1 and len(in_details) == 1:
            names = list(in_details)
        else:
            names = [spec.name for spec in specs]
        feed = {name: _quantize(arr, in_details[name]) for name, arr in zip(names, batch)}
        out = runner(**feed)
        return ordered_outputs({k: _dequantize(v, out_details[k]) for k, v in out.items()})

    return run


def _normalize_quantization(quantization) -> str:
    key = quantization.lower() if isinstance(quantization, str) else quantization
    if key not in _ALIASES:
        raise ValueError(f"quantization must be one of None, {', '.join(repr(q) for q in QUANTIZATIONS)}; "
                         f"got {quantization!r}")
    return _ALIASES[key]


def _representative_dataset(arrays: list[np.ndarray], specs):
    """The ``representative_dataset`` callable: one sample at a time, keyed by input name for multi-input."""

    def gen():
        for i in range(arrays[0].shape[0]):
            if len(specs) == 1:
                yield [arrays[0][i:i + 1]]
            else:
                yield {spec.name: arr[i:i + 1] for spec, arr in zip(specs, arrays)}

    return gen


def convert(model: keras.Model, *, quantization: str = "float32", calibration: list[np.ndarray] | None = None,
            int8_io: bool = False) -> bytes:
    """The TFLite flatbuffer of ``model`` (no file written, no verification).

    Args:
        model: a Keras model.
        quantization: one of :data:`QUANTIZATIONS`.
        calibration: one ``[N, ...]`` array per input; required for ``"int8"``.
        int8_io: make the int8 model take and return int8 tensors instead of float32.
    """
    import tensorflow as tf

    specs = batches.input_specs(model)
    with tempfile.TemporaryDirectory(prefix="easiedge-tflite-") as tmp:
        saved = os.path.join(tmp, "saved_model")
        write_saved_model(model, saved)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        if quantization != "float32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization == "float16":
            converter.target_spec.supported_types = [tf.float16]
        elif quantization == "int8":
            if calibration is None:
                raise ValueError("int8 quantization needs calibration: one [N, ...] array per model input")
            converter.representative_dataset = _representative_dataset(calibration, specs)
            # Full integer: fail loudly instead of silently keeping float ops.
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if int8_io:
                converter.inference_input_type = tf.int8
                converter.inference_output_type = tf.int8
        return converter.convert()


def tflite(model: keras.Model, path: str | os.PathLike, *, quantization: str | None = None,
           representative_data: Any = None, int8_io: bool = False, overwrite: bool = False, verify: bool = True,
           sample_inputs: Any = None, tolerance: float | None = None, min_top1_agreement: float | None = None
           ) -> _common.ExportResult:
    """Exports ``model`` to a ``.tflite`` file, verified with LiteRT against Keras.

    Quantization:
        * ``None`` / ``"float32"``: no quantization.
        * ``"float16"``: float16 weights (half the size; XNNPACK computes in float32).
        * ``"dynamic"``: int8 weights, activations quantized on the fly (no calibration data).
        * ``"int8"``: full-integer weights (per output channel) and activations (per tensor, min/max
          calibrated on ``representative_data``); every op must have an int8 kernel (else the conversion
          fails). Input and output stay float32 (a quantize/dequantize pair at the ends) unless
          ``int8_io=True``, which makes them int8; read their scale/zero point from the interpreter's
          input/output details. Zero-centre the input inside the model (e.g.
          ``Rescaling(1 / 127.5, offset=-1)``): with inputs in [0, 1] every pixel carries a common offset
          that turns the first convolution's weight rounding into a visible error (measured on CIFAR-10:
          3% of top-1 decisions flipped by that layer alone, 0.3% with centred inputs).

    Verification runs the written file on ``sample_inputs`` (else up to 256 samples of
    ``representative_data``, else 8 seeded random samples) and records the max abs/relative difference
    and top-1 agreement. Float exports must stay within ``tolerance`` (default 1e-3 relative for float32,
    5e-2 for float16); quantized ones are only checked when ``min_top1_agreement`` is given.

    Args:
        model: a functional or Sequential Keras model built from ``keras.Input``.
        path: the ``.tflite`` file to write.
        quantization: see above.
        representative_data: calibration samples for ``"int8"``: an array, an ``(x, y)`` tuple, a list or
            dict of arrays (multi-input), a ``tf.data.Dataset`` of ``x`` or ``(x, y)``, or a generator
            function. A few hundred samples of real data are enough (min/max ranges only widen with more);
            all given samples are used (a dataset is read up to 10,000 samples). With other quantizations
            it only supplies verification inputs.
        int8_io: int8 input/output tensors for an ``"int8"`` model (default float32).
        overwrite: replace an existing ``path`` (else FileExistsError).
        verify: run the file and compare it with Keras before writing it.
        sample_inputs: inputs for the check, in the same forms as ``representative_data``.
        tolerance: largest accepted max relative difference (float exports; None: the default above).
        min_top1_agreement: smallest accepted top-1 agreement, e.g. 0.98 (None: not checked).

    Returns:
        An :class:`ExportResult` with ``format="tflite"`` and ``precision`` the quantization.

    Raises:
        ValueError: an unknown quantization, ``"int8"`` without representative data, ``int8_io``
            without ``"int8"``, or a weight of ``model`` (or a sample) holding NaN or inf.
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ExportVerificationError: the file disagrees with Keras beyond the tolerance, or the runtime cannot
            run it (for int8, the message names the tensors that were constant zero on the
            representative data: layers whose kept channels are all dead).

    Example:
        >>> from tfmot_easiedge import export
        >>> r = export.tflite(model, "model_int8.tflite", quantization="int8",
        ...                   representative_data=x_train[:500])  # doctest: +SKIP
        >>> r.top1_agreement  # doctest: +SKIP
        0.992
    """
    watch = _common.Stopwatch()
    precision = _normalize_quantization(quantization)
    if precision == "int8" and representative_data is None:
        raise ValueError("quantization='int8' needs representative_data to calibrate activation ranges: got "
                         "None; expected a few hundred input samples (array, (x, y) tuple or tf.data.Dataset)")
    if int8_io and precision != "int8":
        raise ValueError(f"int8_io=True needs quantization='int8'; got quantization={quantization!r}")
    if verify:
        interpreter_class()  # fail before converting when no runtime can run the file
    specs = batches.input_specs(model)
    checks.check_finite_weights(model)  # a diverged model would convert, and verify, without complaint
    final = _files.check_target(path, overwrite)
    calibration = (batches.as_input_arrays(representative_data, specs)
                   if precision == "int8" else None)
    # Reuse the arrays read for calibration: a generator of representative data can only be read once.
    inputs = (_common.verification_inputs(specs, sample_inputs, calibration or representative_data)
              if verify else None)
    if tolerance is None:
        tolerance = DEFAULT_TOLERANCE.get(precision)
    metrics, runtime = None, ""
    with _files.atomic_output(final, overwrite=overwrite) as tmp:
        flatbuffer = convert(model, quantization=precision, calibration=calibration, int8_io=int8_io)
        with open(tmp, "xb") as f:
            f.write(flatbuffer)
        if verify:
            assert inputs is not None  # made above when verifying
            _, runtime = interpreter_class()
            try:
                run = signature_runner(tmp, specs)
                metrics = _common.verify(
                    model, lambda b: _common.run_in_chunks(run, b, _VERIFY_CHUNK), inputs,
                    what=f"TFLite {precision}", tolerance=tolerance, min_top1_agreement=min_top1_agreement)
            except _common.ExportVerificationError:
                raise
            except RuntimeError as e:  # the runtime could not prepare or run the file
                raise _common.ExportVerificationError(_unrunnable_message(tmp, precision, e)) from e
    return _common.make_result("tflite", Path(final), precision, metrics, runtime, watch)


def verify_file(path: str | os.PathLike, reference: list[np.ndarray], inputs: list[np.ndarray],
                specs: Sequence[batches.InputSpec], *, precision: str = "int8",
                min_top1_agreement: float | None = None) -> tuple[dict, str]:
    """Runs a .tflite file made elsewhere on ``inputs`` and compares it with ``reference`` outputs, as
    :func:`tflite` verifies its own files; returns ``(metrics, runtime)``.

    For files whose source model this process cannot run, e.g. QAT's tf_keras model
    (:func:`tfmot_easiedge.quantize.qat`), which computes ``reference`` in its own process.

    Raises:
        ExportVerificationError: the runtime cannot run the file, or top-1 agreement is below
            ``min_top1_agreement``.

    Example:
        >>> metrics, runtime = verify_file("model_qat.tflite", [logits], [x], specs)  # doctest: +SKIP
    """
    _, runtime = interpreter_class()
    try:
        run = signature_runner(path, specs)
        metrics = _common.verify(None, lambda b: _common.run_in_chunks(run, b, _VERIFY_CHUNK), inputs,
                                 what=f"TFLite {precision}", min_top1_agreement=min_top1_agreement,
                                 reference=reference)
    except _common.ExportVerificationError:
        raise
    except RuntimeError as e:
        raise _common.ExportVerificationError(_unrunnable_message(path, precision, e)) from e
    return metrics, runtime


#: The scale the converter gives a tensor whose calibrated range is empty (constant zero).
_EMPTY_RANGE_SCALE = 1e-7


def zero_range_tensors(model_path: str | os.PathLike) -> list[str]:
    """Names of the int8 tensors of a quantized .tflite file whose calibrated range was empty.

    The converter quantizes a tensor that was constant zero on the representative data (a layer whose
    kept channels are all dead after ReLU, common after heavy pruning) with a scale of about 1e-8; the
    consumers' requantization multipliers then overflow, and LiteRT fails to prepare the model (XNNPACK:
    "failed to create XNNPACK runtime"; the reference kernels abort).
    """
    interpreter = make_interpreter(model_path)
    names = []
    for t in interpreter.get_tensor_details():
        scales = np.asarray(t["quantization_parameters"]["scales"])
        if t["dtype"] == np.int8 and scales.size and float(scales.max()) < _EMPTY_RANGE_SCALE:
            names.append(t["name"])
    return names


def _unrunnable_message(path, precision: str, error: Exception) -> str:
    message = f"TFLite {precision}: the runtime cannot run the converted file ({str(error).rstrip('.')})"
    dead = zero_range_tensors(path) if precision == "int8" else []
    if dead:
        shown = ", ".join(dead[:5]) + (f" and {len(dead) - 5} more" if len(dead) > 5 else "")
        message += (f". {len(dead)} tensor(s) were constant zero on the representative data, so int8 "
                    f"calibration gave them an empty range: {shown}. Their layers' kept channels are all dead "
                    "(never positive after ReLU) on that data, typically after pruning a layer to very few "
                    "channels: keep more of them (select(..., min_fraction=...)), fine-tune, or calibrate on "
                    "data that activates them. Float exports are not affected")
    return message + "; nothing was written."
