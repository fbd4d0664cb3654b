"""Rules for the layers that make filters and read channels: convolutions, Dense, depthwise, separable."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from tfmot_easiedge import _keras_compat as kc
from tfmot_easiedge.graph.rules.base import (
    ChannelRule,
    StopAnalysis,
    axis_mask,
    channel_mask,
    keep_or_all,
    ordered_weights,
    require_channels_last,
    single_map,
    take_kept,
    weights_by_name,
)

if TYPE_CHECKING:
    from tfmot_easiedge.graph.channels import ChannelMap
    from tfmot_easiedge.graph.context import PropagationContext
    from tfmot_easiedge.graph.model_graph import GraphNode

__all__ = ["ConvRule", "DenseRule", "DepthwiseRule", "SeparableRule"]


class ConvRule(ChannelRule):
    """Conv1D/2D/3D and transposed convolutions, including grouped convolutions."""

    consumes_inputs = True
    produces_outputs = True

    @staticmethod
    def _axes(layer) -> tuple[int, int]:
        # Kernel (..., in/groups, out) for convolutions; (..., out, in) for transposed ones.
        return (-1, -2) if kc.is_conv_transpose(layer) else (-2, -1)

    @staticmethod
    def _depthwise_like(layer, in_channels: int) -> bool:
        groups = getattr(layer, "groups", 1)
        return groups > 1 and groups == in_channels == layer.filters

    def propagate(self, node: GraphNode, ctx: PropagationContext) -> list[ChannelMap | None]:
        layer = node.layer
        require_channels_last(layer)
        m = single_map(ctx.in_maps(node))
        groups = getattr(layer, "groups", 1)
        if self._depthwise_like(layer, len(m)):
            return [m]
        out = ctx.new_space(node, 0, layer.filters)
        if groups > 1:
            reason = f"{node.name}: grouped convolution (groups={groups}) needs equal channels per group"
            ctx.block(m, reason)
            ctx.block(out, reason)
        return [out]

    def slim(self, layer: Any, in_keep: list[np.ndarray | None], out_keep: list[np.ndarray | None]
             ) -> tuple[dict, list[np.ndarray]]:
        config = layer.get_config()
        w = weights_by_name(layer)
        in_ax, out_ax = self._axes(layer)
        if self._depthwise_like(layer, channel_mask(in_keep).shape[0]):
            keep = channel_mask(in_keep)
            config["filters"] = config["groups"] = int(keep.sum())
            w["kernel"] = take_kept(w["kernel"], keep, out_ax)
            if "bias" in w:
                w["bias"] = take_kept(w["bias"], keep, 0)
            return config, ordered_weights(layer, w)
        w["kernel"] = take_kept(take_kept(w["kernel"], channel_mask(in_keep), in_ax), channel_mask(out_keep), out_ax)
        if "bias" in w:
            w["bias"] = take_kept(w["bias"], channel_mask(out_keep), 0)
        config["filters"] = int(channel_mask(out_keep).sum())
        return config, ordered_weights(layer, w)

    def mask_inputs(self, layer: Any, in_keep: list[np.ndarray | None]) -> list[np.ndarray]:
        w = weights_by_name(layer)
        if self._depthwise_like(layer, channel_mask(in_keep).shape[0]):
            return ordered_weights(layer, w)
        in_ax, _ = self._axes(layer)
        kernel = w["kernel"].copy()
        idx: list[Any] = [slice(None)] * kernel.ndim
        idx[in_ax] = ~channel_mask(in_keep)
        kernel[tuple(idx)] = 0.0
        w["kernel"] = kernel
        return ordered_weights(layer, w)

    def weight_masks(self, layer: Any, in_keep: list[np.ndarray | None], out_keep: list[np.ndarray | None]
                     ) -> dict[str, np.ndarray]:
        ndim = len(layer.kernel.shape)
        in_ax, out_ax = self._axes(layer)
        keep_in = keep_or_all(in_keep[0], layer.kernel.shape[in_ax] * getattr(layer, "groups", 1))
        keep_out = keep_or_all(out_keep[0], layer.filters)
        if self._depthwise_like(layer, keep_in.shape[0]):
            masks = {"kernel": axis_mask(keep_out, out_ax, ndim)}
        elif getattr(layer, "groups", 1) > 1:  # blocked: its channels are never cut
            return {}
        else:
            masks = {"kernel": axis_mask(keep_in, in_ax, ndim) & axis_mask(keep_out, out_ax, ndim)}
        if getattr(layer, "use_bias", False):
            masks["bias"] = keep_out
        return masks


class DenseRule(ChannelRule):
    """Dense on the last axis of a tensor of any rank: kernel (in, units)."""

    consumes_inputs = True
    produces_outputs = True

    def propagate(self, node: GraphNode, ctx: PropagationContext) -> list[ChannelMap | None]:
        if getattr(node.layer, "lora_enabled", False):
            raise StopAnalysis("LoRA-enabled Dense")
        single_map(ctx.in_maps(node))
        return [ctx.new_space(node, 0, node.layer.units)]

    def slim(self, layer: Any, in_keep: list[np.ndarray | None], out_keep: list[np.ndarray | None]
             ) -> tuple[dict, list[np.ndarray]]:
        config = layer.get_config()
        w = weights_by_name(layer)
        w["kernel"] = take_kept(take_kept(w["kernel"], channel_mask(in_keep), 0), channel_mask(out_keep), 1)
        if "bias" in w:
            w["bias"] = take_kept(w["bias"], channel_mask(out_keep), 0)
        config["units"] = int(channel_mask(out_keep).sum())
        return config, ordered_weights(layer, w)

    def mask_inputs(self, layer: Any, in_keep: list[np.ndarray | None]) -> list[np.ndarray]:
        w = weights_by_name(layer)
        w["kernel"] = w["kernel"] * channel_mask(in_keep)[:, None]
        return ordered_weights(layer, w)

    def weight_masks(self, layer: Any, in_keep: list[np.ndarray | None], out_keep: list[np.ndarray | None]
                     ) -> dict[str, np.ndarray]:
        n_in, n_out = layer.kernel.shape
        keep_out = keep_or_all(out_keep[0], n_out)
        masks = {"kernel": keep_or_all(in_keep[0], n_in)[:, None] & keep_out[None, :]}
        if layer.use_bias:
            masks["bias"] = keep_out
        return masks


class DepthwiseRule(ChannelRule):
    """DepthwiseConv1D/2D: output channel ``c·m + j`` is input channel c (m the depth multiplier)."""

    def propagate(self, node: GraphNode, ctx: PropagationContext) -> list[ChannelMap | None]:
        require_channels_last(node.layer)
        return [single_map(ctx.in_maps(node)).repeat(node.layer.depth_multiplier)]

    def slim(self, layer: Any, in_keep: list[np.ndarray | None], out_keep: list[np.ndarray | None]
             ) -> tuple[dict, list[np.ndarray]]:
        w = weights_by_name(layer)
        w["kernel"] = take_kept(w["kernel"], channel_mask(in_keep), -2)
        if "bias" in w:
            w["bias"] = take_kept(w["bias"], channel_mask(out_keep), 0)
        return layer.get_config(), ordered_weights(layer, w)

    def weight_masks(self, layer: Any, in_keep: list[np.ndarray | None], out_keep: list[np.ndarray | None]
                     ) -> dict[str, np.ndarray]:
        kernel = layer.kernel
        masks = {"kernel": axis_mask(keep_or_all(in_keep[0], kernel.shape[-2]), -2, len(kernel.shape))}
        if layer.use_bias:
            masks["bias"] = keep_or_all(out_keep[0], kernel.shape[-2] * kernel.shape[-1])
        return masks


class SeparableRule(ChannelRule):
    """SeparableConv1D/2D: a depthwise pass-through, then a pointwise producer of new filters."""

    consumes_inputs = True
    produces_outputs = True

    def propagate(self, node: GraphNode, ctx: PropagationContext) -> list[ChannelMap | None]:
        require_channels_last(node.layer)
        single_map(ctx.in_maps(node))
        return [ctx.new_space(node, 0, node.layer.filters)]

    def slim(self, layer: Any, in_keep: list[np.ndarray | None], out_keep: list[np.ndarray | None]
             ) -> tuple[dict, list[np.ndarray]]:
        config = layer.get_config()
        w = weights_by_name(layer)
        mid = np.repeat(channel_mask(in_keep), layer.depth_multiplier)
        w["depthwise_kernel"] = take_kept(w["depthwise_kernel"], channel_mask(in_keep), -2)
        w["pointwise_kernel"] = take_kept(take_kept(w["pointwise_kernel"], mid, -2), channel_mask(out_keep), -1)
        if "bias" in w:
            w["bias"] = take_kept(w["bias"], channel_mask(out_keep), 0)
        config["filters"] = int(channel_mask(out_keep).sum())
        return config, ordered_weights(layer, w)

    def mask_inputs(self, layer: Any, in_keep: list[np.ndarray | None]) -> list[np.ndarray]:
        w = weights_by_name(layer)
        dk = w["depthwise_kernel"].copy()
        dk[..., ~channel_mask(in_keep), :] = 0.0
        w["depthwise_kernel"] = dk
        return ordered_weights(layer, w)

    def weight_masks(self, layer: Any, in_keep: list[np.ndarray | None], out_keep: list[np.ndarray | None]
                     ) -> dict[str, np.ndarray]:
        dk, pk = layer.depthwise_kernel, layer.pointwise_kernel
        keep_in = keep_or_all(in_keep[0], dk.shape[-2])
        keep_out = keep_or_all(out_keep[0], layer.filters)
        mid = np.repeat(keep_in, layer.depth_multiplier)
        masks = {"depthwise_kernel": axis_mask(keep_in, -2, len(dk.shape)),
                 "pointwise_kernel": axis_mask(mid, -2, len(pk.shape)) & axis_mask(keep_out, -1, len(pk.shape))}
        if layer.use_bias:
            masks["bias"] = keep_out
        return masks
