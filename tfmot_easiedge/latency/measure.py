"""Inference latency of a Keras model, a .tflite file (LiteRT + XNNPACK) or an .onnx file (onnxruntime).

Each run times one forward pass of a fixed batch with ``time.perf_counter`` after ``warmup`` untimed
passes, with Python's garbage collector paused, and reports the median, the 10th/90th percentiles,
the mean and the standard deviation in milliseconds.
"""
from __future__ import annotations

import dataclasses
import gc
import os
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from tfmot_easiedge._progress import progress_bar
from tfmot_easiedge.data import batches

if TYPE_CHECKING:
    import keras

RUNTIMES = ("keras", "tflite", "onnxruntime")
_ALIASES = {"keras": "keras", "tflite": "tflite", "litert": "tflite", "onnxruntime": "onnxruntime",
            "onnx": "onnxruntime"}
_SUFFIX_RUNTIME = {".tflite": "tflite", ".onnx": "onnxruntime"}
_ONNX_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
                "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int32)": "int32",
                "tensor(int64)": "int64", "tensor(bool)": "bool"}


@dataclasses.dataclass(frozen=True)
class LatencyResult:
    """Latency statistics of one model on one runtime, in milliseconds per batch.

    Example:
        >>> r = LatencyResult("tflite", 1, 1, 2.0, 1.8, 2.5, 2.1, 0.2, 50)
        >>> round(r.throughput, 1)
        500.0
    """

    runtime: str
    threads: int
    batch_size: int
    median_ms: float
    p10_ms: float
    p90_ms: float
    mean_ms: float
    std_ms: float
    runs: int
    times_ms: tuple = dataclasses.field(default=(), repr=False, compare=False)

    @property
    def throughput(self) -> float:
        """Samples per second at the median latency."""
        return 1000.0 * self.batch_size / self.median_ms if self.median_ms > 0 else float("inf")

    def summary(self) -> str:
        """One line for logs and reports."""
        return (f"{self.runtime} ({self.threads} thread{'s' if self.threads != 1 else ''}, batch "
                f"{self.batch_size}): median {self.median_ms:.3f} ms [p10 {self.p10_ms:.3f}, p90 {self.p90_ms:.3f}], "
                f"mean {self.mean_ms:.3f} ± {self.std_ms:.3f} ms over {self.runs} runs")


def _is_keras_model(value: Any) -> bool:
    """Whether ``value`` is a ``keras.Model``, without importing Keras for a file path (the on-device case:
    only LiteRT or ONNX Runtime installed)."""
    if isinstance(value, (str, os.PathLike)):
        return False
    import keras

    return isinstance(value, keras.Model)


def _resolve(model_or_file, runtime: str | None):
    """Returns (thing to run, runtime name)."""
    from tfmot_easiedge.export import ExportResult

    if isinstance(model_or_file, ExportResult):
        model_or_file = model_or_file.path
    if runtime is not None:
        if not isinstance(runtime, str) or runtime.lower() not in _ALIASES:
            raise ValueError(f"runtime must be one of {', '.join(repr(r) for r in RUNTIMES)} or None; got {runtime!r}")
        runtime = _ALIASES[runtime.lower()]
    is_model = _is_keras_model(model_or_file)
    if not is_model and not isinstance(model_or_file, (str, os.PathLike)):
        raise TypeError(f"got {type(model_or_file).__name__}; expected a keras.Model or a path to a .tflite/.onnx file")
    if is_model:
        if runtime not in (None, "keras"):
            raise ValueError(f"runtime={runtime!r} runs a file; got a keras.Model (export it first, or use 'keras')")
        return model_or_file, "keras"
    path = Path(model_or_file)
    if runtime is None:
        runtime = _SUFFIX_RUNTIME.get(path.suffix.lower())
        if runtime is None:
            raise ValueError(f"cannot infer the runtime of {path.name!r} from its suffix; expected .tflite or .onnx, "
                             f"or pass runtime= one of {RUNTIMES[1:]}")
    if runtime == "keras":
        raise ValueError(f"runtime='keras' needs a keras.Model; got the path {path}")
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    return path, runtime


def _batch(specs, input_data, batch_size: int) -> list[np.ndarray]:
    if input_data is None:
        return batches.random_inputs(specs, batch_size=batch_size)
    arrays = batches.as_input_arrays(input_data, specs)
    index = np.arange(batch_size) % arrays[0].shape[0]  # take the first batch_size samples, repeating if short
    return [np.ascontiguousarray(a[index]) for a in arrays]


def _cpu_count() -> int:
    """CPUs this process may run on (TensorFlow's default pool size)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _keras_step(model, threads: int, batch_size: int, input_data) -> tuple[Callable[[], object], int]:
    import tensorflow as tf

    # TensorFlow's thread pools are process-wide and fixed once TF has started; report what is in force.
    configured = tf.config.threading.get_intra_op_parallelism_threads()
    effective = configured or _cpu_count()
    if effective != threads:
        warnings.warn(f"threads={threads} cannot be applied to Keras: TensorFlow's intra-op pool is process-wide "
                      f"and fixed once TF has started (now {effective}); measuring with {effective}. Call "
                      "tf.config.threading.set_intra_op_parallelism_threads before any TF op to change it",
                      stacklevel=3)
    specs = batches.input_specs(model)
    tensors = [tf.constant(a) for a in _batch(specs, input_data, batch_size)]

    @tf.function(reduce_retracing=True)
    def forward(xs):
        return model(xs[0] if len(xs) == 1 else xs, training=False)

    def step():
        out = forward(tensors)
        return [t.numpy() for t in tf.nest.flatten(out)]  # .numpy() waits for the device

    return step, effective


def _tflite_step(path: Path, threads: int, batch_size: int, input_data) -> Callable[[], object]:
    from tfmot_easiedge.export.tflite import make_interpreter

    interpreter = make_interpreter(path, num_threads=threads)
    signatures = interpreter.get_signature_list()
    if signatures:
        details = interpreter.get_signature_runner(next(iter(signatures))).get_input_details()
    else:
        details = {d["name"]: d for d in interpreter.get_input_details()}
    specs = [batches.InputSpec(name, (None, *(int(s) if s > 0 else None for s in d["shape_signature"][1:])),
                              np.dtype(d["dtype"])) for name, d in details.items()]
    arrays = _batch(specs, input_data, batch_size)
    for d, arr in zip(details.values(), arrays):
        interpreter.resize_tensor_input(d["index"], list(arr.shape))
    interpreter.allocate_tensors()
    for d, arr in zip(details.values(), arrays):
        interpreter.set_tensor(d["index"], arr)
    return interpreter.invoke


def _onnx_step(path: Path, threads: int, batch_size: int, input_data) -> Callable[[], object]:
    from tfmot_easiedge.export.onnx import session_runner

    _, session, _ = session_runner(path, threads=threads)
    specs = []
    for i in session.get_inputs():
        dtype = _ONNX_DTYPES.get(i.type)
        if dtype is None:
            raise ValueError(f"ONNX input {i.name!r} has type {i.type}; expected one of {sorted(_ONNX_DTYPES)}")
        specs.append(batches.InputSpec(i.name, (None, *(d if isinstance(d, int) and d > 0 else None
                                                       for d in i.shape[1:])), np.dtype(dtype)))
    feed = {s.name: a for s, a in zip(specs, _batch(specs, input_data, batch_size))}
    return lambda: session.run(None, feed)


def _check_positive(**values) -> None:
    for name, (value, minimum) in values.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}")


def measure_latency(model_or_file: keras.Model | str | os.PathLike, *, runtime: str | None = None, threads: int = 1,
                    batch_size: int = 1, warmup: int = 10, runs: int = 50, input_data: Any = None,
                    progress: bool = True, clock: Callable[[], float] = time.perf_counter) -> LatencyResult:
    """Times inference of a Keras model or an exported file on this machine's CPU.

    Runtimes:
        * ``"keras"``: the model's call compiled with ``tf.function``. TensorFlow's thread pool is
          process-wide and fixed at start-up, so ``threads`` cannot change it here: the result reports
          the thread count in force (all cores unless ``tf.config.threading`` set it) and a warning says
          when it differs from the request.
        * ``"tflite"``: the LiteRT interpreter with its default XNNPACK delegate and ``num_threads=threads``.
        * ``"onnxruntime"``: a CPU session with ``intra_op_num_threads=threads``, ``inter_op_num_threads=1``,
          sequential execution.

    Args:
        model_or_file: a ``keras.Model``, a path to a ``.tflite`` / ``.onnx`` file, or an ``ExportResult``.
        runtime: ``"keras"``, ``"tflite"`` or ``"onnxruntime"``; None infers it from the model or suffix.
        threads: CPU threads for the runtime.
        batch_size: samples per timed forward pass.
        warmup: untimed passes first (kernel selection, caches, tracing).
        runs: timed passes.
        input_data: the batch to run (array, list/dict of arrays, ``(x, y)``, dataset); its first
            ``batch_size`` samples are used, repeated if fewer. Default: seeded random data.
        progress: show a ``keras.utils.Progbar`` over the timed runs.
        clock: seconds as a float, read around every timed pass: the wall clock by default;
            ``time.thread_time`` counts the calling thread's CPU time only (with one thread, LiteRT and
            onnxruntime run the whole graph on it), leaving out the waits for a core on a shared machine.

    Returns:
        A :class:`LatencyResult` (milliseconds per batch).

    Raises:
        ValueError: an unknown runtime, a runtime that does not fit the input, or a non-positive count.

    Example:
        >>> from tfmot_easiedge.latency import measure_latency
        >>> measure_latency("model.tflite", threads=2, progress=False).median_ms  # doctest: +SKIP
        0.42
    """
    _check_positive(threads=(threads, 1), batch_size=(batch_size, 1), warmup=(warmup, 0), runs=(runs, 1))
    target, runtime = _resolve(model_or_file, runtime)
    if runtime == "keras":
        step, threads = _keras_step(target, threads, batch_size, input_data)
    elif runtime == "tflite":
        step = _tflite_step(target, threads, batch_size, input_data)
    else:
        step = _onnx_step(target, threads, batch_size, input_data)
    for _ in range(warmup):
        step()
    bar = progress_bar(runs, progress, unit_name="run")
    times = np.empty(runs)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for i in range(runs):
            start = clock()
            step()
            times[i] = (clock() - start) * 1000.0
            if bar is not None:
                bar.update(i + 1, values=[("ms", times[i])])
    finally:
        if gc_was_enabled:
            gc.enable()
    p10, median, p90 = np.percentile(times, [10, 50, 90])
    return LatencyResult(runtime=runtime, threads=int(threads), batch_size=batch_size, median_ms=float(median),
                         p10_ms=float(p10), p90_ms=float(p90), mean_ms=float(times.mean()),
                         std_ms=float(times.std()), runs=runs, times_ms=tuple(float(t) for t in times))
