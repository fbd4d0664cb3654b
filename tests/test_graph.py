"""Tests of the channel bookkeeping (NumPy only) and of ``analyze`` on small hand-built models."""
from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers as L

import tfmot_easiedge as te
from tfmot_easiedge.graph import (
    ChannelCoupling,
    ChannelMap,
    GraphError,
    ModelGraph,
    find_rule,
    register_rule,
    rules,
    unregister_rule,
)

from models import BUILDERS, build


@pytest.fixture(scope="module")
def analyses():
    """``{builder name: (model, analysis)}``, built lazily once per module."""
    cache = {}

    def get(name):
        if name not in cache:
            model = build(name)
            cache[name] = (model, te.analyze(model))
        return cache[name]

    return get


def _space_ids(m: ChannelMap) -> list[int]:
    return m.space.tolist()


# ============================================================================ ChannelMap (NumPy only)
class TestChannelMap:
    def test_of_space_numbers_channels_in_order(self):
        m = ChannelMap.of_space(7, 4)
        assert len(m) == 4
        assert _space_ids(m) == [7, 7, 7, 7]
        assert m.index.tolist() == [0, 1, 2, 3]
        assert m.spaces() == {7}

    def test_concat_puts_each_input_at_its_offset(self):
        a, b, c = ChannelMap.of_space(0, 3), ChannelMap.of_space(1, 2), ChannelMap.of_space(2, 4)
        m = ChannelMap.concat([a, b, c])
        assert _space_ids(m) == [0, 0, 0, 1, 1, 2, 2, 2, 2]
        assert m.index.tolist() == [0, 1, 2, 0, 1, 0, 1, 2, 3]
        assert m.spaces() == {0, 1, 2}

    def test_concat_of_the_same_map_twice_repeats_channels(self):
        a = ChannelMap.of_space(0, 3)
        m = ChannelMap.concat([a, a])
        assert m.index.tolist() == [0, 1, 2, 0, 1, 2]

    def test_tile_matches_a_channels_last_flatten(self):
        # A (H=2, W=3, C=4) tensor flattened in row-major order: position p holds channel p % C.
        c = 4
        m = ChannelMap.of_space(5, c).tile(2 * 3)
        assert len(m) == 24
        flat = np.arange(2 * 3 * c).reshape(2, 3, c) % c
        assert m.index.tolist() == flat.reshape(-1).tolist()
        assert m.spaces() == {5}

    def test_tile_of_a_concat_keeps_the_concat_order_inside_each_position(self):
        m = ChannelMap.concat([ChannelMap.of_space(0, 2), ChannelMap.of_space(1, 1)]).tile(2)
        assert list(zip(_space_ids(m), m.index.tolist())) == [(0, 0), (0, 1), (1, 0), (0, 0), (0, 1), (1, 0)]

    def test_repeat_is_a_depthwise_multiplier(self):
        # DepthwiseConv2D(depth_multiplier=2): output channel c*2 + j comes from input channel c.
        m = ChannelMap.of_space(0, 3).repeat(2)
        assert m.index.tolist() == [0, 0, 1, 1, 2, 2]
        assert m.index.tolist() == [k // 2 for k in range(6)]

    def test_mismatched_arrays_are_refused(self):
        with pytest.raises(ValueError, match="same length"):
            ChannelMap(np.zeros(3, np.int64), np.zeros(2, np.int64))
        with pytest.raises(ValueError):
            ChannelMap(np.zeros((2, 2), np.int64), np.zeros((2, 2), np.int64))


# ============================================================================ ChannelCoupling (NumPy only)
class TestChannelCoupling:
    def test_new_spaces_are_separate_groups(self):
        cc = ChannelCoupling()
        a = cc.new_space(4, None, 0, "filters")
        b = cc.new_space(3, None, 0, "filters")
        assert _space_ids(a) == [0] * 4 and _space_ids(b) == [1] * 3
        comps = cc.components()
        assert [sids for sids, _ in comps] == [[0], [1]]
        assert [len(roots) for _, roots in comps] == [4, 3]

    def test_couple_unites_position_by_position(self):
        cc = ChannelCoupling()
        a, b = cc.new_space(4, None, 0, "filters"), cc.new_space(4, None, 0, "filters")
        cc.couple(a, b)  # an Add of two 4-channel tensors
        for i in range(4):
            assert cc.find(cc.key(0, i)) == cc.find(cc.key(1, i))
        assert cc.find(cc.key(0, 0)) != cc.find(cc.key(0, 1))
        (sids, roots), = cc.components()
        assert sids == [0, 1] and len(roots) == 4

    def test_couple_is_transitive_across_a_residual_chain(self):
        cc = ChannelCoupling()
        stem, r1, r2 = (cc.new_space(3, None, 0, "filters") for _ in range(3))
        cc.couple(stem, r1)
        cc.couple(r1, r2)
        assert cc.find(cc.key(0, 2)) == cc.find(cc.key(2, 2))
        assert len(cc.components()) == 1

    def test_couple_of_different_lengths_raises(self):
        cc = ChannelCoupling()
        with pytest.raises(ValueError, match="cannot couple 4 channels with 3"):
            cc.couple(cc.new_space(4, None, 0, "filters"), cc.new_space(3, None, 0, "filters"))

    def test_a_concat_added_to_one_space_joins_all_three(self):
        # Add(Concatenate([a(2), b(3)]), c(5)): c's first 2 channels are a's, its last 3 are b's.
        cc = ChannelCoupling()
        a, b, c = cc.new_space(2, None, 0, "filters"), cc.new_space(3, None, 0, "filters"), cc.new_space(5, None, 0,
                                                                                                          "filters")
        cc.couple(ChannelMap.concat([a, b]), c)
        (sids, roots), = cc.components()
        assert sids == [0, 1, 2]
        assert len(roots) == 5
        assert cc.find(cc.key(1, 0)) == cc.find(cc.key(2, 2))

    def test_a_tiled_map_coupled_with_a_space_merges_its_copies(self):
        # The same channel seen at 3 positions, added to a 6-wide space: each channel of the 2-channel
        # space absorbs 3 channels of the other, so the group has 2 channels.
        cc = ChannelCoupling()
        a = cc.new_space(2, None, 0, "filters")
        b = cc.new_space(6, None, 0, "filters")
        cc.couple(a.tile(3), b)
        (sids, roots), = cc.components()
        assert sids == [0, 1] and len(roots) == 2
        assert {cc.find(cc.key(1, i)) for i in (0, 2, 4)} == {cc.find(cc.key(0, 0))}

    def test_a_repeated_map_coupled_with_a_space(self):
        cc = ChannelCoupling()
        a = cc.new_space(3, None, 0, "filters")
        b = cc.new_space(6, None, 0, "filters")
        cc.couple(a.repeat(2), b)
        (_, roots), = cc.components()
        assert len(roots) == 3
        assert cc.find(cc.key(1, 4)) == cc.find(cc.key(1, 5)) == cc.find(cc.key(0, 2))

    def test_components_number_channels_in_the_first_space_order(self):
        cc = ChannelCoupling()
        a, _b = cc.new_space(3, None, 0, "filters"), cc.new_space(3, None, 0, "filters")
        cc.couple(a, ChannelMap(np.array([1, 1, 1]), np.array([2, 1, 0])))  # a reversed copy of _b
        (_, roots), = cc.components()
        assert roots == [cc.find(cc.key(0, i)) for i in range(3)]

    def test_block_and_approximate_mark_every_touched_space_once(self):
        cc = ChannelCoupling()
        a, b = cc.new_space(2, None, 0, "filters"), cc.new_space(2, None, 0, "filters")
        m = ChannelMap.concat([a, b])
        cc.block(m, "why")
        cc.block(m, "why")
        cc.mark_approximate(a, "norm")
        assert cc.spaces[0].blocked == ["why"] and cc.spaces[1].blocked == ["why"]
        assert cc.spaces[0].approximate == ["norm"] and cc.spaces[1].approximate == []


# ============================================================================ analyze: groups
def test_conv_chain_groups_members_and_consumers(analyses):
    _, a = analyses("conv_chain")
    assert list(a.groups) == ["input", "conv1", "conv2", "conv3", "head"]
    assert set(a.prunable_groups) == {"conv1", "conv2", "conv3"}
    g = a.groups["conv1"]
    assert (g.size, g.producers, g.consumers, g.members) == (8, ("conv1",), ("conv2",), ("conv1", "conv2"))
    assert a.groups["conv3"].consumers == ("head",)
    assert not any(g.approximate for g in a.groups.values())
    assert a.stops == []


def test_model_input_and_output_are_never_cut(analyses):
    _, a = analyses("conv_chain")
    assert "input" not in a.prunable_groups
    assert "model input" in a.groups["input"].reasons
    head = a.groups["head"]
    assert not head.prunable and "reaches a model output" in head.reasons


def test_a_conv_that_is_a_model_output_is_not_prunable():
    x = keras.Input((8, 8, 3))
    h = L.Conv2D(4, 3, name="c1")(x)
    out = L.Conv2D(5, 1, name="c2")(h)
    a = te.analyze(keras.Model(x, [out, L.ReLU(name="r")(h)]))
    assert not a.groups["c1"].prunable and not a.groups["c2"].prunable
    assert a.prunable_groups == {}


def test_residual_chain_is_one_group(analyses):
    _, a = analyses("residual_block")
    stem = a.groups["stem"]
    assert stem.prunable and stem.size == 8
    assert stem.producers == ("stem", "b1_conv2", "b2_conv2")
    assert stem.consumers == ("b1_conv1", "b2_conv1", "post")
    assert {"stem_bn", "b1_conv2_bn", "b2_conv2_bn"} <= set(stem.members)
    assert set(stem.producers) | set(stem.consumers) <= set(stem.members)
    assert a.groups["b1_conv1"].members == ("b1_conv1", "b1_conv1_bn", "b1_conv2")


def test_projection_shortcut_starts_a_new_group(analyses):
    _, a = analyses("residual_projection")
    assert a.groups["stem"].producers == ("stem", "b1_conv2")
    proj = a.groups["b2_conv2"]
    assert proj.prunable and proj.size == 12
    assert set(proj.producers) == {"b2_conv2", "b2_proj"}
    assert "b2_proj" in a.groups["stem"].consumers


def test_concat_offsets_and_groups(analyses):
    model, a = analyses("concat_block")
    assert {"a", "b", "mix", "post"} == set(a.prunable_groups)
    cat = model.get_layer("cat")
    tid = a.graph.nodes_of(cat)[0].outputs[0]
    gids, chans = a.positions(tid)
    assert gids == ["a"] * 8 + ["b"] * 6
    assert chans.tolist() == list(range(8)) + list(range(6))
    assert a.groups["a"].consumers == ("mix", "post")  # read through both concatenations
    # cat2 = [mix, a]: a's channels sit after mix's 10
    gids2, chans2 = a.positions(a.graph.nodes_of(model.get_layer("cat2"))[0].outputs[0])
    assert gids2 == ["mix"] * 10 + ["a"] * 8 and chans2.tolist()[10:] == list(range(8))


def test_keep_mask_follows_concat_offsets(analyses):
    model, a = analyses("concat_block")
    tid = a.graph.nodes_of(model.get_layer("cat"))[0].outputs[0]
    mask = a.keep_mask(tid, {"a": np.array([1, 7]), "b": np.array([0])})
    assert np.flatnonzero(mask).tolist() == [1, 7, 8]


def test_flatten_tiles_channels_into_dense_rows(analyses):
    model, a = analyses("flatten_dense")
    g = a.groups["conv"]
    assert g.prunable and g.consumers == ("fc1",)
    tid = a.graph.nodes_of(model.get_layer("flatten"))[0].outputs[0]
    gids, chans = a.positions(tid)
    assert len(gids) == 4 * 4 * 4 and set(gids) == {"conv"}
    assert chans.tolist() == [p % 4 for p in range(64)]


def test_reshape_to_a_vector_tiles_like_flatten(analyses):
    for name in ("reshape_dense", "reshape_dense_auto"):
        model, a = analyses(name)
        assert a.groups["conv"].prunable, name
        tid = a.graph.nodes_of(model.get_layer("reshape"))[0].outputs[0]
        assert a.positions(tid)[1].tolist() == [p % 4 for p in range(64)]


def test_reshape_that_mixes_channels_is_a_stop():
    x = keras.Input((4, 4, 6))
    h = L.Conv2D(8, 1, name="c")(x)
    h = L.Reshape((4, 32), name="mix")(h)
    a = te.analyze(keras.Model(x, L.Dense(2)(L.Flatten()(h))))
    assert [s.layer for s in a.stops] == ["mix"]
    assert "mixes channels" in a.stops[0].reason
    assert not a.groups["c"].prunable


def test_depthwise_repeats_and_passes_channels_through(analyses):
    model, a = analyses("depthwise_block")
    g = a.groups["expand"]
    assert g.prunable and g.size == 8
    assert {"expand", "expand_bn", "dw", "dw_bn", "project"} <= set(g.members)
    assert g.consumers == ("project",) and g.producers == ("expand",)
    gids, chans = a.positions(a.graph.nodes_of(model.get_layer("dw"))[0].outputs[0])
    assert set(gids) == {"expand"} and chans.tolist() == [k // 2 for k in range(16)]


def test_separable_conv_consumes_and_produces(analyses):
    _, a = analyses("separable_block")
    assert a.groups["stem"].consumers == ("sep1",)
    assert a.groups["sep1"].prunable and a.groups["sep1"].size == 12
    assert a.groups["sep1"].consumers == ("sep2",)


def test_grouped_conv_is_blocked_with_a_reason_and_depthwise_like_passes(analyses):
    _, a = analyses("grouped_conv")
    for gid in ("stem", "grouped"):
        g = a.groups[gid]
        assert not g.prunable
        assert any("grouped convolution (groups=2)" in r for r in g.reasons), g.reasons
    dw = a.groups["stem2"]
    assert dw.prunable and {"dwlike", "dwlike_bn"} <= set(dw.members)
    assert "dwlike" not in a.groups  # groups == channels: a pass-through, not a producer


def test_se_block_couples_excitation_with_the_body(analyses):
    _, a = analyses("se_block")
    body = a.groups["body"]
    assert body.prunable and set(body.producers) == {"body", "se_expand"}
    assert {"se_reduce", "post"} <= set(body.consumers)
    assert a.groups["se_reduce"].prunable and a.groups["se_reduce"].consumers == ("se_expand",)


def test_keras_ops_merges_couple_branches(analyses):
    _, a = analyses("ops_merge_net")
    (gid,) = [g for g in a.prunable_groups if g != "post"]
    assert set(a.groups[gid].producers) == {"a", "b"}
    assert a.stops == []


def test_ops_with_a_vector_constant_is_a_stop():
    x = keras.Input((4, 4, 3))
    h = L.Conv2D(4, 1, name="c")(x)
    h = h * np.arange(4, dtype="float32")
    a = te.analyze(keras.Model(x, L.Dense(2)(L.Flatten()(h))))
    assert len(a.stops) == 1 and "non-scalar constant" in a.stops[0].reason
    assert not a.groups["c"].prunable


def test_nested_models_are_inlined_with_path_names(analyses):
    _, a = analyses("nested_sequential")
    assert {"outer_conv", "seq/inner_conv", "seq/inner_conv2", "post"} == set(a.prunable_groups)
    assert a.groups["outer_conv"].consumers == ("seq/inner_conv",)
    assert "seq/inner_bn" in a.groups["seq/inner_conv"].members
    _, b = analyses("nested_functional")
    stem = b.groups["stem"]
    assert stem.prunable and set(stem.producers) == {"stem", "wrapper/block/blk_conv2"}
    assert "wrapper/wrap_conv" in stem.consumers and "wrapper/block/blk_conv1" in stem.consumers


@pytest.mark.parametrize("name, groups", [("conv1d_net", {"c1", "c2"}), ("conv3d_net", {"c1", "c2"}),
                                          ("conv_transpose_net", {"down", "up", "post"})])
def test_other_convolution_ranks_are_prunable(analyses, name, groups):
    _, a = analyses(name)
    assert set(a.prunable_groups) == groups
    assert a.stops == []


def test_layernorm_over_channels_is_approximate(analyses):
    _, a = analyses("layernorm_net")
    g = a.groups["ln_in"]
    assert g.prunable and g.approximate
    assert any("LayerNormalization" in r for r in g.approximate_reasons)
    assert not a.groups["mid"].approximate
    _, b = analyses("layernorm_spatial_net")
    assert b.groups["ln_in"].prunable and not b.groups["ln_in"].approximate


def test_group_normalization(analyses):
    _, per_channel = analyses("groupnorm8_net")
    assert per_channel.groups["gn_in"].prunable and not per_channel.groups["gn_in"].approximate
    _, one = analyses("groupnorm1_net")
    assert one.groups["gn_in"].prunable and one.groups["gn_in"].approximate
    _, two = analyses("groupnorm2_net")
    g = two.groups["gn_in"]
    assert not g.prunable and any("GroupNormalization(groups=2)" in r for r in g.reasons)


def test_prelu_alphas_are_members(analyses):
    _, a = analyses("prelu_net")
    assert "prelu1" in a.groups["c1"].members and "prelu2" in a.groups["c2"].members
    assert a.groups["c1"].prunable and a.groups["c2"].prunable


# ============================================================================ analyze: stops and errors
def test_unknown_layer_is_a_stop_with_a_reason(analyses):
    _, a = analyses("lambda_net")
    (stop,) = a.stops
    assert (stop.layer, stop.class_name) == ("double", "Lambda")
    assert "no channel rule" in stop.reason and "register_rule" in stop.reason
    c1 = a.groups["c1"]
    assert not c1.prunable and any("double" in r and "Lambda" in r for r in c1.reasons)
    assert a.groups["c2"].prunable  # channels created after the stop are fine
    assert "stop: double (Lambda)" in a.summary()


def test_channels_first_layer_is_a_stop():
    x = keras.Input((4, 4, 3))
    h = L.Conv2D(4, 1, name="c")(x)
    h = L.MaxPooling2D(2, data_format="channels_first", name="pool_cf")(h)
    a = te.analyze(keras.Model(x, L.Dense(2)(L.Flatten()(h))))
    assert [s.layer for s in a.stops] == ["pool_cf"]
    assert "channels_last" in a.stops[0].reason


def test_every_builder_analyses_without_crashing(analyses):
    for name in BUILDERS:
        _, a = analyses(name)
        assert a.groups and isinstance(a.summary(), str)
        assert 0.0 < a.prunable_share() <= 1.0
        for g in a.groups.values():
            assert g.prunable == (not g.reasons and bool(g.producers)), (name, g)


def test_shared_weighted_layer_is_not_prunable(analyses):
    _, a = analyses("shared_conv_net")
    assert {s.layer for s in a.stops} == {"shared"}
    assert all("shared (2 calls)" in s.reason for s in a.stops)
    stem = a.groups["stem"]
    assert not stem.prunable and any("shared" in r for r in stem.reasons)
    assert "shared" not in a.prunable_groups
    assert set(a.prunable_groups) == {"post"}


def test_shared_layer_without_weights_is_fine():
    x = keras.Input((8, 8, 3))
    relu = L.ReLU(name="relu")
    h = relu(L.Conv2D(4, 3, name="c1")(x))
    h = relu(L.Conv2D(5, 3, name="c2")(h))
    a = te.analyze(keras.Model(x, L.Dense(2)(L.Flatten()(h))))
    assert set(a.prunable_groups) == {"c1", "c2"} and a.stops == []


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__(name="my_subclassed")
        self.conv = L.Conv2D(4, 3)

    def call(self, x):
        return self.conv(x)


def test_subclassed_model_raises_a_clear_graph_error():
    model = _Subclassed()
    model(np.zeros((1, 8, 8, 3), "float32"))
    with pytest.raises(GraphError, match=r"_Subclassed 'my_subclassed' is a subclassed model.*functional API"):
        te.analyze(model)
    assert issubclass(GraphError, ValueError)


def test_subclassed_model_nested_in_a_functional_model_raises():
    inner = _Subclassed()
    x = keras.Input((8, 8, 3))
    model = keras.Model(x, L.Flatten()(inner(x)))
    with pytest.raises(GraphError, match="subclassed model"):
        te.analyze(model)


def test_unbuilt_sequential_raises():
    with pytest.raises(GraphError, match="not built"):
        te.analyze(keras.Sequential([L.Conv2D(4, 3)]))


def test_sequential_model_is_analysed():
    model = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(4, 3, name="c1"), L.ReLU(),
                              L.Conv2D(5, 3, name="c2"), L.Flatten(), L.Dense(2, name="out")])
    a = te.analyze(model)
    assert set(a.prunable_groups) == {"c1", "c2"}
    assert a.groups["c2"].consumers == ("out",)


def test_graph_nodes_are_topologically_ordered(analyses):
    model, a = analyses("concat_block")
    produced = set(a.graph.input_ids)
    for node in a.graph.nodes:
        assert set(node.inputs) <= produced, node.name
        produced |= set(node.outputs)
    assert isinstance(ModelGraph.from_model(model), ModelGraph)


def test_fingerprint_depends_on_prunable_group_sizes():
    f1 = te.analyze(BUILDERS["conv_chain"]()).fingerprint
    f2 = te.analyze(BUILDERS["conv_chain"]()).fingerprint
    f3 = te.analyze(BUILDERS["concat_block"]()).fingerprint
    assert f1 == f2 != f3 and len(f1) == 12


def test_summary_lists_groups_and_reasons(analyses):
    _, a = analyses("grouped_conv")
    text = a.summary()
    assert "grouped_conv" in text and "stem2" in text and "grouped convolution" in text


# ============================================================================ the rule registry
class Gate(keras.layers.Layer):
    """A custom layer with no rule: doubles its input."""

    def call(self, x):
        return x * 2.0


def _gate_model():
    x = keras.Input((8, 8, 3))
    h = L.Conv2D(6, 3, name="c1")(x)
    h = Gate(name="gate")(h)
    h = L.Conv2D(4, 3, name="c2")(h)
    return keras.Model(x, L.Dense(2, name="out")(L.Flatten()(h)))


@pytest.fixture
def gate_rule():
    """Registers a pass-through rule for ``Gate`` for one test, and removes it afterwards."""
    register_rule(Gate, rules.PassThroughRule())
    yield
    unregister_rule(Gate)


def test_custom_layer_without_a_rule_is_a_stop():
    a = te.analyze(_gate_model())
    assert [(s.layer, s.class_name) for s in a.stops] == [("gate", "Gate")]
    assert not a.groups["c1"].prunable


def test_registered_rule_makes_a_custom_layer_pass_through(gate_rule):
    a = te.analyze(_gate_model())
    assert a.stops == []
    assert a.groups["c1"].prunable and a.groups["c1"].consumers == ("c2",)
    assert isinstance(find_rule(Gate()), rules.PassThroughRule)


def test_duplicate_registration_raises_and_override_replaces(gate_rule):
    with pytest.raises(ValueError, match="Gate already has a channel rule.*override=True"):
        register_rule(Gate, rules.PassThroughRule())
    replacement = rules.PassThroughRule(approximate="test")
    register_rule(Gate, replacement, override=True)
    assert find_rule(Gate()) is replacement


def test_register_refuses_a_non_rule():
    with pytest.raises(TypeError, match="ChannelRule"):
        register_rule(Gate, object())


def test_unregister_restores_the_stop():
    register_rule(Gate, rules.PassThroughRule())
    unregister_rule(Gate)
    assert find_rule(Gate()) is None
    unregister_rule(Gate)  # removing twice is harmless


def test_rules_are_found_along_the_class_hierarchy():
    class MyConv(L.Conv2D):
        pass

    assert find_rule(MyConv(4, 3)) is find_rule(L.Conv2D(4, 3))
    assert isinstance(find_rule(L.ReLU()), rules.PassThroughRule)
    assert find_rule(Gate()) is None
    x = keras.Input((8, 8, 3))
    h = MyConv(6, 3, name="mine")(x)
    a = te.analyze(keras.Model(x, L.Dense(2)(L.Flatten()(L.Conv2D(4, 3, name="c2")(h)))))
    assert a.groups["mine"].prunable and a.groups["mine"].consumers == ("c2",)


def test_a_subclass_rule_takes_precedence_over_its_base():
    class LoudReLU(L.ReLU):
        pass

    rule = rules.PassThroughRule(approximate="loud")
    register_rule(LoudReLU, rule)
    try:
        assert find_rule(LoudReLU()) is rule
        assert find_rule(L.ReLU()) is not rule
    finally:
        unregister_rule(LoudReLU)
