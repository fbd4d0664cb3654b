"""Group magnitude: the L2 norm of every weight a channel's removal deletes, normalised per group.

The DepGraph / Torch-Pruning default (Fang et al., 2023, ``GroupMagnitudeImportance(p=2)``): a channel of a
coupled group owns a slice of every member layer (the producers' filters and biases, BatchNorm's scale and
offset, a depthwise kernel's channel, the consumers' input rows); its importance is the mean over those
layers of the squared L2 norm of its slice, divided by the mean over the group's channels. The per-group
normalisation is what makes a global ranking of magnitudes meaningful under BatchNorm: the scale of a
layer's weights is arbitrary there, so only their relative sizes inside a group say anything.
"""
from __future__ import annotations

from typing import Any

import keras
import numpy as np

from tfmot_easiedge.graph.analysis import ModelAnalysis, analyze

__all__ = ["group_l2"]


def _is_transpose(layer) -> bool:
    transposed = tuple(getattr(keras.layers, name) for name in ("Conv1DTranspose", "Conv2DTranspose",
                                                                 "Conv3DTranspose") if hasattr(keras.layers, name))
    return isinstance(layer, transposed)


def _parameters(layer) -> list[np.ndarray]:
    """The layer's parameters: its weights without BatchNorm's moving statistics (which are not learned)."""
    return [np.asarray(w.numpy(), dtype=np.float64) for w in layer.weights if "moving" not in w.path]


def _slices(weight: np.ndarray, n_in: int | None, n_out: int | None, transpose: bool):
    """``(side, per-channel squared norms)`` for each channel axis of one weight.

    Keras keeps the output channel last (kernels, biases, BatchNorm vectors) and the input channel just before
    it (convolution kernels; a Dense kernel's first axis); a transposed convolution's kernel swaps the two.
    An axis whose length matches neither side's channel count is not a channel axis.
    """
    squares = weight ** 2
    out_axis, in_axis = (-2, -1) if transpose and weight.ndim >= 3 else (-1, -2 if weight.ndim >= 2 else None)
    found = []
    for side, axis, n in (("out", out_axis, n_out), ("in", in_axis, n_in)):
        if axis is None or n is None or weight.shape[axis] != n:
            continue
        found.append((side, np.moveaxis(squares, axis, -1).reshape(-1, n).sum(0)))
    if weight.ndim == 1 and not found and n_in is not None and weight.shape[0] == n_in:
        found.append(("in", squares))
    return found


def group_l2(model: keras.Model, data: Any = None, *, analysis: ModelAnalysis | None = None, **_: Any
             ) -> dict[str, np.ndarray]:
    """Per-channel group magnitude of every prunable group, normalised to mean 1 inside each group.

    Args:
        model: a Keras model.
        data: unused (a data-free criterion).
        analysis: ``analyze(model)``, computed when not given.

    Returns:
        ``{group_id: scores}``, one non-negative score per channel, mean 1 per group (all ones when a
        group's weights are all zero).

    Example:
        >>> import keras, numpy as np
        >>> from tfmot_easiedge.importance.group_norm import group_l2
        >>> x = inp = keras.Input((8, 8, 3))
        >>> x = keras.layers.Conv2D(4, 3, name="c1")(x)
        >>> x = keras.layers.Conv2D(2, 3, name="c2")(x)
        >>> scores = group_l2(keras.Model(inp, x))
        >>> sorted(scores), round(float(scores["c1"].mean()), 6)
        (['c1'], 1.0)
    """
    analysis = analysis if analysis is not None else analyze(model)
    groups = analysis.prunable_groups
    if not groups:
        raise ValueError(f"model {model.name!r} has no prunable channel group")
    # Per group: the sum over member layers of each channel's squared slice norm, and how many layers touch it.
    total = {gid: np.zeros(g.size) for gid, g in groups.items()}
    layers_touching = {gid: np.zeros(g.size) for gid, g in groups.items()}
    for node in analysis.graph.nodes:
        layer = node.layer
        if not getattr(layer, "weights", None) or not node.inputs or not node.outputs:
            continue
        sides = {"in": analysis.positions(node.inputs[0]), "out": analysis.positions(node.outputs[0])}
        counts = {side: None if pos is None else len(pos[0]) for side, pos in sides.items()}
        per_layer: dict[str, dict[int, float]] = {}  # gid -> {channel: squared norm in this layer}
        for weight in _parameters(layer):
            for side, norms in _slices(weight, counts["in"], counts["out"], _is_transpose(layer)):
                positions = sides[side]
                assert positions is not None  # _slices yields only the sides with channels
                gids, chans = positions
                for pos, (gid, ch) in enumerate(zip(gids, chans.tolist())):
                    if gid in total:
                        per_layer.setdefault(gid, {})[ch] = per_layer.setdefault(gid, {}).get(ch, 0.0) + norms[pos]
        for gid, by_channel in per_layer.items():
            idx = np.fromiter(by_channel, dtype=np.int64)
            total[gid][idx] += np.fromiter(by_channel.values(), dtype=np.float64)
            layers_touching[gid][idx] += 1
    scores = {}
    for gid in groups:
        mean_over_layers = total[gid] / np.maximum(layers_touching[gid], 1)
        scale = mean_over_layers.mean()
        scores[gid] = mean_over_layers / scale if scale > 0 else np.ones_like(mean_over_layers)
    return scores
