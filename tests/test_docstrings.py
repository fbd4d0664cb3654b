"""The runnable examples in the public modules' docstrings run and print what they show."""
from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "tfmot_easiedge.plan", "tfmot_easiedge.selection", "tfmot_easiedge.graph.rules", "tfmot_easiedge.graph.analysis",
    "tfmot_easiedge.rewrite.slim", "tfmot_easiedge.rewrite.clone", "tfmot_easiedge.rewrite.batchnorm",
    "tfmot_easiedge.importance.tbaa", "tfmot_easiedge.metrics.latency",
    "tfmot_easiedge.admm.prune", "tfmot_easiedge.admm.update", "tfmot_easiedge.admm.pipeline",
    "tfmot_easiedge.selection.budgets", "tfmot_easiedge.selection.cost", "tfmot_easiedge.selection.allocate",
    "tfmot_easiedge.importance", "tfmot_easiedge.importance.criterion", "tfmot_easiedge.admm.oneshot",
    "tfmot_easiedge.selection.protect", "tfmot_easiedge._network", "benchmarks.common", "benchmarks.qat",
    "benchmarks.blocks_latency", "benchmarks.equal_latency",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
