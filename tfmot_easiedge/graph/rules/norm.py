"""Rules for per-channel layers: normalisation, PReLU, Rescaling, LayerScale.

Their channels pass through unchanged; each per-channel weight (gamma, beta, moving statistics, a PReLU
slope) is sliced with the channels. Normalisations whose statistics mix channels (LayerNormalization over
the channel axis, GroupNormalization) are marked approximate or blocked.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from tfmot_easiedge.graph.rules.base import StopAnalysis, axis_mask, channel_mask, single_map, take_kept, weight_name
from tfmot_easiedge.graph.rules.passthrough import PassThroughRule

if TYPE_CHECKING:
    from tfmot_easiedge.graph.channels import ChannelMap
    from tfmot_easiedge.graph.context import PropagationContext
    from tfmot_easiedge.graph.model_graph import GraphNode

__all__ = ["BatchNormRule", "GroupNormRule", "LayerNormRule", "LayerScaleRule", "PerChannelRule",
           "RescalingRule"]


class PerChannelRule(PassThroughRule):
    """Pass-through with per-channel weights sliced along their last axis (BatchNorm, PReLU, LayerScale...)."""

    def slim(self, layer: Any, in_keep: list[np.ndarray | None], out_keep: list[np.ndarray | None]
             ) -> tuple[dict, list[np.ndarray]]:
        keep = in_keep[0]
        weights = []
        for v in layer.weights:
            w = np.asarray(v.numpy())
            if keep is not None and w.ndim >= 1 and w.shape[-1] == keep.shape[0] and v.dtype.startswith("float"):
                w = take_kept(w, keep, -1)
            weights.append(w)
        config = layer.get_config()
        for key in ("mean", "variance"):  # Normalization given constant statistics keeps them in its config
            val = config.get(key)
            if val is not None and keep is not None and np.shape(val) and np.shape(val)[-1] == keep.shape[0]:
                config[key] = take_kept(np.asarray(val), keep, -1).tolist()
        return config, weights

    def weight_masks(self, layer: Any, in_keep: list[np.ndarray | None], out_keep: list[np.ndarray | None]
                     ) -> dict[str, np.ndarray]:
        keep = in_keep[0]
        if keep is None:
            return {}
        return {weight_name(v): axis_mask(keep, -1, len(v.shape)) for v in layer.trainable_weights
                if len(v.shape) >= 1 and v.shape[-1] == keep.shape[0]}


class BatchNormRule(PerChannelRule):
    """BatchNormalization over the channel axis; another axis is a stop."""

    def propagate(self, node: GraphNode, ctx: PropagationContext) -> list[ChannelMap | None]:
        rank = len(ctx.tensor(node.inputs[0]).shape)
        if node.layer.axis not in (-1, rank - 1):
            raise StopAnalysis(f"normalises axis {node.layer.axis}, not the channel axis")
        return super().propagate(node, ctx)


def _normalises_channels(layer) -> bool:
    axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    return any(a == -1 or a == len(layer.input.shape) - 1 for a in axes)


class LayerNormRule(PerChannelRule):
    """LayerNormalization: exact when it normalises other axes; approximate over the channel axis."""

    def propagate(self, node: GraphNode, ctx: PropagationContext) -> list[ChannelMap | None]:
        rank = len(ctx.tensor(node.inputs[0]).shape)
        axes = node.layer.axis if isinstance(node.layer.axis, (list, tuple)) else [node.layer.axis]
        axes = [a % rank for a in axes]
        m = single_map(ctx.in_maps(node))
        if rank - 1 in axes:
            ctx.mark_approximate(m, f"{node.name}: LayerNormalization statistics include the cut channels")
        return [m]

    def slim(self, layer: Any, in_keep: list[np.ndarray | None], out_keep: list[np.ndarray | None]
             ) -> tuple[dict, list[np.ndarray]]:
        if not _normalises_channels(layer):
            return layer.get_config(), [np.asarray(w) for w in layer.get_weights()]
        return super().slim(layer, in_keep, out_keep)

    def weight_masks(self, layer: Any, in_keep: list[np.ndarray | None], out_keep: list[np.ndarray | None]
                     ) -> dict[str, np.ndarray]:
        if not _normalises_channels(layer):
            return {}
        return super().weight_masks(layer, in_keep, out_keep)


class GroupNormRule(PerChannelRule):
    """GroupNormalization: one group per channel or a single group pass; other group counts are blocked."""

    def propagate(self, node: GraphNode, ctx: PropagationContext) -> list[ChannelMap | None]:
        m = single_map(ctx.in_maps(node))
        groups = node.layer.groups
        if groups in (-1, len(m)):
            return [m]
        if groups == 1:
            ctx.mark_approximate(m, f"{node.name}: GroupNormalization(groups=1) statistics include cut channels")
            return [m]
        ctx.block(m, f"{node.name}: GroupNormalization(groups={groups}) needs equal channels per group")
        return [m]

    def slim(self, layer: Any, in_keep: list[np.ndarray | None], out_keep: list[np.ndarray | None]
             ) -> tuple[dict, list[np.ndarray]]:
        config, weights = super().slim(layer, in_keep, out_keep)
        if config["groups"] not in (-1, 1):
            config["groups"] = int(channel_mask(in_keep).sum())
        return config, weights


class RescalingRule(PassThroughRule):
    """Rescaling: a scalar scale/offset passes through; per-channel values are sliced in the config."""

    def slim(self, layer: Any, in_keep: list[np.ndarray | None], out_keep: list[np.ndarray | None]
             ) -> tuple[dict, list[np.ndarray]]:
        config = layer.get_config()
        keep = in_keep[0]
        for key in ("scale", "offset"):
            val = config.get(key)
            if isinstance(val, (list, tuple)) and keep is not None and len(val) == keep.shape[0]:
                config[key] = [v for v, k in zip(val, keep) if k]
        return config, []


class LayerScaleRule(PerChannelRule):
    """ConvNeXt's LayerScale: a per-channel gamma; its config names the channel count."""

    def slim(self, layer: Any, in_keep: list[np.ndarray | None], out_keep: list[np.ndarray | None]
             ) -> tuple[dict, list[np.ndarray]]:
        config, weights = super().slim(layer, in_keep, out_keep)
        if "projection_dim" in config:
            config["projection_dim"] = int(channel_mask(in_keep).sum())
        return config, weights
