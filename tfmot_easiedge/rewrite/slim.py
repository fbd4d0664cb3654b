"""``slim`` and ``masked_copy``: rebuild a model from its graph (``rewrite.clone``) with per-layer weight surgery."""
from __future__ import annotations

import keras

from tfmot_easiedge.graph.analysis import ModelAnalysis, analyze
from tfmot_easiedge.graph.model_graph import GraphNode
from tfmot_easiedge.plan import PruningPlan
from tfmot_easiedge.rewrite.blocks import branch_zeroing, plan_blocks, plan_bypass, zero_named
from tfmot_easiedge.rewrite.clone import clone_config, clone_config_or_reuse, copy_weights, io_structure, rebuild

__all__ = ["io_structure", "masked_copy", "slim"]


def slim(model: keras.Model, plan: PruningPlan, *, analysis: ModelAnalysis | None = None) -> keras.Model:
    """Returns a new model with the plan's removed channels physically gone; ``model`` is untouched.

    Kernels, biases, BatchNorm statistics, depthwise kernels and the Dense rows after a Flatten are
    sliced to the kept channels. The branches of the plan's ``removed_blocks`` are left out: each such
    ``Add(x, f(x))`` becomes ``x`` (its consumers read the shortcut). Nested models are inlined into one
    functional model. It is called like ``model``: the same input structure (e.g. a dict of named inputs)
    and output structure (a tensor, a list or a dict of outputs).

    Example:
        >>> import keras, numpy as np
        >>> from tfmot_easiedge import analyze, PruningPlan
        >>> x = keras.Input((8, 8, 3))
        >>> h = keras.layers.Conv2D(6, 3, name="c1")(x)
        >>> m = keras.Model(x, keras.layers.Dense(2)(keras.layers.Flatten()(h)))
        >>> small = slim(m, PruningPlan({"c1": [0, 3]}, {"c1": 6}))
        >>> small.get_layer("c1").filters
        2

        A residual block removed along with channels:

        >>> from tfmot_easiedge.models import zoo
        >>> net = zoo.resnet20(width=0.25, seed=0)
        >>> plan = PruningPlan({"stem_conv": [0, 1, 2]}, {"stem_conv": 4}, removed_blocks=("stage1_block2_add",))
        >>> small = slim(net, plan)
        >>> len(net.layers) - len(small.layers)   # 5 branch layers and the Add
        6
    """
    analysis = analysis if analysis is not None else analyze(model)
    plan.validate(analysis)

    def make(node: GraphNode, rule, in_keep, out_keep):
        layer = node.layer
        cut = any(k is not None and not k.all() for k in [*in_keep, *out_keep])
        if rule is None or not cut or not isinstance(layer, keras.layers.Layer):
            return clone_config_or_reuse(layer), copy_weights(layer)
        return rule.slim(layer, in_keep, out_keep)

    return rebuild(model, analysis, make, plan=plan, suffix="_slim", bypass=plan_bypass(analysis, plan))


def masked_copy(model: keras.Model, plan: PruningPlan, *, analysis: ModelAnalysis | None = None) -> keras.Model:
    """Returns a same-architecture copy where each removed channel is cut at its consumers.

    The input weights that read a removed channel (convolution and Dense kernels) are zeroed, which
    is exactly what removing the channel does; it is the reference ``slim`` must match. A removed residual
    block's branch is silenced: the weights of its last layer are zeroed so that it outputs zero
    (:mod:`~tfmot_easiedge.rewrite.blocks`).

    Raises:
        ValueError: an invalid plan, or a removed block whose branch cannot be zeroed with weights.
    """
    analysis = analysis if analysis is not None else analyze(model)
    plan.validate(analysis)
    zeroed = branch_zeroing(analysis, plan_blocks(analysis, plan))

    def make(node: GraphNode, rule, in_keep, out_keep):
        layer = node.layer
        if rule is not None and rule.consumes_inputs and any(k is not None and not k.all() for k in in_keep):
            config, weights = clone_config(layer), rule.mask_inputs(layer, in_keep)
        else:
            config, weights = clone_config_or_reuse(layer), copy_weights(layer)
        if node.index in zeroed:
            weights = zero_named(layer, weights, zeroed[node.index])
        return config, weights

    return rebuild(model, analysis, make, plan=plan, suffix="_masked")
