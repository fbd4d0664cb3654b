"""Finite-value guards: NaN/inf inputs are refused by the loaders, the scorers and the pipeline (naming the
first bad example), a diverged fit raises instead of returning NaN weights, and exports refuse NaN weights."""
from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers

import tfmot_easiedge as te
from tfmot_easiedge.data import load_data

SHAPE = (16, 16, 3)
N = 48
BAD = 37  # in the third batch of 16: the message must give the index in the whole data


def _net(logits: bool = False, activation: str | None = "relu", seed: int = 0) -> keras.Model:
    """image(16x16x3) -> c1(4) -> c2(4) -> GAP -> head(3); ``c1``/``c2`` are prunable."""
    keras.utils.set_random_seed(seed)
    x = inp = keras.Input(SHAPE, name="image")
    x = layers.Conv2D(4, 3, padding="same", activation=activation, name="c1")(x)
    x = layers.Conv2D(4, 3, padding="same", activation=activation, name="c2")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    out = layers.Dense(3, activation=None if logits else "softmax", name="head")(x)
    return keras.Model(inp, out, name="tiny")


def _data(n: int = N, bad: int | None = None, value: float = np.nan, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (n, *SHAPE)).astype("float32")
    if bad is not None:
        x[bad, 3, 5, 1] = value  # one pixel
    return x, rng.integers(0, 3, n)


def _compiled(lr: float = 0.01, **kwargs) -> keras.Model:
    model = _net(**kwargs)
    model.compile(keras.optimizers.SGD(lr), keras.losses.SparseCategoricalCrossentropy(
        from_logits=kwargs.get("logits", False)), metrics=["accuracy"])
    return model


def _pipeline(**kwargs) -> te.EasiEdge:
    return te.EasiEdge("filters:0.5", importance="l1", verbose=0, recalibrate_bn=0, calibration_size=16,
                       min_update_interval=1, **kwargs)


BAD_VALUES = [pytest.param(np.nan, "NaN", id="nan"), pytest.param(np.inf, "inf", id="inf"),
              pytest.param(-np.inf, "-inf", id="-inf")]


# ----------------------------------------------------------------------------- scorers
@pytest.mark.parametrize("value,found", BAD_VALUES)
@pytest.mark.parametrize("criterion", ["tbaa", "taylor_fo"])
def test_scorers_refuse_a_non_finite_pixel(criterion, value, found):
    x, y = _data(bad=BAD, value=value)
    score = te.importance.get(criterion)
    with pytest.raises(ValueError, match=rf"^calibration data: example {BAD} contains {found} \(1 non-finite "
                                         r"value in examples 32\.\.47\)") as info:
        score(_net(), (x, y), batch_size=16, progress=False)
    assert "\n" not in str(info.value)


def test_tbaa_refuses_all_nan_data():
    x = np.full((8, *SHAPE), np.nan, "float32")
    with pytest.raises(ValueError, match=r"example 0 contains NaN \(6144 non-finite values"):
        te.importance.tbaa(_net(), x, progress=False)


def test_scorers_refuse_a_non_finite_dataset_batch():
    """A tf.data pipeline is checked batch by batch, with the index counted across batches."""
    import tensorflow as tf

    x, y = _data(bad=BAD)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(10)
    with pytest.raises(ValueError, match=rf"example {BAD} contains NaN \(1 non-finite value in examples 30\.\.39\)"):
        te.importance.tbaa(_net(), ds, progress=False)


def test_finite_and_integer_data_pass():
    x, y = _data()
    scores = te.importance.tbaa(_net(), x, progress=False)
    assert all(np.isfinite(s).all() and s.max() > 0 for s in scores.values())
    te.data.check_finite(np.zeros((4, 3), "int64"))
    te.data.check_finite(np.zeros((4, 3), "uint8"), "uint8 images")


# ----------------------------------------------------------------------------- loaders
@pytest.mark.parametrize("value,found", BAD_VALUES)
def test_npz_with_a_non_finite_value_is_refused(tmp_path, value, found):
    x, y = _data(8, bad=5, value=value)
    np.savez(tmp_path / "d.npz", x=x.astype("float64"), y=y)
    with pytest.raises(te.data.DataError, match=rf"d\.npz: example 5 contains {found} \(1 non-finite value in "
                                                r"examples 0\.\.7\)"):
        load_data(str(tmp_path / "d.npz"))


def test_npz_float64_beyond_float32_is_refused(tmp_path):
    x, y = _data(8)
    x = x.astype("float64")
    x[6, 0, 0, 0] = 1e300  # finite in float64, inf as float32
    np.savez(tmp_path / "big.npz", x=x, y=y)
    with pytest.raises(te.data.DataError, match=r"big\.npz \(as float32\): example 6 contains inf"):
        load_data(str(tmp_path / "big.npz"))


def test_image_folder_rescaled_to_inf_is_refused(tmp_path):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(2):
            image = rng.integers(1, 256, (8, 8, 3)).astype("uint8")
            tf.io.write_file(str(tmp_path / "imgs" / cls / f"{i}.png"), tf.io.encode_png(image))
    assert len(load_data(str(tmp_path / "imgs"), rescale="1/255")) == 4
    with pytest.raises(te.data.DataError, match=r"imgs \(after rescale .*\): example 0 contains inf"):
        load_data(str(tmp_path / "imgs"), rescale=1e38)  # 255 * 1e38 overflows float32


@pytest.mark.parametrize("text", ["nan", "inf", "1,-inf", float("nan")])
def test_non_finite_rescale_is_refused(text):
    with pytest.raises(te.data.DataError, match="finite"):
        te.data.parse_rescale(text)


# ----------------------------------------------------------------------------- pipeline
@pytest.mark.parametrize("value,found", BAD_VALUES[:2])
@pytest.mark.parametrize("bad", [3, BAD])  # inside and beyond the 16 calibration examples
def test_easiedge_refuses_non_finite_training_data(bad, value, found):
    x, y = _data(bad=bad, value=value)
    with pytest.raises(ValueError, match=rf"^train_data: example {bad} contains {found}"):
        _pipeline().run(_compiled(), (x, y), admm_epochs=1, finetune_epochs=1, batch_size=16)


def test_easiedge_refuses_non_finite_validation_data():
    x, y = _data()
    vx, vy = _data(16, bad=9, seed=1)
    with pytest.raises(ValueError, match=r"^validation_data: example 9 contains NaN"):
        _pipeline().run(_compiled(), (x, y), validation_data=(vx, vy), admm_epochs=1, finetune_epochs=1,
                        batch_size=16)


def test_easiedge_refuses_a_model_with_nan_weights():
    model = _compiled()
    model.get_layer("c2").bias.assign(np.full(4, np.nan, "float32"))
    with pytest.raises(ValueError, match=r"model 'tiny': weight '.*c2/bias' of layer 'c2' contains NaN"):
        _pipeline().run(model, _data(), admm_epochs=1, finetune_epochs=1, batch_size=16)


@pytest.mark.parametrize("admm_epochs,finetune_epochs,stage", [(2, 1, "ADMM fit"), (0, 2, "fine-tune")])
def test_easiedge_stops_and_raises_when_training_diverges(admm_epochs, finetune_epochs, stage):
    model = _compiled(lr=1e6, logits=True, activation=None)
    with pytest.raises(ValueError, match=rf"^training diverged: the loss became (nan|inf|-inf) at epoch "
                                                    rf"\d+, step \d+ of the {stage}; lower the learning rate") as info:
        _pipeline().run(model, _data(), admm_epochs=admm_epochs, finetune_epochs=finetune_epochs, batch_size=8)
    assert type(info.value).__name__ == "TrainingDivergedError" and "\n" not in str(info.value)
    epoch = int(str(info.value).split("at epoch ")[1].split(",")[0])
    assert (epoch <= admm_epochs) if stage == "ADMM fit" else (admm_epochs < epoch <= admm_epochs + finetune_epochs)


def test_easiedge_refuses_to_return_non_finite_weights():
    """Weights that turn NaN without the loss showing it (here: after the last step) are caught at the end."""

    class Poison(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            kernel = next(w for w in self.model.weights if w.path.endswith("c1/kernel"))
            kernel.assign(np.full(kernel.shape, np.nan, "float32"))

    with pytest.raises(ValueError, match=r"^training diverged: the pruned model's weight '.*c1/kernel' of layer "
                                         r"'c1' contains NaN"):
        _pipeline().run(_compiled(), _data(), admm_epochs=0, finetune_epochs=1, batch_size=16, callbacks=[Poison()])


def test_finite_pipeline_still_runs():
    result = _pipeline().run(_compiled(), _data(), admm_epochs=1, finetune_epochs=1, batch_size=16)
    te.data.check_finite_weights(result.model)
    assert result.plan.removed_channels() > 0


# ----------------------------------------------------------------------------- exports
def _nan_model() -> keras.Model:
    model = _net()
    kernel = model.get_layer("c1").kernel
    values = kernel.numpy()
    values[0, 0, 0, 2] = np.nan
    kernel.assign(values)
    return model


def test_check_finite_weights_names_the_weight():
    te.data.check_finite_weights(_net())
    with pytest.raises(ValueError, match=r"^model 'tiny': weight '.*c1/kernel' of layer 'c1' contains NaN \(1 of "
                                         r"108 values\); its weights must be finite$"):
        te.data.check_finite_weights(_nan_model())


@pytest.mark.parametrize("fmt,name", [("tflite", "model.tflite"), ("onnx", "model.onnx")])
def test_export_refuses_nan_weights_and_writes_nothing(tmp_path, fmt, name):
    from tfmot_easiedge import export

    if fmt == "onnx":
        pytest.importorskip("tf2onnx")
        pytest.importorskip("onnxruntime")
    with pytest.raises(ValueError, match=r"model 'tiny': weight '.*c1/kernel' of layer 'c1' contains NaN"):
        getattr(export, fmt)(_nan_model(), tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_non_finite_sample_data(tmp_path):
    from tfmot_easiedge import export

    x, _ = _data(8, bad=2, value=np.inf)
    with pytest.raises(ValueError, match=r"sample data for input 'image': example 2 contains inf"):
        export.tflite(_net(), tmp_path / "m.tflite", quantization="int8", representative_data=x)
    assert list(tmp_path.iterdir()) == []
