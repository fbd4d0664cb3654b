"""``PropagationContext``: what a channel rule sees while the analysis walks one node.

It lives apart from both the analysis (which makes it) and the rules (which read it), so neither
imports the other for it: ``analysis -> rules -> context`` and ``analysis -> context``, no circle.
"""
from __future__ import annotations

from tfmot_easiedge.graph.channels import ChannelCoupling, ChannelMap
from tfmot_easiedge.graph.model_graph import GraphNode, GraphTensor, ModelGraph


class PropagationContext:
    """The channel maps around a node and the coupling state, as one rule sees them.

    Attributes:
        graph: the model's :class:`~tfmot_easiedge.graph.model_graph.ModelGraph`.
        coupling: the spaces and the union-find over their channels.
        maps: the channel map of every graph tensor analysed so far (None: no channel axis, or not yet).
    """

    def __init__(self, graph: ModelGraph, coupling: ChannelCoupling):
        self.graph = graph
        self.coupling = coupling
        self.maps: list[ChannelMap | None] = [None] * len(graph.tensors)

    def tensor(self, tid: int) -> GraphTensor:
        """The graph tensor ``tid`` (its shape, dtype, producer and consumers)."""
        return self.graph.tensors[tid]

    def in_maps(self, node: GraphNode) -> list[ChannelMap | None]:
        """The channel maps of the node's input tensors, in order."""
        return [self.maps[t] for t in node.inputs]

    def new_space(self, node: GraphNode, output: int, size: int, kind: str = "filters") -> ChannelMap:
        """A fresh space of ``size`` channels created by the node's ``output``-th output."""
        return self.coupling.new_space(size, node.index, output, kind)

    def couple(self, a: ChannelMap, b: ChannelMap) -> None:
        """Position i of ``a`` and of ``b`` are one channel: they are removed together."""
        self.coupling.couple(a, b)

    def block(self, m: ChannelMap, reason: str) -> None:
        """The channels of ``m`` may not be removed, because of ``reason``."""
        self.coupling.block(m, reason)

    def mark_approximate(self, m: ChannelMap, reason: str) -> None:
        """Removing channels of ``m`` changes the others too (the slim model only approximates)."""
        self.coupling.mark_approximate(m, reason)
