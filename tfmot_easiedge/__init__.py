"""tfmot-easiedge: global filter pruning (EasiEdge) for Keras 3 CNNs.

The flow: ``analyze`` a model into channel groups, score channels, ``select`` a ``PruningPlan`` under a
budget, then ``slim`` the model (or prune while training with ADMM) and export it.

``import tfmot_easiedge`` imports neither Keras nor TensorFlow: every public name is loaded the first time
it is used (PEP 562), so ``easiedge --help`` and the TFLite-only tools start fast.
"""
from tfmot_easiedge._lazy import install_lazy_attributes
from tfmot_easiedge._tf_check import require_tensorflow
from tfmot_easiedge._version import __version__

_NAMES = {
    **dict.fromkeys(["ChannelGroup", "ChannelRule", "GraphError", "ModelAnalysis", "Stop", "analyze", "register_rule"],
                    "tfmot_easiedge.graph"),
    **dict.fromkeys(["count_macs", "count_params", "layer_macs"], "tfmot_easiedge.metrics"),
    "PruningPlan": "tfmot_easiedge.plan",
    **dict.fromkeys(["masked_copy", "recalibrate_batchnorm", "slim"], "tfmot_easiedge.rewrite"),
    **dict.fromkeys(["Budget", "FilterBudget", "MacsBudget", "ParamsBudget", "as_budget", "parse_budget",
                     "register_budget", "select"], "tfmot_easiedge.selection"),
    **dict.fromkeys(["Criterion", "as_criterion", "register_criterion"], "tfmot_easiedge.importance"),
    **dict.fromkeys(["LatencyResult", "measure_latency"], "tfmot_easiedge.metrics.latency"),
    **dict.fromkeys(["ADMMUpdate", "EasiEdge", "EasiEdgeResult", "MaskedFineTune", "hard_prune", "prune_filters",
                     "strip_pruning"], "tfmot_easiedge.admm"),
    "OneShot": "tfmot_easiedge.admm.oneshot",
}
_SUBPACKAGES = ("data", "export", "importance", "report")

# The first public name used checks for a usable TensorFlow and says in one line what to install if there is none.
install_lazy_attributes(__name__, _NAMES, _SUBPACKAGES, before_import=require_tensorflow)

__all__ = sorted([*_NAMES, *_SUBPACKAGES, "__version__"])
