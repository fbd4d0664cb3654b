"""A Keras 3 functional or Sequential model as a flat graph: layers as nodes, tensors as edges.

Nested models (a Sequential inside a functional model, a functional block inside another) are inlined,
so every node is a plain layer or operation and every tensor has one producer. The graph can be run on
real tensors (eagerly or inside ``tf.function``) or on symbolic ``KerasTensor``s to build a new model,
with hooks to replace a node's layer or to transform the values entering it.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import keras

from tfmot_easiedge import _keras_compat as kc


class GraphError(ValueError):
    """The model cannot be represented as a graph (subclassed model, disconnected graph...)."""


@dataclasses.dataclass
class GraphTensor:
    """One tensor of the flattened graph.

    Attributes:
        id: position in ``ModelGraph.tensors``.
        shape: the symbolic shape, batch dimension first (None where unknown).
        producer: index of the node that computes it, None for a model input.
        consumers: indices of the nodes that read it (a node reading it twice is listed twice).
    """

    id: int
    shape: tuple
    dtype: str
    producer: int | None = None
    consumers: list[int] = dataclasses.field(default_factory=list)

    @property
    def channels(self) -> int | None:
        """Size of the last (channel) axis, None for a rank-0/1 tensor or an unknown size."""
        return self.shape[-1] if len(self.shape) >= 2 else None


@dataclasses.dataclass
class GraphNode:
    """One call of a layer (or Keras operation) in the flattened graph.

    Attributes:
        index: position in ``ModelGraph.nodes`` (a topological order).
        layer: the Keras layer or operation that is called.
        name: the layer's path name, ``outer/inner`` for a layer inlined from a nested model.
        inputs: ids of the tensors it reads, in the order of ``node.arguments.keras_tensors``.
        outputs: ids of the tensors it writes.
        arguments: the call's ``SymbolicArguments`` (positional and keyword, tensors and constants).
        arg_keys: ``id()`` of each KerasTensor in ``arguments``, aligned with ``inputs``.
    """

    index: int
    layer: Any
    name: str
    inputs: list[int]
    outputs: list[int]
    arguments: Any
    arg_keys: list[int]

    def fill_in(self, values: Sequence[Any]) -> tuple[tuple, dict]:
        """Returns the call's ``(args, kwargs)`` with its input tensors replaced by ``values``."""
        return kc.fill_in_arguments(self.arguments, dict(zip(self.arg_keys, values)))


class ModelGraph:
    """A functional or Sequential Keras model, flattened into nodes in topological order.

    Example:
        >>> import keras
        >>> inp = keras.Input((8, 8, 3))
        >>> out = keras.layers.ReLU()(keras.layers.Conv2D(4, 3, name="c")(inp))
        >>> g = ModelGraph.from_model(keras.Model(inp, out))
        >>> [n.name for n in g.nodes][0], len(g.tensors)
        ('c', 3)
    """

    def __init__(self, nodes: list[GraphNode], tensors: list[GraphTensor],
                 input_ids: list[int], output_ids: list[int], model_name: str):
        self.nodes = nodes
        self.tensors = tensors
        self.input_ids = input_ids
        self.output_ids = output_ids
        self.model_name = model_name
        self.input_names: list[str | None] = [None] * len(input_ids)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_model(cls, model: keras.Model) -> ModelGraph:
        """Flattens ``model``; raises ``GraphError`` for models without a static graph."""
        builder = _Builder()
        input_kts = _model_inputs(model)
        outer_inputs = [builder.new_tensor(t) for t in input_kts]
        output_ids = builder.inline(model, outer_inputs, prefix="")
        graph = cls(builder.nodes, builder.tensors, outer_inputs, output_ids, model.name)
        graph.input_names = [getattr(kt, "name", None) for kt in input_kts]
        for node in graph.nodes:
            for t in node.inputs:
                graph.tensors[t].consumers.append(node.index)
        return graph

    # ------------------------------------------------------------------ queries
    def node(self, name: str) -> GraphNode:
        """The first node whose path name is ``name``."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no layer named {name!r} in {self.model_name!r}")

    def nodes_of(self, layer: keras.layers.Layer) -> list[GraphNode]:
        """Every node that calls ``layer`` (more than one for a shared layer)."""
        return [n for n in self.nodes if n.layer is layer]

    # ------------------------------------------------------------------ execution
    def run(self, inputs: Sequence[Any], *,
            layer_fn: Callable[[GraphNode], Any] | None = None,
            input_fn: Callable[[GraphNode, int, Any], Any] | None = None,
            call_kwargs: dict | None = None, bypass: Mapping[int, int | None] | None = None) -> list[Any]:
        """Runs the graph on real or symbolic ``inputs``; returns the output values in order.

        Args:
            inputs: one value per model input.
            layer_fn: returns the callable to use for a node (default: the node's own layer).
            input_fn: ``input_fn(node, position, value)`` may replace the value entering the node's
                ``position``-th input tensor (used to gate channels).
            call_kwargs: extra keyword arguments for layers that accept them (e.g. ``training=False``).
            bypass: ``{node index: tensor id or None}``: nodes that are not run; a tensor id makes the node's
                (single) output that tensor's value (a removed residual branch's ``Add`` outputs its shortcut:
                :func:`~tfmot_easiedge.graph.blocks.bypass_map`).
        """
        if len(inputs) != len(self.input_ids):
            raise ValueError(f"expected {len(self.input_ids)} inputs, got {len(inputs)}")
        values: dict[int, Any] = dict(zip(self.input_ids, inputs))
        bypass = bypass or {}
        for node in self.nodes:
            if node.index in bypass:
                source = bypass[node.index]
                if source is not None:
                    values[node.outputs[0]] = values[source]
                continue
            ins = [values[t] for t in node.inputs]
            if input_fn is not None:
                ins = [input_fn(node, i, v) for i, v in enumerate(ins)]
            args, kwargs = node.fill_in(ins)
            if call_kwargs and isinstance(node.layer, keras.layers.Layer):
                kwargs = {**_accepted(node.layer, call_kwargs), **kwargs}
            fn = layer_fn(node) if layer_fn is not None else node.layer
            outs = keras.tree.flatten(fn(*args, **kwargs))
            if len(outs) != len(node.outputs):
                raise GraphError(f"layer {node.name!r} returned {len(outs)} outputs, expected {len(node.outputs)}")
            values.update(zip(node.outputs, outs))
        return [values[t] for t in self.output_ids]


def _accepted(layer, kwargs: dict) -> dict:
    """The subset of ``kwargs`` that ``layer.call`` accepts."""
    params = kc.call_parameters(layer)
    return {k: v for k, v in kwargs.items() if k in params}


def _model_inputs(model) -> list:
    if isinstance(model, keras.Sequential):
        functional = kc.functional_of(model)
        if functional is None:
            raise GraphError(
                f"Sequential model {model.name!r} is not built: give it an Input or call build(input_shape)")
        return list(functional.inputs)
    if not kc.is_functional(model):
        raise GraphError(
            f"{type(model).__name__} {model.name!r} is a subclassed model: its graph is hidden in Python code. "
            "Rebuild it with the functional API or keras.Sequential to prune it.")
    return list(keras.tree.flatten(model.inputs))


def _is_graph_model(op) -> bool:
    """A nested model whose graph can be inlined (functional or Sequential)."""
    return isinstance(op, keras.Model) and (isinstance(op, keras.Sequential) or kc.is_functional(op))


class _Builder:
    def __init__(self):
        self.nodes: list[GraphNode] = []
        self.tensors: list[GraphTensor] = []

    def new_tensor(self, kt, producer=None) -> int:
        shape = tuple(kt.shape)
        self.tensors.append(GraphTensor(len(self.tensors), shape, str(kt.dtype), producer))
        return len(self.tensors) - 1

    def inline(self, model, input_ids: list[int], prefix: str) -> list[int]:
        _model_inputs(model)  # raises the subclassed- or unbuilt-model error
        func = kc.functional_of(model)
        inner_inputs = list(keras.tree.flatten(func.inputs))
        if len(inner_inputs) != len(input_ids):
            raise GraphError(f"model {model.name!r} takes {len(inner_inputs)} inputs, got {len(input_ids)}")
        ids: dict[int, int] = {id(kt): tid for kt, tid in zip(inner_inputs, input_ids)}
        for call in kc.operation_calls(func):
            kts = call.inputs
            if any(id(kt) not in ids for kt in kts):
                continue
            op = call.operation
            in_ids = [ids[id(kt)] for kt in kts]
            name = prefix + op.name
            if _is_graph_model(op):
                outs = self.inline(op, in_ids, prefix=name + "/")
                for kt, tid in zip(call.outputs, outs):
                    ids[id(kt)] = tid
                continue
            if isinstance(op, keras.Model):
                _model_inputs(op)  # a nested subclassed model: clear error
            index = len(self.nodes)
            out_ids = [self.new_tensor(kt, producer=index) for kt in call.outputs]
            for kt, tid in zip(call.outputs, out_ids):
                ids[id(kt)] = tid
            self.nodes.append(GraphNode(index, op, name, in_ids, out_ids, call.arguments, [id(kt) for kt in kts]))
        outputs = list(keras.tree.flatten(func.outputs))
        missing = [kt.name for kt in outputs if id(kt) not in ids]
        if missing:
            raise GraphError(f"outputs {missing} of {model.name!r} are not connected to its inputs")
        return [ids[id(kt)] for kt in outputs]
