"""``analyze(model)``: the channel groups of a Keras model, and the layers that stopped analysis."""
from __future__ import annotations

import dataclasses
import hashlib
import json

import keras
import numpy as np

from tfmot_easiedge.graph.blocks import ResidualBlock, find_blocks
from tfmot_easiedge.graph.channels import ChannelCoupling, ChannelMap
from tfmot_easiedge.graph.context import PropagationContext
from tfmot_easiedge.graph.model_graph import GraphNode, ModelGraph
from tfmot_easiedge.graph.rules import ChannelRule, StopAnalysis, find_rule


@dataclasses.dataclass(frozen=True)
class Stop:
    """A layer that channels are not followed through, and why."""

    layer: str
    class_name: str
    reason: str


@dataclasses.dataclass(frozen=True)
class ChannelGroup:
    """Channels that must be removed together.

    Attributes:
        id: a stable name: the layer that creates the group's first channels (``conv2d_3``).
        size: number of channels (one score and one keep/remove decision each).
        producers: layers whose filters (output kernel slices) the group cuts.
        consumers: layers whose input weights the group cuts.
        members: every layer with a weight cut by the group (producers, BatchNorm, depthwise, consumers).
        prunable: False when a channel reaches a model input/output, an unsupported layer, a grouped
            convolution...; ``reasons`` says which.
        approximate: removal changes other channels too (e.g. LayerNormalization over channels), so a
            slim model matches the masked model only approximately; ``approximate_reasons`` says why.
    """

    id: str
    size: int
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    members: tuple[str, ...]
    prunable: bool
    reasons: tuple[str, ...] = ()
    approximate: bool = False
    approximate_reasons: tuple[str, ...] = ()


class ModelAnalysis:
    """Result of :func:`analyze`: the flattened graph, its channel groups and the stops.

    Attributes:
        graph: the :class:`ModelGraph`.
        groups: ``{group_id: ChannelGroup}`` in graph order, prunable or not.
        stops: the layers that stopped analysis, with the reason.
        tensor_maps: the channel map of every graph tensor (None for tensors without a channel axis).
        rules: the rule applied to each node (None for a stop).
    """

    def __init__(self, graph: ModelGraph, groups: dict[str, ChannelGroup], stops: list[Stop],
                 tensor_maps: list[ChannelMap | None], rules: list[ChannelRule | None], space_group: dict[int, str],
                 space_channel: dict[int, np.ndarray]):
        self.graph: ModelGraph = graph
        self.groups: dict[str, ChannelGroup] = groups
        self.stops: list[Stop] = stops
        self.tensor_maps: list[ChannelMap | None] = tensor_maps
        self.rules: list[ChannelRule | None] = rules
        self._space_group = space_group        # space id -> group id
        self._space_channel = space_channel    # space id -> np.ndarray (space channel -> group channel)
        self._blocks: dict[str, ResidualBlock] | None = None

    @property
    def prunable_groups(self) -> dict[str, ChannelGroup]:
        return {gid: g for gid, g in self.groups.items() if g.prunable}

    @property
    def blocks(self) -> dict[str, ResidualBlock]:
        """Every ``Add`` seen as a residual block, ``{id: ResidualBlock}``, removable or with the reason why not
        (:mod:`~tfmot_easiedge.graph.blocks`); computed on first use."""
        if self._blocks is None:
            tensor_groups = [() if m is None else tuple(self._space_group[s] for s in m.spaces())
                             for m in self.tensor_maps]
            self._blocks = find_blocks(self.graph, tensor_groups)
        return self._blocks

    @property
    def removable_blocks(self) -> dict[str, ResidualBlock]:
        """The blocks whose branch can be removed (:attr:`blocks` with ``removable``)."""
        return {bid: b for bid, b in self.blocks.items() if b.removable}

    def removable_block(self, block_id: str, named_by: str) -> ResidualBlock:
        """The removable block ``block_id``; ``named_by`` says who named it, for the error.

        Raises:
            ValueError: no such block in this model, or one that cannot be removed (with the reason).
        """
        block = self.blocks.get(block_id)
        if block is None:
            raise ValueError(f"{named_by} residual block {block_id!r}, which does not exist in model "
                             f"{self.graph.model_name!r} (made for another model?)")
        if not block.removable:
            raise ValueError(f"residual block {block_id!r} is not removable: {block.reason}")
        return block

    @property
    def fingerprint(self) -> str:
        """A short hash of the prunable groups and their sizes, stored in plans to catch a wrong model."""
        items = sorted((gid, g.size) for gid, g in self.prunable_groups.items())
        return hashlib.sha1(json.dumps(items).encode()).hexdigest()[:12]

    def positions(self, tensor_id: int) -> tuple[list[str], np.ndarray] | None:
        """For each channel position of a tensor: its group id and its channel index in that group."""
        m = self.tensor_maps[tensor_id]
        if m is None:
            return None
        gids = [self._space_group[s] for s in m.space.tolist()]
        chans = np.array([self._space_channel[s][i] for s, i in zip(m.space.tolist(), m.index.tolist())],
                         dtype=np.int64)
        return gids, chans

    def keep_mask(self, tensor_id: int, kept: dict[str, np.ndarray]) -> np.ndarray | None:
        """Boolean mask over a tensor's channel positions given kept channel indices per group."""
        pos = self.positions(tensor_id)
        if pos is None:
            return None
        gids, chans = pos
        keep_sets = {gid: np.zeros(self.groups[gid].size, bool) for gid in set(gids) if gid in kept}
        for gid in keep_sets:
            keep_sets[gid][np.asarray(kept[gid], dtype=np.int64)] = True
        return np.array([keep_sets[g][c] if g in keep_sets else True for g, c in zip(gids, chans)], dtype=bool)

    def with_group_ids(self, ids: dict[str, str]) -> ModelAnalysis:
        """The same analysis with group ids renamed by ``ids`` (``{old: new}``; ids not in it kept).

        ADMM wraps a nested model into a flat one whose groups are named by the inlined layers (``conv1``);
        renamed to the original's ids (``backbone/conv1``), plans read from the wrappers apply to the original.

        Raises:
            ValueError: an id not in the analysis, or two groups renamed to one id.
        """
        unknown = sorted(set(ids) - set(self.groups))
        if unknown:
            raise ValueError(f"cannot rename groups {unknown[:3]}: not in model {self.graph.model_name!r}")
        new = {gid: ids.get(gid, gid) for gid in self.groups}
        if len(set(new.values())) != len(new):
            raise ValueError("renaming groups would give two groups the same id")
        groups = {new[gid]: dataclasses.replace(g, id=new[gid]) for gid, g in self.groups.items()}
        space_group = {s: new[g] for s, g in self._space_group.items()}
        return ModelAnalysis(self.graph, groups, self.stops, self.tensor_maps, self.rules, space_group,
                             self._space_channel)

    def prunable_share(self) -> float:
        """Fraction of all filters (producer output channels) that lie in prunable groups."""
        total = sum(g.size for g in self.groups.values() if g.producers)
        pr = sum(g.size for g in self.prunable_groups.values())
        return pr / total if total else 0.0

    def summary(self) -> str:
        """A human-readable table of the groups and the stops."""
        lines = [f"Model {self.graph.model_name!r}: {len(self.graph.nodes)} layers, {len(self.groups)} channel "
                 f"groups, {len(self.prunable_groups)} prunable ({100 * self.prunable_share():.1f}% of filters)"]
        lines.append(f"{'group':32s} {'size':>6s} {'prunable':>8s}  producers / reason")
        for g in self.groups.values():
            if not g.producers and not g.prunable:
                continue
            note = ", ".join(g.producers[:3]) + (" ..." if len(g.producers) > 3 else "")
            if not g.prunable:
                note += f"  [{g.reasons[0]}]"
            elif g.approximate:
                note += "  [approximate]"
            lines.append(f"{g.id:32s} {g.size:6d} {'yes' if g.prunable else 'no':>8s}  {note}")
        for s in self.stops:
            lines.append(f"stop: {s.layer} ({s.class_name}): {s.reason}")
        return "\n".join(lines)


def analyze(model: keras.Model) -> ModelAnalysis:
    """Finds the channel groups of a functional or Sequential Keras 3 model.

    Args:
        model: a built functional or Sequential model (nested models are inlined).

    Returns:
        A :class:`ModelAnalysis`.

    Raises:
        tfmot_easiedge.graph.GraphError: a subclassed or unbuilt model.

    Example:
        >>> import keras
        >>> x = keras.Input((16, 16, 3))
        >>> y = keras.layers.Conv2D(8, 3, name="c1")(x)
        >>> y = keras.layers.BatchNormalization(name="bn1")(y)
        >>> y = keras.layers.Conv2D(4, 3, name="c2")(keras.layers.ReLU()(y))
        >>> a = analyze(keras.Model(x, y))
        >>> g = a.groups["c1"]
        >>> g.size, g.prunable, g.members
        (8, True, ('c1', 'bn1', 'c2'))
        >>> a.groups["c2"].prunable   # reaches the model output
        False
    """
    graph = ModelGraph.from_model(model)
    coupling = ChannelCoupling()
    ctx = PropagationContext(graph, coupling)
    for tid in graph.input_ids:
        t = graph.tensors[tid]
        if t.channels is not None:
            ctx.maps[tid] = space = coupling.new_space(t.channels, None, 0, "input")
            coupling.block(space, "model input")
    stops: list[Stop] = []
    rules: list[ChannelRule | None] = []
    shared = _shared_weighted_layers(graph)
    for node in graph.nodes:
        rule = find_rule(node.layer)
        reason = None
        out_maps: list[ChannelMap | None] = []
        if id(node.layer) in shared:
            reason = f"layer is shared ({shared[id(node.layer)]} calls) and has weights"
        elif rule is None:
            reason = "no channel rule for this layer class (register one with register_rule)"
        else:
            try:
                out_maps = rule.propagate(node, ctx)
                if len(out_maps) != len(node.outputs):
                    raise StopAnalysis(f"rule returned {len(out_maps)} outputs for {len(node.outputs)}")
                for tid, m in zip(node.outputs, out_maps):
                    width = graph.tensors[tid].channels
                    if m is not None and width is not None and len(m) != width:
                        raise StopAnalysis(f"rule gave {len(m)} channels for a tensor of {width}")
                _mark_fused_softmax(node, out_maps, ctx)
            except StopAnalysis as e:
                reason = str(e)
        if reason is not None:
            rule = None
            stops.append(Stop(node.name, type(node.layer).__name__, reason))
            for m in ctx.in_maps(node):
                if m is not None:
                    coupling.block(m, f"consumed by {node.name} ({type(node.layer).__name__}): {reason}")
            out_maps = []
            for i, tid in enumerate(node.outputs):
                width = graph.tensors[tid].channels
                if width is None:
                    out_maps.append(None)
                    continue
                m = coupling.new_space(width, node.index, i, "stop")
                coupling.block(m, f"output of unsupported layer {node.name}")
                out_maps.append(m)
        rules.append(rule)
        for tid, m in zip(node.outputs, out_maps):
            ctx.maps[tid] = m
    for tid in graph.output_ids:
        out = ctx.maps[tid]
        if out is not None:
            coupling.block(out, "reaches a model output")
    return _build_analysis(graph, coupling, ctx.maps, rules, stops)


def _mark_fused_softmax(node: GraphNode, out_maps, ctx) -> None:
    """A softmax in a layer's ``activation`` (``Activation("softmax")``, ``Conv2D(..., activation="softmax")``)
    normalises over the output channels, so removing one changes the others: they are approximate."""
    fn = getattr(node.layer, "activation", None)
    name = getattr(fn, "__name__", None)
    if name in ("softmax", "log_softmax"):
        for m in out_maps:
            if m is not None:
                ctx.mark_approximate(m, f"{node.name}: activation={name} over the channel axis")


def _shared_weighted_layers(graph: ModelGraph) -> dict[int, int]:
    counts: dict[int, int] = {}
    for node in graph.nodes:
        if getattr(node.layer, "weights", None):
            counts[id(node.layer)] = counts.get(id(node.layer), 0) + 1
    return {k: v for k, v in counts.items() if v > 1}


def _build_analysis(graph, coupling, maps, rules, stops) -> ModelAnalysis:
    space_group: dict[int, str] = {}
    space_channel: dict[int, np.ndarray] = {}
    raw_groups = []
    used_ids: set[str] = set()
    for sids, roots in coupling.components():
        root_index = {r: i for i, r in enumerate(roots)}
        first = coupling.spaces[sids[0]]
        gid = _group_name(graph, first, used_ids)
        for sid in sids:
            sp = coupling.spaces[sid]
            space_group[sid] = gid
            space_channel[sid] = np.array([root_index[coupling.find(coupling.key(sid, i))]
                                           for i in range(sp.size)], dtype=np.int64)
        raw_groups.append((gid, sids, len(roots)))
    producers, consumers, members = _group_layers(graph, coupling, maps, rules, space_group)
    groups: dict[str, ChannelGroup] = {}
    for gid, sids, size in raw_groups:
        spaces = [coupling.spaces[s] for s in sids]
        reasons = tuple(dict.fromkeys(r for sp in spaces for r in sp.blocked))
        approx = tuple(dict.fromkeys(r for sp in spaces for r in sp.approximate))
        kinds = {sp.kind for sp in spaces}
        prunable = not reasons and kinds == {"filters"} and size > 0
        groups[gid] = ChannelGroup(gid, size, tuple(producers.get(gid, ())), tuple(consumers.get(gid, ())),
                                   tuple(members.get(gid, ())), prunable, reasons, bool(approx), approx)
    return ModelAnalysis(graph, groups, stops, maps, rules, space_group, space_channel)


def _group_name(graph, space, used) -> str:
    if space.node is None:
        base = "input"
    else:
        base = graph.nodes[space.node].name
        if len(graph.nodes[space.node].outputs) > 1:
            base += f":{space.output}"
    name, k = base, 1
    while name in used:
        k += 1
        name = f"{base}#{k}"
    used.add(name)
    return name


def _group_layers(graph, coupling, maps, rules, space_group):
    producers: dict[str, list[str]] = {}
    consumers: dict[str, list[str]] = {}
    members: dict[str, list[str]] = {}

    def add(d, gid, name):
        lst = d.setdefault(gid, [])
        if name not in lst:
            lst.append(name)

    for sp in coupling.spaces:
        if sp.kind == "filters":
            add(producers, space_group[sp.id], graph.nodes[sp.node].name)
    for node, rule in zip(graph.nodes, rules):
        if rule is None:
            continue
        has_weights = bool(getattr(node.layer, "weights", None))
        in_groups = {space_group[s] for t in node.inputs if maps[t] is not None for s in maps[t].spaces()}
        out_groups = {space_group[s] for t in node.outputs if maps[t] is not None for s in maps[t].spaces()}
        for gid in sorted(in_groups):
            if rule.consumes_inputs:
                add(consumers, gid, node.name)
        for gid in [*sorted(out_groups), *sorted(in_groups)]:
            is_producer = rule.produces_outputs and gid in out_groups
            if has_weights and (is_producer or gid in in_groups):
                add(members, gid, node.name)
    # members in graph order
    order = {n.name: n.index for n in graph.nodes}
    for d in (producers, consumers, members):
        for gid in d:
            d[gid].sort(key=lambda n: order.get(n, -1))
    return producers, consumers, members
