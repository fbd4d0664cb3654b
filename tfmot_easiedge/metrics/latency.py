"""The old home of :mod:`tfmot_easiedge.latency.measure` (timing on runtimes), kept as an alias.

Timing a Keras model on TFLite or ONNX Runtime exports it first, which is edge-toolkit work: the module moved
to the edge-tier package :mod:`tfmot_easiedge.latency`. Its public names still resolve here, loaded on first
use (PEP 562), so this core module imports nothing of the edge toolkit itself.

Example:
    >>> from tfmot_easiedge.metrics.latency import LatencyResult
    >>> from tfmot_easiedge.latency import measure
    >>> LatencyResult is measure.LatencyResult
    True
"""
from __future__ import annotations

import importlib
from typing import Any

#: The public names of :mod:`tfmot_easiedge.latency.measure` this alias serves.
ALIASED = ("LatencyResult", "RUNTIMES", "measure_latency")


def __getattr__(name: str) -> Any:
    # a module path, not an import statement: the alias adds no core -> edge edge (docs/architecture.md)
    if name in ALIASED:
        return getattr(importlib.import_module("tfmot_easiedge.latency.measure"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
