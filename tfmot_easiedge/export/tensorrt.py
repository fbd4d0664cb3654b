"""Keras model -> TensorRT engine (fp32 / fp16 / int8) on an NVIDIA GPU.

TensorFlow >= 2.18 ships without TF-TRT, so the default route is Keras -> ONNX (tf2onnx) -> TensorRT
engine built by the ``tensorrt`` Python package, run for verification with the TensorRT runtime and
the CUDA runtime library (``libcudart``, loaded with ctypes: no pycuda or cuda-python needed). Only when
the installed TensorFlow reports a TensorRT build is TF-TRT (a converted SavedModel directory) offered,
and it is used by ``backend="auto"`` only when the ``tensorrt`` package is missing.

Precision follows the TensorRT 10 builder flags: ``fp16`` lets TensorRT pick half-precision kernels;
``int8`` calibrates activation ranges on ``representative_data`` (entropy calibration) and lets layers
without an int8 kernel fall back to fp16; ``fp32`` also turns TF32 off so that it really is float32.
TensorRT 11 removed these flags (strongly typed networks only): there ``fp16`` converts the ONNX file to
float16 first (needs ``onnxconverter-common``) and ``int8`` is refused, since it needs a Q/DQ-quantized
ONNX model this exporter does not make.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tfmot_easiedge import _files, _optional
from tfmot_easiedge.data import batches, checks
from tfmot_easiedge.export import _common
from tfmot_easiedge.export._cuda import CudaRuntime, TensorRTUnavailableError, cuda_device_count

if TYPE_CHECKING:
    from collections.abc import Callable

    import keras

PRECISIONS = ("fp32", "fp16", "int8")
_ALIASES = {"fp32": "fp32", "float32": "fp32", "fp16": "fp16", "float16": "fp16", "half": "fp16", "int8": "int8"}
_RESULT_PRECISION = {"fp32": "float32", "fp16": "float16", "int8": "int8"}
DEFAULT_TOLERANCE = {"fp32": 1e-3, "fp16": 5e-2}
BACKENDS = ("auto", "onnx", "tf-trt")
_PURPOSE = "TensorRT export"


# --------------------------------------------------------------------------- availability


def _normalize_precision(precision) -> str:
    key = precision.lower() if isinstance(precision, str) else precision
    if key not in _ALIASES:
        raise ValueError(f"precision must be one of {', '.join(repr(p) for p in PRECISIONS)}; got {precision!r}")
    return _ALIASES[key]


def tf_trt_available() -> bool:
    """True when the installed TensorFlow was built with TensorRT (TF-TRT), as TF < 2.18 GPU builds were."""
    import tensorflow as tf

    if not tf.sysconfig.get_build_info().get("is_tensorrt_build", False):
        return False
    try:
        from tensorflow.python.compiler.tensorrt import trt_convert  # noqa: F401
    except ImportError:
        return False
    return True


def _import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as err:
        raise _optional.MissingDependencyError(
            f"{_PURPOSE} needs the 'tensorrt' Python package (TensorRT >= 10) and an NVIDIA GPU; 'tensorrt' "
            f"could not be imported ({err}), and this TensorFlow has no TF-TRT (TensorFlow >= 2.18 ships "
            f"without it). Install it with: {_optional.install_hint('tensorrt')}", name="tensorrt") from err
    return trt


def _choose_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(repr(b) for b in BACKENDS)}; got {backend!r}")
    if backend == "tf-trt":
        if not tf_trt_available():
            import tensorflow as tf

            raise TensorRTUnavailableError(
                f"backend='tf-trt' needs a TensorFlow built with TensorRT; TensorFlow {tf.__version__} reports "
                "is_tensorrt_build=False (TF-TRT is gone from TensorFlow >= 2.18); use backend='onnx'")
        return backend
    if backend == "auto":
        try:
            _import_tensorrt()
        except ImportError:
            if tf_trt_available():
                return "tf-trt"
            raise
        return "onnx"
    _import_tensorrt()
    return backend


def _require_gpu(trt_version: str) -> None:
    count = cuda_device_count()
    if count == 0:
        raise TensorRTUnavailableError(
            f"TensorRT {trt_version} is installed but found no CUDA GPU (cudaGetDeviceCount gave 0 or libcudart "
            "is missing); engines are built for and run on an NVIDIA GPU, so export on a machine with one")


# --------------------------------------------------------------------------- ONNX -> engine


def _major(trt) -> int:
    try:
        return int(str(trt.__version__).split(".")[0])
    except ValueError:
        return 10


def _fp16_onnx(onnx_path: str) -> str:
    """TensorRT >= 11 has no FP16 flag: cast the ONNX model to float16 (float32 I/O kept) instead."""
    try:
        from onnxconverter_common import float16
    except ImportError as err:
        raise _optional.MissingDependencyError(
            "fp16 engines with TensorRT >= 11 need the ONNX model cast to float16 by 'onnxconverter-common', "
            f"which could not be imported ({err}). Install it with: pip install onnxconverter-common",
            name="onnxconverter_common") from err
    import onnx

    model16 = float16.convert_float_to_float16(onnx.load(onnx_path), keep_io_types=True)
    out = os.path.splitext(onnx_path)[0] + "_fp16.onnx"
    onnx.save(model16, out)
    return out


class _Calibrators:
    """Makes an entropy calibrator (TensorRT 10) feeding ``arrays`` in batches from GPU buffers."""

    @staticmethod
    def make(trt, cuda: CudaRuntime, arrays: dict[str, np.ndarray], batch_size: int):
        n = next(iter(arrays.values())).shape[0]

        class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
            def __init__(self):
                trt.IInt8EntropyCalibrator2.__init__(self)
                self.index = 0
                self.buffers = {k: cuda.malloc(v[:batch_size].nbytes) for k, v in arrays.items()}

            def get_batch_size(self):
                return batch_size

            def get_batch(self, names):
                if self.index + batch_size > n:
                    return None
                for name in names:
                    cuda.to_device(self.buffers[name], arrays[name][self.index:self.index + batch_size])
                self.index += batch_size
                return [self.buffers[name] for name in names]

            def read_calibration_cache(self):
                return None

            def write_calibration_cache(self, cache):
                return None

            def free(self):
                for ptr in self.buffers.values():
                    cuda.free(ptr)
                self.buffers = {}

        return EntropyCalibrator()


def _profile(builder, network, shapes: dict[str, tuple], batches: tuple[int, int, int]):
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        if tensor.shape[0] > 0:  # a fixed batch in the ONNX model: nothing to choose
            lo = opt = hi = tuple(tensor.shape)
        else:
            inner = tuple(shapes[tensor.name][1:])
            lo, opt, hi = ((b, *inner) for b in batches)
        profile.set_shape(tensor.name, lo, opt, hi)
    return profile


def build_engine(onnx_path: str, *, precision: str, input_shapes: dict[str, tuple], max_batch_size: int,
                 opt_batch_size: int, calibration: dict[str, np.ndarray] | None = None,
                 workspace_bytes: int = 1 << 30) -> bytes:
    """Builds a serialized TensorRT engine from an ONNX file (dynamic batch 1..``max_batch_size``)."""
    trt = _import_tensorrt()
    major = _major(trt)
    if major >= 11 and precision == "int8":
        raise TensorRTUnavailableError(
            f"TensorRT {trt.__version__} builds int8 engines only from explicitly quantized (Q/DQ) ONNX models, "
            "which this exporter does not make; use TensorRT 10 or export.tflite(..., quantization='int8')")
    if major >= 11 and precision == "fp16":
        onnx_path = _fp16_onnx(onnx_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    with open(onnx_path, "rb") as f:
        if not parser.parse(f.read()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT could not parse the ONNX model: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    config.add_optimization_profile(_profile(builder, network, input_shapes, (1, opt_batch_size, max_batch_size)))
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    if precision in ("fp16", "int8") and major < 11:
        config.set_flag(trt.BuilderFlag.FP16)
    cuda = calibrator = None
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        assert calibration is not None  # the caller passes calibration data for int8
        n = next(iter(calibration.values())).shape[0]
        batch = max(1, min(32, n, max_batch_size))
        cuda = CudaRuntime()
        calibrator = _Calibrators.make(trt, cuda, calibration, batch)
        config.int8_calibrator = calibrator
        config.set_calibration_profile(_profile(builder, network, input_shapes, (batch, batch, batch)))
    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None:
            calibrator.free()
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build a {precision} engine from {onnx_path}; see its log above")
    return bytes(serialized)


def engine_runner(engine_path: str | os.PathLike, input_names: list[str], output_names: list[str]
                  ) -> tuple[_common.RunFn, Callable[[], None]]:
    """A ``RunFn`` running a serialized engine on the GPU; returns (run, close)."""
    trt = _import_tensorrt()
    cuda = CudaRuntime()
    logger = trt.Logger(trt.Logger.WARNING)
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
    if engine is None:
        raise RuntimeError(f"TensorRT could not deserialize the engine {engine_path}")
    context = engine.create_execution_context()
    stream = cuda.stream()

    def run(batch):
        buffers = []
        try:
            for name, arr in zip(input_names, batch):
                arr = np.ascontiguousarray(arr, dtype=trt.nptype(engine.get_tensor_dtype(name)))
                context.set_input_shape(name, arr.shape)
                ptr = cuda.malloc(arr.nbytes)
                buffers.append(ptr)
                cuda.to_device(ptr, arr)
                context.set_tensor_address(name, ptr)
            outputs = []
            for name in output_names:
                out = np.empty(tuple(context.get_tensor_shape(name)), dtype=trt.nptype(engine.get_tensor_dtype(name)))
                ptr = cuda.malloc(out.nbytes)
                buffers.append(ptr)
                context.set_tensor_address(name, ptr)
                outputs.append((out, ptr))
            if not context.execute_async_v3(stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            cuda.synchronize(stream)
            for out, ptr in outputs:
                cuda.to_host(out, ptr)
            return [out for out, _ in outputs]
        finally:
            for ptr in buffers:
                cuda.free(ptr)

    def close():
        cuda.destroy(stream)

    run.keep_alive = (runtime, engine, context)  # type: ignore[attr-defined]  # run needs them alive
    return run, close


def _onnx_io_names(onnx_path: str) -> tuple[list[str], list[str]]:
    import onnx as onnx_lib

    graph = onnx_lib.load(onnx_path, load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    return [i.name for i in graph.input if i.name not in initializers], [o.name for o in graph.output]


def _export_via_onnx(model, tmp: Path, specs, *, precision, opset, calibration, inputs, max_batch_size,
                     opt_batch_size, workspace_bytes):
    from tfmot_easiedge.export.onnx import _check_opset, write_onnx

    _optional.import_optional("tf2onnx", "tensorrt", _PURPOSE)
    opset = _check_opset(opset)
    shapes = {}
    with tempfile.TemporaryDirectory(prefix="easiedge-trt-") as workdir:
        onnx_path = os.path.join(workdir, "model.onnx")
        write_onnx(model, onnx_path, opset)
        onnx_inputs, onnx_outputs = _onnx_io_names(onnx_path)
        names = onnx_inputs if len(specs) == 1 else [s.name for s in specs]
        examples = inputs or calibration or batches.random_inputs(specs, 1)
        for name, spec, example in zip(names, specs, examples):
            shapes[name] = (None, *(d if d is not None else example.shape[i + 1]
                                    for i, d in enumerate(spec.shape[1:])))
        calib = dict(zip(names, calibration)) if calibration is not None else None
        engine = build_engine(onnx_path, precision=precision, input_shapes=shapes, max_batch_size=max_batch_size,
                              opt_batch_size=opt_batch_size, calibration=calib, workspace_bytes=workspace_bytes)
    with open(tmp, "xb") as f:
        f.write(engine)
    return names, onnx_outputs


def _export_via_tf_trt(model, tmp: Path, precision: str, calibration, specs) -> None:
    import tensorflow as tf
    from tensorflow.python.compiler.tensorrt import trt_convert as tftrt

    from tfmot_easiedge.export.saved_model import write_saved_model

    if not tf.config.list_physical_devices("GPU"):
        raise TensorRTUnavailableError("TF-TRT needs a visible GPU; tf.config.list_physical_devices('GPU') is empty")
    with tempfile.TemporaryDirectory(prefix="easiedge-tftrt-") as workdir:
        saved = os.path.join(workdir, "saved_model")
        write_saved_model(model, saved)
        converter = tftrt.TrtGraphConverterV2(input_saved_model_dir=saved, precision_mode=precision.upper(),
                                              use_calibration=precision == "int8")
        if precision == "int8":
            def calibration_input_fn():
                for i in range(0, calibration[0].shape[0], 8):
                    yield tuple(tf.constant(a[i:i + 8]) for a in calibration)

            converter.convert(calibration_input_fn=calibration_input_fn)
        else:
            converter.convert()
        converter.save(str(tmp))


def tensorrt(model: keras.Model, path: str | os.PathLike, *, precision: str = "fp16", representative_data: Any = None,
             backend: str = "auto", opset: int | None = None, max_batch_size: int = 32, opt_batch_size: int = 1,
             workspace_bytes: int = 1 << 30, overwrite: bool = False, verify: bool = True, sample_inputs: Any = None,
             tolerance: float | None = None, min_top1_agreement: float | None = None) -> _common.ExportResult:
    """Exports ``model`` to a TensorRT engine for the local GPU, verified against Keras on that GPU.

    With ``backend="onnx"`` (the default when the ``tensorrt`` package is installed) ``path`` is a serialized
    engine file (``.engine``/``.plan``) for the GPU and TensorRT version it was built with, taking a
    dynamic batch of 1..``max_batch_size``. With ``backend="tf-trt"`` (only for TensorFlow builds with
    TensorRT) ``path`` is a converted SavedModel directory.

    Args:
        model: a functional or Sequential Keras model built from ``keras.Input``.
        path: the engine file (or, for TF-TRT, SavedModel directory) to write.
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"`` (see the module docstring).
        representative_data: calibration samples for ``"int8"`` (same forms as :func:`export.tflite`).
        backend: ``"auto"``, ``"onnx"`` or ``"tf-trt"``.
        opset: ONNX opset of the intermediate ONNX model (default 17).
        max_batch_size: largest batch the engine accepts.
        opt_batch_size: the batch TensorRT tunes kernels for (1 suits edge latency).
        workspace_bytes: TensorRT builder workspace limit.
        overwrite: replace an existing ``path`` (else FileExistsError).
        verify: run the engine and compare it with Keras before writing it.
        sample_inputs: inputs for the check; default representative data, else 8 seeded random samples.
        tolerance: largest accepted max relative difference for fp32/fp16 (default 1e-3 / 5e-2).
        min_top1_agreement: smallest accepted top-1 agreement (None: not checked).

    Returns:
        An :class:`ExportResult` with ``format="tensorrt"`` and ``precision`` ``"float32"``, ``"float16"`` or
        ``"int8"``.

    Raises:
        MissingDependencyError: neither the ``tensorrt`` package nor TF-TRT is available (an ImportError
            whose message carries ``pip install "tfmot-easiedge[tensorrt]"``).
        TensorRTUnavailableError: TensorRT is installed but there is no CUDA GPU / runtime, or the TensorRT
            version cannot build the requested precision.
        ValueError: an unknown precision or backend, ``"int8"`` without representative data, or a weight of
            ``model`` (or a sample) holding NaN or inf.

    Example:
        >>> from tfmot_easiedge import export
        >>> export.tensorrt(model, "model_fp16.engine", precision="fp16").max_rel_diff  # doctest: +SKIP
        0.0009
    """
    watch = _common.Stopwatch()
    precision = _normalize_precision(precision)
    if precision == "int8" and representative_data is None:
        raise ValueError("precision='int8' needs representative_data to calibrate activation ranges: got None; "
                         "expected a few hundred input samples (array, (x, y) tuple or tf.data.Dataset)")
    chosen = _choose_backend(backend)
    if chosen == "onnx":
        trt = _import_tensorrt()
        _require_gpu(trt.__version__)
        runtime = f"tensorrt {trt.__version__}"
    else:
        import tensorflow as tf

        runtime = f"tensorflow {tf.__version__} (TF-TRT)"
    specs = batches.input_specs(model)
    checks.check_finite_weights(model)  # a diverged model would convert, and verify, without complaint
    final = _files.check_target(path, overwrite)
    calibration = batches.as_input_arrays(representative_data, specs) if precision == "int8" else None
    inputs = (_common.verification_inputs(specs, sample_inputs, calibration or representative_data)
              if verify else None)
    if tolerance is None:
        tolerance = DEFAULT_TOLERANCE.get(precision)
    metrics = None
    with _files.atomic_output(final, overwrite=overwrite) as tmp:
        what = f"TensorRT {precision}"
        if chosen == "onnx":
            in_names, out_names = _export_via_onnx(
                model, tmp, specs, precision=precision, opset=opset, calibration=calibration, inputs=inputs,
                max_batch_size=max_batch_size, opt_batch_size=opt_batch_size, workspace_bytes=workspace_bytes)
            if verify:
                assert inputs is not None  # made above when verifying
                run, close = engine_runner(tmp, in_names, out_names)
                try:
                    metrics = _common.verify(model, lambda b: _common.run_in_chunks(run, b, max_batch_size), inputs,
                                             what=what, tolerance=tolerance, min_top1_agreement=min_top1_agreement)
                finally:
                    close()
        else:
            _export_via_tf_trt(model, tmp, precision, calibration, specs)
            if verify:
                from tfmot_easiedge.export.saved_model import load_signature_runner

                assert inputs is not None  # made above when verifying
                run, _ = load_signature_runner(tmp, specs)
                metrics = _common.verify(model, lambda b: _common.run_in_chunks(run, b, 64), inputs,
                                         what=what + " (TF-TRT)", tolerance=tolerance,
                                         min_top1_agreement=min_top1_agreement)
    return _common.make_result("tensorrt", Path(final), _RESULT_PRECISION[precision], metrics,
                               runtime if metrics else "", watch)
