"""Channel importance criteria, as objects and as functions.

Each criterion returns a score table ``{group_id: np.ndarray}`` with one score per channel of every prunable
group (higher = more important). ``tbaa`` (the EasiEdge estimator) and ``exact_ig`` are in nats of output
information; the baselines are in their own units.

- objects (:mod:`~tfmot_easiedge.importance.criterion`): ``TBAA()``, ``ExactIG()``, ``Norm(p=1)``, ``BNScale()``,
  ``TaylorFO()``, ``Random()``, a user's ``Criterion`` subclass; ``as_criterion`` turns a name, an object or a
  function ``f(model, data, *, analysis)`` into one, ``register_criterion`` adds a name;
- functions, one interface ``criterion(model, data=None, *, analysis=None, ...)``: ``tbaa``, ``exact_ig``,
  ``l1_norm``, ``l2_norm``, ``bn_scale``, ``taylor_fo``, ``random``; ``get(name)`` and ``CRITERIA`` by name.

The criteria (and Keras with them) are imported on first use; ``CRITERION_NAMES`` and the criterion objects
need no import.

Example:
    >>> from tfmot_easiedge import importance
    >>> importance.as_criterion("l1"), "tbaa" in importance.CRITERION_NAMES
    (Norm(p=1), True)
"""
from typing import TYPE_CHECKING, Any, Callable

from tfmot_easiedge._lazy import install_lazy_attributes
from tfmot_easiedge.importance.criterion import (
    TBAA,
    BNScale,
    Criterion,
    ExactIG,
    FunctionCriterion,
    GroupL2,
    Norm,
    Random,
    TaylorFO,
    TBAACurves,
    _Builtin,
    as_criterion,
    criterion_names,
    register_criterion,
)

_MODULES = {"tbaa": "tfmot_easiedge.importance.tbaa", "TBAAScorer": "tfmot_easiedge.importance.tbaa",
            "exact_ig": "tfmot_easiedge.importance.exact_ig",
            **dict.fromkeys(["bn_scale", "l1_norm", "l2_norm", "random", "taylor_fo"],
                            "tfmot_easiedge.importance.baselines"),
            "group_l2": "tfmot_easiedge.importance.group_norm",
            **dict.fromkeys(["BlockTBAAScorer", "block_exact_ig", "block_tbaa"], "tfmot_easiedge.importance.blocks"),
            **dict.fromkeys(["DamageCurve", "damage_curves", "measure_curves"], "tfmot_easiedge.importance.damage")}
#: ``{criterion name: function name}``: what ``get`` and ``CRITERIA`` offer, by the names the CLI accepts.
_CRITERION_FUNCTIONS = {"tbaa": "tbaa", "exact_ig": "exact_ig", "l1": "l1_norm", "l2": "l2_norm",
                        "bn_scale": "bn_scale", "taylor_fo": "taylor_fo", "random": "random", "group_l2": "group_l2"}
#: Criteria whose scoring returns damage curves (no per-channel function): also accepted by name.
CURVE_CRITERION_NAMES = ("tbaa_curves",)
#: The built-in criteria's names (``criterion_names()`` adds the registered ones).
CRITERION_NAMES = (*_CRITERION_FUNCTIONS, *CURVE_CRITERION_NAMES)

install_lazy_attributes(__name__, {**_MODULES, "CRITERIA": "tfmot_easiedge.importance._registry"})

if TYPE_CHECKING:  # the lazy names above, for type checkers and IDEs (tests/test_lint.py checks the two agree)
    from tfmot_easiedge.importance.baselines import bn_scale, l1_norm, l2_norm, random, taylor_fo
    from tfmot_easiedge.importance.blocks import BlockTBAAScorer, block_exact_ig, block_tbaa
    from tfmot_easiedge.importance.damage import DamageCurve, damage_curves, measure_curves
    from tfmot_easiedge.importance.exact_ig import exact_ig
    from tfmot_easiedge.importance.group_norm import group_l2
    from tfmot_easiedge.importance.tbaa import TBAAScorer, tbaa

    CRITERIA: dict[str, Callable[..., Any]]  # importance._registry imports this module: declared, not imported


def get(name: str) -> Callable[..., Any]:
    """The scoring function of the criterion called ``name`` (a built-in or a registered one).

    Raises:
        ValueError: an unknown name.

    Example:
        >>> from tfmot_easiedge import importance
        >>> importance.get("l1").__name__
        'l1_norm'
    """
    criterion = as_criterion(name)
    if name in _CRITERION_FUNCTIONS:
        assert isinstance(criterion, _Builtin)  # the built-in names are built-in criteria
        return criterion.function()
    return criterion.score


__all__ = ["BNScale", "BlockTBAAScorer", "CRITERIA", "CRITERION_NAMES", "CURVE_CRITERION_NAMES", "Criterion",
           "DamageCurve", "ExactIG", "FunctionCriterion", "GroupL2", "Norm", "Random", "TBAA", "TBAACurves",
           "TBAAScorer", "TaylorFO", "as_criterion", "block_exact_ig", "block_tbaa", "bn_scale", "criterion_names",
           "damage_curves", "exact_ig", "get", "group_l2", "l1_norm", "l2_norm", "measure_curves", "random",
           "register_criterion", "taylor_fo", "tbaa"]
