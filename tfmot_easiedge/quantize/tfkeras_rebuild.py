"""A :func:`~tfmot_easiedge.quantize.spec.graph_spec` rebuilt as a tf_keras model (runs in the QAT child only).

Each layer is made from its Keras 3 config with the same-named ``tf_keras.layers`` class: serialized objects
(initializers, regularizers, constraints) lose the Keras-3-only ``module``/``registered_name`` keys, a dtype
policy becomes its name, and options tf_keras does not have are dropped only when they are off (None, False,
0); an option that is on, or a class tf_keras lacks, is an error naming the layer. Weights are copied in
``get_weights()`` order, shapes checked. tf_keras is imported inside the functions: importing this module
costs nothing and never loads tf_keras beside Keras 3.
"""
from __future__ import annotations

import inspect
from typing import Any

import numpy as np

__all__ = ["RebuildError", "convert_config", "rebuild_tf_keras"]

# Keyword arguments every tf_keras layer takes through ``Layer.__init__(**kwargs)``.
_BASE_KWARGS = {"name", "trainable", "dtype", "dynamic", "input_dim", "input_shape", "batch_input_shape",
                "batch_size", "weights", "activity_regularizer", "autocast", "implementation"}


class RebuildError(ValueError):
    """A layer of the spec has no faithful tf_keras equivalent (the message names it)."""


def _convert_value(value: Any) -> Any:
    if isinstance(value, dict):
        if "class_name" in value and "config" in value:
            if value["class_name"] in ("DTypePolicy", "FloatDTypePolicy", "Policy"):
                return (value.get("config") or {}).get("name", "float32")
            return {"class_name": value["class_name"], "config": _convert_value(value["config"])}
        return {k: _convert_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_convert_value(v) for v in value]
    return value


def _accepted_keys(cls: type) -> set[str]:
    """Keyword names ``cls.__init__`` takes: its own, its base classes' (``**kwargs`` passed up) and the
    base layer's."""
    named = set(_BASE_KWARGS)
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        params = inspect.signature(init).parameters
        named |= {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return named - {"self"}


def convert_config(class_name: str, config: dict, cls: type) -> dict:
    """The tf_keras config of a Keras 3 layer config; raises :class:`RebuildError` for an option that is on.

    Example:
        >>> class Dense:  # stands for tf_keras.layers.Dense
        ...     def __init__(self, units, activation=None, **kwargs): ...
        >>> convert_config("Dense", {"units": 2, "lora_rank": None, "name": "d",
        ...     "dtype": {"class_name": "DTypePolicy", "config": {"name": "float32"}}}, Dense)
        {'units': 2, 'name': 'd', 'dtype': 'float32'}
    """
    accepted = _accepted_keys(cls)
    out = {}
    for key, value in config.items():
        if key not in accepted:
            if value in (None, False, 0, [], {}):
                continue  # a Keras 3 option that is off: tf_keras behaves the same without it
            raise RebuildError(f"layer {config.get('name')!r} ({class_name}) sets {key}={value!r}, which tf_keras "
                               f"{cls.__name__} does not have")
        # weights are copied right after the build: initializers only cost time (and Keras 3's take options
        # tf_keras's do not, e.g. GlorotUniform's input_axes)
        out[key] = "zeros" if key.endswith("_initializer") and value is not None else _convert_value(value)
    return out


def _make_layer(name: str, entry: dict, tf_keras) -> Any:
    class_name = entry["class_name"]
    cls = getattr(tf_keras.layers, class_name, None)
    if cls is None or not entry["module"].startswith("keras."):
        raise RebuildError(f"layer {name!r} is a {entry['module']}.{class_name}, which tf_keras has no class for "
                           "(a custom layer): rebuild it by hand or use post-training int8")
    return cls.from_config(convert_config(class_name, entry["config"], cls))


def _set_weights(layer, name: str, entry: dict, weights: dict[str, np.ndarray]) -> None:
    values = [weights[f"{name}:{i}"] for i in range(entry["n_weights"])]
    expected = [tuple(w.shape) for w in layer.get_weights()]
    got = [tuple(v.shape) for v in values]
    if expected != got:
        raise RebuildError(f"layer {name!r} ({entry['class_name']}): tf_keras has weights of shapes {expected}, the "
                           f"Keras 3 layer {got}")
    if values:
        layer.set_weights(values)


def rebuild_tf_keras(spec: dict, weights: dict[str, np.ndarray]) -> Any:
    """The tf_keras functional model of ``spec`` with ``weights`` copied in.

    Example:
        >>> model = rebuild_tf_keras(spec, weights)  # doctest: +SKIP
    """
    import tf_keras

    values: dict[int, Any] = {}
    inputs = []
    for i, entry in enumerate(spec["inputs"]):
        tensor = tf_keras.Input(shape=tuple(entry["shape"]), dtype=entry["dtype"], name=entry["name"] or f"input_{i}")
        values[entry["id"]] = tensor
        inputs.append(tensor)
    made: dict[str, Any] = {}
    for node in spec["nodes"]:
        name = node["layer"]
        entry = spec["layers"][name]
        first = name not in made
        if first:
            made[name] = _make_layer(name, entry, tf_keras)
        ids = node["inputs"]["ids"]
        args = values[ids[0]] if node["inputs"]["kind"] == "one" else [values[t] for t in ids]
        outputs = _flatten(made[name](args))
        if len(outputs) != len(node["outputs"]):
            raise RebuildError(f"layer {node['path']!r}: tf_keras returned {len(outputs)} outputs, Keras 3 "
                               f"{len(node['outputs'])}")
        values.update(zip(node["outputs"], outputs))
        if first:
            _set_weights(made[name], name, entry, weights)
    outputs = [values[t] for t in spec["outputs"]]
    return tf_keras.Model(inputs if len(inputs) > 1 else inputs[0], outputs if len(outputs) > 1 else outputs[0],
                          name=spec["name"])


def _flatten(value: Any) -> list:
    if isinstance(value, (list, tuple)):
        return [v for item in value for v in _flatten(item)]
    if isinstance(value, dict):
        return [v for k in sorted(value) for v in _flatten(value[k])]
    return [value]
