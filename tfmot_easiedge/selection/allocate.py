"""The global allocator: score table + budget -> ``PruningPlan``.

All channels of the network compete for one budget, counted by the budget's cost model
(:mod:`~tfmot_easiedge.selection.cost`). ``mode="global"`` removes channels greedily by score per unit of
cost saved (for a linear cost, filters, that is one global sort by score), then re-adds the best removed
channels that still fit; ``mode="uniform"`` makes every group lose the same share, the share given by the
budget (filters) or the smallest one that meets it (found by bisection, e.g. for MACs).

An allocator is a function ``(Allocation) -> {group id: channels removed}`` in :data:`ALLOCATORS`, where
another one (a joint allocator over damage curves, say) can be registered with :func:`register_allocator`;
the floor (``min_channels``, ``min_fraction``), protection, rounding and the plan are handled here for all.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from tfmot_easiedge.graph.analysis import ModelAnalysis
from tfmot_easiedge.plan import PruningPlan
from tfmot_easiedge.selection.blocks import BlockSelection, check_block_scores
from tfmot_easiedge.selection.budgets import Budget, BudgetSpec, as_budget
from tfmot_easiedge.selection.budgets import channel_floor as _floor
from tfmot_easiedge.selection.cost import CostModel
from tfmot_easiedge.selection.protect import check_protect


@dataclasses.dataclass
class Allocation:
    """What an allocator gets: the candidates and what removing their channels costs.

    Attributes:
        analysis: the model's analysis.
        scores: ``{group id: per-channel scores}`` of the candidate groups (prunable, scored, not protected).
        order: per candidate group, its channel indices from the least to the most important.
        removable: per candidate group, how many channels it may lose (its size minus its floor).
        budget: the budget object.
        cost: the budget's cost model.
        full_cost: the unpruned model's cost.
        target: the most the pruned model may cost.
    """

    analysis: ModelAnalysis
    scores: dict[str, np.ndarray]
    order: dict[str, np.ndarray]
    removable: dict[str, int]
    budget: Budget
    cost: CostModel
    full_cost: float
    target: float

    def kept_counts(self, removed: Mapping[str, int]) -> np.ndarray:
        """The cost model's ``kept`` vector with ``removed[g]`` channels gone from each group."""
        return self.cost.kept_counts({g: self.analysis.groups[g].size - n for g, n in removed.items()})

    def cost_of(self, removed: Mapping[str, int]) -> float:
        return self.cost.total(self.kept_counts(removed))


Allocator = Callable[[Allocation], dict]


def select(analysis: ModelAnalysis, scores: Mapping[str, Any], budget: BudgetSpec, *, min_channels: int = 1,
           round_to: int | None = None, protect: Iterable[str] = (), mode: str = "global",
           min_fraction: float = 0.0, block_scores: Mapping[str, float] | None = None) -> PruningPlan:
    """Chooses the channels to keep under ``budget``.

    Args:
        analysis: the model's analysis.
        scores: ``{group_id: per-channel scores}`` (higher = more important), or ``{group_id: DamageCurve}``
            (:mod:`tfmot_easiedge.importance.damage`), which are allocated jointly
            (:func:`~tfmot_easiedge.selection.joint.select_joint`); prunable groups missing from it are kept whole.
        budget: a :class:`~tfmot_easiedge.selection.budgets.Budget` (``FilterBudget``, ``MacsBudget``,
            ``ParamsBudget`` or a user's subclass) or anything :func:`as_budget` accepts (``"macs:4x"``).
        min_channels: every group keeps at least this many channels.
        min_fraction: every group keeps at least this fraction of its channels (rounded up). Per-filter
            scores ignore that a filter's siblings go too: a global selection can thin a layer to one
            channel, which ReLU can silence for good (measured on the CPU comparison's VGG-16 at 80% of
            filters: TBAA kept 1 of 128 channels in three layers and the fine-tune stayed at chance).
        round_to: round each group's kept count up to a multiple of this (hardware-friendly widths);
            this keeps a few more channels than the budget asks.
        protect: group ids or layer names whose groups are never pruned (an unknown name is an error).
        mode: a name in :data:`ALLOCATORS`: ``"global"`` (all channels compete) or ``"uniform"`` (every
            group loses the same share, ranked within the group: the layer-wise baseline); ``"joint"`` for
            damage curves (the default for them).
        block_scores: ``{block id: score}`` of removable residual blocks
            (:func:`~tfmot_easiedge.importance.blocks.block_tbaa`, in the channel scores' units): each block
            competes with the channels in the global greedy, its benefit its branch's whole cost and its
            price its score (:mod:`~tfmot_easiedge.selection.blocks`); the plan lists the removed ones in
            ``removed_blocks``. Only with ``mode="global"`` and per-channel scores. None or empty: blocks stay.

    Raises:
        ValueError: an impossible budget (nothing prunable, ``min_channels`` too high, a target that
            cannot be met), scores of the wrong size or not finite, or block scores naming an unknown or
            unremovable block.

    Example:
        >>> import keras, numpy as np
        >>> from tfmot_easiedge import analyze
        >>> x = keras.Input((8, 8, 3))
        >>> h = keras.layers.Conv2D(4, 3, name="c1")(x)
        >>> a = analyze(keras.Model(x, keras.layers.Conv2D(2, 3)(h)))
        >>> select(a, {"c1": np.array([0.1, 0.9, 0.5, 0.2])}, "filters:0.5").kept
        {'c1': [1, 2]}
    """
    protect = check_protect(analysis, protect)  # a misspelt name would silently protect nothing
    if block_scores and mode != "global":
        raise ValueError(f"block_scores are allocated by the global greedy (mode='global'), not mode={mode!r}")
    if scores and all(_is_curve(v) for v in scores.values()):
        if block_scores:
            raise ValueError("block_scores need per-channel scores, not damage curves")
        if mode not in ("global", "joint"):
            raise ValueError(f"damage curves are allocated jointly (mode='joint'), not with mode={mode!r}")
        from tfmot_easiedge.selection.joint import select_joint

        return select_joint(analysis, scores, budget, min_channels=min_channels, min_fraction=min_fraction,
                            protect=protect, round_to=round_to)
    if mode == "joint":
        raise ValueError("mode='joint' allocates damage curves: score with importance='tbaa_curves' (or pass "
                         "tfmot_easiedge.importance.damage.damage_curves(...) as the scores)")
    if mode not in ALLOCATORS:
        raise ValueError(f"mode must be one of {sorted(ALLOCATORS)} or 'joint', got {mode!r}")
    if min_channels < 1:
        raise ValueError(f"min_channels must be >= 1, got {min_channels}")
    if not 0.0 <= min_fraction < 1.0:
        raise ValueError(f"min_fraction must be in [0, 1), got {min_fraction}")
    budget = as_budget(budget)
    candidates = _candidates(analysis, scores, protect)
    blocks = check_block_scores(analysis, block_scores, protect) if block_scores else {}
    if not candidates and not blocks:
        raise ValueError("nothing to prune: no prunable group has scores (all protected or unprunable)")
    removable = {g: max(0, analysis.groups[g].size - _floor(analysis.groups[g].size, min_channels, min_fraction))
                 for g in candidates}
    if sum(removable.values()) == 0 and not blocks:
        raise ValueError(f"min_channels={min_channels} leaves nothing to remove: every candidate group has "
                         f"at most {min_channels} channels")
    order = {g: np.argsort(candidates[g], kind="stable") for g in candidates}
    cost = budget.cost_model(analysis)
    full = cost.total(cost.full())
    problem = Allocation(analysis, candidates, order, removable, budget, cost, full, budget.target(cost, full))
    removed_blocks: list[str] = []
    if blocks:
        with_blocks = BlockSelection(problem, blocks)
        with_blocks.check_feasible()
        removed, removed_blocks, _ = with_blocks.run()
    else:
        _check_feasible(problem, min_channels)
        removed = ALLOCATORS[mode](problem)
    if round_to:
        removed = {g: _round_removed(analysis.groups[g].size, n, round_to) for g, n in removed.items()}
    kept = {g: np.sort(order[g][removed.get(g, 0):]).tolist() for g in candidates}
    sizes = {g: analysis.groups[g].size for g in kept}
    kept_counts = problem.kept_counts({g: sizes[g] - len(k) for g, k in kept.items()})
    predicted = with_blocks.total(kept_counts, set(removed_blocks)) if blocks else cost.total(kept_counts)
    return PruningPlan(kept, sizes, analysis.graph.model_name, budget.describe(),
                       {"mode": mode, "min_channels": min_channels, "min_fraction": min_fraction,
                        "round_to": round_to,
                        "cost": {"kind": cost.name, "full": full, "target": problem.target, "predicted": predicted}},
                       removed_blocks=tuple(removed_blocks))


def _is_curve(value) -> bool:
    """A damage curve (duck-typed: ``order`` and ``damage``), which ``select`` allocates jointly."""
    return hasattr(value, "order") and hasattr(value, "damage") and hasattr(value, "at_kept")


def _candidates(analysis, scores, protect) -> dict[str, np.ndarray]:
    protect = set(protect)
    out = {}
    for gid, g in analysis.prunable_groups.items():
        if gid in protect or protect.intersection(g.members) or gid not in scores:
            continue
        s = np.asarray(scores[gid], dtype=np.float64)
        if s.shape != (g.size,):
            raise ValueError(f"scores for group {gid!r} have shape {s.shape}, expected ({g.size},)")
        if not np.isfinite(s).all():
            raise ValueError(f"scores for group {gid!r} contain NaN or inf")
        out[gid] = s
    unknown = set(scores) - set(analysis.groups)
    if unknown:
        raise ValueError(f"scores name groups that are not in the model: {sorted(unknown)[:5]}")
    return out


def _check_feasible(p: Allocation, min_channels: int) -> None:
    """A one-line error when even removing every removable channel does not meet the target."""
    least = p.cost_of(p.removable)
    if least <= p.target + 1e-9 * max(abs(p.full_cost), 1.0):
        return
    label = p.cost.label
    if p.cost.linear:
        need = p.full_cost - p.target
        share = need / p.full_cost if p.full_cost else 0.0
        raise ValueError(f"cannot remove {need:.0f} {label} ({share:.0%} of all prunable {label}): at most "
                         f"{p.full_cost - least:.0f} are removable with min_channels={min_channels}, the "
                         "min_fraction floor and the protected groups")
    raise ValueError(f"cannot remove {1 - p.target / p.full_cost:.0%} of {label}: the prunable groups allow at most "
                     f"{1 - least / p.full_cost:.1%} with these min_channels/min_fraction/protect settings")


def allocate_global(p: Allocation) -> dict[str, int]:
    """Greedy by score per unit of cost saved, then the add-back pass (see :func:`_add_back`)."""
    names = list(p.scores)
    idx = np.array([p.cost.group_ids.index(g) for g in names])
    removed = {g: 0 for g in names}
    kept = p.kept_counts(removed)
    if p.cost.linear:
        saving = p.cost.saving(kept)[idx]
        flat = [(p.scores[g][c] / saving[j], j) for j, g in enumerate(names) if saving[j] > 0
                for c in p.order[g][:p.removable[g]]]
        # a group's removable channels are its lowest-scored ones, so a global sort keeps per-group order
        flat.sort(key=lambda t: t[0])
        current = p.full_cost
        for _, j in flat:
            if current <= p.target:
                break
            removed[names[j]] += 1
            current -= saving[j]
        kept = p.kept_counts(removed)
    else:
        current = p.full_cost
        while current > p.target:
            saving = p.cost.saving(kept)[idx]
            best, best_cost = None, np.inf
            for j, g in enumerate(names):
                if removed[g] >= p.removable[g] or saving[j] <= 0:
                    continue
                c = p.scores[g][p.order[g][removed[g]]] / saving[j]
                if c < best_cost:
                    best, best_cost = j, c
            if best is None:  # _check_feasible ruled this out unless savings are not monotone
                raise ValueError(f"cannot remove {1 - p.target / p.full_cost:.0%} of {p.cost.label}: no channel "
                                 "left whose removal saves any")
            removed[names[best]] += 1
            kept[idx[best]] -= 1
            current = p.cost.total(kept)
    _add_back(p, removed, kept, names, idx)
    return removed


def _add_back(p: Allocation, removed: dict[str, int], kept: np.ndarray, names: list[str], idx: np.ndarray) -> None:
    """Undoes removals, best-scored first, while the cost stays under the target (updates ``removed``/``kept``).

    The greedy removal stops at the first step under the target, and one step can overshoot by a lot: a
    channel of a residual group spans every block of its stage (ResNet-56 at width 0.25: ~1.4 M MACs per
    channel, a "2x" budget landed at 2.18x). Re-adding the channels that still fit tightens it.
    """
    while True:
        best, best_score = None, -np.inf
        for j, g in enumerate(names):
            if removed[g] == 0:
                continue
            score = p.scores[g][p.order[g][removed[g] - 1]]  # the group's best removed channel
            if score <= best_score:
                continue
            kept[idx[j]] += 1
            fits = p.cost.total(kept) <= p.target
            kept[idx[j]] -= 1
            if fits:
                best, best_score = j, score
        if best is None:
            return
        removed[names[best]] -= 1
        kept[idx[best]] += 1


def allocate_uniform(p: Allocation) -> dict[str, int]:
    """Every group loses ``round(r·size)`` channels (at most its removable count): ``r`` is the budget's
    ``uniform_ratio`` when it has one, else the smallest share whose cost meets the target (bisection; the
    cost only falls as ``r`` grows)."""
    sizes = {g: p.analysis.groups[g].size for g in p.scores}

    def at(r: float) -> dict[str, int]:
        return {g: min(p.removable[g], int(round(r * sizes[g]))) for g in p.scores}

    if p.budget.uniform_ratio is not None:
        return at(p.budget.uniform_ratio)
    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if p.cost_of(at(mid)) <= p.target else (mid, hi)
    return at(hi)


#: ``{mode: allocator}``: the allocators ``select`` offers.
ALLOCATORS: dict[str, Allocator] = {"global": allocate_global, "uniform": allocate_uniform}


def register_allocator(mode: str, allocator: Allocator) -> None:
    """Makes ``select(..., mode=mode)`` use ``allocator(Allocation) -> {group id: channels removed}``.

    Raises:
        ValueError: ``mode`` is already registered.

    Example:
        >>> register_allocator("keep_all_doc", lambda problem: {})
        >>> "keep_all_doc" in ALLOCATORS
        True
    """
    if mode in ALLOCATORS:
        raise ValueError(f"an allocator called {mode!r} is already registered")
    ALLOCATORS[mode] = allocator


def _round_removed(size: int, n_removed: int, multiple: int) -> int:
    kept = size - n_removed
    kept = min(size, int(np.ceil(kept / multiple) * multiple))
    return size - kept
