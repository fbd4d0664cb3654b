"""Joint allocation: minimise the summed damage curves of all groups under a budget's cost model.

Given a :class:`~tfmot_easiedge.importance.damage.DamageCurve` per group (``D_g(k)``: the loss when group g
keeps k channels) and a cost model, find the kept counts

    k* = argmin_k  Σ_g D_g(k_g)   subject to   cost(k) <= target,   floor_g <= k_g <= size_g.

Lagrangian relaxation: for a multiplier λ, coordinate descent minimises ``Σ_g D_g(k_g) + λ·cost(k)`` one group
at a time, each exactly over all its widths (the cost along one group is evaluated for every width at once;
for the bilinear MAC and parameter costs that is exact, since a node's cost depends on its own groups only).
Bisection on λ finds the smallest multiplier whose solution fits; channels are then added back, the one
saving the most damage first, while the cost stays within the target (the relaxation leaves a gap when the
curves are not convex), and an exchange search takes 1, 2, 4... channels from one group and refills the
others while that lowers the damage. A separable cost with integer weights (filters) is solved exactly
instead, by a dynamic programme (:func:`allocate_separable`). A MAC or parameter cost couples neighbouring
groups, so the result is a feasible point, not always the optimum: on random 4-group chains with convex
curves it was within 1.20x of the brute-force optimum in the worst of 90 cases and exact in most
(``tests/test_joint.py``); never infeasible.

Example:
    >>> import numpy as np
    >>> from tfmot_easiedge.importance.damage import DamageCurve
    >>> curves = {"a": DamageCurve(np.arange(4), np.array([0.0, 0.1, 0.2, 5.0, 9.0])),
    ...           "b": DamageCurve(np.arange(4), np.array([0.0, 1.0, 2.0, 3.0, 4.0]))}
    >>> allocate_counts(curves, lambda k: float(sum(k.values())), target=4.0, floors={"a": 1, "b": 1})
    {'a': 2, 'b': 2}
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

import numpy as np

from tfmot_easiedge.plan import PruningPlan
from tfmot_easiedge.selection.budgets import BudgetSpec, as_budget
from tfmot_easiedge.selection.budgets import channel_floor as _floor
from tfmot_easiedge.selection.cost import BilinearCost, CostModel
from tfmot_easiedge.selection.protect import check_protect

if TYPE_CHECKING:
    from tfmot_easiedge.graph.analysis import ModelAnalysis
    from tfmot_easiedge.importance.damage import DamageCurve

__all__ = ["allocate_counts", "allocate_separable", "select_joint"]

CostFn = Callable[[dict], float]


def _along(cost, kept: dict[str, int], gid: str, widths: np.ndarray) -> np.ndarray:
    """The cost for every width of one group, the others held at ``kept``."""
    if isinstance(cost, _ModelCost):
        return cost.along(kept, gid, widths)
    out = np.empty(len(widths))
    trial = dict(kept)
    for i, w in enumerate(widths):
        trial[gid] = int(w)
        out[i] = cost(trial)
    return out


class _ModelCost:
    """Adapts a :class:`CostModel` to ``{group: kept count} -> cost``, vectorised along one group when bilinear."""

    def __init__(self, model: CostModel):
        self.model = model
        self.index = {g: i for i, g in enumerate(model.group_ids)}

    def vector(self, kept: Mapping[str, int]) -> np.ndarray:
        return self.model.kept_counts(dict(kept))

    def __call__(self, kept: Mapping[str, int]) -> float:
        return self.model.total(self.vector(kept))

    def along(self, kept: Mapping[str, int], gid: str, widths: np.ndarray) -> np.ndarray:
        m = self.model
        base = self.vector(kept)
        if isinstance(m, BilinearCost):
            j = self.index[gid]
            delta = widths.astype(float) - base[j]
            i0, o0 = m.w_in @ base + m.u_in, m.w_out @ base + m.u_out
            i = i0[:, None] + m.w_in[:, j][:, None] * delta[None, :]
            o = o0[:, None] + m.w_out[:, j][:, None] * delta[None, :]
            return (m.c0[:, None] + m.ci[:, None] * i + m.co[:, None] * o + m.cio[:, None] * i * o).sum(0)
        if m.linear:
            j = self.index[gid]
            step = m.saving(base)[j]
            return m.total(base) + step * (widths.astype(float) - base[j])
        out = np.empty(len(widths))
        for n, w in enumerate(widths):
            trial = base.copy()
            trial[self.index[gid]] = w
            out[n] = m.total(trial)
        return out


def _descend(curves, cost, lam: float, floors, start: dict[str, int], max_sweeps: int) -> dict[str, int]:
    kept = dict(start)
    for _ in range(max_sweeps):
        changed = False
        for gid, curve in curves.items():
            widths = np.arange(floors[gid], curve.size + 1)
            damage = curve.damage[curve.size - widths]
            objective = damage + lam * _along(cost, kept, gid, widths)
            best = int(widths[len(widths) - 1 - int(np.argmin(objective[::-1]))])  # ties: the wider
            if best != kept[gid]:
                kept[gid], changed = best, True
        if not changed:
            break
    return kept


def allocate_counts(curves: Mapping, cost: CostFn | _ModelCost, target: float, floors: Mapping[str, int], *,
                    max_sweeps: int = 50, iterations: int = 60) -> dict[str, int]:
    """Kept channel counts per group minimising the summed damage with ``cost(kept) <= target``.

    Args:
        curves: ``{group id: DamageCurve}``.
        cost: ``{group id: kept count} -> cost`` (groups not named are whole), or a cost model adapter.
        target: the most the selection may cost.
        floors: the fewest channels each group keeps.

    Raises:
        ValueError: even every group at its floor costs more than ``target`` (the message names the cost).
    """
    full = {g: c.size for g, c in curves.items()}
    floor = {g: int(floors[g]) for g in curves}
    if cost(floor) > target * (1 + 1e-12):
        raise ValueError(f"the budget cannot be met: every group at its floor still costs {cost(floor):.6g}, "
                         f"above the target {target:.6g}")
    if cost(full) <= target:
        return full
    # Bracket the multiplier: lo gives a selection over the target, hi one within it.
    scale = max(_total_damage(curves, floor), 1e-300) / max(cost(full), 1e-300)
    lo = hi = scale
    best = _descend(curves, cost, hi, floor, full, max_sweeps)
    while cost(best) > target and hi < scale * 1e30:
        lo, hi = hi, hi * 10.0
        best = _descend(curves, cost, hi, floor, full, max_sweeps)
    if cost(best) > target:
        best = floor
    else:
        while lo > scale * 1e-30:
            trial = _descend(curves, cost, lo, floor, full, max_sweeps)
            if cost(trial) > target:
                break
            hi, best, lo = lo, trial, lo / 10.0
    for _ in range(iterations):  # geometric bisection on the multiplier
        if hi / lo < 1 + 1e-6:
            break
        mid = float(np.sqrt(lo * hi))
        trial = _descend(curves, cost, mid, floor, full, max_sweeps)
        if cost(trial) <= target:
            hi, best = mid, trial
        else:
            lo = mid
    return _exchange(curves, cost, target, _add_back(curves, cost, target, best), floor)


def _total_damage(curves, kept) -> float:
    return float(sum(curves[g].at_kept(k) for g, k in kept.items()))


def _exchange(curves, cost, target: float, kept: dict[str, int], floors, max_rounds: int = 200) -> dict[str, int]:
    """Local search after the relaxation: take one channel from a group, refill greedily, keep it if better.

    Closes most of the duality gap a non-separable cost leaves (the MACs of a layer depend on two groups).
    """
    current = _total_damage(curves, kept)
    for _ in range(max_rounds):
        best, best_damage = None, current - 1e-12 * max(1.0, abs(current))
        for gid in curves:
            step = 1
            while kept[gid] - step >= floors[gid]:  # take 1, 2, 4, ... channels: curves have plateaus
                trial = dict(kept)
                trial[gid] -= step
                trial = _add_back(curves, cost, target, trial, frozen=gid)
                damage = _total_damage(curves, trial)
                if damage < best_damage:
                    best, best_damage = trial, damage
                step *= 2
        if best is None:
            return kept
        kept, current = best, best_damage
    return kept


def allocate_separable(curves: Mapping, weights: Mapping[str, int], budget_units: int,
                       floors: Mapping[str, int]) -> dict[str, int]:
    """The exact optimum when each kept channel of group g costs the integer ``weights[g]`` (filters).

    A min-plus dynamic programme over the groups: ``best[c]`` is the least damage of the groups so far with
    ``c`` cost units spent; O(groups × units × widths) in vector steps.

    Raises:
        ValueError: the floors alone exceed ``budget_units``.
    """
    best = np.full(budget_units + 1, np.inf)
    best[0] = 0.0
    choice = []
    for gid, curve in curves.items():
        w = int(weights[gid])
        new = np.full_like(best, np.inf)
        arg = np.full(len(best), -1, dtype=np.int64)
        for k in range(int(floors[gid]), curve.size + 1):
            shift = w * k
            if shift > budget_units:
                break
            cand = np.full_like(best, np.inf)
            cand[shift:] = best[:len(best) - shift] + curve.at_kept(k)
            update = np.isfinite(cand) & (cand <= new)  # a later (wider) k wins ties
            new[update], arg[update] = cand[update], k
        best = new
        choice.append((gid, w, arg))
    if not np.isfinite(best).any():
        raise ValueError("the budget cannot be met: the groups' floors alone exceed it")
    c = len(best) - 1 - int(np.argmin(best[::-1]))  # of equal damage, the selection that keeps the most
    counts = {}
    for gid, w, arg in reversed(choice):
        k = int(arg[c])
        counts[gid] = k
        c -= w * k
    return counts


def _add_back(curves, cost, target: float, kept: dict[str, int], frozen: str | None = None) -> dict[str, int]:
    """Adds channels, the largest damage saving first, while the cost stays within ``target``
    (never to ``frozen``, the group an exchange just took a channel from)."""
    kept = dict(kept)
    spent = cost(kept)
    while True:
        best, best_key, best_cost = None, None, spent
        for gid, curve in curves.items():
            k = kept[gid]
            if k >= curve.size or gid == frozen:
                continue
            trial = dict(kept)
            trial[gid] = k + 1
            c = cost(trial)
            if c > target:
                continue
            gain = curve.at_kept(k) - curve.at_kept(k + 1)  # >= 0: curves are monotone
            key = (gain / max(c - spent, 1e-300), -(c - spent))  # damage saved per unit cost; then the cheapest
            if best_key is None or key > best_key:
                best, best_key, best_cost = gid, key, c
        if best is None:
            return kept
        kept[best] += 1
        spent = best_cost


def _separable(model: CostModel, chosen: Mapping, target: float, floors) -> dict[str, int] | None:
    """The exact DP when the cost is linear with integer per-channel weights (filters); None otherwise."""
    if not model.linear:
        return None
    full = model.full()
    weights_all = model.saving(full)
    index = {g: i for i, g in enumerate(model.group_ids)}
    weights = {g: weights_all[index[g]] for g in chosen}
    if any(w != int(w) or w < 0 for w in weights.values()):
        return None
    fixed = model.total(full) - sum(weights[g] * chosen[g].size for g in chosen)  # groups not chosen stay whole
    units = int(np.floor(target - fixed + 1e-9))
    if units < sum(int(weights[g]) * floors[g] for g in chosen):
        raise ValueError(f"the budget cannot be met: every group at its floor still costs more than {target:.6g}")
    return allocate_separable(chosen, {g: int(w) for g, w in weights.items()}, units, floors)


def select_joint(analysis: ModelAnalysis, curves: Mapping[str, DamageCurve], budget: BudgetSpec, *,
                 min_channels: int = 1, min_fraction: float = 0.0,
                 protect: Iterable[str] = (), round_to: int | None = None) -> PruningPlan:
    """A :class:`PruningPlan` from damage curves: :func:`allocate_counts` under the budget's cost model.

    Each group keeps the channels its curve removes last. Arguments as in
    :func:`~tfmot_easiedge.selection.allocate.select`; prunable groups without a curve are kept whole.

    Raises:
        ValueError: an impossible budget, a curve of the wrong size, or a curve for a group not in the model.
    """
    if min_channels < 1:
        raise ValueError(f"min_channels must be >= 1, got {min_channels}")
    if not 0.0 <= min_fraction < 1.0:
        raise ValueError(f"min_fraction must be in [0, 1), got {min_fraction}")
    budget = as_budget(budget)
    unknown = sorted(set(curves) - set(analysis.groups))
    if unknown:
        raise ValueError(f"damage curves name groups that are not in the model: {unknown[:5]}")
    protect = set(check_protect(analysis, protect))
    chosen = {}
    for gid, g in analysis.prunable_groups.items():
        if gid not in curves or gid in protect or protect.intersection(g.members):
            continue
        if curves[gid].size != g.size:
            raise ValueError(f"the damage curve of group {gid!r} has {curves[gid].size} channels, the group {g.size}")
        chosen[gid] = curves[gid]
    if not chosen:
        raise ValueError("nothing to prune: no prunable group has a damage curve (all protected or unprunable)")
    model = budget.cost_model(analysis)
    cost = _ModelCost(model)
    full_cost = model.total(model.full())
    target = budget.target(model, full_cost)
    floors = {gid: min(c.size, _floor(c.size, min_channels, min_fraction)) for gid, c in chosen.items()}
    counts = _separable(model, chosen, target, floors)
    if counts is None:
        counts = allocate_counts(chosen, cost, target, floors)
    if round_to:
        counts = {g: min(chosen[g].size, int(np.ceil(k / round_to) * round_to)) for g, k in counts.items()}
    kept = {g: chosen[g].kept(k).tolist() for g, k in counts.items()}
    sizes = {g: chosen[g].size for g in kept}
    return PruningPlan(kept, sizes, analysis.graph.model_name, budget.describe(),
                       {"mode": "joint", "min_channels": min_channels, "min_fraction": min_fraction,
                        "round_to": round_to,
                        "damage": float(sum(chosen[g].at_kept(k) for g, k in counts.items())),
                        "cost": {"kind": model.name, "full": full_cost, "target": target, "predicted": cost(counts)}})
