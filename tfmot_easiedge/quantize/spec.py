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

__all__ = ["QATUnsupportedError", "SPEC_VERSION", "fold_dense_batchnorm", "graph_spec"]

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


def fold_dense_batchnorm(spec: dict[str, Any], weights: dict[str, np.ndarray]
                         ) -> tuple[dict[str, Any], dict[str, np.ndarray], list[str]]:
    """``spec`` with every linear ``Dense`` whose only reader is a ``BatchNormalization`` over its units folded
    into one ``Dense`` (the normalisation's moving statistics, as in inference); returns the new spec, weights
    and the folded BatchNormalization layers' names.

    tfmot's Dense + BatchNormalization pattern trains, but its TFLite conversion does not match the QAT model:
    on the slim CIFAR-10 VGG-16-BN (``fc1`` -> ``fc1_bn``) the int8 file agreed with it on 36% of top-1
    predictions (52% top-1 where the QAT model had 64%). Folded, the Dense is tfmot's plain Dense (+ ReLU).

    Example:
        >>> inp = keras.Input((3,))
        >>> h = keras.layers.BatchNormalization(name="bn")(keras.layers.Dense(2, name="fc")(inp))
        >>> spec, w, folded = fold_dense_batchnorm(*graph_spec(keras.Model(inp, h)))
        >>> [n["layer"] for n in spec["nodes"]], folded, spec["layers"]["fc"]["config"]["use_bias"]
        (['fc'], ['bn'], True)
    """
    nodes = spec["nodes"]
    readers: dict[int, list[int]] = {}
    for i, node in enumerate(nodes):
        for t in node["inputs"]["ids"]:
            readers.setdefault(t, []).append(i)
    calls: dict[str, int] = {}
    for node in nodes:
        calls[node["layer"]] = calls.get(node["layer"], 0) + 1
    layers, weights = dict(spec["layers"]), dict(weights)
    drop: set[int] = set()
    rename: dict[int, int] = {}
    folded: list[str] = []
    for i, node in enumerate(nodes):
        if i in drop:
            continue
        dense = layers[node["layer"]]
        if dense["class_name"] != "Dense" or dense["config"].get("activation") not in ("linear", None):
            continue
        out = node["outputs"][0]
        if len(node["outputs"]) != 1 or out in spec["outputs"] or len(readers.get(out, [])) != 1:
            continue
        j = readers[out][0]
        bn_name = nodes[j]["layer"]
        bn = layers[bn_name]
        axis = bn["config"].get("axis", -1)
        axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
        if bn["class_name"] != "BatchNormalization" or axis not in (-1, 1) or calls[bn_name] != 1 \
                or calls[node["layer"]] != 1 or nodes[j]["inputs"]["kind"] != "one":
            continue
        name = node["layer"]
        kernel = weights[f"{name}:0"].astype(np.float64)
        bias = weights[f"{name}:1"].astype(np.float64) if dense["config"].get("use_bias", True) else 0.0
        if axis == 1 and kernel.ndim != 2:
            continue
        bw = [weights[f"{bn_name}:{k}"].astype(np.float64) for k in range(bn["n_weights"])]
        gamma = bw.pop(0) if bn["config"].get("scale", True) else 1.0
        beta = bw.pop(0) if bn["config"].get("center", True) else 0.0
        mean, var = bw
        scale = gamma / np.sqrt(var + float(bn["config"].get("epsilon", 1e-3)))
        weights[f"{name}:0"] = (kernel * scale).astype(np.float32)
        weights[f"{name}:1"] = ((bias - mean) * scale + beta).astype(np.float32)
        layers[name] = {**dense, "config": {**dense["config"], "use_bias": True}, "n_weights": 2}
        for k in range(bn["n_weights"]):
            weights.pop(f"{bn_name}:{k}")
        del layers[bn_name]
        drop.add(j)
        rename[nodes[j]["outputs"][0]] = out
        folded.append(bn_name)
    if not folded:
        return spec, weights, []
    new_nodes = []
    for i, node in enumerate(nodes):
        if i in drop:
            continue
        ids = [rename.get(t, t) for t in node["inputs"]["ids"]]
        new_nodes.append({**node, "inputs": {**node["inputs"], "ids": ids}})
    outputs = [rename.get(t, t) for t in spec["outputs"]]
    return {**spec, "layers": layers, "nodes": new_nodes, "outputs": outputs}, weights, folded
