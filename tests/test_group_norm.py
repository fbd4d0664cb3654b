"""group_l2: the DepGraph-style group magnitude, checked against a hand computation."""
import keras
import numpy as np
import pytest
from keras import layers

from tfmot_easiedge.graph import analyze
from tfmot_easiedge.importance.group_norm import group_l2


def _chain():
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    x = layers.Conv2D(6, 3, name="c1")(inp)
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.ReLU()(x)
    x = layers.Conv2D(5, 3, name="c2", use_bias=False)(x)
    x = layers.Flatten()(x)
    model = keras.Model(inp, layers.Dense(3, name="d")(x))
    rng = np.random.default_rng(0)
    for w in model.get_layer("bn1").weights:  # not the initial ones and zeros, so gamma and beta count
        w.assign(rng.random(w.shape))
    return model


def test_matches_a_hand_computation_including_batchnorm_and_flatten():
    model = _chain()
    scores = group_l2(model)
    k1, b1 = (w.numpy() for w in model.get_layer("c1").weights)
    bn = model.get_layer("bn1")
    k2 = model.get_layer("c2").kernel.numpy()
    # c1's channel: its filter and bias, BN's gamma and beta (not the moving statistics), c2's input rows.
    hand = ((k1 ** 2).sum((0, 1, 2)) + b1 ** 2 + bn.gamma.numpy() ** 2 + bn.beta.numpy() ** 2
            + (k2 ** 2).sum((0, 1, 3))) / 3
    np.testing.assert_allclose(scores["c1"], hand / hand.mean(), rtol=1e-6)
    # c2's channel reaches the Dense through Flatten: 4 x 4 positions per channel.
    kd = model.get_layer("d").kernel.numpy().reshape(4, 4, 5, 3)
    hand2 = ((k2 ** 2).sum((0, 1, 2)) + (kd ** 2).sum((0, 1, 3))) / 2
    np.testing.assert_allclose(scores["c2"], hand2 / hand2.mean(), rtol=1e-6)


def test_the_scale_of_the_weights_does_not_matter():
    # Under BN a network's weight scale is arbitrary; per-group normalisation makes the scores ignore it.
    model = _chain()
    before = group_l2(model)
    for w in model.weights:
        w.assign(w.numpy() * 100.0)
    after = group_l2(model)
    for gid in before:
        assert after[gid].mean() == pytest.approx(1.0)
        np.testing.assert_allclose(after[gid], before[gid], rtol=1e-6)


def test_residual_and_depthwise_groups_are_scored_per_channel():
    keras.utils.set_random_seed(1)
    inp = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 3, padding="same", name="stem")(inp)
    y = layers.Conv2D(8, 3, padding="same", name="a")(x)
    x = layers.Add()([x, y])
    x = layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = layers.Conv2D(4, 1, name="pw")(x)
    model = keras.Model(inp, layers.Dense(2)(layers.GlobalAveragePooling2D()(x)))
    analysis = analyze(model)
    scores = group_l2(model, analysis=analysis)
    assert set(scores) == set(analysis.prunable_groups)
    for gid, s in scores.items():
        assert s.shape == (analysis.groups[gid].size,) and np.all(s >= 0) and s.mean() == pytest.approx(1.0)
    # The stem's group holds stem, a (both write it), dw (passes it through) and pw (reads it): zeroing the
    # depthwise kernel of one channel lowers that channel's score and no other.
    gid = next(g for g, grp in analysis.prunable_groups.items() if "stem" in grp.producers)
    raw_before = scores[gid]
    dw = model.get_layer("dw")
    kernel = dw.kernel.numpy()
    kernel[..., 3, :] = 0
    dw.kernel.assign(kernel)
    raw_after = group_l2(model, analysis=analysis)[gid]
    ratio = raw_after / raw_before
    assert ratio[3] < ratio[np.arange(8) != 3].min()


def test_a_model_without_prunable_groups_is_one_clear_error():
    inp = keras.Input((4,))
    with pytest.raises(ValueError, match="no prunable channel group"):
        group_l2(keras.Model(inp, layers.Dense(2)(inp)))
