"""Exports round-trip against Keras: TFLite (float32/float16/dynamic/int8), ONNX, SavedModel, TensorRT.

The round trips run on *slim* models (a residual and a depthwise net with 40% of their filters removed),
and int8 top-1 agreement is checked on real CIFAR-10 test images for slim residual and depthwise nets
trained on CIFAR-10 (and for a plain CNN). Also: overwrite refusal, atomic writes (a failed export leaves
nothing), pip hints for missing optional packages, the sample-data helpers.
"""
from __future__ import annotations

import dataclasses
import importlib
import pathlib
import sys
import types

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

import tfmot_easiedge as te
from tfmot_easiedge import _files, export
from tfmot_easiedge.data import batches
from tfmot_easiedge.export import _common

tflite_mod = importlib.import_module("tfmot_easiedge.export.tflite")
onnx_mod = importlib.import_module("tfmot_easiedge.export.onnx")
saved_model_mod = importlib.import_module("tfmot_easiedge.export.saved_model")
tensorrt_mod = importlib.import_module("tfmot_easiedge.export.tensorrt")

SHAPE = (32, 32, 3)


# ----------------------------------------------------------------------------- models


def _conv_bn_relu(x, filters, name, conv=layers.Conv2D, momentum=0.99, **kwargs):
    x = conv(filters, 3, padding="same", use_bias=False, name=name, **kwargs)(x)
    x = layers.BatchNormalization(momentum=momentum, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _input(rescale: bool):
    inp = keras.Input(SHAPE, name="image")
    # Zero-centred input for [0, 255] images: with x/255 in [0, 1] every pixel carries a large common
    # offset, so the int8 rounding error of the first conv's weights adds up over the 27 taps instead of
    # cancelling (measured: 3% top-1 flips from that layer alone, against 0.3% with [-1, 1] inputs).
    return inp, (layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(inp) if rescale else inp)


def residual_net(momentum: float = 0.99, rescale: bool = False) -> keras.Model:
    """stem -> two Conv-BN-ReLU with an Add skip -> strided conv -> GAP -> Dense(10)."""
    inp, x = _input(rescale)
    stem = _conv_bn_relu(x, 16, "stem", momentum=momentum)
    y = _conv_bn_relu(stem, 16, "b1_conv1", momentum=momentum)
    y = layers.BatchNormalization(momentum=momentum, name="b1_conv2_bn")(
        layers.Conv2D(16, 3, padding="same", name="b1_conv2")(y))
    x = layers.ReLU(name="b1_out")(layers.Add(name="b1_add")([stem, y]))
    x = _conv_bn_relu(x, 24, "down", strides=2, momentum=momentum)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, layers.Dense(10, name="head")(x), name="residual_net")


def depthwise_net(momentum: float = 0.99, rescale: bool = False) -> keras.Model:
    """conv -> DepthwiseConv2D-BN-ReLU -> pointwise -> SeparableConv2D-BN-ReLU -> GAP -> Dense(10)."""
    inp, x = _input(rescale)
    x = _conv_bn_relu(x, 16, "stem", strides=2, momentum=momentum)
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    x = layers.ReLU(name="dw_relu")(layers.BatchNormalization(momentum=momentum, name="dw_bn")(x))
    x = _conv_bn_relu(x, 32, "pw", momentum=momentum)
    x = _conv_bn_relu(x, 48, "sep", conv=layers.SeparableConv2D, momentum=momentum)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, layers.Dense(10, name="head")(x), name="depthwise_net")


def _slim(model: keras.Model, budget: str, scores=None, min_fraction: float = 0.0) -> keras.Model:
    """The physically smaller model after a global selection (L2 norms unless ``scores`` are given)."""
    analysis = te.analyze(model)
    scores = scores if scores is not None else te.importance.l2_norm(model, analysis=analysis)
    plan = te.select(analysis, scores, te.parse_budget(budget), min_fraction=min_fraction)
    small = te.slim(model, plan)
    assert te.count_params(small) < te.count_params(model)
    return small


def _randomize_batchnorm(model: keras.Model, seed: int) -> keras.Model:
    """Non-trivial BatchNorm statistics, so that folding them into the convolutions is really tested."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.2, beta.shape),
                               rng.normal(0, 0.2, mean.shape), rng.uniform(0.5, 2.0, var.shape)])
    return model


BUILDERS = {"residual": residual_net, "depthwise": depthwise_net}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def net(request):
    """The slim model of a residual or a depthwise net: 40% of its filters removed by a global selection."""
    keras.utils.set_random_seed(0)
    return _slim(_randomize_batchnorm(BUILDERS[request.param](), seed=1), "filters:0.4")


@pytest.fixture(scope="module")
def small_net():
    keras.utils.set_random_seed(0)
    return _randomize_batchnorm(residual_net(), seed=1)


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, *SHAPE)).astype("float32")


def _check_result(result, path, fmt, precision, n_samples):
    assert isinstance(result, export.ExportResult)
    assert result.format == fmt and result.precision == precision
    assert result.path == path and path.exists()
    assert result.size_bytes == _files.size_on_disk(path) > 0
    assert result.n_samples == n_samples and result.verified
    assert result.seconds > 0 and result.runtime
    assert not [p.name for p in path.parent.iterdir() if ".tmp-" in p.name]


# ----------------------------------------------------------------------------- TFLite round trips


def test_tflite_float32_round_trip(net, tmp_path):
    path = tmp_path / "m.tflite"
    result = export.tflite(net, path, sample_inputs=_images(16))
    _check_result(result, path, "tflite", "float32", 16)
    assert result.max_rel_diff <= 1e-4, result.summary()
    assert result.top1_agreement == 1.0
    assert result.runtime.split()[0] in ("ai_edge_litert", "tf.lite")


def test_tflite_float16_round_trip(net, tmp_path):
    f32 = export.tflite(net, tmp_path / "f32.tflite", verify=False)
    result = export.tflite(net, tmp_path / "f16.tflite", quantization="float16", sample_inputs=_images(16))
    _check_result(result, tmp_path / "f16.tflite", "tflite", "float16", 16)
    assert result.max_rel_diff <= 1e-2, result.summary()
    # The slim nets are so small that the float16 file, with its dequantize ops, can be the larger one;
    # what must hold is that every kernel weight is stored in float16.
    interpreter = tflite_mod.make_interpreter(result.path)
    n16 = sum(int(np.prod(d["shape"])) for d in interpreter.get_tensor_details() if d["dtype"] == np.float16)
    kernels = sum(int(np.prod(w.shape)) for w in net.weights if "kernel" in w.path)
    assert n16 >= kernels > 0
    assert not f32.verified and f32.max_rel_diff is None


def test_tflite_dynamic_range_round_trip(net, tmp_path):
    result = export.tflite(net, tmp_path / "dyn.tflite", quantization="dynamic", sample_inputs=_images(32))
    _check_result(result, tmp_path / "dyn.tflite", "tflite", "dynamic", 32)
    assert result.top1_agreement >= 0.9, result.summary()
    assert result.max_rel_diff <= 0.02, result.summary()


def test_tflite_int8_round_trip(net, tmp_path):
    result = export.tflite(net, tmp_path / "int8.tflite", quantization="int8",
                           representative_data=_images(64, seed=1), sample_inputs=_images(32))
    _check_result(result, tmp_path / "int8.tflite", "tflite", "int8", 32)
    assert result.top1_agreement >= 0.9, result.summary()
    assert result.max_rel_diff <= 0.05, result.summary()
    interpreter = tflite_mod.make_interpreter(result.path)
    assert interpreter.get_input_details()[0]["dtype"] == np.float32  # float I/O by default
    dtypes = {d["dtype"] for d in interpreter.get_tensor_details()}
    assert np.int8 in dtypes and np.float32 in dtypes  # int8 inside, quantize/dequantize at the ends


def test_tflite_int8_io_takes_int8(small_net, tmp_path):
    data = tf.data.Dataset.from_tensor_slices((_images(48, seed=2), np.zeros(48))).batch(16)
    result = export.tflite(small_net, tmp_path / "io.tflite", quantization="int8", int8_io=True,
                           representative_data=data)
    assert result.n_samples == 48  # verified on the representative data
    details = tflite_mod.make_interpreter(result.path).get_input_details()[0]
    assert details["dtype"] == np.int8 and details["quantization"][0] > 0
    assert result.top1_agreement >= 0.8, result.summary()


def test_tflite_int8_from_a_one_shot_generator(small_net, tmp_path):
    images = _images(24, seed=3)
    samples = ([images[i:i + 1]] for i in range(24))  # tf.lite's representative_dataset style, read once
    result = export.tflite(small_net, tmp_path / "gen.tflite", quantization="int8", representative_data=samples)
    assert result.n_samples == 24 and result.top1_agreement >= 0.9, result.summary()


def test_tflite_argument_errors(small_net, tmp_path):
    with pytest.raises(ValueError, match="representative_data"):
        export.tflite(small_net, tmp_path / "a.tflite", quantization="int8")
    with pytest.raises(ValueError, match="quantization must be one of"):
        export.tflite(small_net, tmp_path / "a.tflite", quantization="int4")
    with pytest.raises(ValueError, match="int8_io"):
        export.tflite(small_net, tmp_path / "a.tflite", quantization="float16", int8_io=True)
    assert not list(tmp_path.iterdir())


def test_tflite_falls_back_to_tf_lite_interpreter(small_net, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    result = export.tflite(small_net, tmp_path / "m.tflite")
    assert result.runtime.startswith("tf.lite") and result.max_rel_diff <= 1e-4


# ----------------------------------------------------------------------------- ONNX and SavedModel


def test_onnx_round_trip(net, tmp_path):
    import onnx as onnx_lib

    path = tmp_path / "m.onnx"
    result = export.onnx(net, path, sample_inputs=_images(16))
    _check_result(result, path, "onnx", "float32", 16)
    assert result.max_rel_diff <= 1e-4, result.summary()
    assert result.runtime.startswith("onnxruntime")
    proto = onnx_lib.load(str(path))
    assert {o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")} == {onnx_mod.DEFAULT_OPSET}
    assert [i.name for i in proto.graph.input] == ["image"]


def test_onnx_opset_and_batch(small_net, tmp_path):
    result = export.onnx(small_net, tmp_path / "m15.onnx", opset=15, sample_inputs=_images(3))
    assert result.n_samples == 3 and result.max_rel_diff <= 1e-4
    with pytest.raises(ValueError, match="opset"):
        export.onnx(small_net, tmp_path / "bad.onnx", opset=7)


def test_saved_model_round_trip(small_net, tmp_path):
    path = tmp_path / "sm"
    result = export.saved_model(small_net, path)
    _check_result(result, path, "saved_model", "float32", batches.N_RANDOM_SAMPLES)
    assert result.max_rel_diff <= 1e-5
    loaded = tf.saved_model.load(str(path))
    x = _images(2)
    np.testing.assert_allclose(loaded.serve(x).numpy(), small_net(x, training=False).numpy(), atol=1e-5)


# ----------------------------------------------------------------------------- int8 on real data


@pytest.fixture(scope="module")
def cifar_cnn():
    """A tiny CNN trained for 2 epochs on 5000 CIFAR-10 images, with test images for the check."""
    data = pytest.importorskip("tfmot_easiedge.data")
    try:
        x_train, y_train = data.load_cifar10_arrays("train", limit=5000, allow_download=False)
        x_test, y_test = data.load_cifar10_arrays("test", limit=1000, allow_download=False)
    except FileNotFoundError as err:
        pytest.skip(f"CIFAR-10 TFRecords not available: {err}")
    # Seed 1 measured 98.7% int8 agreement here; seeds 0-3 of this recipe give 97.9-98.7% (mean 98.2%):
    # a 45%-accurate model has ~6% of test images within one int8 logit step of a tie, the int8 noise floor.
    keras.utils.set_random_seed(1)
    x = inp = keras.Input((32, 32, 3), name="image")
    # Zero-centred input: with x/255 in [0, 1] every pixel carries a large common offset, so the int8
    # rounding error of the first conv's weights adds up over the 27 taps instead of cancelling
    # (measured: 3% top-1 flips from that layer alone, against 0.3% with [-1, 1] inputs).
    x = layers.Rescaling(1 / 127.5, offset=-1.0)(x)
    for filters in (16, 32, 64):
        # momentum 0.9: after ~300 steps the moving statistics must have caught up with the weights.
        x = _conv_bn_relu(x, filters, f"conv{filters}", momentum=0.9)
        x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, layers.Dense(10)(x))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=32, epochs=2, verbose=0)
    accuracy = float(np.mean(np.argmax(model.predict(x_test, verbose=0), -1) == y_test))
    return model, x_train, x_test, accuracy


@pytest.fixture(scope="module")
def cifar_arrays():
    data = pytest.importorskip("tfmot_easiedge.data")
    try:
        x_train, y_train = data.load_cifar10_arrays("train", limit=2048, allow_download=False)
        x_test, y_test = data.load_cifar10_arrays("test", limit=1000, allow_download=False)
    except FileNotFoundError as err:
        pytest.skip(f"CIFAR-10 TFRecords not available: {err}")
    return x_train, y_train, x_test, y_test


#: The committed CIFAR-10 baselines (``benchmarks/baselines/``, their training logs beside them).
BASELINES = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "baselines"


@pytest.fixture(scope="module", params=[("resnet20_w1", "macs:0.3"), ("vgg16_bn_w0.35", "filters:0.3")],
                ids=["resnet20", "vgg16_bn"])
def cifar_slim(request, cifar_arrays):
    """A committed trained baseline (87% top-1), 30% of its MACs (ResNet-20) or filters (VGG) removed by a global
    TBAA selection (every group keeps >= 10%), BatchNorm statistics re-estimated on 2,048 training images; no
    fine-tune, so the fixture is deterministic and takes seconds, not the minutes of training a net for it.

    Measured 2026-12-02 (2-core EPYC, LiteRT as installed): slim ResNet-20 81.7% top-1 on the 1,000 test
    images, int8 agreement 98.55%; slim VGG-16-BN 76.9% and 99.25%. The earlier fixture (two nets trained 5
    epochs here, ~60% top-1) sat at the int8 noise floor and flipped around the 98% bar.
    """
    x_train, _, x_test, y_test = cifar_arrays
    name, budget = request.param
    model = keras.saving.load_model(BASELINES / f"{name}.keras", compile=False, safe_mode=True)
    analysis = te.analyze(model)
    scores = te.importance.tbaa(model, x_train[:256], analysis=analysis, progress=False)
    small = _slim(model, budget, scores, min_fraction=0.1)
    te.recalibrate_batchnorm(small, x_train[:2048].astype("float32"))
    accuracy = float(np.mean(np.argmax(small.predict(x_test, verbose=0), -1) == y_test))
    return small, x_train, x_test, accuracy


def test_int8_top1_agreement_of_slim_nets_on_cifar10(cifar_slim, tmp_path):
    model, x_train, x_test, accuracy = cifar_slim
    assert accuracy > 0.7, accuracy  # trained: top-1 means something
    result = export.tflite(model, tmp_path / "slim_int8.tflite", quantization="int8",
                           representative_data=x_train[:500], sample_inputs=x_test)
    assert result.n_samples == len(x_test) == 1000
    assert result.top1_agreement >= 0.98, result.summary()


def test_float_exports_of_slim_nets_on_cifar10(cifar_slim, tmp_path):
    model, _, x_test, _ = cifar_slim
    f32 = export.tflite(model, tmp_path / "s.tflite", sample_inputs=x_test[:200])
    onx = export.onnx(model, tmp_path / "s.onnx", sample_inputs=x_test[:200])
    assert f32.max_rel_diff <= 1e-4 and onx.max_rel_diff <= 1e-4, (f32.summary(), onx.summary())


def test_int8_top1_agreement_on_cifar10(cifar_cnn, tmp_path):
    model, x_train, x_test, accuracy = cifar_cnn
    assert accuracy > 0.3  # trained: top-1 means something
    result = export.tflite(model, tmp_path / "cifar_int8.tflite", quantization="int8",
                           representative_data=x_train[:500], sample_inputs=x_test, min_top1_agreement=0.97)
    assert result.n_samples == len(x_test) == 1000
    assert result.top1_agreement >= 0.97, result.summary()


def test_float_exports_on_cifar10(cifar_cnn, tmp_path):
    model, _, x_test, _ = cifar_cnn
    f32 = export.tflite(model, tmp_path / "c.tflite", sample_inputs=x_test[:200])
    f16 = export.tflite(model, tmp_path / "c16.tflite", quantization="float16", sample_inputs=x_test[:200])
    onx = export.onnx(model, tmp_path / "c.onnx", sample_inputs=x_test[:200])
    assert f32.max_rel_diff <= 1e-4 and onx.max_rel_diff <= 1e-4, (f32.summary(), onx.summary())
    assert f16.max_rel_diff <= 1e-2, f16.summary()


# ----------------------------------------------------------------------------- overwrite and atomicity


def test_existing_path_is_refused_unless_overwrite(small_net, tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(b"old")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export.tflite(small_net, path)
    with pytest.raises(FileExistsError):
        export.onnx(small_net, path)
    assert path.read_bytes() == b"old"
    result = export.tflite(small_net, path, overwrite=True, verify=False)
    assert path.read_bytes()[4:8] == b"TFL3" and result.size_bytes > 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite"]


def test_saved_model_directory_overwrite(small_net, tmp_path):
    path = tmp_path / "sm"
    path.mkdir()
    (path / "stale.txt").write_text("old")
    with pytest.raises(FileExistsError):
        export.saved_model(small_net, path)
    export.saved_model(small_net, path, overwrite=True, verify=False)
    assert (path / "saved_model.pb").exists() and not (path / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sm"]


def _boom(*args, **kwargs):
    raise RuntimeError("boom")


@pytest.mark.parametrize("target", ["convert", "verify"])
def test_failed_tflite_export_leaves_nothing(small_net, tmp_path, monkeypatch, target):
    if target == "convert":  # the converter itself fails
        monkeypatch.setattr(tflite_mod, "convert", _boom)
    else:  # the file is written, then running it fails
        monkeypatch.setattr(tflite_mod, "signature_runner", _boom)
    with pytest.raises(RuntimeError, match="boom"):
        export.tflite(small_net, tmp_path / "m.tflite")
    assert list(tmp_path.iterdir()) == []


def test_failed_onnx_and_saved_model_exports_leave_nothing(small_net, tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_mod, "session_runner", _boom)
    monkeypatch.setattr(saved_model_mod, "load_signature_runner", _boom)
    with pytest.raises(RuntimeError, match="boom"):
        export.onnx(small_net, tmp_path / "m.onnx")
    with pytest.raises(RuntimeError, match="boom"):
        export.saved_model(small_net, tmp_path / "sm")
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_the_old_file(small_net, tmp_path, monkeypatch):
    path = tmp_path / "m.tflite"
    path.write_bytes(b"old")
    # float16 cannot meet a 1e-12 tolerance: the verification refuses the file.
    with pytest.raises(export.ExportVerificationError, match="max relative diff"):
        export.tflite(small_net, path, quantization="float16", overwrite=True, tolerance=1e-12)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite"]


# ----------------------------------------------------------------------------- optional packages


@pytest.mark.parametrize("module", ["tf2onnx", "onnxruntime"])
def test_missing_onnx_package_gives_pip_hint(small_net, tmp_path, monkeypatch, module):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    with pytest.raises(ImportError, match=r'pip install "tfmot-easiedge\[onnx\]"') as info:
        export.onnx(small_net, tmp_path / "m.onnx")
    assert isinstance(info.value, export.MissingDependencyError) and module in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_missing_tflite_runtime_gives_pip_hint(small_net, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.delattr(tf.lite, "Interpreter", raising=False)
    with pytest.raises(ImportError, match=r'pip install "tfmot-easiedge\[tflite\]"'):
        export.tflite(small_net, tmp_path / "m.tflite")
    assert list(tmp_path.iterdir()) == []


def test_int8_with_a_dead_layer_names_it_and_writes_nothing(tmp_path):
    # A layer whose channels never pass ReLU on the calibration data (a real case: ResNet-56 cut to one
    # channel per group) gets an empty int8 range; LiteRT then cannot prepare the file. The export must say
    # which tensor and why, and leave no file.
    x = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(2, 3, padding="same", name="dead_conv")(x)
    h = keras.layers.Conv2D(4, 3, padding="same", name="after")(keras.layers.ReLU()(h))
    model = keras.Model(x, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(h))))
    kernel, bias = model.get_layer("dead_conv").get_weights()
    model.get_layer("dead_conv").set_weights([kernel, np.full_like(bias, -1000.0)])  # never positive
    data = np.random.default_rng(0).normal(size=(64, 16, 16, 3)).astype("float32")
    path = tmp_path / "dead.tflite"
    with pytest.raises(export.ExportVerificationError, match=r"constant zero on the representative data") as info:
        export.tflite(model, path, quantization="int8", representative_data=data)
    assert "dead_conv" in str(info.value) and "min_fraction" in str(info.value)
    assert not path.exists() and list(tmp_path.iterdir()) == []
    assert export.tflite(model, tmp_path / "f32.tflite").max_rel_diff <= 1e-4  # float is fine


# ----------------------------------------------------------------------------- TensorRT


def _tensorrt_importable() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(_tensorrt_importable() or tensorrt_mod.tf_trt_available(),
                    reason="TensorRT is installed here; the missing-package error cannot be observed")
def test_tensorrt_without_package_gives_pip_hint(small_net, tmp_path):
    with pytest.raises(ImportError, match=r'pip install "tfmot-easiedge\[tensorrt\]"') as info:
        export.tensorrt(small_net, tmp_path / "m.engine")
    assert isinstance(info.value, export.MissingDependencyError)
    assert "GPU" in str(info.value) and "TF-TRT" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_tensorrt_without_gpu_says_so(small_net, tmp_path, monkeypatch):
    fake = types.ModuleType("tensorrt")
    fake.__version__ = "10.0.0"
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(tensorrt_mod, "cuda_device_count", lambda: 0)
    with pytest.raises(export.TensorRTUnavailableError, match="no CUDA GPU"):
        export.tensorrt(small_net, tmp_path / "m.engine")
    with pytest.raises(ValueError, match="precision"):
        export.tensorrt(small_net, tmp_path / "m.engine", precision="int4")
    with pytest.raises(ValueError, match="representative_data"):
        export.tensorrt(small_net, tmp_path / "m.engine", precision="int8")
    assert issubclass(export.TensorRTUnavailableError, RuntimeError)
    assert list(tmp_path.iterdir()) == []


def _tensorrt_gpu_reason() -> str | None:
    if not _tensorrt_importable():
        return "the 'tensorrt' package is not installed"
    if tensorrt_mod.cuda_device_count() == 0:
        return "no CUDA GPU"
    return None


@pytest.mark.skipif(_tensorrt_gpu_reason() is not None,
                    reason=f"no TensorRT engine build here: {_tensorrt_gpu_reason()}")
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_tensorrt_engine_round_trip(net, tmp_path, precision):
    import tensorrt as trt

    if precision == "int8" and int(trt.__version__.split(".")[0]) >= 11:
        pytest.skip("TensorRT >= 11 builds int8 only from Q/DQ ONNX models")
    path = tmp_path / f"m_{precision}.engine"
    result = export.tensorrt(net, path, precision=precision, representative_data=_images(64, seed=1),
                             sample_inputs=_images(16))
    _check_result(result, path, "tensorrt", {"fp32": "float32", "fp16": "float16", "int8": "int8"}[precision], 16)
    limit = {"fp32": 1e-3, "fp16": 1e-2, "int8": 0.2}[precision]
    assert result.max_rel_diff <= limit, result.summary()


# ----------------------------------------------------------------------------- helpers


def test_sample_data_forms():
    specs = [batches.InputSpec("image", (None, 4, 4, 3), np.dtype("float32"))]
    x = np.arange(5 * 48, dtype=np.uint8).reshape(5, 4, 4, 3)
    expected = x.astype("float32")
    forms = [x, (x, np.zeros(5)), [x], {"image": x},
             tf.data.Dataset.from_tensor_slices(x), tf.data.Dataset.from_tensor_slices((x, np.zeros(5))).batch(2),
             lambda: ([x[i:i + 1]] for i in range(5))]
    for form in forms:
        (got,) = batches.as_input_arrays(form, specs)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, expected)
    (one,) = batches.as_input_arrays(x[0], specs)  # a single unbatched sample
    assert one.shape == (1, 4, 4, 3)
    assert batches.as_input_arrays(tf.data.Dataset.from_tensor_slices(x).repeat(), specs, limit=7)[0].shape[0] == 7
    with pytest.raises(ValueError, match="expected shape"):
        batches.as_input_arrays(np.zeros((2, 3)), specs)
    with pytest.raises(ValueError, match="missing"):
        batches.as_input_arrays({"other": x}, specs)


def test_random_inputs_are_seeded():
    specs = [batches.InputSpec("a", (None, 3), np.dtype("float32")),
             batches.InputSpec("b", (None, 2), np.dtype("uint8"))]
    first, second = batches.random_inputs(specs, 4), batches.random_inputs(specs, 4)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert first[0].shape == (4, 3) and first[1].dtype == np.uint8
    with pytest.raises(ValueError, match="unknown sizes"):
        batches.random_inputs([batches.InputSpec("c", (None, None, 3), np.dtype("float32"))])


def test_compare_outputs_and_result_record():
    metrics = _common.compare_outputs([np.array([[1.0, 4.0], [3.0, 0.0]])], [np.array([[1.0, 3.5], [3.0, 4.0]])])
    assert metrics == {"max_abs_diff": 4.0, "max_rel_diff": 1.0, "top1_agreement": 0.5, "n_samples": 2}
    # An exact tie in the export (as int8 logits produce) gives 1/k credit, whatever the class order.
    ref = np.array([[0.0, 1.0, 0.5], [1.0, 0.0, 0.5]])
    assert _common.top1_agreement(ref, np.array([[2.0, 2.0, 0.0], [2.0, 2.0, 0.0]])) == 0.5
    assert _common.top1_agreement(ref, np.array([[1.0, 1.0, 1.0], [3.0, 2.0, 1.0]])) == pytest.approx(2 / 3)
    assert _common.top1_agreement(np.ones((4, 1)), np.ones((4, 1))) is None
    result = export.ExportResult("onnx", tmp := pathlib.Path("m.onnx"), 10, "float32", 0.0, 0.0, 1.0, 2, "ort", 0.1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.size_bytes = 0
    assert str(tmp) in result.summary() and "top-1 agreement 100.00%" in result.summary()


def test_atomic_output_cleans_up(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(KeyError):
        with _files.atomic_output(target) as tmp:
            tmp.write_bytes(b"partial")
            raise KeyError("fail")
    assert list(tmp_path.iterdir()) == []
    with _files.atomic_output(tmp_path / "sub" / "dir") as tmp:
        tmp.mkdir()
        (tmp / "a").write_text("x")
    assert (tmp_path / "sub" / "dir" / "a").read_text() == "x"
    with pytest.raises(RuntimeError, match="wrote nothing"):
        with _files.atomic_output(tmp_path / "empty.bin"):
            pass
    assert not (tmp_path / "empty.bin").exists()
