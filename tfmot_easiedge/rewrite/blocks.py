"""A plan's removed residual blocks in a rebuilt model: gone in ``slim``, silenced in ``masked_copy``.

``slim`` leaves each removed block's branch out of the rebuilt graph, its ``Add`` replaced by the shortcut
(:func:`~tfmot_easiedge.graph.blocks.bypass_map`). ``masked_copy`` keeps the architecture and makes the
branch output exactly zero instead, so ``Add(x, 0) = x``: it zeroes the last layer of the branch that can
output zero for any input, walking back through layers that map zero to zero (ReLU, pooling, dropout):

- a normalisation with a scale (BatchNormalization, LayerNormalization, GroupNormalization): ``gamma``
  and ``beta`` (a BatchNormalization without ``gamma`` is linear once ``beta`` and its moving mean are 0,
  and the walk goes on to its input);
- a layer whose weights read its input channels (convolutions, Dense, depthwise, separable): every
  weight (kernel and bias), provided its activation maps 0 to 0.

Example:
    >>> import keras
    >>> from tfmot_easiedge.graph import analyze
    >>> x = keras.Input((8, 8, 4))
    >>> h = keras.layers.BatchNormalization(name="bn")(keras.layers.Conv2D(4, 3, padding="same", name="c")(x))
    >>> a = analyze(keras.Model(x, keras.layers.Conv2D(2, 1)(keras.layers.Add(name="add")([x, h]))))
    >>> {a.graph.nodes[i].name: names for i, names in branch_zeroing(a, [a.blocks["add"]]).items()}
    {'bn': ('gamma', 'beta')}
"""
from __future__ import annotations

from typing import Iterable

import keras
import numpy as np

from tfmot_easiedge.graph.analysis import ModelAnalysis
from tfmot_easiedge.graph.blocks import ResidualBlock, bypass_map
from tfmot_easiedge.graph.model_graph import GraphNode
from tfmot_easiedge.graph.rules.base import weight_name
from tfmot_easiedge.plan import PruningPlan

__all__ = ["branch_zeroing", "plan_blocks", "plan_bypass", "zero_named"]

_SCALED_NORMS = (keras.layers.BatchNormalization, keras.layers.LayerNormalization, keras.layers.GroupNormalization)


def plan_blocks(analysis: ModelAnalysis, plan: PruningPlan) -> list[ResidualBlock]:
    """The plan's removed blocks, as the analysis knows them (``plan.validate`` has checked them)."""
    return [analysis.blocks[b] for b in plan.removed_blocks]


def plan_bypass(analysis: ModelAnalysis, plan: PruningPlan) -> dict[int, int | None] | None:
    """The ``bypass`` that leaves the plan's removed branches out of a rebuild (None when it removes none)."""
    return bypass_map(plan_blocks(analysis, plan)) if plan.removed_blocks else None


def branch_zeroing(analysis: ModelAnalysis, blocks: Iterable[ResidualBlock]) -> dict[int, tuple[str, ...]]:
    """``{node index: weight names}``: the weights to zero so that each block's branch outputs zero.

    Raises:
        ValueError: naming the block, when no layer of its branch can be zeroed that way (e.g. a branch
            ending in a sigmoid, or in a layer without weights that does not map 0 to 0).
    """
    out: dict[int, tuple[str, ...]] = {}
    for block in blocks:
        for index, names in _zeroing(analysis, block):
            out[index] = tuple(dict.fromkeys([*out.get(index, ()), *names]))
    return out


def zero_named(layer: keras.layers.Layer, weights: list[np.ndarray], names: Iterable[str]) -> list[np.ndarray]:
    """``weights`` (in the order of ``layer.weights``) with the ones called ``names`` set to zero."""
    names = set(names)
    return [np.zeros_like(w) if weight_name(v) in names else w for v, w in zip(layer.weights, weights)]


def _zeroing(analysis: ModelAnalysis, block: ResidualBlock) -> list[tuple[int, tuple[str, ...]]]:
    graph = analysis.graph
    steps: list[tuple[int, tuple[str, ...]]] = []
    tid = block.branch_tensor
    while tid != block.shortcut_tensor:
        producer = graph.tensors[tid].producer
        if producer is None:
            break
        node = graph.nodes[producer]
        layer = node.layer
        names = [weight_name(v) for v in getattr(layer, "weights", [])]
        if isinstance(layer, _SCALED_NORMS) and "gamma" in names:
            return [*steps, (node.index, tuple(n for n in ("gamma", "beta") if n in names))]
        if isinstance(layer, keras.layers.BatchNormalization):  # no gamma: linear once beta and the mean are 0
            steps.append((node.index, tuple(n for n in ("beta", "moving_mean") if n in names)))
        elif names:
            rule = analysis.rules[node.index]
            if rule is None or not rule.consumes_inputs or not _maps_zero_to_zero(getattr(layer, "activation", None)):
                break
            return [*steps, (node.index, tuple(names))]
        elif len(node.inputs) != 1 or not _layer_keeps_zero(node, graph.tensors[node.inputs[0]].shape):
            break
        tid = node.inputs[0]
    raise ValueError(f"masked_copy cannot silence residual block {block.id!r}: no layer of its branch can be "
                     f"zeroed to make it output zero (stopped at {_producer_name(analysis, tid)!r}); slim can "
                     "still remove it")


def _producer_name(analysis: ModelAnalysis, tid: int) -> str:
    p = analysis.graph.tensors[tid].producer
    return "input" if p is None else analysis.graph.nodes[p].name


def _maps_zero_to_zero(fn) -> bool:
    if fn is None:
        return True
    try:
        return not np.any(keras.ops.convert_to_numpy(fn(keras.ops.zeros((1, 2)))))
    except Exception:  # noqa: BLE001 - an activation that cannot run alone: not known to keep zero
        return False


def _layer_keeps_zero(node: GraphNode, shape: tuple) -> bool:
    """A weightless layer (ReLU, pooling, dropout...) whose output is zero for a zero input."""
    zeros = keras.ops.zeros((1, *(1 if d is None else d for d in shape[1:])))
    try:
        args, kwargs = node.fill_in([zeros])
        return not np.any(keras.ops.convert_to_numpy(node.layer(*args, **kwargs)))
    except Exception:  # noqa: BLE001 - a layer that cannot run alone: not known to keep zero
        return False
