"""Rules for layers that move the channel axis around: Reshape, Flatten, Permute."""
from __future__ import annotations

import math

from tfmot_easiedge.graph.rules.base import ChannelRule, StopAnalysis, require_channels_last, single_map
from tfmot_easiedge.graph.rules.passthrough import PassThroughRule

__all__ = ["FlattenRule", "PermuteRule", "ReshapeRule"]


class ReshapeRule(ChannelRule):
    """Reshape that keeps the channel axis last (``(1, 1, C)``) or flattens channels-last (``(H·W·C,)``)."""

    def propagate(self, node, ctx):
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

    def slim(self, layer, in_keep, out_keep):
        config = layer.get_config()
        shape = list(config["target_shape"])
        shape[-1] = int(out_keep[0].sum()) if shape[-1] != -1 else -1
        config["target_shape"] = tuple(shape)
        return config, []


class FlattenRule(ChannelRule):
    """Flatten of a channels-last tensor: channel c becomes the H·W units ``c + k·C``."""

    def propagate(self, node, ctx):
        require_channels_last(node.layer)
        m = single_map(ctx.in_maps(node))
        spatial = ctx.tensor(node.inputs[0]).shape[1:-1]
        if None in spatial:
            raise StopAnalysis("Flatten of a tensor with unknown spatial size")
        return [m.tile(math.prod(spatial) if spatial else 1)]


class PermuteRule(PassThroughRule):
    """Permute that leaves the channel axis last; moving it is a stop."""

    def propagate(self, node, ctx):
        dims = tuple(node.layer.dims)
        if dims[-1] != len(dims):
            raise StopAnalysis(f"Permute{dims} moves the channel axis")
        return super().propagate(node, ctx)
