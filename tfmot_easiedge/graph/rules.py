"""Per-layer channel rules and their registry.

A rule tells, for one layer class, how channel maps flow from the layer's inputs to its outputs
(``propagate``), how to build the layer again with only the kept channels (``slim``) and, for layers
whose input weights read channels (convolutions, Dense), how to cut a channel at the input while keeping
the architecture (``mask_inputs``). Rules are looked up along the class hierarchy, so a subclass of
``Conv2D`` is handled as a ``Conv2D``; a layer with no rule is a *stop*.

Register a rule for your own layer:

>>> import keras
>>> from tfmot_easiedge.graph import rules
>>> class MyGate(keras.layers.Layer):
...     def call(self, x):
...         return x * 2.0
>>> rules.register_rule(MyGate, rules.PassThroughRule())
>>> isinstance(rules.find_rule(MyGate()), rules.PassThroughRule)
True
>>> rules.unregister_rule(MyGate)
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from tfmot_easiedge.graph.channels import ChannelMap

if TYPE_CHECKING:  # pragma: no cover
    from tfmot_easiedge.graph.analysis import PropagationContext
    from tfmot_easiedge.graph.model_graph import GraphNode


class StopAnalysis(Exception):
    """Raised by a rule when it cannot follow channels through this particular layer instance."""


class ChannelRule:
    """Base class: how one kind of layer moves, cuts and rebuilds channels.

    Attributes:
        consumes_inputs: the layer's weights read its input channels (cut them at ``mask_inputs``).
        produces_outputs: the layer creates new output channels (filters) that can be pruned.
    """

    consumes_inputs = False
    produces_outputs = False

    def propagate(self, node: "GraphNode", ctx: "PropagationContext") -> list[ChannelMap | None]:
        raise NotImplementedError

    def slim(self, layer, in_keep: list[np.ndarray | None], out_keep: list[np.ndarray | None]
             ) -> tuple[dict, list[np.ndarray]]:
        """Returns ``(config, weights)`` of the layer with only the kept channels.

        ``in_keep``/``out_keep`` are boolean masks over the channel positions of each input/output.
        The default keeps the config and slices every float weight whose last axis is a channel axis.
        """
        return layer.get_config(), [np.asarray(w) for w in layer.get_weights()]

    def mask_inputs(self, layer, in_keep: list[np.ndarray | None]) -> list[np.ndarray]:
        """The layer's weights with the input weights of removed channels set to zero."""
        return [np.asarray(w) for w in layer.get_weights()]

    def weight_masks(self, layer, in_keep: list[np.ndarray | None], out_keep: list[np.ndarray | None]
                     ) -> dict[str, np.ndarray]:
        """Which entries of each weight belong to kept channels (ADMM's projection and masked fine-tuning).

        Returns ``{weight name: boolean mask}`` (the name is the last part of the variable's path, e.g.
        ``"kernel"``), each mask broadcastable to the weight's shape and False where the entry reads or
        writes a removed channel; weights that no channel touches are left out. Only trainable weights
        matter: statistics such as BatchNorm's moving mean are never penalised.
        """
        return {}


# ----------------------------------------------------------------------------- helpers
def _channels_last(layer) -> None:
    fmt = getattr(layer, "data_format", "channels_last")
    if fmt not in (None, "channels_last"):
        raise StopAnalysis(f"data_format={fmt!r}: only channels_last is supported")


def _take(w: np.ndarray, keep: np.ndarray, axis: int) -> np.ndarray:
    return np.take(w, np.flatnonzero(keep), axis=axis)


def _axis_mask(keep: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    """``keep`` shaped to broadcast along ``axis`` of an ``ndim``-dimensional weight."""
    shape = [1] * ndim
    shape[axis] = keep.shape[0]
    return keep.reshape(shape)


def _all(mask: np.ndarray | None, size: int) -> np.ndarray:
    return np.ones(size, bool) if mask is None else np.asarray(mask, bool)


def _weights_by_name(layer) -> dict[str, np.ndarray]:
    out = {}
    for v in layer.weights:
        out[v.path.split("/")[-1]] = np.asarray(v.numpy())
    return out


def _ordered(layer, named: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [named[v.path.split("/")[-1]] for v in layer.weights]


def _single(maps: list) -> ChannelMap:
    if not maps or maps[0] is None:
        raise StopAnalysis("input has no channel axis")
    return maps[0]


# ----------------------------------------------------------------------------- pass-through
class PassThroughRule(ChannelRule):
    """Output channel i is input channel i; the layer has no per-channel weights (ReLU, pooling...)."""

    def __init__(self, approximate: str | None = None):
        self.approximate = approximate

    def propagate(self, node, ctx):
        _channels_last(node.layer)
        m = _single(ctx.in_maps(node))
        if self.approximate:
            ctx.mark_approximate(m, f"{node.name}: {self.approximate}")
        return [m for _ in node.outputs]


class PerChannelRule(PassThroughRule):
    """Pass-through with per-channel weights sliced along their last axis (BatchNorm, PReLU, LayerScale...)."""

    def slim(self, layer, in_keep, out_keep):
        keep = in_keep[0]
        weights = []
        for v in layer.weights:
            w = np.asarray(v.numpy())
            if keep is not None and w.ndim >= 1 and w.shape[-1] == keep.shape[0] and v.dtype.startswith("float"):
                w = _take(w, keep, -1)
            weights.append(w)
        config = layer.get_config()
        for key in ("mean", "variance"):  # Normalization given constant statistics keeps them in its config
            val = config.get(key)
            if val is not None and keep is not None and np.shape(val) and np.shape(val)[-1] == keep.shape[0]:
                config[key] = _take(np.asarray(val), keep, -1).tolist()
        return config, weights

    def weight_masks(self, layer, in_keep, out_keep):
        keep = in_keep[0]
        if keep is None:
            return {}
        return {v.path.split("/")[-1]: _axis_mask(keep, -1, len(v.shape)) for v in layer.trainable_weights
                if len(v.shape) >= 1 and v.shape[-1] == keep.shape[0]}


class BatchNormRule(PerChannelRule):
    def propagate(self, node, ctx):
        rank = len(ctx.tensor(node.inputs[0]).shape)
        if node.layer.axis not in (-1, rank - 1):
            raise StopAnalysis(f"normalises axis {node.layer.axis}, not the channel axis")
        return super().propagate(node, ctx)


class LayerNormRule(PerChannelRule):
    """LayerNormalization: exact when it normalises other axes; approximate over the channel axis."""

    def propagate(self, node, ctx):
        rank = len(ctx.tensor(node.inputs[0]).shape)
        axes = node.layer.axis if isinstance(node.layer.axis, (list, tuple)) else [node.layer.axis]
        axes = [a % rank for a in axes]
        m = _single(ctx.in_maps(node))
        if rank - 1 in axes:
            ctx.mark_approximate(m, f"{node.name}: LayerNormalization statistics include the cut channels")
        return [m]

    def slim(self, layer, in_keep, out_keep):
        axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
        if not any(a == -1 or a == len(layer.input.shape) - 1 for a in axes):
            return layer.get_config(), [np.asarray(w) for w in layer.get_weights()]
        return super().slim(layer, in_keep, out_keep)

    def weight_masks(self, layer, in_keep, out_keep):
        axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
        if not any(a == -1 or a == len(layer.input.shape) - 1 for a in axes):
            return {}
        return super().weight_masks(layer, in_keep, out_keep)


class GroupNormRule(PerChannelRule):
    def propagate(self, node, ctx):
        m = _single(ctx.in_maps(node))
        groups = node.layer.groups
        if groups in (-1, len(m)):
            return [m]
        if groups == 1:
            ctx.mark_approximate(m, f"{node.name}: GroupNormalization(groups=1) statistics include cut channels")
            return [m]
        ctx.block(m, f"{node.name}: GroupNormalization(groups={groups}) needs equal channels per group")
        return [m]

    def slim(self, layer, in_keep, out_keep):
        config, weights = super().slim(layer, in_keep, out_keep)
        if config["groups"] not in (-1, 1):
            config["groups"] = int(in_keep[0].sum())
        return config, weights


class RescalingRule(PassThroughRule):
    """Rescaling: a scalar scale/offset passes through; per-channel values are sliced in the config."""

    def slim(self, layer, in_keep, out_keep):
        config = layer.get_config()
        keep = in_keep[0]
        for key in ("scale", "offset"):
            val = config.get(key)
            if isinstance(val, (list, tuple)) and keep is not None and len(val) == keep.shape[0]:
                config[key] = [v for v, k in zip(val, keep) if k]
        return config, []


class GlobalPoolRule(PassThroughRule):
    pass


class ReshapeRule(ChannelRule):
    """Reshape that keeps the channel axis last (``(1, 1, C)``) or flattens channels-last (``(H·W·C,)``)."""

    def propagate(self, node, ctx):
        m = _single(ctx.in_maps(node))
        in_shape = ctx.tensor(node.inputs[0]).shape[1:]
        out_shape = ctx.tensor(node.outputs[0]).shape[1:]
        if None in in_shape or None in out_shape:
            raise StopAnalysis("reshape with unknown dimensions")
        if out_shape and out_shape[-1] == in_shape[-1]:
            return [m]
        if len(out_shape) == 1:
            return [m.tile(math.prod(in_shape[:-1]))]
        raise StopAnalysis(f"reshape {tuple(in_shape)} -> {tuple(out_shape)} mixes channels")

    def slim(self, layer, in_keep, out_keep):
        config = layer.get_config()
        shape = list(config["target_shape"])
        shape[-1] = int(out_keep[0].sum()) if shape[-1] != -1 else -1
        config["target_shape"] = tuple(shape)
        return config, []


class FlattenRule(ChannelRule):
    """Flatten of a channels-last tensor: channel c becomes the H·W units ``c + k·C``."""

    def propagate(self, node, ctx):
        _channels_last(node.layer)
        m = _single(ctx.in_maps(node))
        spatial = ctx.tensor(node.inputs[0]).shape[1:-1]
        if None in spatial:
            raise StopAnalysis("Flatten of a tensor with unknown spatial size")
        return [m.tile(math.prod(spatial) if spatial else 1)]


class PermuteRule(PassThroughRule):
    def propagate(self, node, ctx):
        dims = tuple(node.layer.dims)
        if dims[-1] != len(dims):
            raise StopAnalysis(f"Permute{dims} moves the channel axis")
        return super().propagate(node, ctx)


# ----------------------------------------------------------------------------- merges
class MergeRule(ChannelRule):
    """Element-wise merges (Add, Multiply...): position i of every input is the same channel.

    Inputs broadcast along the channel axis (size 1) are not coupled.
    """

    def propagate(self, node, ctx):
        maps = [m for m in ctx.in_maps(node) if m is not None and len(m) > 1]
        if not maps:
            return [ctx.in_maps(node)[0] for _ in node.outputs]
        width = max(len(m) for m in maps)
        if any(len(m) != width for m in maps):
            raise StopAnalysis(f"merges inputs of different channel counts {[len(m) for m in maps]}")
        for other in maps[1:]:
            ctx.couple(maps[0], other)
        return [maps[0] for _ in node.outputs]


class ElementwiseOpRule(MergeRule):
    """A Keras operation applied element-wise (``x + y``, ``ops.relu(x)`` in functional code).

    Only tensor operands and scalar constants are followed: a constant vector would have to be sliced.
    """

    def propagate(self, node, ctx):
        for arg in node.arguments._flat_arguments:
            if isinstance(arg, keras.KerasTensor) or arg is None or isinstance(arg, (bool, int, float, str)):
                continue
            if np.ndim(arg) != 0:
                raise StopAnalysis(f"operation {type(node.layer).__name__} has a non-scalar constant operand")
        return super().propagate(node, ctx)


class ConcatenateRule(ChannelRule):
    """Concatenate: along the channel axis the maps are joined (each input at its offset)."""

    def propagate(self, node, ctx):
        maps = ctx.in_maps(node)
        rank = len(ctx.tensor(node.outputs[0]).shape)
        if node.layer.axis in (-1, rank - 1):
            if any(m is None for m in maps):
                raise StopAnalysis("concatenates a tensor without a channel axis")
            return [ChannelMap.concat(maps)]
        return MergeRule().propagate(node, ctx)


# ----------------------------------------------------------------------------- producers / consumers
class ConvRule(ChannelRule):
    """Conv1D/2D/3D and transposed convolutions, including grouped convolutions."""

    consumes_inputs = True
    produces_outputs = True

    @staticmethod
    def _axes(layer) -> tuple[int, int]:
        # Kernel (..., in/groups, out) for convolutions; (..., out, in) for transposed ones.
        from keras.src.layers.convolutional.base_conv_transpose import BaseConvTranspose

        return (-1, -2) if isinstance(layer, BaseConvTranspose) else (-2, -1)

    @staticmethod
    def _depthwise_like(layer, in_channels: int) -> bool:
        groups = getattr(layer, "groups", 1)
        return groups > 1 and groups == in_channels == layer.filters

    def propagate(self, node, ctx):
        layer = node.layer
        _channels_last(layer)
        m = _single(ctx.in_maps(node))
        groups = getattr(layer, "groups", 1)
        if self._depthwise_like(layer, len(m)):
            return [m]
        out = ctx.new_space(node, 0, layer.filters)
        if groups > 1:
            reason = f"{node.name}: grouped convolution (groups={groups}) needs equal channels per group"
            ctx.block(m, reason)
            ctx.block(out, reason)
        return [out]

    def slim(self, layer, in_keep, out_keep):
        config = layer.get_config()
        w = _weights_by_name(layer)
        in_ax, out_ax = self._axes(layer)
        if self._depthwise_like(layer, in_keep[0].shape[0]):
            keep = in_keep[0]
            config["filters"] = config["groups"] = int(keep.sum())
            w["kernel"] = _take(w["kernel"], keep, out_ax)
            if "bias" in w:
                w["bias"] = _take(w["bias"], keep, 0)
            return config, _ordered(layer, w)
        w["kernel"] = _take(_take(w["kernel"], in_keep[0], in_ax), out_keep[0], out_ax)
        if "bias" in w:
            w["bias"] = _take(w["bias"], out_keep[0], 0)
        config["filters"] = int(out_keep[0].sum())
        return config, _ordered(layer, w)

    def mask_inputs(self, layer, in_keep):
        w = _weights_by_name(layer)
        if self._depthwise_like(layer, in_keep[0].shape[0]):
            return _ordered(layer, w)
        in_ax, _ = self._axes(layer)
        kernel = w["kernel"].copy()
        idx = [slice(None)] * kernel.ndim
        idx[in_ax] = ~in_keep[0]
        kernel[tuple(idx)] = 0.0
        w["kernel"] = kernel
        return _ordered(layer, w)

    def weight_masks(self, layer, in_keep, out_keep):
        ndim = len(layer.kernel.shape)
        in_ax, out_ax = self._axes(layer)
        keep_in = _all(in_keep[0], layer.kernel.shape[in_ax] * getattr(layer, "groups", 1))
        keep_out = _all(out_keep[0], layer.filters)
        if self._depthwise_like(layer, keep_in.shape[0]):
            masks = {"kernel": _axis_mask(keep_out, out_ax, ndim)}
        elif getattr(layer, "groups", 1) > 1:  # blocked: its channels are never cut
            return {}
        else:
            masks = {"kernel": _axis_mask(keep_in, in_ax, ndim) & _axis_mask(keep_out, out_ax, ndim)}
        if getattr(layer, "use_bias", False):
            masks["bias"] = keep_out
        return masks


class DenseRule(ChannelRule):
    """Dense on the last axis of a tensor of any rank: kernel (in, units)."""

    consumes_inputs = True
    produces_outputs = True

    def propagate(self, node, ctx):
        if getattr(node.layer, "lora_enabled", False):
            raise StopAnalysis("LoRA-enabled Dense")
        _single(ctx.in_maps(node))
        return [ctx.new_space(node, 0, node.layer.units)]

    def slim(self, layer, in_keep, out_keep):
        config = layer.get_config()
        w = _weights_by_name(layer)
        w["kernel"] = _take(_take(w["kernel"], in_keep[0], 0), out_keep[0], 1)
        if "bias" in w:
            w["bias"] = _take(w["bias"], out_keep[0], 0)
        config["units"] = int(out_keep[0].sum())
        return config, _ordered(layer, w)

    def mask_inputs(self, layer, in_keep):
        w = _weights_by_name(layer)
        w["kernel"] = w["kernel"] * in_keep[0][:, None]
        return _ordered(layer, w)

    def weight_masks(self, layer, in_keep, out_keep):
        n_in, n_out = layer.kernel.shape
        keep_out = _all(out_keep[0], n_out)
        masks = {"kernel": _all(in_keep[0], n_in)[:, None] & keep_out[None, :]}
        if layer.use_bias:
            masks["bias"] = keep_out
        return masks


class DepthwiseRule(ChannelRule):
    """DepthwiseConv1D/2D: output channel ``c·m + j`` is input channel c (m the depth multiplier)."""

    def propagate(self, node, ctx):
        _channels_last(node.layer)
        return [_single(ctx.in_maps(node)).repeat(node.layer.depth_multiplier)]

    def slim(self, layer, in_keep, out_keep):
        w = _weights_by_name(layer)
        w["kernel"] = _take(w["kernel"], in_keep[0], -2)
        if "bias" in w:
            w["bias"] = _take(w["bias"], out_keep[0], 0)
        return layer.get_config(), _ordered(layer, w)

    def weight_masks(self, layer, in_keep, out_keep):
        kernel = layer.kernel
        masks = {"kernel": _axis_mask(_all(in_keep[0], kernel.shape[-2]), -2, len(kernel.shape))}
        if layer.use_bias:
            masks["bias"] = _all(out_keep[0], kernel.shape[-2] * kernel.shape[-1])
        return masks


class SeparableRule(ChannelRule):
    """SeparableConv1D/2D: a depthwise pass-through, then a pointwise producer of new filters."""

    consumes_inputs = True
    produces_outputs = True

    def propagate(self, node, ctx):
        _channels_last(node.layer)
        _single(ctx.in_maps(node))
        return [ctx.new_space(node, 0, node.layer.filters)]

    def slim(self, layer, in_keep, out_keep):
        config = layer.get_config()
        w = _weights_by_name(layer)
        mid = np.repeat(in_keep[0], layer.depth_multiplier)
        w["depthwise_kernel"] = _take(w["depthwise_kernel"], in_keep[0], -2)
        w["pointwise_kernel"] = _take(_take(w["pointwise_kernel"], mid, -2), out_keep[0], -1)
        if "bias" in w:
            w["bias"] = _take(w["bias"], out_keep[0], 0)
        config["filters"] = int(out_keep[0].sum())
        return config, _ordered(layer, w)

    def mask_inputs(self, layer, in_keep):
        w = _weights_by_name(layer)
        dk = w["depthwise_kernel"].copy()
        dk[..., ~in_keep[0], :] = 0.0
        w["depthwise_kernel"] = dk
        return _ordered(layer, w)

    def weight_masks(self, layer, in_keep, out_keep):
        dk, pk = layer.depthwise_kernel, layer.pointwise_kernel
        keep_in = _all(in_keep[0], dk.shape[-2])
        keep_out = _all(out_keep[0], layer.filters)
        mid = np.repeat(keep_in, layer.depth_multiplier)
        masks = {"depthwise_kernel": _axis_mask(keep_in, -2, len(dk.shape)),
                 "pointwise_kernel": _axis_mask(mid, -2, len(pk.shape)) & _axis_mask(keep_out, -1, len(pk.shape))}
        if layer.use_bias:
            masks["bias"] = keep_out
        return masks


class LayerScaleRule(PerChannelRule):
    """ConvNeXt's LayerScale: a per-channel gamma; its config names the channel count."""

    def slim(self, layer, in_keep, out_keep):
        config, weights = super().slim(layer, in_keep, out_keep)
        if "projection_dim" in config:
            config["projection_dim"] = int(in_keep[0].sum())
        return config, weights


class InputLayerRule(ChannelRule):
    def propagate(self, node, ctx):  # pragma: no cover - inputs are not nodes
        return ctx.in_maps(node)


# ----------------------------------------------------------------------------- registry
_REGISTRY: dict[type, ChannelRule] = {}


def register_rule(layer_class: type, rule: ChannelRule, *, override: bool = False) -> None:
    """Registers ``rule`` for ``layer_class`` and its subclasses.

    Raises:
        ValueError: ``layer_class`` already has a rule and ``override`` is False.
        TypeError: ``rule`` is not a ``ChannelRule``.
    """
    if not isinstance(rule, ChannelRule):
        raise TypeError(f"rule must be a ChannelRule instance, got {type(rule).__name__}")
    if layer_class in _REGISTRY and not override:
        raise ValueError(f"{layer_class.__name__} already has a channel rule "
                         f"({type(_REGISTRY[layer_class]).__name__}); pass override=True to replace it")
    _REGISTRY[layer_class] = rule


def unregister_rule(layer_class: type) -> None:
    """Removes the rule registered for exactly ``layer_class``."""
    _REGISTRY.pop(layer_class, None)


def find_rule(layer: Any) -> ChannelRule | None:
    """The rule of the nearest class in ``type(layer).__mro__`` that has one, else None."""
    for cls in type(layer).__mro__:
        rule = _REGISTRY.get(cls)
        if rule is not None:
            return rule
    return None


def _register_builtins() -> None:
    L = keras.layers
    conv = ConvRule()
    for cls in (L.Conv1D, L.Conv2D, L.Conv3D, L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose):
        register_rule(cls, conv)
    register_rule(L.Dense, DenseRule())
    for cls in (L.DepthwiseConv1D, L.DepthwiseConv2D):
        register_rule(cls, DepthwiseRule())
    for cls in (L.SeparableConv1D, L.SeparableConv2D):
        register_rule(cls, SeparableRule())
    register_rule(L.BatchNormalization, BatchNormRule())
    register_rule(L.LayerNormalization, LayerNormRule())
    register_rule(L.GroupNormalization, GroupNormRule())
    per_channel = PerChannelRule()
    for cls in (L.PReLU, L.Normalization):
        register_rule(cls, per_channel)
    register_rule(L.Rescaling, RescalingRule())
    passthrough = PassThroughRule()
    names = ["Activation", "ReLU", "LeakyReLU", "ELU", "Dropout", "SpatialDropout1D", "SpatialDropout2D",
             "SpatialDropout3D", "GaussianDropout", "GaussianNoise", "AlphaDropout", "ActivityRegularization",
             "Identity", "Masking", "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D",
             "AveragePooling2D", "AveragePooling3D", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D",
             "Cropping1D", "Cropping2D", "Cropping3D", "UpSampling1D", "UpSampling2D", "UpSampling3D",
             "RepeatVector", "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
             "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D", "AutoContrast", "Resizing",
             "CenterCrop", "RandomFlip", "RandomCrop", "RandomRotation", "RandomZoom", "RandomTranslation",
             "RandomContrast", "RandomBrightness"]
    for name in names:
        cls = getattr(L, name, None)
        if cls is not None:
            register_rule(cls, GlobalPoolRule() if name.startswith("Global") else passthrough)
    register_rule(L.Softmax, PassThroughRule(approximate="softmax over the channel axis"))
    # a softmax over the channels (as an Activation layer or any layer's activation=) is marked
    # approximate by the analysis itself, for every rule (graph.analysis._mark_fused_softmax)
    register_rule(L.Activation, PassThroughRule(), override=True)
    merge = MergeRule()
    for cls in (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum):
        register_rule(cls, merge)
    register_rule(L.Concatenate, ConcatenateRule())
    register_rule(L.Flatten, FlattenRule())
    register_rule(L.Reshape, ReshapeRule())
    register_rule(L.Permute, PermuteRule())
    _register_applications()
    _register_ops()


def _register_ops() -> None:
    """Element-wise Keras operations that appear when functional code uses ``+``, ``*`` or ``keras.ops``."""
    from keras.src.ops import nn as ops_nn
    from keras.src.ops import numpy as ops_np

    rule = ElementwiseOpRule()
    for mod, names in ((ops_np, ["Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Maximum", "Minimum",
                                  "Negative", "Abs", "Square", "Sqrt", "Exp", "Tanh"]),
                       (ops_nn, ["Relu", "Relu6", "Sigmoid", "HardSigmoid", "HardSilu", "Silu", "Gelu",
                                 "Softplus", "LeakyRelu", "Elu", "Selu"])):
        for name in names:
            cls = getattr(mod, name, None)
            if cls is not None:
                register_rule(cls, rule)


def _register_applications() -> None:
    """Helper layers that keras.applications models use."""
    try:
        from keras.src.applications.convnext import LayerScale, StochasticDepth

        register_rule(LayerScale, LayerScaleRule())
        register_rule(StochasticDepth, PassThroughRule())
    except ImportError:  # pragma: no cover - older Keras
        pass
    try:
        from keras.src.applications.inception_resnet_v2 import CustomScaleLayer

        register_rule(CustomScaleLayer, MergeRule())
    except ImportError:  # pragma: no cover
        pass


_register_builtins()
