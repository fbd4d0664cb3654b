"""Rules for layers that join tensors: element-wise merges (they couple channels) and Concatenate."""
from __future__ import annotations

from typing import TYPE_CHECKING

import keras
import numpy as np

from tfmot_easiedge import _keras_compat as kc
from tfmot_easiedge.graph.channels import ChannelMap
from tfmot_easiedge.graph.rules.base import ChannelRule, StopAnalysis

if TYPE_CHECKING:
    from tfmot_easiedge.graph.context import PropagationContext
    from tfmot_easiedge.graph.model_graph import GraphNode

__all__ = ["ConcatenateRule", "ElementwiseOpRule", "MergeRule"]


class MergeRule(ChannelRule):
    """Element-wise merges (Add, Multiply...): position i of every input is the same channel.

    Inputs broadcast along the channel axis (size 1) are not coupled.
    """

    def propagate(self, node: GraphNode, ctx: PropagationContext) -> list[ChannelMap | None]:
        maps = [m for m in ctx.in_maps(node) if m is not None and len(m) > 1]
        if not maps:
            return [ctx.in_maps(node)[0] for _ in node.outputs]
        width = max(len(m) for m in maps)
        if any(len(m) != width for m in maps):
            raise StopAnalysis(f"merges inputs of different channel counts {[len(m) for m in maps]}")
        for other in maps[1:]:
            ctx.couple(maps[0], other)
        return [maps[0] for _ in node.outputs]


class ElementwiseOpRule(MergeRule):
    """A Keras operation applied element-wise (``x + y``, ``ops.relu(x)`` in functional code).

    Only tensor operands and scalar constants are followed: a constant vector would have to be sliced.
    """

    def propagate(self, node: GraphNode, ctx: PropagationContext) -> list[ChannelMap | None]:
        for arg in kc.flat_call_arguments(node.arguments):
            if isinstance(arg, keras.KerasTensor) or arg is None or isinstance(arg, (bool, int, float, str)):
                continue
            if np.ndim(arg) != 0:
                raise StopAnalysis(f"operation {type(node.layer).__name__} has a non-scalar constant operand")
        return super().propagate(node, ctx)


class ConcatenateRule(ChannelRule):
    """Concatenate: along the channel axis the maps are joined (each input at its offset)."""

    def propagate(self, node: GraphNode, ctx: PropagationContext) -> list[ChannelMap | None]:
        maps = ctx.in_maps(node)
        rank = len(ctx.tensor(node.outputs[0]).shape)
        if node.layer.axis in (-1, rank - 1):
            present = [m for m in maps if m is not None]
            if len(present) != len(maps):
                raise StopAnalysis("concatenates a tensor without a channel axis")
            return [ChannelMap.concat(present)]
        return MergeRule().propagate(node, ctx)
