"""Budgets as objects: what share of which cost a plan must remove, with the cost model that counts it.

A budget answers two questions for the allocator: :meth:`Budget.cost_model` (what a selection costs, a
:class:`~tfmot_easiedge.selection.cost.CostModel`) and :meth:`Budget.target` (the most the pruned model may
cost). ``describe()`` is its plain JSON form, stored in plans, reports and the ADMM wrappers' config, and
:func:`as_budget` turns any accepted spelling back into an object, in one place.

A new budget (a latency table, bytes) is a subclass with its own cost model; :func:`register_budget` makes
its ``describe()`` dict and its ``"kind:value"`` string parse too.

This module imports neither Keras nor TensorFlow (the CLI checks ``--budget`` before loading them).

Example:
    >>> as_budget("macs:4x"), as_budget(0.8), as_budget({"kind": "params", "ratio": 0.5})
    (MacsBudget(ratio=0.75), FilterBudget(ratio=0.8), ParamsBudget(ratio=0.5))
"""
from __future__ import annotations

import dataclasses
import importlib
import math
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

if TYPE_CHECKING:
    from tfmot_easiedge.graph.analysis import ModelAnalysis
    from tfmot_easiedge.selection.cost import CostModel

#: What ``as_budget`` accepts, for error messages.
_FORMS = "'filters:0.8', 'macs:0.5', 'macs:4x', 'params:0.5', a bare ratio (filters), a describe() dict or a Budget"


class Budget:
    """Base class of budgets.

    Subclasses set ``kind`` and implement ``cost_model`` and ``describe``; the default ``target`` keeps
    ``1 - ratio`` of the unpruned cost (a subclass without a ``ratio`` overrides it, e.g. an absolute
    latency in milliseconds).

    Attributes:
        kind: the name in ``describe()`` and in ``"kind:value"`` strings.
        uniform_ratio: the share every group loses when ``select(mode="uniform")`` meets this budget, when the
            budget says so itself (filters); None makes the allocator search for the smallest uniform share.
    """

    kind: ClassVar[str] = ""

    @property
    def uniform_ratio(self) -> float | None:
        return None

    def cost_model(self, analysis: ModelAnalysis) -> CostModel:
        """The :class:`~tfmot_easiedge.selection.cost.CostModel` this budget is counted in, for ``analysis``."""
        raise NotImplementedError

    def target(self, cost: CostModel, full_cost: float) -> float:
        """The most a pruned model may cost, given ``cost`` (the cost model) and ``full_cost`` (unpruned)."""
        # getattr: the subclasses that keep this default have a ``ratio``; the base class has none
        return (1.0 - float(getattr(self, "ratio"))) * full_cost  # noqa: B009

    def describe(self) -> dict[str, Any]:
        """A JSON-able dict with ``"kind"``; ``as_budget`` of it gives an equal budget back."""
        raise NotImplementedError

    @classmethod
    def from_description(cls, description: Mapping[str, Any]) -> Budget:
        """The budget of a ``describe()`` dict (default: the dict's fields other than ``kind`` as arguments)."""
        return cls(**{k: v for k, v in description.items() if k != "kind"})

    @classmethod
    def from_text(cls, value: str) -> Budget:
        """The budget of the part after ``kind:`` in a budget string."""
        return cls(ratio_from_text(value))  # type: ignore[call-arg]  # a subclass taking a ratio uses this default


def channel_floor(size: int, min_channels: int, min_fraction: float) -> int:
    """The fewest channels a group of ``size`` may keep: ``max(min_channels, ceil(min_fraction * size))``.

    Example:
        >>> channel_floor(128, 1, 0.1), channel_floor(4, 2, 0.1)
        (13, 2)
    """
    return max(min_channels, int(math.ceil(min_fraction * size - 1e-9)))


def ratio_from_text(value: str, *, example: str = "'4x' for 4 times smaller") -> float:
    """The share removed, from ``"0.75"`` or a factor ``"4x"`` (4 times smaller: 0.75); shared by every budget
    kind that parses a ratio (``example`` names the kind's factor in the error).

    Example:
        >>> ratio_from_text("0.75"), ratio_from_text("4x")
        (0.75, 0.75)
    """
    text = value.strip().lower()
    if text.endswith("x"):
        factor = float(text[:-1])
        if not factor >= 1.0:
            raise ValueError(f"a reduction factor must be >= 1 (e.g. {example}), got {value!r}")
        return 1.0 - 1.0 / factor
    return float(text)


def _check_ratio(ratio: float) -> None:
    if not 0.0 <= float(ratio) < 1.0:
        raise ValueError(f"budget ratio must be in [0, 1) (the share removed), got {ratio}")


@dataclasses.dataclass(frozen=True)
class RatioBudget(Budget):
    """Remove ``ratio`` of a cost (``0.5``: half of it, a 2x reduction)."""

    ratio: float

    def __post_init__(self):
        _check_ratio(self.ratio)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "ratio": self.ratio}


@dataclasses.dataclass(frozen=True)
class FilterBudget(RatioBudget):
    """Remove ``ratio`` of the model's filters, counted per producer (a residual channel cut from ten
    convolutions is ten filters) and, by default, convolution filters only (``count="conv"``; ``"all"`` counts
    Dense units too, ``"channels"`` each channel of a prunable group once, as before issue 14); see
    :class:`~tfmot_easiedge.selection.cost.FilterCost`.

    Example:
        >>> FilterBudget(0.5), as_budget("filters:0.5:all")
        (FilterBudget(ratio=0.5), FilterBudget(ratio=0.5, count='all'))
        >>> FilterBudget(0.5, count="all").describe()
        {'kind': 'filters', 'ratio': 0.5, 'count': 'all'}
    """

    kind: ClassVar[str] = "filters"
    count: str = "conv"

    def __post_init__(self):
        super().__post_init__()
        from tfmot_easiedge.selection.cost import FILTER_COUNTS

        if self.count not in FILTER_COUNTS:
            raise ValueError(f"filter count must be one of {FILTER_COUNTS}, got {self.count!r}")

    def __repr__(self) -> str:
        extra = "" if self.count == "conv" else f", count={self.count!r}"
        return f"FilterBudget(ratio={self.ratio!r}{extra})"

    @property
    def uniform_ratio(self) -> float | None:
        return self.ratio

    def cost_model(self, analysis: ModelAnalysis) -> CostModel:
        from tfmot_easiedge.selection.cost import FilterCost

        return FilterCost(analysis, self.count)

    def target(self, cost: CostModel, full_cost: float) -> float:
        return full_cost - math.floor(self.ratio * full_cost)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "ratio": self.ratio, **({} if self.count == "conv" else {"count": self.count})}

    @classmethod
    def from_text(cls, value: str) -> Budget:
        ratio, _, count = value.partition(":")
        return cls(ratio_from_text(ratio), count.strip().lower() or "conv")


@dataclasses.dataclass(frozen=True)
class MacsBudget(RatioBudget):
    """Remove ``ratio`` of the model's MACs (e.g. 0.5 for a 2x reduction, 0.75 for 4x)."""

    kind: ClassVar[str] = "macs"

    def cost_model(self, analysis: ModelAnalysis) -> CostModel:
        from tfmot_easiedge.selection.cost import MacsCost

        return MacsCost(analysis)


@dataclasses.dataclass(frozen=True)
class ParamsBudget(RatioBudget):
    """Remove ``ratio`` of the model's parameters (trainable and not, as ``count_params`` counts them)."""

    kind: ClassVar[str] = "params"

    def cost_model(self, analysis: ModelAnalysis) -> CostModel:
        from tfmot_easiedge.selection.cost import ParamsCost

        return ParamsCost(analysis)


class GeometricStep(Budget):
    """Step ``step`` of ``steps`` towards ``budget``, the cost falling geometrically: after step k the model
    may cost ``full·(target/full)^(k/steps)`` (iterative pruning; the last step is ``budget`` itself)."""

    def __init__(self, budget: Budget, step: int, steps: int):
        if not 1 <= step <= steps:
            raise ValueError(f"step must be in [1, {steps}], got {step}")
        self.budget, self.step, self.steps = budget, int(step), int(steps)
        self.kind = budget.kind  # type: ignore[misc]  # per instance: the kind of the budget it steps towards

    def cost_model(self, analysis: ModelAnalysis) -> CostModel:
        return self.budget.cost_model(analysis)

    def target(self, cost: CostModel, full_cost: float) -> float:
        final = self.budget.target(cost, full_cost)
        if self.step == self.steps or full_cost <= 0:
            return final
        return full_cost * (max(final, 0.0) / full_cost) ** (self.step / self.steps)

    def describe(self) -> dict[str, Any]:
        return {**self.budget.describe(), "step": [self.step, self.steps]}

    def __repr__(self) -> str:
        return f"GeometricStep({self.budget!r}, {self.step}, {self.steps})"


_KINDS: dict[str, type[Budget]] = {}


def register_budget(cls: type[Budget]) -> type[Budget]:
    """Registers a Budget subclass by its ``kind`` so that ``as_budget`` parses ``"kind:value"`` and its
    ``describe()`` dict (an ADMM wrapper restored from its config finds its budget again). Usable as a
    class decorator.

    Raises:
        ValueError: ``kind`` is empty or already registered.

    Example:
        >>> import dataclasses
        >>> @register_budget
        ... @dataclasses.dataclass(frozen=True)
        ... class HalfBudget(MacsBudget):
        ...     kind = "half_macs_doc"
        >>> as_budget("half_macs_doc:0.5")
        HalfBudget(ratio=0.5)
    """
    kind = getattr(cls, "kind", "")
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"{cls.__name__} needs a non-empty 'kind' to be registered")
    if kind in _KINDS:
        raise ValueError(f"a budget of kind {kind!r} is already registered ({_KINDS[kind].__name__})")
    _KINDS[kind] = cls
    return cls


for _cls in (FilterBudget, MacsBudget, ParamsBudget):
    register_budget(_cls)


def budget_kinds() -> tuple[str, ...]:
    """The registered budget kinds."""
    return tuple(_KINDS)


#: What ``as_budget`` turns into a :class:`Budget` (and so what every ``budget=`` argument accepts).
BudgetSpec = Budget | str | float | Mapping[str, Any]


def as_budget(spec: BudgetSpec) -> Budget:
    """A budget from any accepted form: a Budget, ``"kind:RATIO"`` or ``"kind:Nx"`` (N times smaller), a bare
    ratio (number or string: a filter budget), or a ``describe()`` dict.

    Raises:
        ValueError: an unknown kind, a value that does not parse, a ratio outside [0, 1).
        TypeError: something that is not a budget at all.

    Example:
        >>> as_budget("filters:0.8"), as_budget("params:2x"), as_budget(MacsBudget(0.5))
        (FilterBudget(ratio=0.8), ParamsBudget(ratio=0.5), MacsBudget(ratio=0.5))
    """
    if isinstance(spec, Budget):
        return spec
    if isinstance(spec, bool):
        raise TypeError(f"budget must be {_FORMS}; got {spec!r}")
    if isinstance(spec, (int, float)):
        return FilterBudget(float(spec))
    if isinstance(spec, str):
        return parse_budget(spec)
    if isinstance(spec, Mapping):
        kind = spec.get("kind")
        if kind not in _KINDS:
            _import_registering_module(spec)
        if kind not in _KINDS:
            raise ValueError(f"budget {dict(spec)!r}: unknown kind {kind!r}; known kinds are {sorted(_KINDS)} "
                             "(register a new one with tfmot_easiedge.selection.register_budget)")
        return _KINDS[kind].from_description(spec)
    raise TypeError(f"budget must be {_FORMS}; got {type(spec).__name__} {spec!r}")


class BudgetRefused(ValueError):
    """A budget text of a known kind that is refused with its own message (``parse_budget`` passes it on),
    e.g. ``"latency:0.5"`` without the latency table it needs."""


def _import_registering_module(description: Mapping[str, Any]) -> None:
    """Imports the module a ``describe()`` dict names (``"module"``), which registers its kind: a budget of the
    edge toolkit (``tfmot_easiedge.latency``) restored from a plan or an ADMM wrapper's config in a process
    that never imported it. Only modules of this package: a config read from a file imports nothing else."""
    module = description.get("module")
    if isinstance(module, str) and module.startswith("tfmot_easiedge."):
        importlib.import_module(module)


def parse_budget(text: str) -> Budget:
    """Parses ``"filters:0.8"``, ``"macs:0.5"``, ``"macs:4x"``, ``"params:0.5"`` or a bare ``"0.8"`` (filters).

    Example:
        >>> parse_budget("macs:0.5")
        MacsBudget(ratio=0.5)
    """
    text = str(text).strip()
    kind, sep, value = text.partition(":")
    if not sep:
        kind, value = "filters", text
    kind = kind.strip().lower()
    if kind not in _KINDS:
        raise ValueError(f"budget {text!r} does not parse: unknown kind {kind!r}, expected one of {sorted(_KINDS)} "
                         "as 'KIND:RATIO' or 'KIND:Nx'")
    try:
        return _KINDS[kind].from_text(value)
    except ValueError as e:
        if isinstance(e, BudgetRefused) or "ratio must be" in str(e) or "reduction factor" in str(e):
            raise
        raise ValueError(f"budget {text!r} does not parse: expected 'KIND:RATIO' (a share in [0, 1)) or "
                         "'KIND:Nx' (N times smaller)") from None
