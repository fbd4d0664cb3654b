"""Keras model -> graph -> coupled channel groups; the per-layer channel rules and their registry."""
from tfmot_easiedge.graph.analysis import ChannelGroup, ModelAnalysis, Stop, analyze
from tfmot_easiedge.graph.blocks import ResidualBlock, bypass_map, find_blocks
from tfmot_easiedge.graph.channels import ChannelCoupling, ChannelMap
from tfmot_easiedge.graph.model_graph import GraphError, GraphNode, GraphTensor, ModelGraph
from tfmot_easiedge.graph.rules import ChannelRule, StopAnalysis, find_rule, register_rule, unregister_rule

__all__ = ["ChannelCoupling", "ChannelGroup", "ChannelMap", "ChannelRule", "GraphError", "GraphNode",
           "GraphTensor", "ModelAnalysis", "ModelGraph", "ResidualBlock", "Stop", "StopAnalysis", "analyze",
           "bypass_map", "find_blocks", "find_rule", "register_rule", "unregister_rule"]
