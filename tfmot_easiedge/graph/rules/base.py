"""``ChannelRule``, the base of every rule, ``StopAnalysis``, and the helpers rules share.

The helpers are public so that a rule written for a user's own layer can use them too.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from tfmot_easiedge.graph.channels import ChannelMap

if TYPE_CHECKING:  # pragma: no cover
    from tfmot_easiedge.graph.context import PropagationContext
    from tfmot_easiedge.graph.model_graph import GraphNode

__all__ = ["ChannelRule", "StopAnalysis", "axis_mask", "channel_mask", "keep_or_all", "ordered_weights",
           "require_channels_last", "single_map", "take_kept", "weight_name", "weights_by_name"]

class StopAnalysis(Exception):
    """Raised by a rule when it cannot follow channels through this particular layer instance."""


class ChannelRule:
    """Base class: how one kind of layer moves, cuts and rebuilds channels.

    Attributes:
        consumes_inputs: the layer's weights read its input channels (cut them at ``mask_inputs``).
        produces_outputs: the layer creates new output channels (filters) that can be pruned.
    """

    consumes_inputs = False
    produces_outputs = False

    def propagate(self, node: GraphNode, ctx: PropagationContext) -> list[ChannelMap | None]:
        """The channel map of each of the node's outputs, from the maps of its inputs (``ctx.in_maps``).

        Raises:
            StopAnalysis: channels cannot be followed through this layer; the analysis makes it a stop.
        """
        raise NotImplementedError

    def slim(self, layer: Any, in_keep: list[np.ndarray | None], out_keep: list[np.ndarray | None]
             ) -> tuple[dict, list[np.ndarray]]:
        """Returns ``(config, weights)`` of the layer with only the kept channels.

        ``in_keep``/``out_keep`` are boolean masks over the channel positions of each input/output.
        The default keeps the config and the weights as they are.
        """
        return layer.get_config(), [np.asarray(w) for w in layer.get_weights()]

    def mask_inputs(self, layer: Any, in_keep: list[np.ndarray | None]) -> list[np.ndarray]:
        """The layer's weights with the input weights of removed channels set to zero."""
        return [np.asarray(w) for w in layer.get_weights()]

    def weight_masks(self, layer: Any, in_keep: list[np.ndarray | None], out_keep: list[np.ndarray | None]
                     ) -> dict[str, np.ndarray]:
        """Which entries of each weight belong to kept channels (ADMM's projection and masked fine-tuning).

        Returns ``{weight name: boolean mask}`` (the name is the last part of the variable's path, e.g.
        ``"kernel"``), each mask broadcastable to the weight's shape and False where the entry reads or
        writes a removed channel; weights that no channel touches are left out. Only trainable weights
        matter: statistics such as BatchNorm's moving mean are never penalised.
        """
        return {}


# ----------------------------------------------------------------------------- helpers for rules
def require_channels_last(layer: Any) -> None:
    """Raises ``StopAnalysis`` for a layer with ``data_format="channels_first"``."""
    fmt = getattr(layer, "data_format", "channels_last")
    if fmt not in (None, "channels_last"):
        raise StopAnalysis(f"data_format={fmt!r}: only channels_last is supported")


def take_kept(w: np.ndarray, keep: np.ndarray, axis: int) -> np.ndarray:
    """The slices of ``w`` along ``axis`` where ``keep`` is True."""
    return np.take(w, np.flatnonzero(keep), axis=axis)


def axis_mask(keep: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    """``keep`` shaped to broadcast along ``axis`` of an ``ndim``-dimensional weight."""
    shape = [1] * ndim
    shape[axis] = keep.shape[0]
    return keep.reshape(shape)


def channel_mask(masks: list[np.ndarray | None], i: int = 0) -> np.ndarray:
    """``masks[i]``: the kept-channel mask of input or output ``i`` of a layer whose channels are cut.

    Raises:
        ValueError: that tensor has no channel axis (a rule cutting channels never gets one).
    """
    mask = masks[i]
    if mask is None:
        raise ValueError(f"tensor {i} of the layer has no channel mask: its channels cannot be cut")
    return mask


def keep_or_all(mask: np.ndarray | None, size: int) -> np.ndarray:
    """``mask`` as booleans, or every one of ``size`` channels kept when it is None."""
    return np.ones(size, bool) if mask is None else np.asarray(mask, bool)


def weight_name(variable: Any) -> str:
    """The last part of a variable's path (``"kernel"``, ``"gamma"``...)."""
    return variable.path.split("/")[-1]


def weights_by_name(layer: Any) -> dict[str, np.ndarray]:
    """``{weight name: value}`` of every weight of ``layer``."""
    return {weight_name(v): np.asarray(v.numpy()) for v in layer.weights}


def ordered_weights(layer: Any, named: dict[str, np.ndarray]) -> list[np.ndarray]:
    """``named`` in the order of ``layer.weights`` (what ``set_weights`` takes)."""
    return [named[weight_name(v)] for v in layer.weights]


def single_map(maps: list) -> ChannelMap:
    """The first input's channel map; raises ``StopAnalysis`` when it has no channel axis."""
    if not maps or maps[0] is None:
        raise StopAnalysis("input has no channel axis")
    return maps[0]
