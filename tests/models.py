"""Small hand-built Keras models shared by the tests, and helpers to randomise and compare them.

Every builder returns a fresh functional (or Sequential-containing) model on a 16x16 input (Conv1D and
Conv3D nets use their own small inputs) whose last layer is a ``Dense`` head, so the convolutions
before the head are prunable and the head itself is not (it reaches the model output). Layer names are
fixed so tests can refer to groups by name.

Import from a test module with ``from models import ...`` (pytest puts ``tests/`` on ``sys.path``).
"""
from __future__ import annotations

from typing import Callable

import keras
import numpy as np
from keras import layers

import tfmot_easiedge as te

L = layers
SIZE = 16


def _head(x, units: int = 3, name: str = "head"):
    """GlobalAveragePooling (of any rank) -> Dense(units), the model output."""
    pool = {3: L.GlobalAveragePooling1D, 4: L.GlobalAveragePooling2D, 5: L.GlobalAveragePooling3D}[len(x.shape)]
    return L.Dense(units, name=name)(pool(name="gap")(x))


def _conv_bn_relu(x, filters: int, name: str, **kwargs):
    x = L.Conv2D(filters, 3, padding="same", name=name, **kwargs)(x)
    x = L.BatchNormalization(name=f"{name}_bn")(x)
    return L.ReLU(name=f"{name}_relu")(x)


def _input(shape=(SIZE, SIZE, 3)):
    return keras.Input(shape, name="image")


# ----------------------------------------------------------------------------- builders
def conv_chain() -> keras.Model:
    """conv1(8) -> ReLU -> conv2(6) -> ReLU -> conv3(4, 1x1) -> GAP -> Dense(2): MACs are easy by hand."""
    x = inp = _input()
    x = L.ReLU(name="relu1")(L.Conv2D(8, 3, padding="same", name="conv1")(x))
    x = L.ReLU(name="relu2")(L.Conv2D(6, 3, padding="same", name="conv2")(x))
    x = L.Conv2D(4, 1, name="conv3")(x)
    return keras.Model(inp, _head(x, 2), name="conv_chain")


def concat_block() -> keras.Model:
    """Two branches (a: 8, b: 6 filters) concatenated on channels, read by ``mix``; plus a 2-way concat of a."""
    inp = _input()
    a = _conv_bn_relu(inp, 8, "a")
    b = L.Conv2D(6, 1, name="b")(inp)
    x = L.Concatenate(name="cat")([a, b])
    x = _conv_bn_relu(x, 10, "mix")
    x = L.Concatenate(name="cat2")([x, a])
    x = L.Conv2D(5, 3, padding="same", name="post")(x)
    return keras.Model(inp, _head(x), name="concat_block")


def residual_block(projection: bool = False) -> keras.Model:
    """A stem and two residual blocks; the second has a strided 1x1 projection shortcut when ``projection``."""
    inp = _input()
    stem = _conv_bn_relu(inp, 8, "stem")
    x = _conv_bn_relu(stem, 8, "b1_conv1")
    x = L.BatchNormalization(name="b1_conv2_bn")(L.Conv2D(8, 3, padding="same", name="b1_conv2")(x))
    x = L.ReLU(name="b1_out")(L.Add(name="b1_add")([stem, x]))
    width, stride = (12, 2) if projection else (8, 1)
    y = _conv_bn_relu(x, width, "b2_conv1", strides=stride)
    y = L.BatchNormalization(name="b2_conv2_bn")(L.Conv2D(width, 3, padding="same", name="b2_conv2")(y))
    if projection:
        x = L.Conv2D(width, 1, strides=stride, name="b2_proj")(x)
        x = L.BatchNormalization(name="b2_proj_bn")(x)
    x = L.ReLU(name="b2_out")(L.Add(name="b2_add")([x, y]))
    x = L.Conv2D(6, 1, name="post")(x)
    return keras.Model(inp, _head(x), name="residual_projection" if projection else "residual_block")


def depthwise_block(depth_multiplier: int = 2) -> keras.Model:
    """conv(8) -> BN -> ReLU -> DepthwiseConv2D(multiplier) -> BN -> ReLU -> pointwise(12)."""
    inp = _input()
    x = _conv_bn_relu(inp, 8, "expand")
    x = L.DepthwiseConv2D(3, padding="same", depth_multiplier=depth_multiplier, name="dw")(x)
    x = L.ReLU(name="dw_relu")(L.BatchNormalization(name="dw_bn")(x))
    x = L.Conv2D(12, 1, name="project")(x)
    return keras.Model(inp, _head(x), name="depthwise_block")


def separable_block() -> keras.Model:
    """conv(8) -> SeparableConv2D(12, multiplier 2) -> BN -> ReLU -> SeparableConv2D(6)."""
    inp = _input()
    x = _conv_bn_relu(inp, 8, "stem")
    x = L.SeparableConv2D(12, 3, padding="same", depth_multiplier=2, name="sep1")(x)
    x = L.ReLU(name="sep1_relu")(L.BatchNormalization(name="sep1_bn")(x))
    x = L.SeparableConv2D(6, 3, padding="same", name="sep2")(x)
    return keras.Model(inp, _head(x), name="separable_block")


def grouped_conv() -> keras.Model:
    """conv(8) -> Conv2D(8, groups=2) (blocked) and conv(8) -> Conv2D(8, groups=8) (depthwise-like)."""
    inp = _input()
    x = _conv_bn_relu(inp, 8, "stem")
    g = L.Conv2D(8, 3, padding="same", groups=2, name="grouped")(x)
    y = _conv_bn_relu(inp, 8, "stem2")
    d = L.Conv2D(8, 3, padding="same", groups=8, name="dwlike")(y)
    d = L.BatchNormalization(name="dwlike_bn")(d)
    x = L.Concatenate(name="cat")([L.ReLU(name="g_relu")(g), L.ReLU(name="d_relu")(d)])
    x = L.Conv2D(6, 1, name="post")(x)
    return keras.Model(inp, _head(x), name="grouped_conv")


def se_block() -> keras.Model:
    """Squeeze-and-excitation: GAP -> Reshape((1,1,C)) -> conv(4) -> conv(C) -> sigmoid -> Multiply."""
    inp = _input()
    x = _conv_bn_relu(inp, 8, "body")
    s = L.GlobalAveragePooling2D(name="se_gap")(x)
    s = L.Reshape((1, 1, 8), name="se_reshape")(s)
    s = L.Conv2D(4, 1, activation="relu", name="se_reduce")(s)
    s = L.Conv2D(8, 1, name="se_expand")(s)
    s = L.Activation("sigmoid", name="se_sigmoid")(s)
    x = L.Multiply(name="se_scale")([x, s])
    x = L.Conv2D(6, 3, padding="same", name="post")(x)
    return keras.Model(inp, _head(x), name="se_block")


def flatten_dense() -> keras.Model:
    """conv(4) -> MaxPool -> Flatten -> Dense(10) -> ReLU -> Dense(3): channel c becomes units c + 4k."""
    inp = _input()
    x = L.Conv2D(4, 3, padding="same", name="conv")(inp)
    x = L.MaxPooling2D(4, name="pool")(L.ReLU(name="relu")(x))
    x = L.Flatten(name="flatten")(x)
    x = L.ReLU(name="fc1_relu")(L.Dense(10, name="fc1")(x))
    return keras.Model(inp, L.Dense(3, name="head")(x), name="flatten_dense")


def reshape_dense(explicit: bool = True) -> keras.Model:
    """conv(4) -> Reshape((H·W·C,)) (or ``(-1,)``) -> Dense(10) -> Dense(3)."""
    inp = _input()
    x = L.Conv2D(4, 3, strides=4, padding="same", name="conv")(inp)
    x = L.Reshape((4 * 4 * 4,) if explicit else (-1,), name="reshape")(x)
    x = L.Dense(10, activation="relu", name="fc1")(x)
    return keras.Model(inp, L.Dense(3, name="head")(x), name="reshape_dense" if explicit else "reshape_dense_auto")


def nested_sequential() -> keras.Model:
    """A functional model that calls a Sequential block (conv -> BN -> ReLU -> conv) in the middle."""
    block = keras.Sequential([keras.Input((SIZE, SIZE, 8)), L.Conv2D(10, 3, padding="same", name="inner_conv"),
                              L.BatchNormalization(name="inner_bn"), L.ReLU(name="inner_relu"),
                              L.Conv2D(6, 3, padding="same", name="inner_conv2")], name="seq")
    inp = _input()
    x = _conv_bn_relu(inp, 8, "outer_conv")
    x = block(x)
    x = L.Conv2D(5, 1, name="post")(L.ReLU(name="post_relu")(x))
    return keras.Model(inp, _head(x), name="nested_sequential")


def nested_functional() -> keras.Model:
    """A functional model that calls a functional residual block twice-nested (block inside block)."""
    b_in = keras.Input((SIZE, SIZE, 8))
    y = L.Conv2D(8, 3, padding="same", name="blk_conv1")(b_in)
    y = L.ReLU(name="blk_relu")(L.BatchNormalization(name="blk_bn")(y))
    y = L.Conv2D(8, 3, padding="same", name="blk_conv2")(y)
    inner = keras.Model(b_in, L.Add(name="blk_add")([b_in, y]), name="block")
    o_in = keras.Input((SIZE, SIZE, 8))
    outer = keras.Model(o_in, L.Conv2D(7, 1, name="wrap_conv")(inner(o_in)), name="wrapper")
    inp = _input()
    x = _conv_bn_relu(inp, 8, "stem")
    x = outer(x)
    x = L.Conv2D(6, 3, padding="same", name="post")(L.ReLU(name="post_relu")(x))
    return keras.Model(inp, _head(x), name="nested_functional")


def conv1d_net() -> keras.Model:
    inp = keras.Input((32, 3), name="signal")
    x = L.Conv1D(8, 3, padding="same", name="c1")(inp)
    x = L.ReLU(name="c1_relu")(L.BatchNormalization(name="c1_bn")(x))
    x = L.MaxPooling1D(2, name="pool")(x)
    x = L.Conv1D(6, 3, padding="same", name="c2")(x)
    return keras.Model(inp, _head(x), name="conv1d_net")


def conv3d_net() -> keras.Model:
    inp = keras.Input((8, 8, 8, 2), name="volume")
    x = L.Conv3D(4, 3, padding="same", name="c1")(inp)
    x = L.ReLU(name="c1_relu")(L.BatchNormalization(name="c1_bn")(x))
    x = L.Conv3D(6, 3, padding="same", name="c2")(x)
    return keras.Model(inp, _head(x), name="conv3d_net")


def conv_transpose_net() -> keras.Model:
    """conv(8, stride 2) -> Conv2DTranspose(6, stride 2) -> BN -> ReLU -> conv(4)."""
    inp = _input()
    x = _conv_bn_relu(inp, 8, "down", strides=2)
    x = L.Conv2DTranspose(6, 3, strides=2, padding="same", name="up")(x)
    x = L.ReLU(name="up_relu")(L.BatchNormalization(name="up_bn")(x))
    x = L.Conv2D(4, 3, padding="same", name="post")(x)
    return keras.Model(inp, _head(x), name="conv_transpose_net")


def layernorm_net(axis=-1) -> keras.Model:
    """conv(8) -> LayerNormalization(axis) -> conv(6) -> conv(5); over channels the ``ln_in`` group is approximate."""
    inp = _input()
    x = L.Conv2D(8, 3, padding="same", name="ln_in")(inp)
    x = L.LayerNormalization(axis=axis, name="ln")(x)
    x = L.Conv2D(6, 3, padding="same", name="mid")(x)
    x = L.Conv2D(5, 1, name="post")(L.ReLU(name="mid_relu")(x))
    return keras.Model(inp, _head(x), name="layernorm_net" if axis == -1 else "layernorm_spatial_net")


def groupnorm_net(groups: int = 8) -> keras.Model:
    """conv(8) -> GroupNormalization(groups) -> conv(6): groups=8 exact, 1 approximate, 2 blocked."""
    inp = _input()
    x = L.Conv2D(8, 3, padding="same", name="gn_in")(inp)
    x = L.ReLU(name="gn_relu")(L.GroupNormalization(groups=groups, name="gn")(x))
    x = L.Conv2D(6, 3, padding="same", name="post")(x)
    return keras.Model(inp, _head(x), name=f"groupnorm{groups}_net")


def prelu_net() -> keras.Model:
    """conv(8) -> PReLU(shared spatial axes) -> conv(6) -> PReLU(per position) -> conv(5)."""
    inp = _input()
    x = L.PReLU(shared_axes=[1, 2], name="prelu1")(L.Conv2D(8, 3, padding="same", name="c1")(inp))
    x = L.PReLU(name="prelu2")(L.Conv2D(6, 3, padding="same", name="c2")(x))
    x = L.Conv2D(5, 1, name="post")(x)
    return keras.Model(inp, _head(x), name="prelu_net")


def lambda_net() -> keras.Model:
    """conv(8) -> Lambda (unknown: a stop) -> conv(6) -> conv(5); only ``c2`` stays prunable."""
    inp = _input()
    x = L.Conv2D(8, 3, padding="same", name="c1")(inp)
    x = L.Lambda(lambda t: t * 2.0, name="double")(x)
    x = L.ReLU(name="c2_relu")(L.Conv2D(6, 3, padding="same", name="c2")(x))
    x = L.Conv2D(5, 1, name="post")(x)
    return keras.Model(inp, _head(x), name="lambda_net")


def shared_conv_net() -> keras.Model:
    """A conv layer called twice (shared weights): its group and its input's group are not prunable."""
    inp = _input()
    x = _conv_bn_relu(inp, 8, "stem")
    shared = L.Conv2D(8, 3, padding="same", name="shared")
    y = shared(L.ReLU(name="r1")(shared(x)))
    x = L.Conv2D(6, 1, name="post")(L.ReLU(name="r2")(y))
    return keras.Model(inp, _head(x), name="shared_conv_net")


def ops_merge_net() -> keras.Model:
    """Branches a(8) and b(8) merged by ``a + b`` and ``keras.ops.relu`` (Keras operations, not layers)."""
    inp = _input()
    a = L.Conv2D(8, 3, padding="same", name="a")(inp)
    b = L.BatchNormalization(name="b_bn")(L.Conv2D(8, 1, name="b")(inp))
    x = keras.ops.relu(a + b)
    x = L.Conv2D(6, 3, padding="same", name="post")(x * 0.5)
    return keras.Model(inp, _head(x), name="ops_merge_net")


BUILDERS: dict[str, Callable[[], keras.Model]] = {
    "conv_chain": conv_chain,
    "concat_block": concat_block,
    "residual_block": residual_block,
    "residual_projection": lambda: residual_block(projection=True),
    "depthwise_block": depthwise_block,
    "depthwise_block_m1": lambda: depthwise_block(depth_multiplier=1),
    "separable_block": separable_block,
    "grouped_conv": grouped_conv,
    "se_block": se_block,
    "flatten_dense": flatten_dense,
    "reshape_dense": reshape_dense,
    "reshape_dense_auto": lambda: reshape_dense(explicit=False),
    "nested_sequential": nested_sequential,
    "nested_functional": nested_functional,
    "conv1d_net": conv1d_net,
    "conv3d_net": conv3d_net,
    "conv_transpose_net": conv_transpose_net,
    "layernorm_net": layernorm_net,
    "layernorm_spatial_net": lambda: layernorm_net(axis=(1, 2)),
    "groupnorm8_net": groupnorm_net,
    "groupnorm1_net": lambda: groupnorm_net(groups=1),
    "groupnorm2_net": lambda: groupnorm_net(groups=2),
    "prelu_net": prelu_net,
    "lambda_net": lambda_net,
    "shared_conv_net": shared_conv_net,
    "ops_merge_net": ops_merge_net,
}


# ----------------------------------------------------------------------------- helpers
def randomize(model: keras.Model, seed: int = 0) -> keras.Model:
    """Sets every float weight of ``model`` to random values, in place; returns ``model``.

    Kernels get N(0, 1/fan_in) so activations keep their scale; scales (BatchNorm/LayerNorm gamma,
    LayerScale) and variances are drawn from U(0.5, 1.5), so moving variances stay positive; other
    vectors (biases, beta, moving means, PReLU alphas) from N(0, 0.2). Integer weights are left alone.
    """
    rng = np.random.default_rng(seed)
    for v in model.weights:
        if not v.dtype.startswith("float"):
            continue
        shape = tuple(v.shape)
        name = v.path.split("/")[-1]
        if "variance" in name or name in ("gamma", "scale") or "layer_scale" in v.path:
            value = rng.uniform(0.5, 1.5, shape)
        elif len(shape) <= 1 or name == "alpha":
            value = rng.normal(0.0, 0.2, shape)
        else:
            value = rng.normal(0.0, 1.0, shape) / np.sqrt(_fan_in(name, shape))
        v.assign(value.astype(v.dtype))
    return model


def _fan_in(name: str, shape: tuple) -> int:
    if "depthwise" in name or len(shape) >= 3 and shape[-1] == 1:
        return max(1, int(np.prod(shape[:-2])))  # one input channel per filter
    return max(1, int(np.prod(shape)) // shape[-1])


def build(name: str, seed: int = 0) -> keras.Model:
    """A fresh, randomised model from ``BUILDERS``."""
    keras.utils.set_random_seed(seed)
    return randomize(BUILDERS[name](), seed)


def random_inputs(model: keras.Model, n: int = 2, seed: int = 0) -> np.ndarray:
    """``n`` standard-normal examples shaped like the model's (single) input."""
    shape = tuple(model.inputs[0].shape[1:])
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype("float32")


def predict(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """Inference-mode output as NumPy (a direct call: faster than ``predict`` for one small batch)."""
    return keras.ops.convert_to_numpy(model(x, training=False))


def rel_err(a, b) -> float:
    """``max|a - b| / max|b|`` (0 when both are all zeros)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = np.max(np.abs(b))
    diff = np.max(np.abs(a - b))
    return float(diff / scale) if scale > 0 else float(diff)


def exact_plan(analysis: te.ModelAnalysis, ratio: float, seed: int) -> te.PruningPlan:
    """``PruningPlan.random`` restricted to the prunable groups that are not approximate."""
    plan = te.PruningPlan.random(analysis, ratio, seed=seed)
    approx = {g for g, grp in analysis.groups.items() if grp.approximate}
    kept = {g: k for g, k in plan.kept.items() if g not in approx}
    return te.PruningPlan(kept, {g: plan.group_sizes[g] for g in kept}, plan.model_name, plan.budget,
                          dict(plan.metadata))
