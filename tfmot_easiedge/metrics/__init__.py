"""Counting (MACs, parameters) and latency measurement."""
from tfmot_easiedge.metrics.counting import count_macs, count_params, layer_macs, node_macs

__all__ = ["count_macs", "count_params", "layer_macs", "node_macs"]
