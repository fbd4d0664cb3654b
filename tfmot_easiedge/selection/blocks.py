"""Residual blocks in the global allocation: whole branches compete with channels for one budget.

``select(..., block_scores={block id: score})`` lets each removable residual block be removed as one
unit. Its *benefit* is its branch's whole cost at the current selection (the MACs, parameters or filters
of every branch layer, given the channels still kept around it) and its *price* its score (nats of
information, :func:`~tfmot_easiedge.importance.blocks.block_tbaa`), so the greedy ranks it by score per
unit of cost saved, like a channel. Removing a block *releases* its internal groups: their channels need
no decision any more (the plan keeps them whole) and stop competing.

Costs stay exact: the cost of a selection is the budget's cost model minus the branch costs of the removed
blocks, each branch cost a cost model of the same kind restricted to the branch's layers
(:func:`branch_cost`). Built in for MACs, parameters and filters; a cost model can price a block by
defining ``branch_cost(node_indices) -> CostModel``, as the latency table's does (the branch's segments and
one operator for its ``Add``).

Example:
    >>> from tfmot_easiedge import analyze
    >>> from tfmot_easiedge.models import zoo
    >>> from tfmot_easiedge.selection.cost import MacsCost
    >>> a = analyze(zoo.resnet20(width=0.25, seed=0))
    >>> cost = MacsCost(a)
    >>> branch = branch_cost(cost, a, a.blocks["stage1_block2_add"])
    >>> int(branch.total(cost.full()))   # two 3x3 convolutions of 4 channels at 32x32
    294912
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from tfmot_easiedge.graph.analysis import ModelAnalysis
from tfmot_easiedge.graph.blocks import ResidualBlock
from tfmot_easiedge.metrics.counting import macs_coefficients
from tfmot_easiedge.selection.cost import BilinearCost, CostModel, FilterCost, MacsCost, ParamsCost, param_coefficients

__all__ = ["BlockSelection", "branch_cost", "check_block_scores"]


class _BranchFilters(CostModel):
    """The filters of a branch: per group, how many of its counted producers are branch layers."""

    name = label = "filters"
    linear = True

    def __init__(self, analysis: ModelAnalysis, weights: np.ndarray):
        super().__init__(analysis)
        self.weights = weights

    def total(self, kept: np.ndarray) -> float:
        return float(self.weights @ kept)

    def saving(self, kept: np.ndarray) -> np.ndarray:
        return self.weights.copy()


def branch_cost(cost: CostModel, analysis: ModelAnalysis, block: ResidualBlock) -> CostModel:
    """A cost model of the same kind as ``cost`` counting only the layers of ``block``'s branch.

    Raises:
        ValueError: ``cost`` is of a kind that cannot price a branch (and has no ``branch_cost`` method).
    """
    nodes = set(block.branch_nodes)
    own = getattr(cost, "branch_cost", None)
    if callable(own):
        return own(tuple(sorted(nodes)))
    if isinstance(cost, MacsCost):
        graph = analysis.graph

        def macs(node):
            if node.index not in nodes:
                return None
            a, b = macs_coefficients(node, graph)
            return (0.0, a, 0.0, b) if a or b else None

        return BilinearCost(analysis, macs)
    if isinstance(cost, ParamsCost):
        return BilinearCost(analysis, lambda node: param_coefficients(analysis, node)
                            if node.index in nodes and getattr(node.layer, "weights", None) else None)
    if isinstance(cost, FilterCost):
        names = {analysis.graph.nodes[i].name for i in nodes}

        def weight(g: str) -> float:
            group = analysis.prunable_groups.get(g)
            if group is None:
                return 0.0
            if cost.count == "channels":
                return 1.0 if g in block.internal_groups else 0.0
            inside = [n for n in group.producers if n in names]
            return float(sum(1 for n in inside if cost.count == "all" or not _is_dense(analysis, n)))

        return _BranchFilters(analysis, np.array([weight(g) for g in cost.group_ids]))
    raise ValueError(f"a {cost.name} budget cannot price a removed residual block: block removal is counted in "
                     "MACs, parameters, filters or latency (or a cost model with a branch_cost(node_indices) method)")


def _is_dense(analysis: ModelAnalysis, name: str) -> bool:
    import keras

    return isinstance(analysis.graph.node(name).layer, (keras.layers.Dense, keras.layers.EinsumDense))


def check_block_scores(analysis: ModelAnalysis, block_scores: Mapping[str, Any], protect: list[str]
                       ) -> dict[str, float]:
    """``block_scores`` as floats, checked, without the blocks that touch a protected layer or group.

    Raises:
        ValueError: naming the block, for an unknown or unremovable block or a score that is not finite.
    """
    protected = set(protect)
    out: dict[str, float] = {}
    for bid, value in block_scores.items():
        block = analysis.removable_block(bid, "block_scores name")
        score = float(np.asarray(value, dtype=np.float64))
        if not math.isfinite(score):
            raise ValueError(f"the score of residual block {bid!r} is not finite: {score}")
        if protected.intersection(block.branch) or protected.intersection(block.internal_groups):
            continue
        out[bid] = score
    return out


class BlockSelection:
    """The greedy of ``select`` with residual blocks as candidates, next to the channels.

    Args:
        problem: the channel allocation (an ``Allocation`` of :mod:`~tfmot_easiedge.selection.allocate`).
        block_scores: ``{block id: score}`` of the candidate blocks (checked by :func:`check_block_scores`).
    """

    def __init__(self, problem: Any, block_scores: Mapping[str, float]):
        self.p = problem
        analysis = problem.analysis
        self.block_scores = dict(block_scores)
        self.blocks = {b: analysis.blocks[b] for b in self.block_scores}
        self.costs = {b: branch_cost(problem.cost, analysis, blk) for b, blk in self.blocks.items()}
        self.names = list(problem.scores)
        self.idx = np.array([problem.cost.group_ids.index(g) for g in self.names], dtype=np.int64)
        # block -> the candidate blocks nested in its branch (removed with it)
        self.inner = {b: [o for o, other in self.blocks.items() if o != b and other.add_node in set(blk.branch_nodes)]
                      for b, blk in self.blocks.items()}

    # ------------------------------------------------------------------ costs
    def _outermost(self, removed: set[str]) -> list[str]:
        return [b for b in removed if not any(b in self.inner[o] for o in removed)]

    def total(self, kept: np.ndarray, removed: set[str]) -> float:
        """The cost with ``kept`` channels and the ``removed`` blocks' branches gone."""
        return self.p.cost.total(kept) - sum(self.costs[b].total(kept) for b in self._outermost(removed))

    def _channel_saving(self, kept: np.ndarray, removed: set[str]) -> np.ndarray:
        saving = self.p.cost.saving(kept)
        for b in self._outermost(removed):
            saving = saving - self.costs[b].saving(kept)
        return saving[self.idx]

    def _block_saving(self, b: str, kept: np.ndarray, removed: set[str]) -> float:
        nested = self._outermost({o for o in removed if o in self.inner[b]})
        return self.costs[b].total(kept) - sum(self.costs[o].total(kept) for o in nested)

    # ------------------------------------------------------------------ the greedy
    def check_feasible(self) -> None:
        """A one-line error when removing every candidate block and removable channel misses the target."""
        p = self.p
        least = self.total(p.kept_counts(p.removable), set(self.blocks))
        if least > p.target + 1e-9 * max(abs(p.full_cost), 1.0):
            raise ValueError(f"cannot remove {1 - p.target / p.full_cost:.0%} of {p.cost.label}: the candidate "
                             f"blocks and channels allow at most {1 - least / p.full_cost:.1%}")

    def run(self) -> tuple[dict[str, int], list[str], float]:
        """``(channels removed per group, removed block ids in graph order, predicted cost)``."""
        p = self.p
        removed = {g: 0 for g in self.names}
        blocks: set[str] = set()
        released: set[str] = set()
        kept = p.kept_counts(removed)
        current = self.total(kept, blocks)
        while current > p.target:
            choice = self._best_removal(removed, kept, blocks, released)
            if choice is None:
                raise ValueError(f"cannot remove {1 - p.target / p.full_cost:.0%} of {p.cost.label}: nothing left "
                                 "whose removal saves any")
            kind, key = choice
            if kind == "block":
                blocks.add(key)
                for g in self._released_by(key):
                    released.add(g)
                    kept[self.idx[self.names.index(g)]] += removed[g]
                    removed[g] = 0
            else:
                removed[key] += 1
                kept[self.idx[self.names.index(key)]] -= 1
            current = self.total(kept, blocks)
        self._add_back(removed, kept, blocks, released)
        order = sorted(self._outermost(blocks), key=lambda b: self.blocks[b].add_node)
        return removed, order, self.total(kept, blocks)

    def _released_by(self, b: str) -> list[str]:
        inner = set(self.blocks[b].internal_groups)
        return [g for g in self.names if g in inner]

    def _best_removal(self, removed, kept, blocks, released) -> tuple[str, str] | None:
        p = self.p
        saving = self._channel_saving(kept, blocks)
        best, best_ratio = None, np.inf
        for j, g in enumerate(self.names):
            if g in released or removed[g] >= p.removable[g] or saving[j] <= 0:
                continue
            ratio = p.scores[g][p.order[g][removed[g]]] / saving[j]
            if ratio < best_ratio:
                best, best_ratio = ("channel", g), ratio
        gone = {o for b in blocks for o in self.inner[b]}
        for b, score in self.block_scores.items():
            if b in blocks or b in gone:
                continue
            s = self._block_saving(b, kept, blocks)
            if s > 0 and score / s < best_ratio:
                best, best_ratio = ("block", b), score / s
        return best

    def _add_back(self, removed, kept, blocks, released) -> None:
        """Undoes removals, best-scored first, while the cost stays under the target (as the channel greedy does)."""
        p = self.p
        while True:
            best, best_score = None, -np.inf
            for j, g in enumerate(self.names):
                if removed[g] == 0 or g in released:
                    continue
                score = p.scores[g][p.order[g][removed[g] - 1]]
                if score <= best_score:
                    continue
                kept[self.idx[j]] += 1
                fits = self.total(kept, blocks) <= p.target
                kept[self.idx[j]] -= 1
                if fits:
                    best, best_score = ("channel", g), score
            for b in self._outermost(blocks):
                score = self.block_scores[b]
                if score > best_score and self.total(kept, blocks - {b}) <= p.target:
                    best, best_score = ("block", b), score
            if best is None:
                return
            kind, key = best
            if kind == "block":
                blocks.discard(key)
                released.clear()  # a block nested in the re-added one may still be removed
                released.update(g for b in blocks for g in self._released_by(b))
            else:
                removed[key] -= 1
                kept[self.idx[self.names.index(key)]] += 1
