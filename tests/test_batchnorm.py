"""recalibrate_batchnorm: exact re-estimation of BatchNorm statistics after pruning, and its use in EasiEdge."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import tfmot_easiedge as te


def _net(frozen: bool = False, nested: bool = False):
    keras.utils.set_random_seed(0)
    x = keras.Input((6, 6, 3))
    h = keras.layers.Conv2D(4, 3, name="c1")(x)
    bn1 = keras.layers.BatchNormalization(name="bn1")
    h = keras.layers.ReLU()(bn1(h))
    if nested:
        inner_in = keras.Input(h.shape[1:])
        inner_out = keras.layers.BatchNormalization(name="bn2")(keras.layers.Conv2D(5, 1, name="c2")(inner_in))
        h = keras.Model(inner_in, inner_out, name="inner")(h)
    else:
        h = keras.layers.BatchNormalization(name="bn2")(keras.layers.Conv2D(5, 1, name="c2")(h))
    model = keras.Model(x, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(h)))
    if frozen:
        bn1.trainable = False
    return model


def _images(n=96, seed=0):
    return np.random.default_rng(seed).normal(2.0, 3.0, (n, 6, 6, 3)).astype("float32")


def test_statistics_are_the_average_of_the_batch_statistics():
    m = _net()
    x = _images()
    assert te.recalibrate_batchnorm(m, x, batch_size=32) == 2
    bn1 = m.get_layer("bn1")
    feats = keras.Model(m.inputs[0], bn1.input)(x).numpy().reshape(3, -1, 4)  # three batches of 32
    np.testing.assert_allclose(bn1.moving_mean.numpy(), feats.mean(1).mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn1.moving_variance.numpy(), feats.var(1).mean(0), rtol=1e-3, atol=1e-5)
    assert bn1.momentum == 0.99  # restored
    # the old statistics do not matter: garbage before gives the same result
    bn1.moving_mean.assign(np.full(4, 1e3, "float32"))
    te.recalibrate_batchnorm(m, x, batch_size=32)
    np.testing.assert_allclose(bn1.moving_mean.numpy(), feats.mean(1).mean(0), rtol=1e-4, atol=1e-5)


def test_weights_other_than_statistics_are_untouched_and_frozen_layers_skipped():
    m = _net(frozen=True)
    before = {w.path: w.numpy().copy() for w in m.weights}
    assert te.recalibrate_batchnorm(m, tf.data.Dataset.from_tensor_slices((_images(), np.zeros(96))).batch(16)) == 1
    changed = {p for p, v in before.items() if not np.array_equal(v, next(w for w in m.weights if w.path == p).numpy())}
    assert changed == {"bn2/moving_mean", "bn2/moving_variance"}


def test_nested_models_are_recalibrated():
    m = _net(nested=True)
    bn2 = m.get_layer("inner").get_layer("bn2")
    old = bn2.moving_mean.numpy().copy()
    assert te.recalibrate_batchnorm(m, _images()) == 2
    assert not np.allclose(bn2.moving_mean.numpy(), old)


def test_bad_data_is_a_clear_error():
    m = _net()
    with pytest.raises(ValueError, match="empty|no examples"):
        te.recalibrate_batchnorm(m, np.zeros((0, 6, 6, 3), "float32"))
    with pytest.raises(ValueError):
        te.recalibrate_batchnorm(m, np.zeros((8, 5, 5, 3), "float32"))
    keras.utils.set_random_seed(0)
    x = keras.Input((4,))
    assert te.recalibrate_batchnorm(keras.Model(x, keras.layers.Dense(2)(x)), np.zeros((4, 4))) == 0


def test_easiedge_recalibrates_the_slim_model_only():
    from tfmot_easiedge.models import zoo

    x = np.random.default_rng(0).random((64, 32, 32, 3)).astype("float32")
    y = np.random.default_rng(1).integers(0, 10, 64)
    results = {}
    for n in (0, 64):
        m = zoo.tiny_cnn(seed=0)
        m.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
        r = te.EasiEdge("filters:0.5", importance="l1", verbose=0, recalibrate_bn=n).run(
            m, (x, y), admm_epochs=1, finetune_epochs=1)
        results[n] = r
        assert r.slim_max_abs_diff < 1e-4 and r.timings["recalibrate"] >= 0
    bns = lambda model: [w.numpy() for w in model.weights if "moving_mean" in w.path]  # noqa: E731
    assert bns(results[0].model)
    # same plan and weights; only the statistics of the recalibrated slim model differ
    assert results[0].plan.kept == results[64].plan.kept
    assert any(not np.allclose(a, b) for a, b in zip(bns(results[0].model), bns(results[64].model)))
    with pytest.raises(ValueError, match="recalibrate_bn"):
        te.EasiEdge("filters:0.5", recalibrate_bn=-1)
