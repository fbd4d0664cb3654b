"""Channel importance criteria, one interface: ``criterion(model, data=None, *, analysis=None, ...)``.

Each returns a score table ``{group_id: np.ndarray}`` with one score per channel of every prunable
group (higher = more important). ``tbaa`` (the EasiEdge estimator) and ``exact_ig`` are in nats of
output information; the baselines are in their own units.

The criteria (and Keras with them) are imported on first use; ``CRITERION_NAMES`` needs no import.
"""
import importlib

from tfmot_easiedge._lazy import install_lazy_attributes

_MODULES = {"tbaa": "tfmot_easiedge.importance.tbaa", "TBAAScorer": "tfmot_easiedge.importance.tbaa",
            "exact_ig": "tfmot_easiedge.importance.exact_ig",
            **dict.fromkeys(["bn_scale", "l1_norm", "l2_norm", "random", "taylor_fo"],
                            "tfmot_easiedge.importance.baselines")}
#: ``{criterion name: function name}``: what ``get`` and ``CRITERIA`` offer, by the names the CLI accepts.
_CRITERION_FUNCTIONS = {"tbaa": "tbaa", "exact_ig": "exact_ig", "l1": "l1_norm", "l2": "l2_norm",
                        "bn_scale": "bn_scale", "taylor_fo": "taylor_fo", "random": "random"}
CRITERION_NAMES = tuple(_CRITERION_FUNCTIONS)

install_lazy_attributes(__name__, {**_MODULES, "CRITERIA": "tfmot_easiedge.importance._registry"})


def _function(name: str):
    return getattr(importlib.import_module(_MODULES[name]), name)


def get(name: str):
    """The criterion called ``name`` (one of ``CRITERION_NAMES``)."""
    if name not in _CRITERION_FUNCTIONS:
        raise ValueError(f"unknown importance criterion {name!r}; choose one of {sorted(CRITERION_NAMES)}")
    return _function(_CRITERION_FUNCTIONS[name])


__all__ = ["CRITERIA", "CRITERION_NAMES", "TBAAScorer", "bn_scale", "exact_ig", "get", "l1_norm", "l2_norm", "random",
           "taylor_fo", "tbaa"]
