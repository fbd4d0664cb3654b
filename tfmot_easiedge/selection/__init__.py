"""Budgets with their cost models, and the global allocator: score table + budget -> ``PruningPlan``.

- :mod:`~tfmot_easiedge.selection.budgets`: ``Budget`` objects (``FilterBudget``, ``MacsBudget``,
  ``ParamsBudget``, users' subclasses), the one normalisation ``as_budget`` and ``register_budget``;
  imports neither Keras nor TensorFlow;
- :mod:`~tfmot_easiedge.selection.cost`: cost models (filters, MACs, parameters) predicting a selection's
  cost from kept channel counts;
- :mod:`~tfmot_easiedge.selection.allocate`: ``select`` and its allocators;
- :mod:`~tfmot_easiedge.selection.protect`: ``check_protect``, unknown ``protect`` names refused in one line.

The cost models and ``select`` (and Keras with them) are imported on first use.

Example:
    >>> from tfmot_easiedge.selection import as_budget
    >>> as_budget("macs:2x")
    MacsBudget(ratio=0.5)
"""
from typing import TYPE_CHECKING

from tfmot_easiedge._lazy import install_lazy_attributes
from tfmot_easiedge.selection.budgets import (
    Budget,
    FilterBudget,
    GeometricStep,
    MacsBudget,
    ParamsBudget,
    RatioBudget,
    as_budget,
    budget_kinds,
    parse_budget,
    register_budget,
)
from tfmot_easiedge.selection.protect import check_protect

_LAZY = {
    **dict.fromkeys(["ALLOCATORS", "Allocation", "register_allocator", "select"], "tfmot_easiedge.selection.allocate"),
    **dict.fromkeys(["BilinearCost", "CostModel", "FilterCost", "MacsCost", "MacsModel", "ParamsCost"],
                    "tfmot_easiedge.selection.cost"),
}
install_lazy_attributes(__name__, _LAZY)

if TYPE_CHECKING:  # the names of _LAZY, for type checkers and IDEs (tests/test_lint.py checks the two agree)
    from tfmot_easiedge.selection.allocate import ALLOCATORS, Allocation, register_allocator, select  # noqa: F401
    from tfmot_easiedge.selection.cost import BilinearCost, CostModel, FilterCost, MacsCost, MacsModel, ParamsCost  # noqa: F401

__all__ = ["Budget", "FilterBudget", "GeometricStep", "MacsBudget", "ParamsBudget", "RatioBudget", "as_budget",
           "budget_kinds", "check_protect", "parse_budget", "register_budget"]
__all__ = sorted([*__all__, *_LAZY])
