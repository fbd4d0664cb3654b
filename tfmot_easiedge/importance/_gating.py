"""Run a model with a multiplicative gate on every prunable channel, applied where the channel is consumed.

Removing channel k of a group is exactly setting its gate to 0 at every consumer (the convolutions and
Dense layers that read it), which is what ``masked_copy`` does with weights. With gates of shape
``[batch, channels]`` each example has its own gates, so one backward pass gives per-example
derivatives ``∂f(x_n)/∂g_{n,k} = Σ_positions a·∂f/∂a`` for every channel at once (the TBAA term), and
one forward pass with some gates at 0 evaluates a removal exactly (exact IG).
"""
from __future__ import annotations

import numpy as np

from tfmot_easiedge.graph.analysis import ModelAnalysis


class GatedModel:
    """Callable ``(x, gates) -> model output`` with channel gates at the consumers.

    Attributes:
        group_ids: the prunable groups, in the order of ``offsets``.
        offsets: ``{group_id: start column}`` of each group's channels in the gate matrix.
        width: number of gate columns (all prunable channels).
    """

    def __init__(self, model, analysis: ModelAnalysis, group_ids=None):
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

    def __call__(self, x, gates):
        """Runs the model in inference mode; ``gates`` is ``[batch, width]`` (or ``[width]``)."""
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

        outs = self.analysis.graph.run([x], input_fn=input_fn, call_kwargs={"training": False})
        return outs[0]


def log_probs(out, from_logits: bool):
    """``log p`` from the model output (logits or probabilities)."""
    import tensorflow as tf

    out = tf.cast(out, tf.float32)
    if from_logits:
        return tf.nn.log_softmax(out, axis=-1)
    return tf.math.log(tf.clip_by_value(out, 1e-12, 1.0))


def detect_from_logits(model, x) -> bool:
    """True when the model's output rows are not probability vectors (negative or not summing to 1)."""
    out = np.asarray(model(x[:8], training=False), dtype=np.float64)
    if out.ndim != 2:
        raise ValueError(f"information gain needs a classifier output [batch, classes], got shape {out.shape}")
    is_prob = (out >= -1e-6).all() and np.allclose(out.sum(-1), 1.0, atol=1e-3)
    return not is_prob
