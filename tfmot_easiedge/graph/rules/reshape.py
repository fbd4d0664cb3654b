"""Rules for layers that move the channel axis around: Reshape, Flatten, Permute."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from tfmot_easiedge.graph.rules.base import ChannelRule, StopAnalysis, channel_mask, require_channels_last, single_map
from tfmot_easiedge.graph.rules.passthrough import PassThroughRule

if TYPE_CHECKING:
    import numpy as np

    from tfmot_easiedge.graph.channels import ChannelMap
    from tfmot_easiedge.graph.context import PropagationContext
    from tfmot_easiedge.graph.model_graph import GraphNode

__all__ = ["FlattenRule", "PermuteRule", "ReshapeRule"]


class ReshapeRule(ChannelRule):
    """Reshape that keeps the channel axis last (``(1, 1, C)``) or flattens channels-last (``(H·W·C,)``)."""

    def propagate(self, node: GraphNode, ctx: PropagationContext) -> list[ChannelMap | None]:
        m = single_map(ctx.in_maps(node))
        in_shape = ctx.tensor(node.inputs[0]).shape[1:]
        out_shape = ctx.tensor(node.outputs[0]).shape[1:]
        if None in in_shape or None in out_shape:
            raise StopAnalysis("reshape with unknown dimensions")
        if out_shape and out_shape[-1] == in_shape[-1]:
            return [m]
        if len(out_shape) == 1:
            return [m.tile(math.prod(in_shape[:-1]))]
        raise StopAnalysis(f"reshape {tuple(in_shape)} -> {tuple(out_shape)} mixes channels")

    def slim(self, layer: Any, in_keep: list[np.ndarray | None], out_keep: list[np.ndarray | None]
             ) -> tuple[dict, list[np.ndarray]]:
        config = layer.get_config()
        shape = list(config["target_shape"])
        shape[-1] = int(channel_mask(out_keep).sum()) if shape[-1] != -1 else -1
        config["target_shape"] = tuple(shape)
        return config, []


class FlattenRule(ChannelRule):
    """Flatten of a channels-last tensor: channel c becomes the H·W units ``c + k·C``."""

    def propagate(self, node: GraphNode, ctx: PropagationContext) -> list[ChannelMap | None]:
        require_channels_last(node.layer)
        m = single_map(ctx.in_maps(node))
        spatial = ctx.tensor(node.inputs[0]).shape[1:-1]
        if None in spatial:
            raise StopAnalysis("Flatten of a tensor with unknown spatial size")
        return [m.tile(math.prod(spatial) if spatial else 1)]


class PermuteRule(PassThroughRule):
    """Permute that leaves the channel axis last; moving it is a stop."""

    def propagate(self, node: GraphNode, ctx: PropagationContext) -> list[ChannelMap | None]:
        dims = tuple(node.layer.dims)
        if dims[-1] != len(dims):
            raise StopAnalysis(f"Permute{dims} moves the channel axis")
        return super().propagate(node, ctx)
