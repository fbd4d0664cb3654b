"""Multiply-accumulate (MAC) and parameter counts from a model's real shapes.

Counted: convolutions (incl. grouped and transposed), depthwise and separable convolutions, Dense (on
inputs of any rank). Not counted (they are memory-bound and small next to the above): BatchNorm,
activations, pooling, element-wise merges, normalisation layers.

Every counted layer's MACs are ``a·I + b·I·O`` with ``I``/``O`` its input/output channel counts, so the
pruning budget can predict the MACs of any channel selection without rebuilding the model.
"""
from __future__ import annotations

import math

import keras

from tfmot_easiedge.graph.model_graph import GraphNode, ModelGraph


def _prod(shape, what: str, name: str) -> int:
    if any(d is None for d in shape):
        raise ValueError(f"cannot count MACs of layer {name!r}: its {what} shape {tuple(shape)} is not fully "
                         "known; build the model with a fixed input size")
    return math.prod(shape)


def macs_coefficients(node: GraphNode, graph: ModelGraph) -> tuple[float, float]:
    """``(a, b)`` such that the node's MACs are ``a·I + b·I·O`` (``(0, 0)`` for uncounted layers)."""
    L = keras.layers
    layer = node.layer
    if not node.inputs or not node.outputs:
        return 0.0, 0.0
    ins = graph.tensors[node.inputs[0]].shape
    outs = graph.tensors[node.outputs[0]].shape
    if isinstance(layer, (L.SeparableConv1D, L.SeparableConv2D)):
        spatial = _prod(outs[1:-1], "output", node.name)
        m = layer.depth_multiplier
        return float(spatial * math.prod(layer.kernel_size) * m), float(spatial * m)
    if isinstance(layer, (L.DepthwiseConv1D, L.DepthwiseConv2D)):
        return float(_prod(outs[1:-1], "output", node.name) * math.prod(layer.kernel_size)
                     * layer.depth_multiplier), 0.0
    if isinstance(layer, (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)):
        return 0.0, float(_prod(ins[1:-1], "input", node.name) * math.prod(layer.kernel_size))
    if isinstance(layer, (L.Conv1D, L.Conv2D, L.Conv3D)):
        groups = getattr(layer, "groups", 1) or 1
        k = _prod(outs[1:-1], "output", node.name) * math.prod(layer.kernel_size)
        if groups > 1 and groups == ins[-1] == layer.filters:  # depthwise written as a grouped conv
            return float(k), 0.0
        return 0.0, float(k) / groups
    if isinstance(layer, L.Dense):
        return 0.0, float(_prod(ins[1:-1], "input", node.name))
    return 0.0, 0.0


def node_macs(node: GraphNode, graph: ModelGraph) -> int:
    """MACs of one graph node for one example (0 for uncounted layers)."""
    a, b = macs_coefficients(node, graph)
    if not a and not b:
        return 0
    i = graph.tensors[node.inputs[0]].shape[-1]
    o = graph.tensors[node.outputs[0]].shape[-1]
    return int(round(a * i + b * i * o))


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
