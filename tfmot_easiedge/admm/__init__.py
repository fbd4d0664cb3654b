"""ADMM global filter pruning inside ``model.fit``: wrap, add a callback, fit, strip."""
from tfmot_easiedge.admm.divergence import StopOnNonFiniteLoss, TrainingDivergedError
from tfmot_easiedge.admm.finetune import MaskedFineTune
from tfmot_easiedge.admm.oneshot import OneShot
from tfmot_easiedge.admm.pipeline import EasiEdge, EasiEdgeResult, top1_accuracy
from tfmot_easiedge.admm.prune import hard_prune, prune_filters, strip_pruning
from tfmot_easiedge.admm.update import ADMMUpdate
from tfmot_easiedge.admm.wrapper import ADMMWrapper, find_wrappers

__all__ = ["ADMMUpdate", "ADMMWrapper", "EasiEdge", "EasiEdgeResult", "top1_accuracy", "MaskedFineTune", "OneShot",
           "find_wrappers", "hard_prune", "prune_filters", "strip_pruning", "StopOnNonFiniteLoss",
           "TrainingDivergedError"]
