"""Per-layer channel rules and their registry, one module per layer family.

A rule tells, for one layer class, how channel maps flow from the layer's inputs to its outputs
(``propagate``), how to build the layer again with only the kept channels (``slim``) and, for layers
whose input weights read channels (convolutions, Dense), how to cut a channel at the input while keeping
the architecture (``mask_inputs``). Rules are looked up along the class hierarchy, so a subclass of
``Conv2D`` is handled as a ``Conv2D``; a layer with no rule is a *stop*.

Modules: ``base`` (``ChannelRule``, ``StopAnalysis``, helpers), ``registry`` (``register_rule``,
``find_rule``), ``passthrough`` (activations, pooling...), ``norm`` (BatchNorm, LayerNorm, PReLU...),
``merge`` (Add, Concatenate, element-wise ops), ``reshape`` (Reshape, Flatten, Permute), ``conv``
(convolutions, Dense, depthwise, separable) and ``builtins`` (Keras's layers registered on import).

Register a rule for your own layer:

>>> import keras
>>> from tfmot_easiedge.graph import rules
>>> class MyGate(keras.layers.Layer):
...     def call(self, x):
...         return x * 2.0
>>> rules.register_rule(MyGate, rules.PassThroughRule())
>>> isinstance(rules.find_rule(MyGate()), rules.PassThroughRule)
True
>>> rules.unregister_rule(MyGate)
"""
from tfmot_easiedge.graph.rules.base import ChannelRule, StopAnalysis
from tfmot_easiedge.graph.rules.builtins import register_builtin_rules
from tfmot_easiedge.graph.rules.conv import ConvRule, DenseRule, DepthwiseRule, SeparableRule
from tfmot_easiedge.graph.rules.merge import ConcatenateRule, ElementwiseOpRule, MergeRule
from tfmot_easiedge.graph.rules.norm import (
    BatchNormRule,
    GroupNormRule,
    LayerNormRule,
    LayerScaleRule,
    PerChannelRule,
    RescalingRule,
)
from tfmot_easiedge.graph.rules.passthrough import GlobalPoolRule, InputLayerRule, PassThroughRule
from tfmot_easiedge.graph.rules.registry import find_rule, register_rule, unregister_rule
from tfmot_easiedge.graph.rules.reshape import FlattenRule, PermuteRule, ReshapeRule

__all__ = ["BatchNormRule", "ChannelRule", "ConcatenateRule", "ConvRule", "DenseRule", "DepthwiseRule",
           "ElementwiseOpRule", "FlattenRule", "GlobalPoolRule", "GroupNormRule", "InputLayerRule",
           "LayerNormRule", "LayerScaleRule", "MergeRule", "PassThroughRule", "PerChannelRule", "PermuteRule",
           "RescalingRule", "ReshapeRule", "SeparableRule", "StopAnalysis", "find_rule", "register_rule",
           "unregister_rule"]

register_builtin_rules()
