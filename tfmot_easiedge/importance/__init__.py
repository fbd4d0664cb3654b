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
from tfmot_easiedge._lazy import install_lazy_attributes
from tfmot_easiedge.importance.criterion import (TBAA, BNScale, Criterion, ExactIG, FunctionCriterion, Norm, Random,
                                                 TaylorFO, as_criterion, criterion_names, register_criterion)

_MODULES = {"tbaa": "tfmot_easiedge.importance.tbaa", "TBAAScorer": "tfmot_easiedge.importance.tbaa",
            "exact_ig": "tfmot_easiedge.importance.exact_ig",
            **dict.fromkeys(["bn_scale", "l1_norm", "l2_norm", "random", "taylor_fo"],
                            "tfmot_easiedge.importance.baselines")}
#: ``{criterion name: function name}``: what ``get`` and ``CRITERIA`` offer, by the names the CLI accepts.
_CRITERION_FUNCTIONS = {"tbaa": "tbaa", "exact_ig": "exact_ig", "l1": "l1_norm", "l2": "l2_norm",
                        "bn_scale": "bn_scale", "taylor_fo": "taylor_fo", "random": "random"}
#: The built-in criteria's names (``criterion_names()`` adds the registered ones).
CRITERION_NAMES = tuple(_CRITERION_FUNCTIONS)

install_lazy_attributes(__name__, {**_MODULES, "CRITERIA": "tfmot_easiedge.importance._registry"})


def get(name: str):
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
        return criterion.function()
    return criterion.score


__all__ = ["BNScale", "CRITERIA", "CRITERION_NAMES", "Criterion", "ExactIG", "FunctionCriterion", "Norm", "Random",
           "TBAA", "TBAAScorer", "TaylorFO", "as_criterion", "bn_scale", "criterion_names", "exact_ig", "get",
           "l1_norm", "l2_norm", "random", "register_criterion", "taylor_fo", "tbaa"]
