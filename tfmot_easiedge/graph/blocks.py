"""Removable residual branches: ``Add(x, f(x))`` blocks whose branch ``f`` can be dropped, leaving ``x``.

Channel pruning thins layers but keeps every operator; removing a whole residual branch removes its
operators (on a runtime with a fixed cost per operator, the only way below the channel-pruning floor).
A block is *removable* when:

- it is an ``Add`` (the layer or the ``x + y`` operation) of exactly two tensors;
- one input is the identity shortcut ``x``: the tensor every path to the other input passes through
  (its immediate dominator), possibly a model input or the output of a previous block;
- the other input is the branch output, read by the ``Add`` alone, and every tensor inside the branch is
  read only inside it (not by another layer, not a model output), its layers not shared with other calls;
- the ``Add`` does not broadcast: its output has the shape (so the channels) of ``x``.

A projection shortcut (a 1x1 convolution on the shortcut side) makes the block *not* removable: both
inputs are then computed from the block input, and removing the branch would leave the projection's
result, not the block input. :attr:`ResidualBlock.reason` says why a block was refused.

The detection reads only the graph (:class:`~tfmot_easiedge.graph.model_graph.ModelGraph`), so it works on
nested models like the rest of the analysis: names are layer path names (``backbone/block1_add``).

Example:
    >>> import keras
    >>> from tfmot_easiedge.graph import analyze
    >>> x = keras.Input((8, 8, 4))
    >>> h = keras.layers.Conv2D(4, 3, padding="same", name="b_conv")(x)
    >>> y = keras.layers.Add(name="b_add")([x, keras.layers.BatchNormalization(name="b_bn")(h)])
    >>> block = analyze(keras.Model(x, keras.layers.Conv2D(2, 1)(y))).blocks["b_add"]
    >>> block.removable, block.branch, block.shortcut
    (True, ('b_conv', 'b_bn'), 'input')
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping, Sequence

import keras

from tfmot_easiedge import _keras_compat as kc
from tfmot_easiedge.graph.model_graph import GraphNode, ModelGraph

__all__ = ["ResidualBlock", "bypass_map", "find_blocks"]


@dataclasses.dataclass(frozen=True)
class ResidualBlock:
    """One ``Add`` of the model seen as a residual block ``Add(x, f(x))``, removable or not.

    Attributes:
        id: a stable name: the ``Add`` layer's path name (``stage1_block2_add``).
        branch: the branch's layer path names, in graph order (empty when no branch was found).
        shortcut: the layer that produces the shortcut tensor ``x`` (``"input"`` for a model input).
        groups: the channel groups of the branch's tensors, its input ``x`` and its output included.
        internal_groups: the groups that exist only inside the branch: removing the block removes them
            whole, so they need no channel decision.
        removable: the branch can be replaced by the identity.
        reason: why not, when ``removable`` is False.
        add_node: graph index of the ``Add`` node.
        branch_nodes: graph indices of the branch's nodes.
        shortcut_tensor: graph tensor id of ``x`` (-1 when none was found).
        branch_tensor: graph tensor id of the branch output ``f(x)`` (-1 when none was found).
        branch_position: which input of the ``Add`` the branch output is (-1 when none was found).
    """

    id: str
    branch: tuple[str, ...]
    shortcut: str
    groups: tuple[str, ...]
    internal_groups: tuple[str, ...]
    removable: bool
    reason: str = ""
    add_node: int = -1
    branch_nodes: tuple[int, ...] = ()
    shortcut_tensor: int = -1
    branch_tensor: int = -1
    branch_position: int = -1


def find_blocks(graph: ModelGraph, tensor_groups: Sequence[Iterable[str]]) -> dict[str, ResidualBlock]:
    """Every two-or-more-tensor ``Add`` of ``graph`` as a :class:`ResidualBlock`, ``{id: block}`` in graph order.

    Prefer ``analyze(model).blocks``, which calls this with the analysis' channel groups.

    Args:
        graph: the model's flattened graph.
        tensor_groups: for each graph tensor, the ids of the channel groups on it (empty: none).
    """
    groups = [tuple(dict.fromkeys(g)) for g in tensor_groups]
    tensors_of: dict[str, set[int]] = {}
    for tid, gids in enumerate(groups):
        for gid in gids:
            tensors_of.setdefault(gid, set()).add(tid)
    idom, depth = _dominators(graph)
    calls: dict[int, int] = {}
    for node in graph.nodes:
        calls[id(node.layer)] = calls.get(id(node.layer), 0) + 1
    blocks: dict[str, ResidualBlock] = {}
    for node in graph.nodes:
        if not _is_add(node):
            continue
        block = _block(graph, node, idom, depth, calls, groups, tensors_of)
        name, k = block.id, 1
        while name in blocks:  # an Add layer called twice: one block per call
            k += 1
            name = f"{block.id}#{k}"
        blocks[name] = dataclasses.replace(block, id=name)
    return blocks


def bypass_map(blocks: Iterable[ResidualBlock]) -> dict[int, int | None]:
    """What :meth:`ModelGraph.run` skips to run the graph without these blocks' branches.

    ``{node index: tensor id or None}``: each ``Add`` outputs its shortcut, each branch node is not run (a
    block nested in another removed block's branch goes with it).

    Raises:
        ValueError: a block that is not removable.
    """
    blocks = list(blocks)
    bad = [b.id for b in blocks if not b.removable]
    if bad:
        raise ValueError(f"residual blocks {bad} are not removable")
    skipped = {i for b in blocks for i in b.branch_nodes}
    out: dict[int, int | None] = dict.fromkeys(skipped)
    for b in blocks:
        if b.add_node not in skipped:
            out[b.add_node] = b.shortcut_tensor
    return out


# ----------------------------------------------------------------------------- detection
def _is_add(node: GraphNode) -> bool:
    """An ``Add`` layer or the ``x + y`` operation, reading two or more tensors."""
    if len(node.inputs) < 2 or len(node.outputs) != 1:
        return False
    if isinstance(node.layer, keras.layers.Add):
        return True
    return any(isinstance(node.layer, cls) for cls in kc.elementwise_op_classes(["Add"], []))


def _dominators(graph: ModelGraph) -> tuple[list[int], list[int]]:
    """The immediate dominator of every tensor (a virtual root, index ``len(tensors)``, above the inputs).

    Tensor ids are a topological order (inputs first, then each node's outputs in node order), so one
    pass computes them (Cooper, Harvey and Kennedy's intersection on a DAG).
    """
    root = len(graph.tensors)
    idom = [root] * (root + 1)
    depth = [0] * (root + 1)
    for t in graph.tensors:
        preds = graph.nodes[t.producer].inputs if t.producer is not None else []
        d = preds[0] if preds else root
        for p in preds[1:]:
            d = _meet(d, p, idom, depth)
        idom[t.id], depth[t.id] = d, depth[d] + 1
    return idom, depth


def _meet(u: int, v: int, idom: list[int], depth: list[int]) -> int:
    """The nearest common dominator of tensors ``u`` and ``v`` (the root when they have none)."""
    while u != v:
        if depth[u] >= depth[v]:
            u = idom[u]
        else:
            v = idom[v]
    return u


def _cone(graph: ModelGraph, start: int, stop: int) -> list[int]:
    """The nodes on the paths from ``stop`` to ``start`` (``stop`` dominates ``start``), in graph order."""
    nodes: set[int] = set()
    stack = [start]
    while stack:
        t = stack.pop()
        p = graph.tensors[t].producer
        if t == stop or p is None or p in nodes:
            continue
        nodes.add(p)
        stack.extend(graph.nodes[p].inputs)
    return sorted(nodes)


def _name_of(graph: ModelGraph, tid: int) -> str:
    p = graph.tensors[tid].producer
    return "input" if p is None else graph.nodes[p].name


def _block(graph: ModelGraph, node: GraphNode, idom: list[int], depth: list[int], calls: Mapping[int, int],
           groups: list[tuple[str, ...]], tensors_of: Mapping[str, set[int]]) -> ResidualBlock:
    refused = ResidualBlock(node.name, (), "", (), (), False, "", node.index)
    if len(node.inputs) != 2:
        return dataclasses.replace(refused, reason=f"adds {len(node.inputs)} tensors; a residual block adds two")
    a, b = node.inputs
    if a == b:
        return dataclasses.replace(refused, reason="adds a tensor to itself")
    fork = _meet(a, b, idom, depth)  # the nearest tensor every path to both inputs passes through
    if fork == len(graph.tensors):
        return dataclasses.replace(refused, reason="its inputs do not come from one block input (no tensor that "
                                                   "every path to the Add passes through)")
    if fork not in (a, b):
        sides = [_cone(graph, t, fork) for t in (a, b)]
        short = min(sides, key=len)
        names = ", ".join(graph.nodes[i].name for i in short)
        return dataclasses.replace(refused, shortcut=_name_of(graph, fork),
                                   reason=f"projection shortcut: both inputs are computed from the block input "
                                          f"{_name_of(graph, fork)!r} by layers (the shortcut side: {names}); "
                                          "only an identity shortcut can be removed")
    position = 1 if fork == a else 0
    out, shortcut = node.inputs[position], fork
    branch = _cone(graph, out, shortcut)
    inner = sorted({t for i in branch for t in graph.nodes[i].outputs} - {out})
    found = dataclasses.replace(refused, branch=tuple(graph.nodes[i].name for i in branch),
                                shortcut=_name_of(graph, shortcut), branch_nodes=tuple(branch),
                                shortcut_tensor=shortcut, branch_tensor=out, branch_position=position)
    reason = _privacy(graph, node, branch, inner, out, shortcut, calls)
    gids = tuple(dict.fromkeys(g for t in [shortcut, *inner, out] for g in groups[t]))
    internal = tuple(g for g in gids if tensors_of[g] <= set(inner))
    found = dataclasses.replace(found, groups=gids, internal_groups=internal)
    if reason:
        return dataclasses.replace(found, reason=reason)
    return dataclasses.replace(found, removable=True)


def _privacy(graph: ModelGraph, add: GraphNode, branch: list[int], inner: list[int], out: int, shortcut: int,
             calls: Mapping[int, int]) -> str:
    """Why the branch cannot be dropped ("" when it can): a tensor read outside it, a shared layer, a broadcast."""
    inside = set(branch)
    outputs = set(graph.output_ids)
    readers = [c for c in graph.tensors[out].consumers if c != add.index]
    if readers or add.inputs.count(out) != 1:
        who = graph.nodes[readers[0]].name if readers else add.name
        return f"branch output (of {_name_of(graph, out)!r}) is also read by {who!r}"
    if out in outputs:
        return f"branch output (of {_name_of(graph, out)!r}) is a model output"
    for t in inner:
        outside = [c for c in graph.tensors[t].consumers if c not in inside]
        if outside:
            return (f"branch tensor of {_name_of(graph, t)!r} is also read by {graph.nodes[outside[0]].name!r} "
                    "outside the block")
        if t in outputs:
            return f"branch tensor of {_name_of(graph, t)!r} is a model output"
    for i in branch:
        layer = graph.nodes[i].layer
        if calls.get(id(layer), 1) > 1 and any(n.index not in inside for n in graph.nodes_of(layer)):
            return f"branch layer {graph.nodes[i].name!r} is shared with a call outside the block"
    new_shape, old_shape = graph.tensors[add.outputs[0]].shape, graph.tensors[shortcut].shape
    if tuple(new_shape) != tuple(old_shape):
        return f"the Add broadcasts: its output has shape {tuple(new_shape)} but the shortcut {tuple(old_shape)}"
    return ""
