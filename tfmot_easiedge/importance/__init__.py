"""Channel importance criteria, one interface: ``criterion(model, data=None, *, analysis=None, ...)``.

Each returns a score table ``{group_id: np.ndarray}`` with one score per channel of every prunable
group (higher = more important). ``tbaa`` (the EasiEdge estimator) and ``exact_ig`` are in nats of
output information; the baselines are in their own units.
"""
from tfmot_easiedge.importance.baselines import bn_scale, l1_norm, l2_norm, random, taylor_fo
from tfmot_easiedge.importance.exact_ig import exact_ig
from tfmot_easiedge.importance.tbaa import TBAAScorer, tbaa

CRITERIA = {"tbaa": tbaa, "exact_ig": exact_ig, "l1": l1_norm, "l2": l2_norm, "bn_scale": bn_scale,
            "taylor_fo": taylor_fo, "random": random}


def get(name: str):
    """The criterion called ``name`` (one of ``CRITERIA``)."""
    try:
        return CRITERIA[name]
    except KeyError:
        raise ValueError(f"unknown importance criterion {name!r}; choose one of {sorted(CRITERIA)}") from None


__all__ = ["CRITERIA", "TBAAScorer", "bn_scale", "exact_ig", "get", "l1_norm", "l2_norm", "random", "taylor_fo", "tbaa"]
