"""Run a model with a multiplicative gate on every prunable channel, applied where the channel is consumed.

Removing channel k of a group is exactly setting its gate to 0 at every consumer (the convolutions and
Dense layers that read it), which is what ``masked_copy`` does with weights. With gates of shape
``[batch, channels]`` each example has its own gates, so one backward pass gives per-example
derivatives ``∂f(x_n)/∂g_{n,k} = Σ_positions a·∂f/∂a`` for every channel at once (the TBAA term), and
one forward pass with some gates at 0 evaluates a removal exactly (exact IG).

Information gain needs every model output to be a class distribution along its last axis: softmax
probabilities or logits, ``[batch, classes]`` for a classifier or ``[batch, *positions, classes]`` for dense
prediction (segmentation), one distribution per position. :func:`output_specs` states the rule.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from tfmot_easiedge.graph.analysis import ModelAnalysis

if TYPE_CHECKING:
    import keras

    from tfmot_easiedge.graph.model_graph import ModelGraph


class GatedModel:
    """Callable ``(x, gates) -> model output`` with channel gates at the consumers.

    Attributes:
        group_ids: the prunable groups, in the order of ``offsets``.
        offsets: ``{group_id: start column}`` of each group's channels in the gate matrix.
        width: number of gate columns (all prunable channels).
    """

    def __init__(self, model: keras.Model, analysis: ModelAnalysis, group_ids: Iterable[str] | None = None):
        self.model = model
        self.analysis = analysis
        self.group_ids = list(group_ids if group_ids is not None else analysis.prunable_groups)
        self.offsets, col = {}, 0
        for gid in self.group_ids:
            self.offsets[gid] = col
            col += analysis.groups[gid].size
        self.width = col
        self._edges = self._gate_indices()

    def _gate_indices(self) -> dict[tuple[int, int], np.ndarray]:
        """``{(node index, input position): gate column per channel position}``; ``width`` = constant 1."""
        a = self.analysis
        edges = {}
        for node, rule in zip(a.graph.nodes, a.rules):
            if rule is None or not rule.consumes_inputs:
                continue
            for pos, tid in enumerate(node.inputs):
                p = a.positions(tid)
                if p is None:
                    continue
                gids, chans = p
                idx = np.array([self.offsets[g] + c if g in self.offsets else self.width
                                for g, c in zip(gids, chans.tolist())], dtype=np.int64)
                if (idx < self.width).any():
                    edges[(node.index, pos)] = idx
        return edges

    def columns(self, group_id: str) -> slice:
        start = self.offsets[group_id]
        return slice(start, start + self.analysis.groups[group_id].size)

    def split(self, row: np.ndarray) -> dict[str, np.ndarray]:
        """Splits a vector over gate columns into ``{group_id: per-channel values}``."""
        return {gid: np.asarray(row[self.columns(gid)]) for gid in self.group_ids}

    def outputs(self, x: Any, gates: Any) -> list:
        """Every model output, in order, in inference mode; ``gates`` is ``[batch, width]`` (or ``[width]``)."""
        import tensorflow as tf

        gates = tf.convert_to_tensor(gates)
        if gates.shape.rank == 1:
            gates = gates[None]
        padded = tf.concat([gates, tf.ones_like(gates[:, :1])], axis=1)

        def input_fn(node, pos, value):
            idx = self._edges.get((node.index, pos))
            if idx is None:
                return value
            g = tf.gather(padded, idx, axis=1)
            g = tf.reshape(g, [-1] + [1] * (len(value.shape) - 2) + [len(idx)])
            return value * tf.cast(g, value.dtype)

        return self.analysis.graph.run([x], input_fn=input_fn, call_kwargs={"training": False})

    def __call__(self, x: Any, gates: Any) -> Any:
        """Runs the model in inference mode; ``gates`` is ``[batch, width]`` (or ``[width]``).

        Returns the first model output (see :meth:`outputs` for all of them).
        """
        return self.outputs(x, gates)[0]

    def output_specs(self) -> tuple[OutputSpec, ...]:
        """The model outputs as class distributions (a ``ValueError`` for one that is not: see :func:`output_specs`)."""
        return output_specs(self.model, self.analysis.graph)


#: ``from_logits`` of the IG criteria: None (detect per output), a bool for every output, or one per output.
FromLogits = bool | Sequence[bool] | None


@dataclasses.dataclass(frozen=True)
class OutputSpec:
    """One model output read as class distributions along its last axis.

    Attributes:
        name: the layer producing it (for messages).
        shape: its shape without the batch axis, ``(classes,)`` or ``(*positions, classes)``.
    """

    name: str
    shape: tuple

    @property
    def classes(self) -> int:
        return int(self.shape[-1])

    @property
    def dense(self) -> bool:
        """True for dense prediction: one distribution per position (``[batch, *positions, classes]``)."""
        return len(self.shape) > 1


def output_specs(model: keras.Model, graph: ModelGraph | None = None) -> tuple[OutputSpec, ...]:
    """Checks that every output of ``model`` is a class distribution along its last axis; one spec per output.

    An output is accepted when it has a batch axis and a class axis (rank >= 2) and a known class count
    above 1. Any real values are valid logits, so beyond that only what can be told from the model is
    rejected: a ``sigmoid`` final activation (independent per-unit probabilities, multi-label or binary,
    not one distribution). A 2-class classifier needs 2 units (softmax or logits), not 1.

    Args:
        model: a Keras functional or Sequential model.
        graph: its :class:`ModelGraph` (built when None).

    Raises:
        ValueError: (one line) naming the first output that is not a class distribution and why.

    Example:
        >>> import keras
        >>> x = keras.Input((4,))
        >>> [s.shape for s in output_specs(keras.Model(x, keras.layers.Dense(3, name="cls")(x)))]
        [(3,)]
        >>> output_specs(keras.Model(x, keras.layers.Dense(1, name="reg")(x)))
        Traceback (most recent call last):
        ...
        ValueError: information gain needs class distributions, but output 'reg' ... has a single unit ...
    """
    import keras

    from tfmot_easiedge.graph.model_graph import ModelGraph

    graph = graph if graph is not None else ModelGraph.from_model(model)
    specs: list[OutputSpec] = []
    for tid in graph.output_ids:
        tensor = graph.tensors[tid]
        layer = graph.nodes[tensor.producer].layer if tensor.producer is not None else None
        name = getattr(layer, "name", None) or f"output {len(specs)}"
        shape = tuple(tensor.shape)
        check_output_shape(name, shape)
        activation = getattr(layer, "activation", None)
        if activation is keras.activations.sigmoid or getattr(activation, "__name__", "") == "sigmoid":
            raise ValueError(f"information gain needs class distributions, but output {name!r} of shape {shape} ends "
                             "in a sigmoid (independent per-unit probabilities, not one distribution over classes); "
                             "use a softmax or logits")
        specs.append(OutputSpec(name, shape[1:]))
    return tuple(specs)


def check_output_shape(name: str, shape: tuple) -> None:
    """The shape part of the :func:`output_specs` rule: rank >= 2 and a known class count above 1."""
    head = f"information gain needs class distributions, but output {name!r} of shape {tuple(shape)}"
    if len(shape) < 2:
        raise ValueError(f"{head} has no class axis (expected [batch, classes] or [batch, *positions, classes])")
    if shape[-1] is None:
        raise ValueError(f"{head} has an unknown number of classes (last axis)")
    if shape[-1] == 1:
        raise ValueError(f"{head} has a single unit (a regression or sigmoid output); a 2-class classifier "
                         "needs 2 units (softmax or logits)")


def log_probs(out: Any, from_logits: bool | Sequence[bool]) -> Any:
    """``log p`` from a model output (logits or probabilities along the last axis).

    ``from_logits`` is a bool, or one bool per model output (as :func:`detect_from_logits` returns for a
    multi-output model): then ``out`` is the list of outputs and a list is returned, or ``out`` is the
    first output alone (what ``GatedModel.__call__`` returns) and the first flag applies.
    """
    import tensorflow as tf

    if isinstance(from_logits, (tuple, list)):
        if isinstance(out, (tuple, list)):
            return [log_probs(o, f) for o, f in zip(out, from_logits, strict=True)]
        from_logits = from_logits[0]
    out = tf.cast(out, tf.float32)
    if from_logits:
        return tf.nn.log_softmax(out, axis=-1)
    return tf.math.log(tf.clip_by_value(out, 1e-12, 1.0))


def is_probabilities(out: np.ndarray) -> bool:
    """True when every row along the last axis is a probability vector (non-negative, summing to 1)."""
    out = np.asarray(out, dtype=np.float64)
    return bool((out >= -1e-6).all() and np.allclose(out.sum(-1), 1.0, atol=1e-3))


def detect_from_logits(model: keras.Model, x: Any) -> bool | tuple[bool, ...]:
    """True when an output's rows are not probability vectors (negative or not summing to 1), so logits.

    Returns a bool for a single-output model, one bool per output (in the order of
    ``keras.tree.flatten(model.outputs)``) for several. A ``ValueError`` for an output without a class axis
    of 2 or more (:func:`check_output_shape`).
    """
    import keras

    outs = [keras.ops.convert_to_numpy(o) for o in keras.tree.flatten(model(x[:8], training=False))]
    names = list(getattr(model, "output_names", None) or [])
    for i, o in enumerate(outs):
        check_output_shape(names[i] if i < len(names) else f"output {i}", (None, *o.shape[1:]))
    flags = tuple(not is_probabilities(o) for o in outs)
    return flags[0] if len(flags) == 1 else flags


def resolve_flags(specs: Sequence[OutputSpec], detected: bool | tuple[bool, ...], from_logits: FromLogits = None
                  ) -> tuple[bool, ...]:
    """One from-logits flag per output: ``from_logits`` when given (a bool for all outputs or one per output),
    else ``detected`` (from :func:`detect_from_logits`).

    Raises:
        ValueError: ``from_logits`` of the wrong length, or an output declared probabilities
            (``from_logits=False``) whose values are not (negative, or not summing to 1): a softmax was
            expected.
    """
    detected = tuple(detected) if isinstance(detected, (tuple, list)) else (bool(detected),) * len(specs)
    if from_logits is None:
        return detected
    given = tuple(from_logits) if isinstance(from_logits, (tuple, list)) else (from_logits,) * len(specs)
    if len(given) != len(specs):
        raise ValueError(f"from_logits has {len(given)} flags but the model has {len(specs)} outputs")
    for spec, flag, seen in zip(specs, given, detected):
        if not flag and seen:
            raise ValueError(f"output {spec.name!r} was declared probabilities (from_logits=False) but its values are "
                             "negative or do not sum to 1 over the last axis; pass from_logits=True for logits")
    return tuple(bool(f) for f in given)
