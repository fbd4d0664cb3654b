"""One graph clone: a model rebuilt node by node from its :class:`ModelGraph`, called like the original.

Everything that makes a new model from an old one goes through here: ``slim`` and ``masked_copy``
(layers rebuilt with sliced or masked weights), ``prune_filters`` (layers wrapped for ADMM) and the
ADMM state's unwrapped view (the wrapped layers called directly). So they all agree on what a rebuilt
model looks like: nested models inlined into one functional model, the original's input structure (a
tensor, a list or a dict of named inputs) and output structure (a tensor, a list or a dict), a
top-level ``Sequential`` included.

Example:
    >>> import keras
    >>> from tfmot_easiedge.graph import analyze
    >>> x = {"img": keras.Input((8, 8, 3), name="img")}
    >>> h = keras.layers.Conv2D(4, 3, name="c")(x["img"])
    >>> m = keras.Model(x, [keras.layers.Flatten()(h), h], name="net")
    >>> copy = rebuild(m, analyze(m), copy_layer, suffix="_copy")
    >>> sorted(copy.input), len(copy.output), copy.name
    (['img'], 2, 'net_copy')
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import keras
import numpy as np

from tfmot_easiedge.graph.analysis import ModelAnalysis
from tfmot_easiedge.graph.model_graph import GraphNode, ModelGraph
from tfmot_easiedge.graph.rules import ChannelRule
from tfmot_easiedge.plan import PruningPlan

__all__ = ["LayerMaker", "clone_config", "clone_config_or_reuse", "copy_layer", "copy_weights", "io_structure",
           "layer_from_config", "model_from_graph", "rebuild", "set_layer_weights", "symbolic_inputs"]

#: ``make(node, rule, in_keep, out_keep) -> (config or None, weights)``: the new layer of a graph node, from
#: the node, its rule (None for a stop) and the keep-masks of its inputs and outputs. A None config reuses
#: the node's own layer (a stateless operation).
LayerMaker = Callable[[GraphNode, "ChannelRule | None", list, list], "tuple[dict | None, list[np.ndarray]]"]


# ----------------------------------------------------------------------------- I/O structure
def io_structure(model: keras.Model) -> tuple[Any, Any]:
    """The model's input and output structure (a tensor, a list or a dict of tensors).

    A top-level ``keras.Sequential`` built from an ``Input`` has never been *called*, so its ``input`` and
    ``output`` properties raise; its ``inputs``/``outputs`` lists are defined, and a Sequential model has one
    input and one output.

    Raises:
        ValueError: the model has no defined inputs (an unbuilt Sequential model).
    """
    try:
        return model.input, model.output
    except AttributeError:
        inputs = list(getattr(model, "inputs", None) or [])  # an unbuilt Sequential raises AttributeError
        outputs = list(getattr(model, "outputs", None) or [])
        if not inputs or not outputs:
            raise ValueError(f"model {model.name!r} has no defined inputs: build it on a keras.Input first") from None
        return (inputs[0] if len(inputs) == 1 else inputs), (outputs[0] if len(outputs) == 1 else outputs)


def symbolic_inputs(graph: ModelGraph) -> list:
    """One fresh ``keras.Input`` per graph input, with its shape, dtype and name."""
    return [keras.Input(shape=graph.tensors[t].shape[1:], dtype=graph.tensors[t].dtype, name=name)
            for t, name in zip(graph.input_ids, graph.input_names)]


def model_from_graph(model: keras.Model, graph: ModelGraph, layer_fn: Callable[[GraphNode], Any] | None = None,
                     *, name: str | None = None, bypass: Mapping[int, int | None] | None = None) -> keras.Model:
    """A functional model running ``graph`` (``model``'s graph), with ``model``'s I/O structure.

    Args:
        model: the model ``graph`` was made from; its input and output structure is restored.
        graph: ``ModelGraph.from_model(model)``.
        layer_fn: the callable to run for each node (default: the node's own layer, shared).
        name: the new model's name (default: ``model.name``).
        bypass: nodes left out (removed residual branches), as :meth:`ModelGraph.run` takes them.
    """
    inputs = symbolic_inputs(graph)
    outputs = graph.run(inputs, layer_fn=layer_fn, bypass=bypass)
    # the graph's inputs and outputs are the model's, flattened in Keras's order: restore the structure
    # (a dict of named inputs, a dict or list of outputs) so the new model is called like the original
    in_struct, out_struct = io_structure(model)
    return keras.Model(keras.tree.pack_sequence_as(in_struct, inputs),
                       keras.tree.pack_sequence_as(out_struct, outputs), name=name or model.name)


# ----------------------------------------------------------------------------- layers
def clone_config(layer: Any) -> dict | None:
    """The layer's config, or None for a Keras operation (not a layer) that is reused as it is."""
    return layer.get_config() if isinstance(layer, keras.layers.Layer) else None


def clone_config_or_reuse(layer: Any) -> dict | None:
    """Config to rebuild the layer from, or None to reuse it.

    A weightless Lambda holds Python code that Keras will not deserialise in safe mode, and sharing a
    stateless layer is harmless.
    """
    if isinstance(layer, keras.layers.Lambda) and not layer.weights:
        return None
    return clone_config(layer)


def copy_weights(layer: Any) -> list[np.ndarray]:
    """Copies of the layer's weights (none for a Keras operation)."""
    return [np.array(w) for w in layer.get_weights()] if isinstance(layer, keras.layers.Layer) else []


def copy_layer(node: GraphNode, rule: ChannelRule | None, in_keep: list, out_keep: list
               ) -> tuple[dict | None, list[np.ndarray]]:
    """A :data:`LayerMaker` that copies every layer as it is (same config, same weights)."""
    return clone_config_or_reuse(node.layer), copy_weights(node.layer)


def layer_from_config(layer: Any, config: dict) -> Any:
    """A new layer of ``type(layer)`` from ``config``, built with cheap initialisers.

    Weights are overwritten right after the build, so the new layer is made with "zeros" initialisers
    (random initialisation dominated the rebuild time of large models) and the user's are put back.

    Raises:
        ValueError: the layer cannot be rebuilt from its config (a custom layer without a complete one).
    """
    originals = {k: v for k, v in config.items() if k.endswith("_initializer") and v is not None}
    fast = {**config, **{k: "zeros" for k in originals}}
    try:
        new = type(layer).from_config(fast)
    except Exception:  # noqa: BLE001 - a custom layer may reject it: fall back to its own config
        originals = {}
        try:
            new = type(layer).from_config(config)
        except Exception as e:  # noqa: BLE001 - re-raised with context
            raise ValueError(f"cannot rebuild layer {layer.name!r} ({type(layer).__name__}) from its config: "
                             f"{e}. A custom layer needs a complete get_config().") from e
    for key, value in originals.items():
        if hasattr(new, key):
            setattr(new, key, keras.initializers.get(value))
    return new


def set_layer_weights(layer: Any, weights: list[np.ndarray], name: str) -> None:
    """``layer.set_weights(weights)``, with the graph node's name in the error."""
    try:
        layer.set_weights(weights)
    except ValueError as e:
        raise ValueError(f"weight surgery failed for layer {name!r}: {e}") from e


# ----------------------------------------------------------------------------- the rebuild
def rebuild(model: keras.Model, analysis: ModelAnalysis, make: LayerMaker, *, plan: PruningPlan | None = None,
            suffix: str = "", wrap: Callable[[GraphNode, Any], Any] | None = None,
            bypass: Mapping[int, int | None] | None = None) -> keras.Model:
    """Rebuilds ``model`` node by node, each layer made by ``make`` (a shared layer once).

    Args:
        model: the model ``analysis`` was made from.
        analysis: its channel analysis (graph, rules, keep-masks).
        make: gives each layer's new config and weights (see :data:`LayerMaker`).
        plan: the kept channels the keep-masks passed to ``make`` describe (None: every channel kept).
        suffix: appended to the model's name.
        wrap: ``wrap(node, new_layer)`` may return a wrapper to call instead of the new layer (the weights
            from ``make`` still go to the layer itself).
        bypass: ``{node index: tensor id or None}``, nodes not rebuilt (see :meth:`ModelGraph.run`): the
            branches of removed residual blocks, whose ``Add`` passes its shortcut on.

    Returns:
        A new functional model with ``model``'s input and output structure.
    """
    kept = {g: np.asarray(idx, dtype=np.int64) for g, idx in (plan.kept if plan is not None else {}).items()}
    masks: dict[int, np.ndarray | None] = {}

    def mask(tid: int):
        if tid not in masks:
            masks[tid] = analysis.keep_mask(tid, kept)
        return masks[tid]

    new_layers: dict[int, tuple] = {}

    def layer_fn(node: GraphNode):
        key = id(node.layer)
        if key not in new_layers:
            rule = analysis.rules[node.index]
            config, weights = make(node, rule, [mask(t) for t in node.inputs], [mask(t) for t in node.outputs])
            if config is None:  # a stateless Keras operation: reuse it
                new_layers[key] = (node.layer, node.layer, [])
            else:
                new = layer_from_config(node.layer, config)
                outer = wrap(node, new) if wrap is not None else None
                new_layers[key] = (new, outer if outer is not None else new, weights)
        new, outer, weights = new_layers[key]

        def call(*args, **kwargs):
            out = outer(*args, **kwargs)
            if weights:
                set_layer_weights(new, weights, node.name)
            return out

        return call

    return model_from_graph(model, analysis.graph, layer_fn, name=model.name + suffix, bypass=bypass)
