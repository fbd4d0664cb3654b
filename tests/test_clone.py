"""The one graph clone (``rewrite.clone``) that slim, masked_copy, prune_filters and the ADMM view share,
and the canaries of ``_keras_compat`` (every touch of Keras internals) on this Keras."""
from __future__ import annotations

import keras
import numpy as np
import pytest

import tfmot_easiedge as te
from tfmot_easiedge import _keras_compat as kc
from tfmot_easiedge.admm._state import PruningState
from tfmot_easiedge.graph import ModelGraph
from tfmot_easiedge.rewrite import clone

L = keras.layers


def _dict_in_two_out() -> keras.Model:
    image = keras.Input((8, 8, 3), name="image")
    meta = keras.Input((4,), name="meta")
    h = L.Conv2D(6, 3, padding="same", name="c1")(image)
    h = L.Conv2D(8, 3, padding="same", name="c2")(L.ReLU()(h))
    feats = L.Concatenate(name="cat")([L.GlobalAveragePooling2D()(h), meta])
    return keras.Model({"image": image, "meta": meta}, [L.Dense(3, name="cls")(feats), L.Dense(2, name="box")(feats)])


def _sequential() -> keras.Model:
    return keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(6, 3, name="c1"), L.ReLU(), L.Conv2D(4, 3, name="c2"),
                             L.GlobalAveragePooling2D(), L.Dense(3)], name="seq")


def _inputs(model, n=2):
    rng = np.random.default_rng(0)
    inputs = clone.io_structure(model)[0]
    return keras.tree.map_structure(lambda t: rng.normal(size=(n, *t.shape[1:])).astype("float32"), inputs)


def _structure(out):
    return keras.tree.map_structure(lambda t: tuple(t.shape), out)


@pytest.mark.filterwarnings("ignore:The structure of `inputs` doesn't match")
@pytest.mark.parametrize("builder", [_dict_in_two_out, _sequential])
def test_admm_view_and_strip_have_the_io_structure_slim_has(builder):
    model = builder()
    analysis = te.analyze(model)
    slim_model = te.slim(model, te.PruningPlan.keep_all(analysis), analysis=analysis)
    wrapped = te.prune_filters(model, "filters:0.5", importance="l1", min_fraction=0.0)
    view = PruningState(wrapped).view
    stripped, _ = te.strip_pruning(wrapped)
    x = _inputs(model)
    reference = model(x)
    for rebuilt in (slim_model, wrapped, view, stripped):
        assert type(rebuilt.input) is type(slim_model.input)
        if isinstance(slim_model.input, dict):
            assert sorted(rebuilt.input) == sorted(slim_model.input) == ["image", "meta"]
        out = rebuilt(x)
        assert type(out) is type(reference) and _structure(out) == _structure(reference)
        # nothing removed before a Z-step: every rebuilt model computes what the original computes
        for a, b in zip(keras.tree.flatten(out), keras.tree.flatten(reference)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
    assert view.name == model.name and wrapped.name == model.name + "_prunable"


def test_rebuild_copies_every_layer_and_shares_none():
    model = _dict_in_two_out()
    copy = clone.rebuild(model, te.analyze(model), clone.copy_layer, suffix="_copy")
    assert copy.name == model.name + "_copy"
    weighted = [l for l in copy.layers if l.weights]
    assert weighted and not any(l is model.get_layer(l.name) for l in weighted)
    x = _inputs(model)
    for a, b in zip(copy(x), model(x)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)


def test_model_from_graph_shares_the_layers():
    model = _sequential()
    same = clone.model_from_graph(model, ModelGraph.from_model(model), name="same")
    assert same.get_layer("c1") is model.get_layer("c1") and same.name == "same"
    assert clone.io_structure(model)[0] is model.inputs[0]


def test_io_structure_of_an_unbuilt_sequential_is_an_error():
    with pytest.raises(ValueError, match="no defined inputs"):
        clone.io_structure(keras.Sequential([L.Dense(2)]))


# ----------------------------------------------------------------------------- _keras_compat on this Keras
def test_keras_compat_functions_work_on_this_keras():
    model = _sequential()
    func = kc.functional_of(model)
    assert kc.is_functional(func) and not kc.is_functional(model) and kc.functional_of(func) is func
    assert kc.functional_of(keras.Sequential([L.Dense(2)])) is None
    calls = list(kc.operation_calls(func))
    names = [c.operation.name for c in calls]
    assert len(calls) == 5 and names[0] == "c1" and names.index("c2") == 2
    first = calls[0]
    args, kwargs = kc.fill_in_arguments(first.arguments, {id(first.inputs[0]): "value"})
    assert args == ("value",) and kwargs == {}
    assert kc.flat_call_arguments(first.arguments) == first.inputs
    assert {l.name for l in kc.flatten_layers(model)} >= {"c1", "c2"} and kc.flatten_layers(object()) == []
    assert "training" in kc.call_parameters(L.Dropout(0.5)) and kc.call_parameters(object()) == ()
    bn = L.BatchNormalization()
    bn.build((None, 4))
    assert len(kc.own_variables(bn)) == 4
    assert kc.is_conv_transpose(L.Conv2DTranspose(2, 3)) and not kc.is_conv_transpose(L.Conv2D(2, 3))
    assert len(kc.elementwise_op_classes(["Add", "NoSuchOp"], ["Relu"])) == 2
    assert set(kc.application_helper_layers()) == {"LayerScale", "StochasticDepth", "CustomScaleLayer"}
    with kc.no_autocast():
        pass

