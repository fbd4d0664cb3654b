"""CIFAR-sized CNN builders: VGG-16 (CIFAR), a small VGG, He et al.'s CIFAR ResNets and a tiny CNN.

Every builder returns a functional, channels-last ``keras.Model`` that takes images in the uint8 range
``[0, 255]`` (a first ``Rescaling(1/255)`` layer maps them to ``[0, 1]``; pass ``include_rescaling=False`` to
feed already-scaled floats) and outputs softmax *probabilities* through a final ``Activation("softmax")``
layer named ``"predictions"``, so an exported model is ready to use as is. Train them with
``SparseCategoricalCrossentropy(from_logits=False)``.

Layer names are deterministic (``block1_conv1``, ``stage2_block1_bn2``, ...), so pruning plans written for one
build apply to another. ``width`` multiplies every filter/unit count of the hidden layers (rounded, at least
1); the classifier keeps ``num_classes`` outputs. With ``seed`` set, weights are initialised
deterministically (each layer gets its own seed derived from it); with ``seed=None`` they are random.

Convolutions carry no bias when a BatchNormalization follows them, as is usual.
"""
from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence

import keras
from keras import layers

__all__ = ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet_cifar", "tiny_cnn",
           "vgg16_cifar", "vgg_small"]

# "M" is a 2x2 max-pool; numbers are conv3x3 filter counts.
_VGG16_CONFIG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                                        512, 512, 512, "M", 512, 512, 512, "M")
_VGG_SMALL_CONFIG: tuple[int | str, ...] = (32, 32, "M", 64, 64, "M", 128, 128, "M")
_RESNET_DEPTHS = (20, 32, 44, 56, 110)


def _scaled(n: int, width: float) -> int:
    """Returns ``n * width`` rounded to the nearest integer, at least 1."""
    return max(1, int(round(n * width)))


class _Initializers:
    """Hands out fresh initializers, each with its own seed drawn from a base seed (or unseeded)."""

    def __init__(self, seed: int | None):
        self._counter = None if seed is None else itertools.count(int(seed) * 1000)

    def _next_seed(self) -> int | None:
        return None if self._counter is None else next(self._counter)

    def he_normal(self) -> keras.initializers.Initializer:
        return keras.initializers.HeNormal(seed=self._next_seed())

    def glorot_uniform(self) -> keras.initializers.Initializer:
        return keras.initializers.GlorotUniform(seed=self._next_seed())

    def dropout_seed(self) -> int | None:
        return self._next_seed()


def _check_width(width: float) -> None:
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width!r}")


def _input(input_shape: Sequence[int], include_rescaling: bool):
    """Returns ``(inputs, x)``: the Input tensor and, when asked, its ``Rescaling(1/255)``."""
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = layers.Rescaling(1.0 / 255, name="rescaling")(inputs) if include_rescaling else inputs
    return inputs, x


def _conv_bn_relu(x, filters: int, init: _Initializers, name: str, *, strides: int = 1, relu: bool = True,
                  kernel_size: int = 3):
    """Conv(kernel_size, no bias) -> BN -> ReLU, named ``{name}_conv``/``_bn``/``_relu``-style by the caller."""
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False,
                      kernel_initializer=init.he_normal(), name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    if relu:
        x = layers.ReLU(name=f"{name}_relu")(x)
    return x


def _vgg_features(x, config: Sequence[int | str], width: float, init: _Initializers):
    """Stacks the VGG conv blocks of ``config``; layers are named ``block{b}_conv{i}``, ``block{b}_pool``."""
    block, index = 1, 1
    for item in config:
        if item == "M":
            x = layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
            block, index = block + 1, 1
            continue
        x = layers.Conv2D(_scaled(int(item), width), 3, padding="same", use_bias=False,
                          kernel_initializer=init.he_normal(), name=f"block{block}_conv{index}")(x)
        x = layers.BatchNormalization(name=f"block{block}_bn{index}")(x)
        x = layers.ReLU(name=f"block{block}_relu{index}")(x)
        index += 1
    return x


def _classifier(x, num_classes: int, init: _Initializers):
    """The final ``Dense(num_classes)`` (``logits``) and its ``Activation("softmax")`` (``predictions``)."""
    x = layers.Dense(num_classes, kernel_initializer=init.glorot_uniform(), name="logits")(x)
    return layers.Activation("softmax", name="predictions")(x)


def vgg16_cifar(input_shape: Sequence[int] = (32, 32, 3), num_classes: int = 10, *, width: float = 1.0,
                include_rescaling: bool = True, seed: int | None = None,
                name: str = "vgg16_cifar") -> keras.Model:
    """Builds the CIFAR variant of VGG-16 with BatchNorm (about 15M parameters at ``width=1``).

    Thirteen Conv3x3(no bias)-BN-ReLU layers (64, 64, M, 128, 128, M, 256x3, M, 512x3, M, 512x3, M), then
    Flatten -> Dense(512)-BN-ReLU-Dropout(0.5) -> Dense(num_classes) -> softmax. The output is class
    probabilities.

    Args:
        input_shape: ``(height, width, channels)`` of the input images; height and width must survive five
            2x2 poolings (32 -> 1).
        num_classes: number of output classes.
        width: multiplier of every conv filter count and of the hidden Dense units.
        include_rescaling: start with ``Rescaling(1/255)`` so the model takes uint8-range images.
        seed: base seed for the weight initializers and the dropout; ``None`` for random.
        name: the model's name.

    Returns:
        A functional ``keras.Model`` mapping ``[N, *input_shape]`` images to ``[N, num_classes]`` probabilities.

    Example:
        >>> model = vgg16_cifar(width=0.25, seed=0)
        >>> model.output_shape
        (None, 10)
    """
    _check_width(width)
    init = _Initializers(seed)
    inputs, x = _input(input_shape, include_rescaling)
    x = _vgg_features(x, _VGG16_CONFIG, width, init)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(_scaled(512, width), use_bias=False, kernel_initializer=init.he_normal(), name="fc1")(x)
    x = layers.BatchNormalization(name="fc1_bn")(x)
    x = layers.ReLU(name="fc1_relu")(x)
    x = layers.Dropout(0.5, seed=init.dropout_seed(), name="fc1_dropout")(x)
    outputs = _classifier(x, num_classes, init)
    return keras.Model(inputs, outputs, name=name)


def vgg_small(input_shape: Sequence[int] = (32, 32, 3), num_classes: int = 10, *, width: float = 1.0,
              include_rescaling: bool = True, seed: int | None = None, name: str = "vgg_small") -> keras.Model:
    """Builds a 6-conv VGG-style net with BatchNorm (about 0.29M parameters at ``width=1``).

    Conv3x3-BN-ReLU blocks 32, 32, M, 64, 64, M, 128, 128, M, then GlobalAveragePooling -> Dense -> softmax.
    Small enough to train to over 80% CIFAR-10 test accuracy on two CPU cores in well under an hour.

    Args:
        input_shape: ``(height, width, channels)`` of the input images.
        num_classes: number of output classes.
        width: multiplier of every conv filter count.
        include_rescaling: start with ``Rescaling(1/255)`` so the model takes uint8-range images.
        seed: base seed for the weight initializers; ``None`` for random.
        name: the model's name.

    Returns:
        A functional ``keras.Model`` mapping images to ``[N, num_classes]`` probabilities.

    Example:
        >>> model = vgg_small(seed=0)
        >>> [l.name for l in model.layers][:3]
        ['image', 'rescaling', 'block1_conv1']
    """
    _check_width(width)
    init = _Initializers(seed)
    inputs, x = _input(input_shape, include_rescaling)
    x = _vgg_features(x, _VGG_SMALL_CONFIG, width, init)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = _classifier(x, num_classes, init)
    return keras.Model(inputs, outputs, name=name)


def _basic_block(x, filters: int, strides: int, init: _Initializers, name: str):
    """He et al.'s basic block; the shortcut is a 1x1 conv + BN when the shape changes (option B)."""
    shortcut = x
    y = _conv_bn_relu(x, filters, init, f"{name}_1", strides=strides)
    y = _conv_bn_relu(y, filters, init, f"{name}_2", relu=False)
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn_relu(x, filters, init, f"{name}_shortcut", strides=strides, relu=False,
                                 kernel_size=1)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


def resnet_cifar(depth: int = 20, input_shape: Sequence[int] = (32, 32, 3), num_classes: int = 10, *,
                 width: float = 1.0, include_rescaling: bool = True, seed: int | None = None,
                 name: str | None = None) -> keras.Model:
    """Builds He et al.'s CIFAR ResNet (``depth = 6n + 2``: 20, 32, 44, 56 or 110).

    A Conv3x3(16)-BN-ReLU stem, three stages of ``n`` basic blocks with 16, 32 and 64 filters (the first
    block of stages 2 and 3 has stride 2 and a 1x1 conv + BN projection shortcut, option B), each block
    ``Add`` then ReLU, then GlobalAveragePooling -> Dense -> softmax. ResNet-56 has about 0.86M parameters.
    Layers are named ``stem_conv``, ``stage{s}_block{b}_{1|2|shortcut}_{conv|bn|relu}``,
    ``stage{s}_block{b}_add``/``_out``.

    Args:
        depth: total number of weighted layers on the main path; one of 20, 32, 44, 56, 110.
        input_shape: ``(height, width, channels)`` of the input images.
        num_classes: number of output classes.
        width: multiplier of every conv filter count.
        include_rescaling: start with ``Rescaling(1/255)`` so the model takes uint8-range images.
        seed: base seed for the weight initializers; ``None`` for random.
        name: the model's name; ``f"resnet{depth}"`` by default.

    Returns:
        A functional ``keras.Model`` mapping images to ``[N, num_classes]`` probabilities.

    Example:
        >>> model = resnet_cifar(20, seed=0)
        >>> model.name, model.output_shape
        ('resnet20', (None, 10))
    """
    if depth not in _RESNET_DEPTHS:
        raise ValueError(f"depth must be one of {_RESNET_DEPTHS} (6n + 2), got {depth!r}")
    _check_width(width)
    blocks_per_stage = (depth - 2) // 6
    init = _Initializers(seed)
    inputs, x = _input(input_shape, include_rescaling)
    x = _conv_bn_relu(x, _scaled(16, width), init, "stem")
    for stage, base_filters in enumerate((16, 32, 64), start=1):
        for block in range(1, blocks_per_stage + 1):
            strides = 2 if stage > 1 and block == 1 else 1
            x = _basic_block(x, _scaled(base_filters, width), strides, init, f"stage{stage}_block{block}")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = _classifier(x, num_classes, init)
    return keras.Model(inputs, outputs, name=name or f"resnet{depth}")


resnet20 = functools.partial(resnet_cifar, depth=20)
resnet32 = functools.partial(resnet_cifar, depth=32)
resnet44 = functools.partial(resnet_cifar, depth=44)
resnet56 = functools.partial(resnet_cifar, depth=56)
resnet110 = functools.partial(resnet_cifar, depth=110)
for _fn, _depth in ((resnet20, 20), (resnet32, 32), (resnet44, 44), (resnet56, 56), (resnet110, 110)):
    _fn.__doc__ = f"``resnet_cifar(depth={_depth}, ...)``: see :func:`resnet_cifar` (pass other arguments by keyword)."
del _fn, _depth


def tiny_cnn(input_shape: Sequence[int] = (32, 32, 3), num_classes: int = 10, *, width: float = 1.0,
             include_rescaling: bool = True, seed: int | None = None, name: str = "tiny_cnn") -> keras.Model:
    """Builds a very small CNN for demos and tests (about 6K parameters at ``width=1``).

    Conv3x3(8)-BN-ReLU, M, Conv3x3(16)-BN-ReLU, M, Conv3x3(32)-BN-ReLU, GlobalAveragePooling -> Dense ->
    softmax. Layers are named like the VGG builders' (``block{b}_conv1``, ``block{b}_bn1``, ...).

    Args:
        input_shape: ``(height, width, channels)`` of the input images.
        num_classes: number of output classes.
        width: multiplier of every conv filter count.
        include_rescaling: start with ``Rescaling(1/255)`` so the model takes uint8-range images.
        seed: base seed for the weight initializers; ``None`` for random.
        name: the model's name.

    Returns:
        A functional ``keras.Model`` mapping images to ``[N, num_classes]`` probabilities.

    Example:
        >>> import numpy as np
        >>> model = tiny_cnn(seed=0)
        >>> model(np.zeros((2, 32, 32, 3), "float32")).shape
        TensorShape([2, 10])
    """
    _check_width(width)
    init = _Initializers(seed)
    inputs, x = _input(input_shape, include_rescaling)
    x = _vgg_features(x, (8, "M", 16, "M", 32), width, init)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = _classifier(x, num_classes, init)
    return keras.Model(inputs, outputs, name=name)
