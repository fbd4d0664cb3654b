"""The edge toolkit's latency tools: timing on runtimes, latency tables, latency budgets, the device profiler.

- :mod:`~tfmot_easiedge.latency.measure`: ``measure_latency`` of a Keras model or a ``.tflite``/``.onnx``
  file (moved here from ``metrics.latency``, which stays an alias);
- :mod:`~tfmot_easiedge.latency.table`: ``LatencyTable``, measured segment latencies at a grid of widths and
  their predictions (no TensorFlow);
- :mod:`~tfmot_easiedge.latency.profile`: ``profile_latency`` and ``write_profile`` (the segment models);
- :mod:`~tfmot_easiedge.latency.runner`: ``run_profile``, timing a profile directory with only the runtime;
- :mod:`~tfmot_easiedge.latency.budget`: ``LatencyBudget`` and its cost model ``LatencyCost``.

Every name loads on first use (PEP 562): ``import tfmot_easiedge.latency`` imports neither Keras nor
TensorFlow, so the device-side profiler can use this package with LiteRT alone.

Example:
    >>> import tfmot_easiedge.latency as lat
    >>> lat.LatencyTable.from_dict(lat.table.example_table()).runtime
    'tflite'
"""
from typing import TYPE_CHECKING

from tfmot_easiedge._lazy import install_lazy_attributes

_LAZY = {
    **dict.fromkeys(["LatencyResult", "RUNTIMES", "measure_latency"], "tfmot_easiedge.latency.measure"),
    **dict.fromkeys(["LatencyTable", "TABLE_VERSION"], "tfmot_easiedge.latency.table"),
    **dict.fromkeys(["profile_latency", "write_profile"], "tfmot_easiedge.latency.profile"),
    "run_profile": "tfmot_easiedge.latency.runner",
    **dict.fromkeys(["LatencyBudget", "LatencyCost"], "tfmot_easiedge.latency.budget"),
}
install_lazy_attributes(__name__, _LAZY, ["budget", "measure", "profile", "runner", "segments", "table"])

if TYPE_CHECKING:  # the names of _LAZY, for type checkers and IDEs (tests/test_lint.py checks the two agree)
    from tfmot_easiedge.latency.budget import LatencyBudget, LatencyCost  # noqa: F401
    from tfmot_easiedge.latency.measure import RUNTIMES, LatencyResult, measure_latency  # noqa: F401
    from tfmot_easiedge.latency.profile import profile_latency, write_profile  # noqa: F401
    from tfmot_easiedge.latency.runner import run_profile  # noqa: F401
    from tfmot_easiedge.latency.table import TABLE_VERSION, LatencyTable  # noqa: F401

__all__ = sorted(_LAZY)
