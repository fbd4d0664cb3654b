"""``slim`` and ``masked_copy``: rebuild a model from its graph with per-layer weight surgery."""
from __future__ import annotations

from typing import Callable

import keras
import numpy as np

from tfmot_easiedge.graph.analysis import ModelAnalysis, analyze
from tfmot_easiedge.graph.model_graph import GraphNode
from tfmot_easiedge.plan import PruningPlan


def slim(model: keras.Model, plan: PruningPlan, *, analysis: ModelAnalysis | None = None) -> keras.Model:
    """Returns a new model with the plan's removed channels physically gone; ``model`` is untouched.

    Kernels, biases, BatchNorm statistics, depthwise kernels and the Dense rows after a Flatten are
    sliced to the kept channels. Nested models are inlined into one functional model. It is called like
    ``model``: the same input structure (e.g. a dict of named inputs) and output structure (a tensor, a
    list or a dict of outputs).

    Example:
        >>> import keras, numpy as np
        >>> from tfmot_easiedge import analyze, PruningPlan
        >>> x = keras.Input((8, 8, 3))
        >>> h = keras.layers.Conv2D(6, 3, name="c1")(x)
        >>> m = keras.Model(x, keras.layers.Dense(2)(keras.layers.Flatten()(h)))
        >>> small = slim(m, PruningPlan({"c1": [0, 3]}, {"c1": 6}))
        >>> small.get_layer("c1").filters
        2
    """
    analysis = analysis if analysis is not None else analyze(model)
    plan.validate(analysis)

    def make(node: GraphNode, rule, in_keep, out_keep):
        layer = node.layer
        cut = any(k is not None and not k.all() for k in [*in_keep, *out_keep])
        if rule is None or not cut or not isinstance(layer, keras.layers.Layer):
            return _clone_config_or_reuse(layer), _copy_weights(layer)
        return rule.slim(layer, in_keep, out_keep)

    return _rebuild(model, analysis, plan, make, suffix="_slim")


def masked_copy(model: keras.Model, plan: PruningPlan, *, analysis: ModelAnalysis | None = None) -> keras.Model:
    """Returns a same-architecture copy where each removed channel is cut at its consumers.

    The input weights that read a removed channel (convolution and Dense kernels) are zeroed, which
    is exactly what removing the channel does; it is the reference ``slim`` must match.
    """
    analysis = analysis if analysis is not None else analyze(model)
    plan.validate(analysis)

    def make(node: GraphNode, rule, in_keep, out_keep):
        layer = node.layer
        if rule is not None and rule.consumes_inputs and any(k is not None and not k.all() for k in in_keep):
            return _clone_config(layer), rule.mask_inputs(layer, in_keep)
        return _clone_config_or_reuse(layer), _copy_weights(layer)

    return _rebuild(model, analysis, plan, make, suffix="_masked")


def _clone_config(layer) -> dict | None:
    return layer.get_config() if isinstance(layer, keras.layers.Layer) else None


def _clone_config_or_reuse(layer) -> dict | None:
    """Config to rebuild the layer from, or None to reuse it: a weightless Lambda holds Python code that
    Keras will not deserialise in safe mode, and sharing a stateless layer is harmless."""
    if isinstance(layer, keras.layers.Lambda) and not layer.weights:
        return None
    return _clone_config(layer)


def _copy_weights(layer) -> list[np.ndarray]:
    return [np.array(w) for w in layer.get_weights()] if isinstance(layer, keras.layers.Layer) else []


def _rebuild(model, analysis: ModelAnalysis, plan: PruningPlan, make: Callable, suffix: str,
             wrap: Callable | None = None) -> keras.Model:
    """Rebuilds ``model`` node by node: ``make`` gives each layer's new config and weights; ``wrap(node,
    layer)`` may return a wrapper to call instead of the new layer (its weights still go to the layer)."""
    graph = analysis.graph
    kept = {g: np.asarray(idx, dtype=np.int64) for g, idx in plan.kept.items()}
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
                new = _from_config(node.layer, config)
                outer = wrap(node, new) if wrap is not None else None
                new_layers[key] = (new, outer if outer is not None else new, weights)
        new, outer, weights = new_layers[key]

        def call(*args, **kwargs):
            out = outer(*args, **kwargs)
            if weights:
                _set_weights(new, weights, node.name)
            return out

        return call

    inputs = [keras.Input(shape=graph.tensors[t].shape[1:], dtype=graph.tensors[t].dtype, name=name)
              for t, name in zip(graph.input_ids, graph.input_names)]
    outputs = graph.run(inputs, layer_fn=layer_fn)
    # the graph's inputs and outputs are the model's, flattened in Keras's order: restore the structure
    # (a dict of named inputs, a dict or list of outputs) so the rewritten model is called like the original
    in_struct, out_struct = io_structure(model)
    return keras.Model(keras.tree.pack_sequence_as(in_struct, inputs),
                       keras.tree.pack_sequence_as(out_struct, outputs), name=model.name + suffix)


def io_structure(model: keras.Model):
    """The model's input and output structure (a tensor, a list or a dict of tensors).

    A top-level ``keras.Sequential`` built from an ``Input`` has never been *called*, so its ``input`` and
    ``output`` properties raise; its ``inputs``/``outputs`` lists are defined, and a Sequential model has one
    input and one output.
    """
    try:
        return model.input, model.output
    except AttributeError:
        inputs, outputs = list(model.inputs or []), list(model.outputs or [])
        if not inputs or not outputs:
            raise ValueError(f"model {model.name!r} has no defined inputs: build it on a keras.Input first")
        return (inputs[0] if len(inputs) == 1 else inputs), (outputs[0] if len(outputs) == 1 else outputs)


def _from_config(layer, config: dict):
    # Weights are overwritten right after the build, so build with cheap "zeros" initialisers (random
    # initialisation dominated the rebuild time of large models) and put the user's back afterwards.
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


def _set_weights(layer, weights: list[np.ndarray], name: str) -> None:
    try:
        layer.set_weights(weights)
    except ValueError as e:
        raise ValueError(f"weight surgery failed for layer {name!r}: {e}") from e
