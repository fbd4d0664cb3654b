"""``LatencyBudget``: prune to a share of predicted latency, or to milliseconds, counted by a latency table.

The budget carries a :class:`LatencyCost`, a :class:`~tfmot_easiedge.selection.cost.CostModel` whose
``total`` is the table's prediction from the kept channel counts, so ``select`` (and with it ``EasiEdge``,
``prune_filters``, ``OneShot`` and ``easiedge prune --budget latency:0.5 --latency-table FILE``) allocates
channels by score per predicted millisecond saved with no change of its own. ``describe()`` holds the
whole table and names this module, so a plan, a report or an ADMM wrapper's config gives the same budget
back through :func:`~tfmot_easiedge.selection.as_budget`, in a process that never imported it.

Example:
    >>> from tfmot_easiedge.latency.table import LatencyTable, example_table
    >>> b = LatencyBudget(0.5, table=LatencyTable.from_dict(example_table()))
    >>> b, as_budget(b.describe()) == b
    (LatencyBudget(ratio=0.5, table='example' on tflite), True)
"""
from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import numpy as np

from tfmot_easiedge.latency.table import LatencyTable
from tfmot_easiedge.selection.budgets import Budget, BudgetRefused, as_budget, ratio_from_text, register_budget
from tfmot_easiedge.selection.cost import CostModel

if TYPE_CHECKING:
    from tfmot_easiedge.graph.analysis import ModelAnalysis

__all__ = ["LatencyBudget", "LatencyCost", "as_budget"]

#: Lookahead (channels) of the savings: one channel can save nothing on a staircase step, a few cross it.
_LOOKAHEAD = (1, 4, 8, 16)


def check_table_for(table: LatencyTable, analysis: ModelAnalysis) -> None:
    """Raises ValueError unless ``table`` was profiled on ``analysis``'s model (same prunable groups, sizes)."""
    if table.fingerprint != analysis.fingerprint:
        raise ValueError(f"the latency table was profiled on model {table.model_name!r} (fingerprint "
                         f"{table.fingerprint}), not on {analysis.graph.model_name!r} (fingerprint "
                         f"{analysis.fingerprint}): profile this model (te.profile_latency or easiedge profile)")


class LatencyCost(CostModel):
    """Predicted milliseconds per invoke, from a :class:`LatencyTable` of the model (see the module docstring).

    ``saving`` is the steepest average saving per channel over the next 1, 4, 8 or 16 channels of a group,
    so a group on a staircase step (where one channel less saves nothing) still competes for the budget.

    Raises:
        ValueError: the table is of another model.
    """

    name, label = "latency", "predicted latency"
    linear = False

    def __init__(self, analysis: ModelAnalysis, table: LatencyTable):
        super().__init__(analysis)
        check_table_for(table, analysis)
        self.table = table
        self.predictor = table.compile(self.group_ids)

    def total(self, kept: np.ndarray) -> float:
        return float(self.predictor(np.asarray(kept, dtype=float)[None, :])[0])

    def saving(self, kept: np.ndarray) -> np.ndarray:
        return _lookahead_saving(self.predictor, kept)

    def branch_cost(self, node_indices: tuple[int, ...]) -> CostModel:
        """The predicted milliseconds a residual branch of these graph nodes costs (its segments, and one
        operator for the ``Add`` it makes redundant), for ``select(..., block_scores=...)``."""
        names = {self.analysis.graph.nodes[i].name for i in node_indices}
        segments = [s for s, seg in enumerate(self.table.segments) if seg["name"] in names]
        return _BranchLatency(self, segments)


class _BranchLatency(CostModel):
    """Milliseconds of some segments of a :class:`LatencyCost`'s table, plus one operator's fixed cost."""

    name, label = "latency", "predicted latency"
    linear = False

    def __init__(self, whole: LatencyCost, segments: list[int]):
        super().__init__(whole.analysis)
        self.predictor, self.segments = whole.predictor, segments
        self.op_ms = float(whole.table.op_ms)

    def batch(self, kept: np.ndarray) -> np.ndarray:
        k = np.atleast_2d(np.asarray(kept, dtype=float))
        return self.predictor.segments_ms(k, self.segments) + self.op_ms

    def total(self, kept: np.ndarray) -> float:
        return float(self.batch(kept)[0])

    def saving(self, kept: np.ndarray) -> np.ndarray:
        return _lookahead_saving(self.batch, kept)


def _lookahead_saving(predict, kept: np.ndarray) -> np.ndarray:
    """Per group, the steepest average saving per channel of ``predict`` over the next 1, 4, 8 or 16 channels."""
    kept = np.asarray(kept, dtype=float)
    n = len(kept)
    rows = [kept[None, :]]
    for d in _LOOKAHEAD:
        rows.append(kept[None, :] - d * np.eye(n))
    t = predict(np.maximum(np.vstack(rows), 0.0))
    base, best = t[0], np.zeros(n)
    for k, d in enumerate(_LOOKAHEAD):
        slope = (base - t[1 + k * n:1 + (k + 1) * n]) / d
        reachable = kept - d >= 1  # a lookahead past the last channel says nothing
        best = np.where(reachable | (d == 1), np.maximum(best, slope), best)
    return best


def _as_table(table: Any) -> LatencyTable:
    if isinstance(table, LatencyTable):
        return table
    if isinstance(table, (str, os.PathLike)):
        return LatencyTable.load(table)
    if isinstance(table, Mapping):
        return LatencyTable.from_dict(table)
    raise TypeError(f"table must be a LatencyTable, a path to one or its dict; got {type(table).__name__}")


@register_budget
@dataclasses.dataclass(frozen=True, eq=False)
class LatencyBudget(Budget):
    """Remove ``ratio`` of the predicted latency, or bring it to ``target_ms``, by a latency table.

    Args:
        ratio: the share of predicted latency removed, in [0, 1) (0.5: twice as fast).
        target_ms: instead, the most the pruned model may take per invoke (ms).
        table: a :class:`LatencyTable` of the unpruned model, a path to one, or its dict.
        runtime: when given, the runtime the table must have been measured on.

    Raises:
        ValueError: neither or both of ``ratio`` and ``target_ms``; a ratio outside [0, 1); a target that
            is not positive; a table of another runtime.
    """

    kind: ClassVar[str] = "latency"
    ratio: float | None = None
    target_ms: float | None = None
    table: Any = None
    runtime: str | None = None

    def __post_init__(self):
        if (self.ratio is None) == (self.target_ms is None):
            raise ValueError("a latency budget takes a ratio (share of predicted latency removed) or target_ms, "
                             "not both and not neither")
        if self.ratio is not None:
            if not 0.0 <= float(self.ratio) < 1.0:
                raise ValueError(f"latency budget ratio must be in [0, 1) (the share of predicted latency "
                                 f"removed), got {self.ratio}")
        elif not float(self.target_ms) > 0:  # type: ignore[arg-type]
            raise ValueError(f"target_ms must be > 0, got {self.target_ms}")
        if self.table is None:
            raise BudgetRefused("a latency budget needs the model's latency table: LatencyBudget(0.5, table=...) "
                             "(te.profile_latency), or --latency-table FILE on the command line")
        object.__setattr__(self, "table", _as_table(self.table))
        if self.runtime is not None:
            self.table.check_runtime(self.runtime)

    def cost_model(self, analysis: ModelAnalysis) -> CostModel:
        return LatencyCost(analysis, self.table)

    def target(self, cost: CostModel, full_cost: float) -> float:
        if self.target_ms is not None:
            return float(self.target_ms)
        return (1.0 - float(self.ratio)) * full_cost  # type: ignore[arg-type]

    def describe(self) -> dict[str, Any]:
        value = {"ratio": self.ratio} if self.ratio is not None else {"target_ms": self.target_ms}
        return {"kind": self.kind, **value, "table": self.table.to_dict(), "module": __name__}

    @classmethod
    def from_description(cls, description: Mapping[str, Any]) -> Budget:
        return cls(ratio=description.get("ratio"), target_ms=description.get("target_ms"),
                   table=description.get("table"))

    @classmethod
    def from_text(cls, value: str) -> Budget:
        """``"latency:0.5"`` has no table: refused with what to pass (see :meth:`parse`)."""
        cls.parse(value, table=None)
        raise AssertionError("unreachable")  # parse raises without a table

    @classmethod
    def parse(cls, value: str, *, table: Any) -> LatencyBudget:
        """``"0.5"``, ``"2x"`` (twice as fast) or ``"12ms"`` (a target), with ``table``; a leading ``latency:``
        is allowed.

        Example:
            >>> from tfmot_easiedge.latency.table import example_table
            >>> LatencyBudget.parse("latency:0.8ms", table=example_table()).target_ms
            0.8
        """
        text = str(value).strip().lower().removeprefix("latency:")
        try:
            if text.endswith("ms"):
                return cls(target_ms=float(text[:-2]), table=table)
            return cls(ratio=ratio_from_text(text, example="'latency:2x' for twice as fast"), table=table)
        except ValueError as e:
            if "latency" in str(e) or "ratio" in str(e) or "factor" in str(e) or "target_ms" in str(e):
                raise
            raise ValueError(f"latency budget {value!r} does not parse: expected a share like 0.5, a factor like "
                             "2x or a target like 12ms") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LatencyBudget):
            return NotImplemented
        return (self.ratio, self.target_ms) == (other.ratio, other.target_ms) and \
            self.table.to_dict() == other.table.to_dict()

    def __hash__(self) -> int:
        return hash((self.kind, self.ratio, self.target_ms, self.table.fingerprint))

    def __repr__(self) -> str:
        value = f"ratio={self.ratio}" if self.ratio is not None else f"target_ms={self.target_ms}"
        return f"LatencyBudget({value}, table={self.table.model_name!r} on {self.table.runtime})"
