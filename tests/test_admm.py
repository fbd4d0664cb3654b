"""ADMM pruning inside ``fit``: per-weight masks, the wrapper, both callbacks, strip_pruning, the pipeline,
and Keras citizenship (optimizers, standard callbacks, save/resume, MirroredStrategy, mixed precision)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import tfmot_easiedge as te
from tfmot_easiedge.admm._state import PruningState, weight_masks
from tfmot_easiedge.admm.pipeline import top1_accuracy
from tfmot_easiedge.admm.prune import DEFAULT_MIN_FRACTION
from tfmot_easiedge.models import zoo

from models import BUILDERS, build, exact_plan, predict, random_inputs, rel_err

N = 96


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (N, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, N)
    return x, y


def _wrapped(budget="filters:0.5", importance="l1", optimizer=None, **kwargs):
    keras.utils.set_random_seed(0)
    w = te.prune_filters(zoo.tiny_cnn(seed=0), budget, importance=importance, **kwargs)
    w.compile(optimizer or keras.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy",
              metrics=["accuracy"])
    return w


# ----------------------------------------------------------------------------- per-weight channel masks
@pytest.mark.parametrize("name", [n for n in BUILDERS if n != "lambda_net"])
def test_weight_masks_cut_exactly_what_slim_removes(name):
    """Zeroing every weight entry a mask marks removed gives the slim model's outputs, and the kept
    entries of each weight are as many as the slim layer's weight has."""
    model = build(name)
    analysis = te.analyze(model)
    if not analysis.prunable_groups:
        pytest.skip("no prunable group")
    plan = exact_plan(analysis, 0.4, seed=1)
    x = random_inputs(model)
    ref = predict(te.slim(model, plan, analysis=analysis), x)
    kept = {g: np.asarray(k) for g, k in plan.kept.items()}
    saved = {}
    small = te.slim(model, plan, analysis=analysis)
    try:
        for node in analysis.graph.nodes:
            masks = weight_masks(analysis, node, kept)
            for v in node.layer.trainable_weights if masks else []:
                m = masks.get(v.path.split("/")[-1])
                if m is None:
                    continue
                try:
                    slim_w = {s.path.split("/")[-1]: s for s in small.get_layer(node.layer.name).weights}
                except ValueError:
                    slim_w = {}
                if v.path.split("/")[-1] in slim_w:
                    assert int(m.sum()) == int(np.prod(slim_w[v.path.split("/")[-1]].shape)), v.path
                saved[id(v)] = (v, np.asarray(v.numpy()))
                v.assign(np.asarray(v.numpy()) * m)
        assert rel_err(predict(model, x), ref) <= 1e-4
    finally:
        for v, value in saved.values():
            v.assign(value)


# ----------------------------------------------------------------------------- prune_filters
def test_prune_filters_copies_and_wraps_without_touching_the_original():
    model = zoo.tiny_cnn(seed=0)
    before = [np.array(w) for w in model.get_weights()]
    wrapped = te.prune_filters(model, "filters:0.5")
    names = {l.name for l in wrapped.layers}
    assert {"admm_block1_conv1", "admm_block1_bn1", "admm_logits"} <= names
    assert "admm_predictions" not in names and all(not l.name.startswith("admm") for l in model.layers)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(predict(wrapped, x), predict(model, x), atol=1e-6)
    w = wrapped.get_layer("admm_block1_conv1")
    assert w.tracked == ["kernel"] and w.settings["budget"] == {"kind": "filters", "ratio": 0.5}
    np.testing.assert_array_equal(w.z[0].numpy(), w.layer.kernel.numpy())  # Z starts at W: no pull yet


@pytest.mark.parametrize("kwargs, match", [
    ({"budget": "filters:1.0"}, "ratio"),
    ({"budget": "filters:0.5", "min_channels": 64}, "min_channels"),
    ({"budget": "macs:0.999"}, "MACs"),
    ({"budget": "flops:0.5"}, "parse"),
    ({"budget": "filters:0.5", "importance": "magic"}, "unknown importance"),
    ({"budget": "filters:0.5", "rho": 0.0}, "rho"),
])
def test_prune_filters_rejects_impossible_requests(kwargs, match):
    with pytest.raises(ValueError, match=match):
        te.prune_filters(zoo.tiny_cnn(seed=0), **kwargs)


def test_prune_filters_refuses_unknown_protect_names():
    # A misspelt name used to protect nothing, silently.
    with pytest.raises(ValueError, match=r"^protect: 'block1_conv' is not a layer or group of the model; did you mean"):
        te.prune_filters(zoo.tiny_cnn(seed=0), "filters:0.5", protect=["block1_conv"])
    wrapped = te.prune_filters(zoo.tiny_cnn(seed=0), "filters:0.5", protect=["block1_conv1"])
    assert "admm_block1_conv1" not in [layer.name for layer in wrapped.layers]


def test_prune_filters_rejects_subclassed_models():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.c = keras.layers.Conv2D(4, 3)

        def call(self, x):
            return self.c(x)

    net = Net()
    net(np.zeros((1, 8, 8, 3), "float32"))
    with pytest.raises(te.GraphError, match="subclassed"):
        te.prune_filters(net, "filters:0.5")


# ----------------------------------------------------------------------------- misuse
def test_fit_without_the_callback_is_an_error(data):
    w = _wrapped()
    with pytest.raises(RuntimeError, match="ADMMUpdate"):
        w.fit(*data, epochs=1, verbose=0)
    # and the model still trains once the callback is there (a fresh train step is traced)
    w.fit(*data, epochs=1, verbose=0, callbacks=[te.ADMMUpdate(verbose=0)])


def test_callbacks_on_an_unwrapped_model_are_an_error(data):
    m = zoo.tiny_cnn(seed=0)
    m.compile("sgd", "sparse_categorical_crossentropy")
    for cb in (te.ADMMUpdate(data[0], verbose=0), te.MaskedFineTune(verbose=0)):
        with pytest.raises(ValueError, match="prune_filters"):
            m.fit(*data, epochs=1, verbose=0, callbacks=[cb])


def test_calibration_data_of_the_wrong_shape_is_an_error(data):
    w = _wrapped(importance="tbaa")
    with pytest.raises(ValueError, match="shape"):
        w.fit(*data, epochs=1, verbose=0, callbacks=[te.ADMMUpdate(np.zeros((8, 16, 16, 3), "float32"))])
    with pytest.raises(ValueError, match="calibration_data"):
        w.fit(*data, epochs=1, verbose=0, callbacks=[te.ADMMUpdate(verbose=0)])
    # the failed starts left the model usable
    w.fit(*data, epochs=1, verbose=0, callbacks=[te.ADMMUpdate(data[0][:32], verbose=0)])


def test_fine_tune_needs_a_plan_or_a_z_step(data):
    w = _wrapped()
    with pytest.raises(ValueError, match="Z-step"):
        w.fit(*data, epochs=1, verbose=0, callbacks=[te.MaskedFineTune(verbose=0)])


# ----------------------------------------------------------------------------- the method
def test_admm_then_fine_tune_then_strip(data):
    w = _wrapped(importance="tbaa", rho=0.05)
    cb = te.ADMMUpdate(data, update_every=2, rho_growth=2.0, verbose=0)
    h = w.fit(*data, batch_size=16, epochs=2, verbose=0, callbacks=[cb])
    for key in ("admm_primal_residual", "admm_dual_residual", "admm_channels_kept", "admm_rho",
                "admm_mask_changes"):
        assert len(h.history[key]) == 2
    assert h.history["admm_channels_kept"][-1] == 28  # 56 prunable filters, half kept
    assert h.history["admm_rho"][-1] > 0.05
    assert cb.zstep_seconds and len(cb.zstep_seconds) == 1 + 2 * 3  # initial + every 2 of 6 steps x 2
    # the penalty pulls the removed weights towards zero
    st = PruningState(w)
    conv = w.get_layer("admm_block2_conv1")
    mask = conv.mask[0].numpy()
    assert 0 < mask.mean() < 1
    ft = te.MaskedFineTune(verbose=0)
    w.fit(*data, batch_size=16, epochs=1, verbose=0, callbacks=[ft])
    for wr in st.wrappers:  # removed entries are still exactly zero after optimizer steps
        for target, m in zip(wr.targets, wr.mask):
            assert not np.any(np.asarray(target.numpy())[m.numpy() == 0])
    assert all(wr.rho.numpy() == 0 for wr in st.wrappers)
    small, plan = te.strip_pruning(w)
    assert plan == ft.plan and plan.removed_channels() == 28
    x = data[0][:16]
    assert rel_err(predict(small, x), predict(w, x)) <= 1e-4
    assert te.count_macs(small) < te.count_macs(zoo.tiny_cnn(seed=0))


def test_macs_budget_is_met(data):
    w = _wrapped(budget="macs:0.5")
    w.fit(*data, epochs=1, verbose=0, callbacks=[te.ADMMUpdate(verbose=0)])
    small, _ = te.strip_pruning(w)
    base = te.count_macs(zoo.tiny_cnn(seed=0))
    assert te.count_macs(small) <= 0.5 * base * 1.01


def test_rank_on_w_plus_u_and_freeze(data):
    w = _wrapped(rho=0.5)
    cb = te.ADMMUpdate(update_every=3, rank_on="w_plus_u", freeze_rho=0.5, verbose=0)
    h = w.fit(*data, batch_size=16, epochs=1, verbose=0, callbacks=[cb])
    assert h.history["admm_mask_changes"][-1] == 0  # frozen from the first re-projection on
    with pytest.raises(ValueError, match="rank_on"):
        te.ADMMUpdate(rank_on="z")


# ----------------------------------------------------------------------------- Keras citizenship
@pytest.mark.parametrize("opt", ["sgd", "adam", "rmsprop", "adamw", "nadam"])
def test_any_optimizer(data, opt):
    w = _wrapped(optimizer=keras.optimizers.get(opt))
    h = w.fit(*data, batch_size=32, epochs=1, verbose=0, callbacks=[te.ADMMUpdate(update_every=1, verbose=0)])
    assert np.isfinite(h.history["loss"][-1])
    w.fit(*data, batch_size=32, epochs=1, verbose=0, callbacks=[te.MaskedFineTune(verbose=0)])
    for wr in PruningState(w).wrappers:
        for target, m in zip(wr.targets, wr.mask):
            assert not np.any(np.asarray(target.numpy())[m.numpy() == 0])


def test_standard_callbacks_and_validation(data, tmp_path):
    w = _wrapped()
    ckpt = tmp_path / "ckpt.keras"
    cbs = [te.ADMMUpdate(verbose=0),
           keras.callbacks.ModelCheckpoint(str(ckpt)),
           keras.callbacks.EarlyStopping(monitor="val_loss", patience=0, min_delta=1e9),
           keras.callbacks.TensorBoard(str(tmp_path / "tb"))]
    h = w.fit(*data, validation_data=(data[0][:32], data[1][:32]), epochs=5, verbose=0, callbacks=cbs)
    assert len(h.history["val_loss"]) == 2  # EarlyStopping stopped it (patience 0, impossible min_delta)
    assert "admm_primal_residual" in h.history
    reloaded = keras.saving.load_model(ckpt)  # safe mode
    assert any(isinstance(l, te.admm.ADMMWrapper) for l in reloaded.layers)
    events = [f for _, _, fs in os.walk(tmp_path / "tb") for f in fs if "tfevents" in f]
    assert events


def test_save_mid_admm_and_resume(data, tmp_path):
    w = _wrapped(importance="l2")
    cb = te.ADMMUpdate(update_every=2, verbose=0)
    w.fit(*data, batch_size=16, epochs=1, verbose=0, callbacks=[cb])
    path = tmp_path / "mid.keras"
    w.save(path)
    r = keras.saving.load_model(path)
    for a, b in zip(PruningState(w).wrappers, PruningState(r).wrappers):
        for va, vb in [*zip(a.z, b.z), *zip(a.u, b.u), *zip(a.mask, b.mask), (a.rho, b.rho), (a.zsteps, b.zsteps)]:
            np.testing.assert_array_equal(va.numpy(), vb.numpy())
    assert PruningState(r).current_plan().kept == cb.plan.kept
    steps = PruningState(r).zsteps()
    cb2 = te.ADMMUpdate(update_every="epoch", verbose=0)
    r.fit(*data, batch_size=16, epochs=1, verbose=0, callbacks=[cb2])
    assert PruningState(r).zsteps() == steps + 1  # no fresh initial projection, just the epoch's end


@pytest.mark.parametrize("mixed", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision(data, mixed):
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(mixed)
    try:
        keras.utils.set_random_seed(0)
        m = zoo.tiny_cnn(seed=0)
        w = te.prune_filters(m, "filters:0.5", importance="tbaa")
        w.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
        h = w.fit(*data, batch_size=32, epochs=1, verbose=0,
                  callbacks=[te.ADMMUpdate(data[0][:32], update_every=1, verbose=0)])
        assert np.isfinite(h.history["loss"]).all() and h.history["admm_channels_kept"][-1] == 28
        assert w.get_layer("admm_block1_conv1").z[0].dtype == "float32"
        small, plan = te.strip_pruning(w)
        assert plan.removed_channels() == 28
    finally:
        keras.config.set_dtype_policy(policy)


MIRRORED = textwrap.dedent("""
    import json, sys
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, tfmot_easiedge as te
    from tfmot_easiedge.models import zoo
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (64, 32, 32, 3)).astype("float32"); y = rng.integers(0, 10, 64)
    with strategy.scope():
        w = te.prune_filters(zoo.tiny_cnn(seed=0), "filters:0.5", importance="tbaa")
        w.compile(keras.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy")
    w.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[te.ADMMUpdate(x[:32], update_every=2, verbose=0)])
    w.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[te.MaskedFineTune(verbose=0)])
    small, plan = te.strip_pruning(w)
    zeros = all(not np.any(np.asarray(t.numpy())[m.numpy() == 0])
                for wr in te.admm.find_wrappers(w) for t, m in zip(wr.targets, wr.mask))
    diff = float(np.abs(np.asarray(small(x[:8])) - np.asarray(w(x[:8]))).max())
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "removed": plan.removed_channels(),
                      "zeros": zeros, "diff": diff}))
""")


def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, env=env,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {**result, "replicas": 2, "removed": 28, "zeros": True}
    assert result["diff"] <= 1e-4


# ----------------------------------------------------------------------------- the pipeline
def test_easiedge_pipeline_and_determinism(data):
    def run():
        m = zoo.tiny_cnn(seed=0)
        m.compile(keras.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
        return te.EasiEdge("filters:0.5", calibration_size=32, seed=3, verbose=0, min_update_interval=3).run(
            m, data, validation_data=(data[0][:32], data[1][:32]), admm_epochs=2, finetune_epochs=1,
            batch_size=16)

    r = run()
    assert [s["stage"] for s in r.stages] == ["baseline", "admm", "hard_prune", "finetune", "slim"]
    assert all(0.0 <= s["accuracy"] <= 1.0 for s in r.stages)
    # the slim stage is measured after the BatchNorm re-estimation (recalibrate_bn), on the returned model
    assert r.stage("slim")["accuracy"] == top1_accuracy(r.model, (data[0][:32], data[1][:32]))
    assert r.stage("slim")["macs"] == te.count_macs(r.model) < r.stage("baseline")["macs"]
    assert r.plan.removed_channels() == 28 and r.slim_max_abs_diff <= 1e-4
    assert set(r.history) == {"admm", "finetune"} and r.timings["zsteps"] == 1 + 12 // 3
    # the ADMM penalty is logged apart from the loss it is part of
    assert len(r.history["admm"]["admm_penalty"]) == 2 and all(p >= 0 for p in r.history["admm"]["admm_penalty"])
    assert run().plan == r.plan  # same model, data and seed: same plan


def test_easiedge_measures_the_baseline_like_the_slim_model(data):
    """The baseline is measured with BatchNorm re-estimated too (on a copy), the as-given accuracy beside it,
    so "before -> after" compares like with like; every stage says what it did."""
    m = zoo.tiny_cnn(seed=0)
    m.compile(keras.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy", metrics=["accuracy"])
    m.fit(*data, epochs=1, batch_size=16, verbose=0)  # moving statistics now lag the weights
    weights = [w.copy() for w in m.get_weights()]
    val = (data[0][:48], data[1][:48])
    r = te.EasiEdge("filters:0.5", importance="l1", verbose=0, recalibrate_bn=64).run(
        m, data, validation_data=val, admm_epochs=0, finetune_epochs=1, batch_size=16)
    base, slim = r.stage("baseline"), r.stage("slim")
    assert base["batchnorm"] == slim["batchnorm"] == "re-estimated on 64 training examples"
    assert base["accuracy_before_bn"] == top1_accuracy(m, val)  # the model as given, untouched
    assert all(np.array_equal(a, b) for a, b in zip(weights, m.get_weights()))
    copy = keras.models.clone_model(m)
    copy.set_weights(m.get_weights())
    te.recalibrate_batchnorm(copy, data[0], max_examples=64, batch_size=16)
    assert base["accuracy"] == top1_accuracy(copy, val)
    assert all(s["note"] for s in r.stages)


@pytest.mark.parametrize("pipeline", ["easiedge", "oneshot"])
def test_batchnorm_is_re_estimated_on_the_recalibration_data_when_given(pipeline, data):
    """``recalibration_data`` (e.g. augmented images when the training data are clean arrays) is what every
    stage's BatchNorm statistics are re-estimated on; the training data stay what the fine-tune fits."""
    m = zoo.tiny_cnn(seed=0)
    m.compile(keras.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy", metrics=["accuracy"])
    other = (np.clip(data[0][::-1] * 0.5 + 0.25, 0, 1).astype("float32"), data[1][::-1])
    val = (data[0][:48], data[1][:48])
    make = (te.EasiEdge("filters:0.5", importance="l1", verbose=0, recalibrate_bn=64) if pipeline == "easiedge"
            else te.OneShot("filters:0.5", importance="l1", verbose=0, recalibrate_bn=64))
    kwargs = {"admm_epochs": 0} if pipeline == "easiedge" else {}
    r = make.run(m, data, validation_data=val, finetune_epochs=0, batch_size=16, recalibration_data=other, **kwargs)
    copy = keras.models.clone_model(m)
    copy.set_weights(m.get_weights())
    te.recalibrate_batchnorm(copy, other[0], max_examples=64, batch_size=16)
    assert r.stage("baseline")["accuracy"] == top1_accuracy(copy, val)
    bn = next(layer for layer in r.model.layers if isinstance(layer, keras.layers.BatchNormalization))
    plain = make.run(m, data, validation_data=val, finetune_epochs=0, batch_size=16, **kwargs)
    bn_plain = plain.model.get_layer(bn.name)
    assert plain.plan == r.plan  # the same channels: only the statistics differ
    assert not np.allclose(bn.moving_mean.numpy(), bn_plain.moving_mean.numpy())
    assert {s["stage"]: s["batchnorm"] for s in r.stages}["finetune"] == "as trained"
    off = te.EasiEdge("filters:0.5", importance="l1", verbose=0, recalibrate_bn=0).run(
        m, data, validation_data=val, admm_epochs=0, finetune_epochs=0)
    assert "accuracy_before_bn" not in off.stage("baseline") and off.stage("slim")["batchnorm"] == "as trained"


def test_easiedge_one_shot_and_errors(data):
    m = zoo.tiny_cnn(seed=0)
    with pytest.raises(ValueError, match="compile"):
        te.EasiEdge("filters:0.5").run(m, data)
    m.compile("sgd", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="shape"):
        te.EasiEdge("filters:0.5", verbose=0).run(m, data, calibration_data=np.zeros((4, 8, 8, 3), "float32"))
    r = te.EasiEdge("filters:0.5", importance="l1", verbose=0).run(m, data, admm_epochs=0, finetune_epochs=0)
    assert r.plan.kept == te.select(te.analyze(m), te.importance.l1_norm(m), te.FilterBudget(0.5),
                                    min_fraction=DEFAULT_MIN_FRACTION).kept
    assert "admm" not in r.history
