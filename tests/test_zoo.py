"""Tests of the model zoo: shapes, parameter counts, width scaling, names and seeded determinism."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from tfmot_easiedge.models import zoo

BUILDERS = {
    "tiny_cnn": zoo.tiny_cnn,
    "vgg_small": zoo.vgg_small,
    "resnet20": zoo.resnet20,
    "vgg16_cifar": zoo.vgg16_cifar,
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_output_is_probabilities_of_num_classes(name):
    model = BUILDERS[name](num_classes=7, width=0.25, seed=0)
    images = np.random.default_rng(0).integers(0, 256, size=(3, 32, 32, 3)).astype("float32")
    probs = keras.ops.convert_to_numpy(model(images, training=False))
    assert model.output_shape == (None, 7)
    assert probs.shape == (3, 7)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert model.layers[-1].name == "predictions"
    assert model.get_layer("logits").units == 7


@pytest.mark.parametrize("builder, low, high", [
    (zoo.resnet20, 0.26e6, 0.29e6),
    (zoo.resnet56, 0.83e6, 0.88e6),
    (zoo.vgg16_cifar, 14.5e6, 15.5e6),
    (zoo.vgg_small, 0.2e6, 0.4e6),
    (zoo.tiny_cnn, 1e3, 2e4),
])
def test_param_counts_at_width_one(builder, low, high):
    assert low <= builder(seed=0).count_params() <= high


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_width_scales_filters_and_params(name):
    full, half = BUILDERS[name](width=1.0), BUILDERS[name](width=0.5)
    assert half.count_params() < 0.4 * full.count_params()
    conv_full = [l.filters for l in full.layers if isinstance(l, keras.layers.Conv2D)]
    conv_half = [l.filters for l in half.layers if isinstance(l, keras.layers.Conv2D)]
    assert conv_half == [max(1, round(f / 2)) for f in conv_full]


def test_width_keeps_at_least_one_filter():
    model = zoo.tiny_cnn(width=0.01)
    assert all(l.filters == 1 for l in model.layers if isinstance(l, keras.layers.Conv2D))
    assert model.output_shape == (None, 10)


@pytest.mark.parametrize("width", [0, -1.0])
def test_bad_width_raises(width):
    with pytest.raises(ValueError, match="width"):
        zoo.tiny_cnn(width=width)


@pytest.mark.parametrize("name", ["tiny_cnn", "resnet20"])
def test_seed_makes_weights_and_names_deterministic(name):
    a, b = BUILDERS[name](seed=7), BUILDERS[name](seed=7)
    c = BUILDERS[name](seed=8)
    assert [l.name for l in a.layers] == [l.name for l in b.layers]
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    first_conv = "block1_conv1" if name == "tiny_cnn" else "stem_conv"
    assert not np.array_equal(a.get_layer(first_conv).get_weights()[0], c.get_layer(first_conv).get_weights()[0])


def test_rescaling_layer_is_optional():
    with_rescaling = zoo.tiny_cnn(seed=0)
    without = zoo.tiny_cnn(seed=0, include_rescaling=False)
    assert isinstance(with_rescaling.layers[1], keras.layers.Rescaling)
    assert not any(isinstance(l, keras.layers.Rescaling) for l in without.layers)
    images = np.random.default_rng(1).integers(0, 256, size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(with_rescaling(images)),
                               keras.ops.convert_to_numpy(without(images / 255.0)), rtol=1e-5, atol=1e-6)


def test_resnet_structure():
    model = zoo.resnet_cifar(depth=32, seed=0)
    assert model.name == "resnet32"
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    shortcuts = [l for l in convs if l.name.endswith("_shortcut_conv")]
    assert len(convs) - len(shortcuts) == 31  # depth = main-path convs + the Dense
    assert [l.kernel_size for l in shortcuts] == [(1, 1), (1, 1)]
    assert len([l for l in model.layers if isinstance(l, keras.layers.Add)]) == 15
    assert model.get_layer("stage3_block5_out").output.shape[1:] == (8, 8, 64)


def test_resnet_rejects_bad_depth():
    with pytest.raises(ValueError, match="depth"):
        zoo.resnet_cifar(depth=21)


def test_vgg16_layout():
    model = zoo.vgg16_cifar(width=0.125, seed=0)
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert len(convs) == 13 and not any(c.use_bias for c in convs)
    assert model.get_layer("block5_pool").output.shape[1:] == (1, 1, 64)
    assert model.get_layer("fc1").units == 64


def test_builds_for_other_input_shapes():
    model = zoo.vgg_small(input_shape=(28, 28, 1), num_classes=3, seed=0)
    assert model.input_shape == (None, 28, 28, 1) and model.output_shape == (None, 3)
