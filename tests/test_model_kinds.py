"""Every public entry point on the five kinds of model users have: a top-level ``keras.Sequential``, a
functional model, a nested one (a functional backbone and a Sequential block inside a functional model), a
model loaded from ``.keras`` and one loaded from a legacy ``.h5`` file.

The same small conv-BN-ReLU classifier is built each way (16x16x3 input, 10 classes, softmax head), so
every kind has the same channel groups. Top-level Sequential models broke ``slim`` once (its ``input``
property raises on a model that was never called): this matrix is what keeps that from coming back.
"""
from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers

import tfmot_easiedge as te
from tfmot_easiedge import cli

KINDS = ("sequential", "functional", "nested", "keras_loaded", "h5_loaded")
SHAPE = (16, 16, 3)
CLASSES = 10


def _layers():
    return [layers.Conv2D(8, 3, padding="same", name="conv1"), layers.BatchNormalization(name="bn1"),
            layers.ReLU(name="relu1"), layers.Conv2D(12, 3, padding="same", name="conv2"),
            layers.BatchNormalization(name="bn2"), layers.ReLU(name="relu2"),
            layers.GlobalAveragePooling2D(name="gap"), layers.Dense(CLASSES, activation="softmax", name="head")]


def _sequential():
    return keras.Sequential([keras.Input(SHAPE, name="image"), *_layers()], name="seq")


def _functional():
    x = inp = keras.Input(SHAPE, name="image")
    for layer in _layers():
        x = layer(x)
    return keras.Model(inp, x, name="func")


def _nested():
    parts = _layers()
    inp = keras.Input(SHAPE, name="image")
    bb_in = keras.Input(SHAPE, name="bb_in")
    backbone = keras.Model(bb_in, parts[2](parts[1](parts[0](bb_in))), name="backbone")
    block = keras.Sequential([keras.Input((16, 16, 8)), *parts[3:6]], name="block")
    out = parts[7](parts[6](block(backbone(inp))))
    return keras.Model(inp, out, name="nested")


def _randomise(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers(include_self=False, recursive=True):  # noqa: SLF001 - test helper
        if isinstance(layer, layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.1, b.shape),
                               rng.normal(0, 0.1, m.shape), rng.uniform(0.5, 1.5, v.shape)])
    return model


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("kinds")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (64, *SHAPE)).astype("float32")
    return x, rng.integers(0, CLASSES, 64)


@pytest.fixture(scope="module")
def files(root):
    """Saved copies the loaded kinds and the CLI read: ``{kind: path}``."""
    out = {}
    for name, build, ext in (("sequential", _sequential, "keras"), ("functional", _functional, "keras"),
                             ("nested", _nested, "keras"), ("sequential_h5", _sequential, "h5")):
        path = root / f"{name}.{ext}"
        _randomise(build()).save(path)
        out[name] = path
    return out


def _make(kind: str, files) -> keras.Model:
    if kind == "keras_loaded":
        return keras.saving.load_model(files["functional"], safe_mode=True)
    if kind == "h5_loaded":  # the legacy format, as tutorials still save a Sequential model
        return keras.saving.load_model(files["sequential_h5"], compile=False)
    return _randomise({"sequential": _sequential, "functional": _functional, "nested": _nested}[kind]())


@pytest.fixture(params=KINDS)
def kind_model(request, files):
    return request.param, _make(request.param, files)


def _plan(model, analysis=None):
    analysis = analysis or te.analyze(model)
    scores = te.importance.l1_norm(model, analysis=analysis)
    return analysis, te.select(analysis, scores, te.FilterBudget(0.5))


# ----------------------------------------------------------------------------- library entry points
def test_analyze_finds_the_same_groups_on_every_kind(kind_model):
    kind, model = kind_model
    analysis = te.analyze(model)
    sizes = sorted(g.size for g in analysis.prunable_groups.values())
    assert sizes == [8, 12], (kind, analysis.summary())


def test_slim_equals_masked_copy_and_removes_filters(kind_model, data):
    kind, model = kind_model
    analysis, plan = _plan(model)
    small = te.slim(model, plan, analysis=analysis)
    masked = te.masked_copy(model, plan, analysis=analysis)
    x = data[0][:16]
    np.testing.assert_allclose(small.predict(x, verbose=0), masked.predict(x, verbose=0), atol=1e-5)
    assert te.count_params(small) < te.count_params(model), kind
    assert sum(g.size for g in te.analyze(small).prunable_groups.values()) == 10  # half of the 20 filters


@pytest.mark.parametrize("criterion", sorted(te.importance.CRITERIA))
def test_every_criterion_scores_every_kind(criterion, kind_model, data):
    kind, model = kind_model
    analysis = te.analyze(model)
    scores = te.importance.get(criterion)(model, data[0][:32], analysis=analysis)
    assert set(scores) == set(analysis.prunable_groups), kind
    for gid, s in scores.items():
        assert s.shape == (analysis.groups[gid].size,) and np.all(np.isfinite(s)), (kind, criterion, gid)


@pytest.mark.parametrize("budget", [te.FilterBudget(0.5), te.MacsBudget(0.5)], ids=["filters", "macs"])
def test_select_meets_budgets_on_every_kind(budget, kind_model):
    kind, model = kind_model
    analysis = te.analyze(model)
    plan = te.select(analysis, te.importance.l2_norm(model, analysis=analysis), budget)
    small = te.slim(model, plan, analysis=analysis)
    if isinstance(budget, te.MacsBudget):
        assert te.count_macs(small) <= 0.5 * te.count_macs(model) * 1.01, kind
    else:
        assert plan.removed_channels() >= 0.5 * 20 - 1, kind


def test_easiedge_run_on_every_kind(kind_model, data):
    kind, model = kind_model
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy", metrics=["accuracy"])
    before = [w.copy() for w in model.get_weights()]
    result = te.EasiEdge("filters:0.5", calibration_size=32, verbose=0, min_update_interval=2,
                         recalibrate_bn=32).run(model, data, admm_epochs=1, finetune_epochs=1, batch_size=16,
                                                validation_data=data)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights())), "the input model changed"
    assert te.count_params(result.model) < te.count_params(model), kind
    assert result.slim_max_abs_diff < 1e-4, kind
    assert result.model.predict(data[0][:4], verbose=0).shape == (4, CLASSES)
    # the plan names the model's own groups (a nested model's `backbone/conv1`, not the inlined `conv1`)
    assert set(result.plan.kept) == set(te.analyze(model).prunable_groups), kind
    again = te.slim(model, result.plan)
    assert te.count_params(again) == te.count_params(result.model), kind


def test_prune_filters_and_strip_pruning_on_every_kind(kind_model, data):
    kind, model = kind_model
    wrapped = te.prune_filters(model, te.FilterBudget(0.5), importance="tbaa")
    wrapped.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    wrapped.fit(*data, batch_size=16, epochs=1, verbose=0,
                callbacks=[te.ADMMUpdate(data[0][:32], update_every=2, verbose=0)])
    plan = te.hard_prune(wrapped)
    small, stripped_plan = te.strip_pruning(wrapped)
    assert stripped_plan.kept == plan.kept
    assert sum(g.size for g in te.analyze(small).prunable_groups.values()) == 10, kind
    # the plan read back applies to the original model, and a plan of the original to a fresh wrapping
    plan.validate(te.analyze(model))
    assert te.count_params(te.slim(model, plan)) == te.count_params(small), kind
    fresh = te.prune_filters(model, te.FilterBudget(0.5), importance="l1")
    assert te.hard_prune(fresh, plan).kept == plan.kept


@pytest.mark.parametrize("fmt", ["saved_model", "tflite", "onnx"])
def test_exports_verify_on_every_kind(fmt, kind_model, data, tmp_path):
    kind, model = kind_model
    analysis, plan = _plan(model)
    small = te.slim(model, plan, analysis=analysis)
    suffix = {"saved_model": "", "tflite": ".tflite", "onnx": ".onnx"}[fmt]
    result = getattr(te.export, fmt)(small, tmp_path / f"m{suffix}", sample_inputs=data[0][:8])
    assert result.verified and result.path.exists(), (kind, fmt)


# ----------------------------------------------------------------------------- the command line
CLI_FILES = ("sequential", "functional", "nested", "sequential_h5")


def _cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def npz(root, data):
    path = root / "data.npz"
    np.savez(path, x=data[0], y=data[1])
    return path


@pytest.mark.parametrize("name", CLI_FILES)
def test_cli_analyze_prune_export_on_every_file_kind(name, files, npz, tmp_path, capsys):
    code, out, err = _cli(capsys, "analyze", files[name])
    assert code == 0 and "conv1" in out, err
    run = tmp_path / "run"
    code, out, err = _cli(capsys, "prune", files[name], "--data", npz, "--budget", "filters:0.5", "--importance",
                          "l1", "--calibration-size", "32", "--admm-epochs", "1", "--finetune-epochs", "1",
                          "--batch-size", "16", "--out", run, "--quiet")
    assert code == 0, err
    slim_model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    assert te.count_params(slim_model) < te.count_params(keras.saving.load_model(files[name], compile=False))
    exp = tmp_path / "exp"
    code, out, err = _cli(capsys, "export", run / "model.keras", "--to", "tflite", "--out", exp, "--quiet")
    assert code == 0, err
    assert any(p.suffix == ".tflite" for p in exp.iterdir())
    # the plan that run wrote, applied again with --plan to the same file: the same widths
    again = tmp_path / "again"
    code, out, err = _cli(capsys, "prune", files[name], "--data", npz, "--plan", run / "plan.json",
                          "--finetune-epochs", "1", "--batch-size", "16", "--out", again, "--quiet")
    assert code == 0, err
    planned = keras.saving.load_model(again / "model.keras", safe_mode=True)
    assert te.count_params(planned) == te.count_params(slim_model)


def test_with_group_ids_renames_and_refuses_unknown_or_colliding_ids():
    analysis = te.analyze(_nested())
    renamed = analysis.with_group_ids({"backbone/conv1": "first"})
    assert set(renamed.prunable_groups) == {"first", "block/conv2"}
    assert renamed.groups["first"].id == "first" and renamed.fingerprint != analysis.fingerprint
    tid = analysis.graph.nodes[0].outputs[0]
    assert renamed.positions(tid)[0][0] == "first"
    with pytest.raises(ValueError, match="not in model"):
        analysis.with_group_ids({"nope": "x"})
    with pytest.raises(ValueError, match="same id"):
        analysis.with_group_ids({"backbone/conv1": "block/conv2"})
