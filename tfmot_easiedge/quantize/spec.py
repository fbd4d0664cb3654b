"""A Keras 3 model as plain data a tf_keras process can rebuild: layer configs, calls, weights.

The spec is JSON (the layers' ``get_config()`` with the class name, and each call's input tensor ids) plus
one NumPy array per weight; nested models are inlined (:class:`~tfmot_easiedge.graph.ModelGraph`). Only what
tf_keras can reproduce is accepted: Keras layers (not ``keras.ops`` calls) called on one tensor or on a list
of tensors, without extra call arguments. Anything else is a :class:`QATUnsupportedError` naming the layer.
"""
from __future__ import annotations

import json
from typing import Any

import keras
import numpy as np

from tfmot_easiedge.graph.model_graph import ModelGraph

__all__ = ["QATUnsupportedError", "SPEC_VERSION", "graph_spec"]

SPEC_VERSION = 1


class QATUnsupportedError(ValueError):
    """The model cannot be rebuilt in tf_keras for QAT (the message names the layer and what to use instead)."""


_FALLBACK = "use post-training int8 instead: export.tflite(model, path, quantization='int8', ...)"


class _Ref:
    """Stands for graph tensor ``id`` when a call's arguments are filled in, to read the call's structure."""

    __slots__ = ("id",)

    def __init__(self, tensor_id: int):
        self.id = tensor_id


def _call_inputs(node) -> dict:
    """``{"kind": "one", "ids": [t]}`` or ``{"kind": "list", "ids": [...]}``; else unsupported."""
    args, kwargs = node.fill_in([_Ref(t) for t in node.inputs])
    # ``training``: Keras records the default (``training=False`` on a Dropout) in the node, and a functional
    # model's own call sets it for every layer, in Keras 3 and tf_keras alike: not part of the graph.
    extra = {k: v for k, v in kwargs.items() if v is not None and k != "training"}
    if len(args) == 1 and not extra:
        if isinstance(args[0], _Ref):
            return {"kind": "one", "ids": [args[0].id]}
        if isinstance(args[0], (list, tuple)) and args[0] and all(isinstance(a, _Ref) for a in args[0]):
            return {"kind": "list", "ids": [a.id for a in args[0]]}
    raise QATUnsupportedError(
        f"layer {node.name!r} ({type(node.layer).__name__}) is called with arguments the tf_keras rebuild "
        f"cannot reproduce (positional {len(args)}, keyword {sorted(extra)}); {_FALLBACK}")


def _unique_name(layer, used: dict[int, str], taken: set[str]) -> str:
    if id(layer) in used:
        return used[id(layer)]
    name, i = layer.name, 1
    while name in taken:
        name, i = f"{layer.name}_{i}", i + 1
    used[id(layer)] = name
    taken.add(name)
    return name


def graph_spec(model: keras.Model) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON-able spec of ``model`` and its weights (``"LAYER:i"`` -> array).

    Raises:
        QATUnsupportedError: a Keras operation that is not a layer, a layer called with extra arguments, or a
            layer whose config is not JSON-able.

    Example:
        >>> inp = keras.Input((4, 4, 3), name="image")
        >>> m = keras.Model(inp, keras.layers.Dense(2, name="head")(keras.layers.Flatten(name="f")(inp)))
        >>> spec, weights = graph_spec(m)
        >>> [n["layer"] for n in spec["nodes"]], sorted(weights)
        (['f', 'head'], ['head:0', 'head:1'])
    """
    graph = ModelGraph.from_model(model)
    used: dict[int, str] = {}
    taken: set[str] = set()
    layers: dict[str, dict] = {}
    weights: dict[str, np.ndarray] = {}
    nodes = []
    for node in graph.nodes:
        layer = node.layer
        if not isinstance(layer, keras.layers.Layer):
            raise QATUnsupportedError(
                f"{node.name!r} is a Keras operation ({type(layer).__name__}), not a layer: tf_keras has no "
                f"equivalent to rebuild it from; write it as a layer (e.g. keras.layers.Add) or {_FALLBACK}")
        name = _unique_name(layer, used, taken)
        if name not in layers:
            config = layer.get_config()
            try:
                json.dumps(config)
            except TypeError as e:
                raise QATUnsupportedError(f"layer {node.name!r} ({type(layer).__name__}) has a config that is not "
                                          f"JSON-able ({e}); {_FALLBACK}") from e
            layers[name] = {"class_name": type(layer).__name__, "module": type(layer).__module__, "config": config,
                            "n_weights": len(layer.get_weights())}
            for i, w in enumerate(layer.get_weights()):
                weights[f"{name}:{i}"] = np.asarray(w)
        nodes.append({"layer": name, "path": node.name, "inputs": _call_inputs(node), "outputs": list(node.outputs)})
    inputs = [{"id": t, "name": n, "shape": [None if d is None else int(d) for d in graph.tensors[t].shape[1:]],
               "dtype": str(graph.tensors[t].dtype)} for t, n in zip(graph.input_ids, graph.input_names)]
    spec = {"version": SPEC_VERSION, "name": model.name, "inputs": inputs, "outputs": list(graph.output_ids),
            "layers": layers, "nodes": nodes}
    return spec, weights
