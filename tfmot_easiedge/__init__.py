"""tfmot-easiedge: global filter pruning (EasiEdge) for Keras 3 CNNs.

The flow: ``analyze`` a model into channel groups, score channels, ``select`` a ``PruningPlan`` under a
budget, then ``slim`` the model (or prune while training with ADMM) and export it.

``import tfmot_easiedge`` imports neither Keras nor TensorFlow: every public name is loaded the first time
it is used (PEP 562), so ``easiedge --help`` and the TFLite-only tools start fast.
"""
from typing import TYPE_CHECKING

from tfmot_easiedge._lazy import install_lazy_attributes
from tfmot_easiedge._tf_check import require_tensorflow
from tfmot_easiedge._version import __version__

_NAMES = {
    **dict.fromkeys(["ChannelGroup", "ChannelRule", "GraphError", "ModelAnalysis", "ResidualBlock", "Stop", "analyze",
                     "register_rule"], "tfmot_easiedge.graph"),
    **dict.fromkeys(["count_macs", "count_params", "layer_macs"], "tfmot_easiedge.metrics"),
    "PruningPlan": "tfmot_easiedge.plan",
    **dict.fromkeys(["masked_copy", "recalibrate_batchnorm", "slim"], "tfmot_easiedge.rewrite"),
    **dict.fromkeys(["Budget", "FilterBudget", "MacsBudget", "ParamsBudget", "as_budget", "parse_budget",
                     "register_budget", "select"], "tfmot_easiedge.selection"),
    **dict.fromkeys(["Criterion", "as_criterion", "register_criterion"], "tfmot_easiedge.importance"),
    **dict.fromkeys(["LatencyResult", "measure_latency"], "tfmot_easiedge.latency.measure"),
    **dict.fromkeys(["LatencyBudget", "LatencyTable", "profile_latency"], "tfmot_easiedge.latency"),
    **dict.fromkeys(["ADMMUpdate", "EasiEdge", "EasiEdgeResult", "MaskedFineTune", "hard_prune", "prune_filters",
                     "strip_pruning"], "tfmot_easiedge.admm"),
    "OneShot": "tfmot_easiedge.admm.oneshot",
    "qat": "tfmot_easiedge.quantize.qat",
}
_SUBPACKAGES = ("data", "export", "importance", "latency", "quantize", "report")

# The names of _NAMES and _SUBPACKAGES for type checkers and IDEs (tests/test_lint.py checks the two agree);
# imported only by a type checker, hence F401.
if TYPE_CHECKING:
    from tfmot_easiedge import data, export, importance, latency, quantize, report  # noqa: F401
    from tfmot_easiedge.admm import (  # noqa: F401
        ADMMUpdate,
        EasiEdge,
        EasiEdgeResult,
        MaskedFineTune,
        hard_prune,
        prune_filters,
        strip_pruning,
    )
    from tfmot_easiedge.admm.oneshot import OneShot  # noqa: F401
    from tfmot_easiedge.graph import (  # noqa: F401
        ChannelGroup,
        ChannelRule,
        GraphError,
        ModelAnalysis,
        ResidualBlock,
        Stop,
        analyze,
        register_rule,
    )
    from tfmot_easiedge.importance import Criterion, as_criterion, register_criterion  # noqa: F401
    from tfmot_easiedge.latency import LatencyBudget, LatencyTable, profile_latency  # noqa: F401
    from tfmot_easiedge.latency.measure import LatencyResult, measure_latency  # noqa: F401
    from tfmot_easiedge.metrics import count_macs, count_params, layer_macs  # noqa: F401
    from tfmot_easiedge.plan import PruningPlan  # noqa: F401
    from tfmot_easiedge.quantize.qat import qat  # noqa: F401
    from tfmot_easiedge.rewrite.batchnorm import recalibrate_batchnorm  # noqa: F401
    from tfmot_easiedge.rewrite.slim import masked_copy, slim  # noqa: F401
    from tfmot_easiedge.selection import (  # noqa: F401
        Budget,
        FilterBudget,
        MacsBudget,
        ParamsBudget,
        as_budget,
        parse_budget,
        register_budget,
        select,
    )

# The first public name used checks for a usable TensorFlow and says in one line what to install if there is none.
install_lazy_attributes(__name__, _NAMES, _SUBPACKAGES, before_import=require_tensorflow)

__all__ = ["__version__"]
__all__ = sorted([*__all__, *_NAMES, *_SUBPACKAGES])
