"""Multiply-accumulate (MAC) and parameter counts from a model's real shapes.

Counted: convolutions (incl. grouped and transposed), depthwise and separable convolutions, Dense (on
inputs of any rank). Not counted (they are memory-bound and small next to the above): BatchNorm,
activations, pooling, element-wise merges, normalisation layers.
"""
from __future__ import annotations

import math

import keras

from tfmot_easiedge.graph.model_graph import ModelGraph


def _prod(shape, what: str, name: str) -> int:
    if any(d is None for d in shape):
        raise ValueError(f"cannot count MACs of layer {name!r}: its {what} shape {tuple(shape)} is not fully "
                         "known; build the model with a fixed input size")
    return math.prod(shape)


def node_macs(node, graph: ModelGraph) -> int:
    """MACs of one graph node for one example (0 for uncounted layers)."""
    L = keras.layers
    layer = node.layer
    if not node.inputs or not node.outputs:
        return 0
    ins = graph.tensors[node.inputs[0]].shape
    outs = graph.tensors[node.outputs[0]].shape
    if isinstance(layer, (L.SeparableConv1D, L.SeparableConv2D)):
        k = math.prod(layer.kernel_size)
        spatial = _prod(outs[1:-1], "output", node.name)
        mid = ins[-1] * layer.depth_multiplier
        return spatial * k * mid + spatial * mid * layer.filters
    if isinstance(layer, (L.DepthwiseConv1D, L.DepthwiseConv2D)):
        k = math.prod(layer.kernel_size)
        return _prod(outs[1:-1], "output", node.name) * k * ins[-1] * layer.depth_multiplier
    if isinstance(layer, (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)):
        k = math.prod(layer.kernel_size)
        return _prod(ins[1:-1], "input", node.name) * k * ins[-1] * layer.filters
    if isinstance(layer, (L.Conv1D, L.Conv2D, L.Conv3D)):
        k = math.prod(layer.kernel_size)
        groups = getattr(layer, "groups", 1) or 1
        return _prod(outs[1:-1], "output", node.name) * k * (ins[-1] // groups) * layer.filters
    if isinstance(layer, L.Dense):
        return _prod(ins[1:-1], "input", node.name) * ins[-1] * layer.units
    return 0


def layer_macs(model: keras.Model, *, graph: ModelGraph | None = None) -> dict[str, int]:
    """``{layer path name: MACs for one example}`` for every counted layer (shared layers summed).

    Example:
        >>> import keras
        >>> x = keras.Input((8, 8, 3))
        >>> m = keras.Model(x, keras.layers.Conv2D(4, 3, padding="same", name="c")(x))
        >>> layer_macs(m)
        {'c': 6912}
    """
    graph = graph if graph is not None else ModelGraph.from_model(model)
    out: dict[str, int] = {}
    for node in graph.nodes:
        macs = node_macs(node, graph)
        if macs:
            out[node.name] = out.get(node.name, 0) + macs
    return out


def count_macs(model: keras.Model, *, graph: ModelGraph | None = None) -> int:
    """Total multiply-accumulates of ``model`` for one example (see the module docstring for what counts)."""
    return sum(layer_macs(model, graph=graph).values())


def count_params(model: keras.Model) -> int:
    """Number of parameters (trainable and not) of ``model``."""
    return int(model.count_params())
