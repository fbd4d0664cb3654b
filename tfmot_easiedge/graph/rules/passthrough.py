"""Rules for layers whose output channel i is input channel i and that hold no per-channel weight.

Activations, dropout, pooling, padding, cropping, resizing, augmentation layers.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from tfmot_easiedge.graph.rules.base import ChannelRule, require_channels_last, single_map

if TYPE_CHECKING:
    from tfmot_easiedge.graph.channels import ChannelMap
    from tfmot_easiedge.graph.context import PropagationContext
    from tfmot_easiedge.graph.model_graph import GraphNode

__all__ = ["GlobalPoolRule", "InputLayerRule", "PassThroughRule"]


class PassThroughRule(ChannelRule):
    """Output channel i is input channel i; the layer has no per-channel weights (ReLU, pooling...).

    Args:
        approximate: when given, the channels passing through are marked approximate with this reason
            (a softmax over the channel axis: removing one channel changes the others).
    """

    def __init__(self, approximate: str | None = None):
        self.approximate = approximate

    def propagate(self, node: GraphNode, ctx: PropagationContext) -> list[ChannelMap | None]:
        require_channels_last(node.layer)
        m = single_map(ctx.in_maps(node))
        if self.approximate:
            ctx.mark_approximate(m, f"{node.name}: {self.approximate}")
        return [m for _ in node.outputs]


class GlobalPoolRule(PassThroughRule):
    """Global pooling: the spatial axes go, the channel axis stays."""


class InputLayerRule(ChannelRule):
    """An ``InputLayer`` (never a graph node: model inputs are the graph's input tensors)."""

    def propagate(self, node: GraphNode, ctx: PropagationContext) -> list[ChannelMap | None]:  # pragma: no cover
        return ctx.in_maps(node)
