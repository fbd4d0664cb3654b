"""The rules of Keras's own layers and operations, registered once when ``graph.rules`` is imported."""
from __future__ import annotations

import keras

from tfmot_easiedge import _keras_compat as kc
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
from tfmot_easiedge.graph.rules.passthrough import GlobalPoolRule, PassThroughRule
from tfmot_easiedge.graph.rules.registry import register_rule
from tfmot_easiedge.graph.rules.reshape import FlattenRule, PermuteRule, ReshapeRule

__all__ = ["register_builtin_rules"]

#: Keras layers (by name; the ones a Keras release lacks are skipped) whose channels pass straight through.
PASS_THROUGH_LAYERS = (
    "Activation", "ReLU", "LeakyReLU", "ELU", "Dropout", "SpatialDropout1D", "SpatialDropout2D",
    "SpatialDropout3D", "GaussianDropout", "GaussianNoise", "AlphaDropout", "ActivityRegularization",
    "Identity", "Masking", "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D",
    "AveragePooling2D", "AveragePooling3D", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D",
    "Cropping1D", "Cropping2D", "Cropping3D", "UpSampling1D", "UpSampling2D", "UpSampling3D",
    "RepeatVector", "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D", "AutoContrast", "Resizing",
    "CenterCrop", "RandomFlip", "RandomCrop", "RandomRotation", "RandomZoom", "RandomTranslation",
    "RandomContrast", "RandomBrightness")
#: Element-wise ``keras.ops`` operations (numpy-like, then nn) that functional code records as graph nodes.
ELEMENTWISE_NUMPY_OPS = ["Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Maximum", "Minimum",
                         "Negative", "Abs", "Square", "Sqrt", "Exp", "Tanh"]
ELEMENTWISE_NN_OPS = ["Relu", "Relu6", "Sigmoid", "HardSigmoid", "HardSilu", "Silu", "Gelu", "Softplus",
                      "LeakyRelu", "Elu", "Selu"]


def register_builtin_rules() -> None:
    """Registers the rules of Keras's layers, element-wise operations and ``keras.applications`` helpers."""
    L = keras.layers
    conv = ConvRule()
    for cls in (L.Conv1D, L.Conv2D, L.Conv3D, L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose):
        register_rule(cls, conv)
    register_rule(L.Dense, DenseRule())
    for cls in (L.DepthwiseConv1D, L.DepthwiseConv2D):
        register_rule(cls, DepthwiseRule())
    for cls in (L.SeparableConv1D, L.SeparableConv2D):
        register_rule(cls, SeparableRule())
    register_rule(L.BatchNormalization, BatchNormRule())
    register_rule(L.LayerNormalization, LayerNormRule())
    register_rule(L.GroupNormalization, GroupNormRule())
    per_channel = PerChannelRule()
    for cls in (L.PReLU, L.Normalization):
        register_rule(cls, per_channel)
    register_rule(L.Rescaling, RescalingRule())
    passthrough = PassThroughRule()
    for name in PASS_THROUGH_LAYERS:
        cls = getattr(L, name, None)
        if cls is not None:
            register_rule(cls, GlobalPoolRule() if name.startswith("Global") else passthrough)
    register_rule(L.Softmax, PassThroughRule(approximate="softmax over the channel axis"))
    # a softmax over the channels (as an Activation layer or any layer's activation=) is marked
    # approximate by the analysis itself, for every rule (graph.analysis._mark_fused_softmax)
    register_rule(L.Activation, PassThroughRule(), override=True)
    merge = MergeRule()
    for cls in (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum):
        register_rule(cls, merge)
    register_rule(L.Concatenate, ConcatenateRule())
    register_rule(L.Flatten, FlattenRule())
    register_rule(L.Reshape, ReshapeRule())
    register_rule(L.Permute, PermuteRule())
    elementwise = ElementwiseOpRule()
    for cls in kc.elementwise_op_classes(ELEMENTWISE_NUMPY_OPS, ELEMENTWISE_NN_OPS):
        register_rule(cls, elementwise)
    helpers = kc.application_helper_layers()
    for name, rule in (("LayerScale", LayerScaleRule()), ("StochasticDepth", PassThroughRule()),
                       ("CustomScaleLayer", MergeRule())):
        if name in helpers:
            register_rule(helpers[name], rule)
