"""measure_latency: sane numbers for Keras, TFLite and ONNX, threads passed to the runtimes, clear errors."""
from __future__ import annotations

import importlib
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

from tfmot_easiedge import export
from tfmot_easiedge.metrics.latency import LatencyResult, measure_latency

onnx_mod = importlib.import_module("tfmot_easiedge.export.onnx")
tflite_mod = importlib.import_module("tfmot_easiedge.export.tflite")


def _small_cnn() -> keras.Model:
    x = inp = keras.Input((32, 32, 3), name="image")
    x = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(8, 3, padding="same")(x)))
    x = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, layers.Dense(10)(x))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = _small_cnn()
    out = tmp_path_factory.mktemp("latency")
    return {
        "model": model,
        "tflite": export.tflite(model, out / "m.tflite", verify=False).path,
        "onnx": export.onnx(model, out / "m.onnx", verify=False),
    }


def _check_sane(result: LatencyResult, runtime: str, runs: int, batch_size: int = 1):
    assert isinstance(result, LatencyResult)
    assert result.runtime == runtime and result.runs == runs == len(result.times_ms)
    assert result.batch_size == batch_size
    assert 0 < result.p10_ms <= result.median_ms <= result.p90_ms < 10_000
    assert result.mean_ms > 0 and result.std_ms >= 0 and result.throughput > 0
    assert min(result.times_ms) > 0
    assert runtime in result.summary()


def test_tflite_latency(files):
    result = measure_latency(files["tflite"], threads=1, warmup=2, runs=10, progress=False)
    _check_sane(result, "tflite", 10)
    assert result.threads == 1


def test_onnx_latency_from_export_result(files):
    result = measure_latency(files["onnx"], warmup=2, runs=10, batch_size=4, progress=False)
    _check_sane(result, "onnxruntime", 10, batch_size=4)


def test_keras_latency_reports_the_threads_in_force(files):
    effective = tf.config.threading.get_intra_op_parallelism_threads() or len(os.sched_getaffinity(0))
    result = measure_latency(files["model"], threads=effective, warmup=2, runs=10, progress=False)
    _check_sane(result, "keras", 10)
    assert result.threads == effective
    with pytest.warns(UserWarning, match="process-wide"):
        other = measure_latency(files["model"], threads=effective + 1, warmup=1, runs=3, progress=False)
    assert other.threads == effective


def test_threads_reach_the_runtimes(files, monkeypatch):
    seen = {}
    real_interpreter = tflite_mod.make_interpreter

    def spy_interpreter(path, num_threads=None):
        seen["tflite"] = num_threads
        return real_interpreter(path, num_threads)

    monkeypatch.setattr(tflite_mod, "make_interpreter", spy_interpreter)
    ort = pytest.importorskip("onnxruntime")
    real_session = ort.InferenceSession

    def spy_session(path, options=None, **kwargs):
        seen["ort"] = (options.intra_op_num_threads, options.inter_op_num_threads)
        return real_session(path, options, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", spy_session)
    assert measure_latency(files["tflite"], threads=2, warmup=1, runs=3, progress=False).threads == 2
    assert measure_latency(files["onnx"].path, threads=2, warmup=1, runs=3, progress=False).threads == 2
    assert seen == {"tflite": 2, "ort": (2, 1)}


def test_batch_and_input_data(files):
    data = np.random.default_rng(0).normal(size=(3, 32, 32, 3)).astype("float32")
    result = measure_latency(files["tflite"], batch_size=5, input_data=data, warmup=1, runs=4, progress=False)
    _check_sane(result, "tflite", 4, batch_size=5)
    with pytest.raises(ValueError, match="expected shape"):
        measure_latency(files["tflite"], input_data=np.zeros((2, 8)), runs=1, progress=False)


def test_progress_bar(files, capsys):
    measure_latency(files["tflite"], warmup=0, runs=3, progress=True)
    assert "3/3" in capsys.readouterr().out
    measure_latency(files["tflite"], warmup=0, runs=3, progress=False)
    assert capsys.readouterr().out == ""


def test_bad_arguments(files, tmp_path):
    with pytest.raises(ValueError, match="runtime must be one of"):
        measure_latency(files["tflite"], runtime="tensorrt", progress=False)
    with pytest.raises(ValueError, match="keras.Model"):
        measure_latency(files["tflite"], runtime="keras", progress=False)
    with pytest.raises(ValueError, match="runs a file"):
        measure_latency(files["model"], runtime="tflite", progress=False)
    odd = tmp_path / "model.bin"
    odd.write_bytes(b"")
    with pytest.raises(ValueError, match="suffix"):
        measure_latency(odd, progress=False)
    with pytest.raises(FileNotFoundError):
        measure_latency(tmp_path / "missing.tflite", progress=False)
    for bad in ({"threads": 0}, {"runs": 0}, {"batch_size": -1}, {"warmup": -1}, {"threads": 1.5}):
        with pytest.raises(ValueError, match="must be an int"):
            measure_latency(files["tflite"], progress=False, **bad)
    with pytest.raises(TypeError, match="keras.Model or a path"):
        measure_latency(42, progress=False)
