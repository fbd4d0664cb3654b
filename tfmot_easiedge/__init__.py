"""tfmot-easiedge: global filter pruning (EasiEdge) for Keras 3 CNNs.

The flow: ``analyze`` a model into channel groups, score channels, ``select`` a ``PruningPlan`` under a
budget, then ``slim`` the model (or prune while training with ADMM) and export it.
"""
from tfmot_easiedge._version import __version__
from tfmot_easiedge.graph import (ChannelGroup, ChannelRule, GraphError, ModelAnalysis, Stop, analyze,
                                  register_rule)
from tfmot_easiedge.metrics import count_macs, count_params, layer_macs
from tfmot_easiedge.plan import PruningPlan
from tfmot_easiedge.rewrite import masked_copy, recalibrate_batchnorm, slim
from tfmot_easiedge.selection import FilterBudget, MacsBudget, parse_budget, select
from tfmot_easiedge import data, export, importance, report  # noqa: E402  (subpackages, exposed by name)
from tfmot_easiedge.metrics.latency import LatencyResult, measure_latency
from tfmot_easiedge.admm import (ADMMUpdate, EasiEdge, EasiEdgeResult, MaskedFineTune, hard_prune, prune_filters,
                                 strip_pruning)

__all__ = ["data", "report", "ADMMUpdate", "EasiEdge", "EasiEdgeResult", "MaskedFineTune", "hard_prune", "prune_filters",
           "strip_pruning", "recalibrate_batchnorm", "LatencyResult", "export", "measure_latency", "FilterBudget", "MacsBudget", "importance", "parse_budget", "select", "ChannelGroup", "ChannelRule", "GraphError", "ModelAnalysis", "PruningPlan", "Stop", "__version__",
           "analyze", "count_macs", "count_params", "layer_macs", "masked_copy", "register_rule", "slim"]
