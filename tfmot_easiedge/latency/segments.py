"""A model's segments (what a latency table measures) and the small models that time one segment at one width.

A segment is a convolution, depthwise convolution or Dense layer together with the BatchNormalization and
activation directly after it (each the only reader of the tensor before it), which TFLite and ONNX Runtime
fold into one kernel. Every other layer is one of the *other* operators. How a segment's input and output
channel counts move is read from :func:`~tfmot_easiedge.analyze`'s channel groups.
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from tfmot_easiedge.graph.analysis import ModelAnalysis
from tfmot_easiedge.graph.model_graph import ModelGraph

if TYPE_CHECKING:
    import keras

_ACTIVATIONS = ("relu", "relu6", "sigmoid", "tanh", "swish", "silu", "hard_sigmoid", "hard_swish", "gelu", "elu")


@dataclasses.dataclass
class SegmentSpec:
    """One segment: its layer, the shape it reads, the activation folded in, and how its channels move.

    Attributes:
        name: the layer's graph name; ``kind``: ``"conv"``, ``"depthwise"`` or ``"dense"``.
        layer: the Keras layer; ``spatial``: the input's shape between batch and channels.
        activation: the activation run in the kernel (the layer's own, or an absorbed activation layer).
        use_bias: whether the kernel has a bias (always after a folded BatchNormalization).
        absorbed: graph node indices folded into the segment (BatchNormalization, activation).
        axes: ``{"in": axis, "out": axis}``, each ``{"grid", "full", "step", "weights", "const"}``.
    """

    name: str
    kind: str
    layer: Any
    spatial: tuple
    activation: str
    use_bias: bool
    absorbed: list
    axes: dict

    def key(self) -> str:
        """Segments with equal keys cost the same: they are profiled once."""
        cfg = {k: v for k, v in self.layer.get_config().items() if k not in ("name", "filters", "units")}
        return json.dumps([self.kind, type(self.layer).__name__, cfg, list(self.spatial), self.activation,
                           self.use_bias, self.axes["in"]["grid"], self.axes["out"]["grid"]],
                          sort_keys=True, default=str)


def _kind(layer: Any) -> str | None:
    import keras

    if isinstance(layer, keras.layers.DepthwiseConv2D) or type(layer).__name__ == "DepthwiseConv1D":
        return "depthwise"
    if isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)):
        transposed = "Transpose" in type(layer).__name__
        return None if transposed or int(layer.get_config().get("groups", 1)) != 1 else "conv"
    if isinstance(layer, keras.layers.Dense):
        return "dense"
    return None


def _activation_of(layer: Any) -> str | None:
    """The activation an activation layer computes, if a runtime can fuse it; None otherwise."""
    import keras

    if isinstance(layer, keras.layers.ReLU):
        cfg = layer.get_config()
        if cfg.get("negative_slope", 0.0) or cfg.get("threshold", 0.0):
            return None
        return {None: "relu", 6.0: "relu6"}.get(None if cfg.get("max_value") is None else float(cfg["max_value"]))
    if isinstance(layer, keras.layers.Activation):
        name = layer.get_config().get("activation")
        return name if name in _ACTIVATIONS else None
    return None


def _only_reader(graph: ModelGraph, tensor: int) -> Any:
    readers = graph.tensors[tensor].consumers
    return graph.nodes[readers[0]] if len(readers) == 1 and tensor not in graph.output_ids else None


def width_grid(full: int) -> list[int]:
    """The widths a prunable axis of ``full`` channels is measured at: 1, 1/8, 1/4, 1/2, 3/4 of it rounded up
    to multiples of 8 (4 below 64 channels, 1 below 16), and ``full``.

    Example:
        >>> width_grid(512), width_grid(64), width_grid(10)
        ([1, 64, 128, 256, 384, 512], [1, 8, 16, 32, 48, 64], [1, 2, 3, 5, 8, 10])
    """
    m = 8 if full >= 64 else 4 if full >= 16 else 1
    points = {1, full}
    for f in (0.125, 0.25, 0.5, 0.75):
        points.add(min(full, max(1, int(math.ceil(f * full / m)) * m)))
    return sorted(points)


def axis_weights(analysis: ModelAnalysis, tensor: int, scale: float = 1.0) -> tuple[dict[str, float], float]:
    """A tensor's channel count as ``Σ_g weights[g]·kept[g] + const`` (``scale`` times, e.g. by H·W)."""
    pos = analysis.positions(tensor)
    if pos is None:
        return {}, scale * float(analysis.graph.tensors[tensor].shape[-1] or 0)
    weights: dict[str, float] = {}
    for g in pos[0]:
        weights[g] = weights.get(g, 0.0) + 1.0
    return {g: scale * n / analysis.groups[g].size for g, n in weights.items()}, 0.0


def _axis(analysis: ModelAnalysis, tensor: int, movable: bool) -> dict[str, Any]:
    weights, const = axis_weights(analysis, tensor)
    full = int(analysis.graph.tensors[tensor].shape[-1])
    prunable = movable and any(g in analysis.prunable_groups for g in weights)
    return {"grid": width_grid(full) if prunable else [full], "full": full, "step": 1, "weights": weights,
            "const": const}


def find_segments(analysis: ModelAnalysis) -> tuple[list[SegmentSpec], dict[str, Any]]:
    """The segments of ``analysis``'s model, and the other operators (``names``, ``weights``, ``const`` of
    their output elements).

    Example:
        >>> import keras
        >>> from tfmot_easiedge import analyze
        >>> x = keras.Input((8, 8, 3))
        >>> h = keras.layers.ReLU()(keras.layers.BatchNormalization()(keras.layers.Conv2D(8, 3, name="c")(x)))
        >>> segs, others = find_segments(analyze(keras.Model(x, keras.layers.Conv2D(2, 1, name="d")(h))))
        >>> [(s.name, s.activation, s.axes["out"]["grid"]) for s in segs], others["names"]
        ([('c', 'relu', [1, 2, 4, 6, 8]), ('d', 'linear', [2])], [])
    """
    graph = analysis.graph
    segments, absorbed_all = [], set()
    for node in graph.nodes:
        kind = _kind(node.layer)
        if kind is None or len(node.inputs) != 1 or len(node.outputs) != 1 or node.index in absorbed_all:
            continue
        cfg = node.layer.get_config()
        activation, use_bias, absorbed = str(cfg.get("activation", "linear")), bool(cfg.get("use_bias", True)), []
        out = node.outputs[0]
        reader = _only_reader(graph, out)
        import keras

        if activation == "linear" and reader is not None and isinstance(reader.layer, keras.layers.BatchNormalization):
            absorbed.append(reader.index)
            use_bias, out = True, reader.outputs[0]
            reader = _only_reader(graph, out)
        if activation == "linear" and reader is not None and _activation_of(reader.layer):
            absorbed.append(reader.index)
            activation = str(_activation_of(reader.layer))
        shape = graph.tensors[node.inputs[0]].shape
        axes = {"in": _axis(analysis, node.inputs[0], True),
                "out": _axis(analysis, node.outputs[0], kind != "depthwise")}
        segments.append(SegmentSpec(node.name, kind, node.layer, tuple(int(s) for s in shape[1:-1]), activation,
                                    use_bias, absorbed, axes))
        absorbed_all.update([node.index, *absorbed])
    names: list[str] = []
    weights: dict[str, float] = {}
    const = 0.0
    for node in graph.nodes:
        if node.index in absorbed_all or not node.outputs or not node.inputs:
            continue
        names.append(node.name)
        for tensor in node.outputs:
            shape = graph.tensors[tensor].shape
            w, c = axis_weights(analysis, tensor, float(np.prod([int(s or 1) for s in shape[1:-1]])))
            for g, v in w.items():
                weights[g] = weights.get(g, 0.0) + v
            const += c
    return segments, {"names": names, "weights": weights, "const": const}


def segment_model(seg: SegmentSpec, n_in: int, n_out: int, batch_size: int = 1) -> keras.Model:
    """A model of ``seg`` alone, reading ``n_in`` channels and writing ``n_out`` (a depthwise layer writes
    ``n_in`` times its multiplier), with a fixed batch size.

    Example:
        >>> import keras
        >>> from tfmot_easiedge import analyze
        >>> x = keras.Input((8, 8, 3))
        >>> segs, _ = find_segments(analyze(keras.Model(x, keras.layers.Conv2D(8, 3, name="c")(x))))
        >>> segment_model(segs[0], 3, 5).output.shape
        (1, 6, 6, 5)
    """
    import keras

    cfg = dict(seg.layer.get_config(), name="segment", activation=seg.activation, use_bias=seg.use_bias)
    if seg.kind == "conv":
        cfg["filters"] = int(n_out)
    elif seg.kind == "dense":
        cfg["units"] = int(n_out)
    cfg.pop("dtype", None)  # float32 kernels: what the exported model runs
    x = keras.Input(shape=(*seg.spatial, int(n_in)), batch_size=batch_size)
    return keras.Model(x, type(seg.layer).from_config(cfg)(x))


def model_widths(model: keras.Model, table: Any) -> tuple[dict[str, tuple[float, float]], float]:
    """Each profiled segment's ``(input, output)`` channels in ``model`` (the profiled model or a slim one),
    and the other operators' activation elements.

    Raises:
        ValueError: ``model`` lacks a profiled layer (the table is for another model).
    """
    graph = ModelGraph.from_model(model)
    by_name = {n.name: n for n in graph.nodes}
    missing = [s["name"] for s in table.segments if s["name"] not in by_name]
    missing += [n for n in table.others.get("names", []) if n not in by_name]
    if missing:
        raise ValueError(f"the latency table (model {table.model_name!r}) is for another model: "
                         f"{model.name!r} has no layers {missing[:5]}")
    widths = {}
    for seg in table.segments:
        node = by_name[seg["name"]]
        widths[seg["name"]] = (float(graph.tensors[node.inputs[0]].shape[-1]),
                               float(graph.tensors[node.outputs[0]].shape[-1]))
    elements = 0.0
    for name in table.others.get("names", []):
        for tensor in by_name[name].outputs:
            elements += float(np.prod([int(s or 1) for s in graph.tensors[tensor].shape[1:]]))
    return widths, elements
