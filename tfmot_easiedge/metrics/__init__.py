"""Counting (MACs, parameters) and latency measurement.

Loaded on first use (PEP 562): counting needs Keras, timing an exported file needs only its runtime
(``metrics.latency`` on a device with LiteRT and no TensorFlow).
"""
from typing import TYPE_CHECKING

from tfmot_easiedge._lazy import install_lazy_attributes

if TYPE_CHECKING:  # the lazy names below, for type checkers and IDEs (tests/test_lint.py checks the two agree)
    from tfmot_easiedge.metrics.counting import count_macs, count_params, layer_macs, node_macs

install_lazy_attributes(__name__, dict.fromkeys(["count_macs", "count_params", "layer_macs", "node_macs"],
                                                "tfmot_easiedge.metrics.counting"), [])

__all__ = ["count_macs", "count_params", "layer_macs", "node_macs"]
