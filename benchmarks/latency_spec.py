"""What ``benchmarks.latency`` measures: its models, default ratios, runtimes, targets and labels.

The settings shared by the runner (``latency_run``), the timing (``latency_timing``), the per-layer
breakdown (``latency_breakdown``), the report (``latency_render``) and the command line (``latency``).
It imports no other module of the latency benchmark, so each of them can read it without an import cycle.
"""
from __future__ import annotations

from typing import Any, NamedTuple

DEFAULT_MODELS = ("vgg16", "resnet56", "mobilenetv2", "vgg_small")
DEFAULT_RATIOS = (0.0, 0.5, 0.8)
DEFAULT_MACS = (0.9,)  # MAC ratios removed: the paper's 80%-of-filters VGG-16 ran 9.6x faster
# The acceptance bar for VGG-16 at 80% of filters removed (TFLite float32, 1 thread).
TARGET_SPEEDUP = 9.6
TARGET_EFFICIENCY = 0.8  # speedup / MAC reduction


class Runtime(NamedTuple):
    """One timed runtime: result key, runtime name, export format, threads (None: process-wide), clock.

    ``clock="wall"`` is ``measure_latency`` (``perf_counter``); ``clock="thread"`` times the same
    1-thread run with the calling thread's CPU time (``time.thread_time``), which does not count the
    time the thread waits for a core, so it stays honest on a machine shared with other jobs.
    """

    key: str
    runtime: str
    fmt: str
    threads: int | None
    clock: str = "wall"


RUNTIMES = (Runtime("tflite_fp32_t1", "tflite", "fp32", 1), Runtime("tflite_fp32_t2", "tflite", "fp32", 2),
            Runtime("tflite_int8_t1", "tflite", "int8", 1), Runtime("tflite_int8_t2", "tflite", "int8", 2),
            Runtime("onnxruntime_t1", "onnxruntime", "onnx", 1), Runtime("keras", "keras", "keras", None),
            Runtime("tflite_fp32_t1_cpu", "tflite", "fp32", 1, "thread"),
            Runtime("tflite_int8_t1_cpu", "tflite", "int8", 1, "thread"),
            Runtime("onnxruntime_t1_cpu", "onnxruntime", "onnx", 1, "thread"))
WALL_COLUMNS = ("tflite_fp32_t1", "tflite_fp32_t2", "tflite_int8_t1", "tflite_int8_t2", "onnxruntime_t1", "keras")
CPU_COLUMNS = ("tflite_fp32_t1_cpu", "tflite_int8_t1_cpu", "onnxruntime_t1_cpu")

# The hand-written analysis of a report sits between these markers and is kept when the report is rewritten.
ANALYSIS_BEGIN = "<!-- analysis: hand-written, kept when the report is regenerated -->"
ANALYSIS_END = "<!-- /analysis -->"
# The configuration with every prunable group cut to its best channel (``latency_run.prune_to_floor``).
FLOOR_LABEL = "floor (1 channel/group)"


def config_label(ratio: float, round_to: int | None, kind: str = "filters") -> str:
    """``"80%"`` for a filter ratio, ``"MACs -90%"`` for a MAC budget, plus ``" round_to=N"``."""
    label = f"{ratio:.0%}" if kind == "filters" else f"MACs -{ratio:.0%}"
    return label + (f" round_to={round_to}" if round_to else "")


# --------------------------------------------------------------------------- models
def _mobilenetv2(seed: int = 0):
    import keras

    keras.utils.set_random_seed(seed)
    return keras.applications.MobileNetV2(input_shape=(32, 32, 3), weights=None, classes=10)


def model_specs() -> dict[str, dict[str, Any]]:
    """``{name: {"build": () -> keras.Model, "builder": str, "input": str, "preprocess": fn}}``.

    The zoo models take images in the uint8 range (they rescale them); MobileNetV2 takes ``[-1, 1]``.
    """
    from tfmot_easiedge.models import zoo

    raw = ("float32 pixels in [0, 255] (the model rescales)", lambda x: x.astype("float32"))
    centred = ("float32 pixels / 127.5 - 1", lambda x: x.astype("float32") / 127.5 - 1.0)
    return {
        "vgg16": {"build": lambda: zoo.vgg16_cifar(seed=0), "builder": "zoo.vgg16_cifar(seed=0)",
                  "input": raw},
        "resnet56": {"build": lambda: zoo.resnet56(seed=0), "builder": "zoo.resnet56(seed=0)", "input": raw},
        "mobilenetv2": {"build": _mobilenetv2,
                        "builder": "keras.applications.MobileNetV2(input_shape=(32, 32, 3), weights=None, "
                                   "classes=10)",
                        "input": centred},
        "vgg_small": {"build": lambda: zoo.vgg_small(seed=0), "builder": "zoo.vgg_small(seed=0)", "input": raw},
        # The trained baselines of the compare benchmark's cpu profile (benchmarks/cache/<name>.keras, made by
        # ``python -m benchmarks.compare --profile cpu``): real TBAA selections on trained weights, width 0.25.
        "vgg16_w0.25_cpu": {"build": lambda: zoo.vgg16_cifar(width=0.25, seed=0),
                            "builder": "zoo.vgg16_cifar(width=0.25, seed=0)", "input": raw},
        "resnet56_w0.25_cpu": {"build": lambda: zoo.resnet56(width=0.25, seed=0),
                               "builder": "zoo.resnet56(width=0.25, seed=0)", "input": raw},
    }
