"""ADMM's search (issue 14, item 4): the proximal penalty step, momentum reset, adaptive freeze, score averaging."""
from __future__ import annotations

import keras
import numpy as np
import pytest

import tfmot_easiedge as te
from tfmot_easiedge import _keras_compat as kc
from tfmot_easiedge.admm._state import PruningState
from tfmot_easiedge.models import zoo


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.random((64, 32, 32, 3), dtype=np.float32), rng.integers(0, 10, 64)


def _wrapped(importance="l1", penalty="proximal", rho=0.5, momentum=0.9, lr=0.05):
    keras.utils.set_random_seed(0)
    m = te.prune_filters(zoo.tiny_cnn(), "filters:0.5", importance=importance, rho=rho, penalty=penalty)
    m.compile(keras.optimizers.SGD(lr, momentum=momentum), "sparse_categorical_crossentropy")
    return m


def test_proximal_step_is_the_exact_minimiser_on_removed_entries(data):
    m = _wrapped()
    cb = te.ADMMUpdate(update_every=10 ** 6, verbose=0)
    cb.set_model(m)
    cb.on_train_begin()  # the first projection
    try:
        cb.on_train_batch_begin(0)
        w = PruningState(m).wrappers[0]
        p = float(w.prox.numpy())
        assert p == pytest.approx(0.5 * 0.05 / (1 - 0.9))  # rho * lr / (1 - momentum)
        target, z, u, mask = w.targets[0], w.z[0], w.u[0], w.mask[0]
        rng = np.random.default_rng(1)
        z.assign(z.numpy() * mask.numpy())
        u.assign(rng.normal(size=u.shape).astype("float32"))
        value = rng.normal(size=target.shape).astype("float32")
        out = np.asarray(target.constraint(keras.ops.convert_to_tensor(value)))
        mk = mask.numpy()
        expected = mk * value + (1 - mk) * (value + p * (z.numpy() - u.numpy())) / (1 + p)
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
        assert (mk == 0).any() and not np.allclose(out[mk == 0], value[mk == 0])  # removed entries pulled
    finally:
        cb.on_train_end()
    # detached: the constraint leaves the weight alone
    np.testing.assert_array_equal(np.asarray(target.constraint(keras.ops.convert_to_tensor(value))), value)


def test_proximal_penalty_is_not_in_the_loss_and_drives_removed_weights_to_zero(data):
    # Measured on this net (rho 5, lr 0.05, momentum 0.9, 6 epochs): proximal residual 0.77 -> 0.0, the same
    # penalty in the loss rang at 0.69-0.81 with its "loss" growing to thousands.
    hist = {}
    for penalty in ("proximal", "loss"):
        m = _wrapped(penalty=penalty, rho=5.0)
        cb = te.ADMMUpdate(update_every=4, verbose=0, rho_growth=1.0)
        hist[penalty] = m.fit(*data, batch_size=16, epochs=4, verbose=0, callbacks=[cb]).history
    prox, loss = hist["proximal"], hist["loss"]
    assert prox["loss"][-1] < 3.0  # the data loss alone (10 classes: ln 10 = 2.3)
    assert loss["loss"][-1] > 10.0  # includes the penalty
    assert prox["admm_primal_residual"][-1] < 0.01 < loss["admm_primal_residual"][-1]
    with pytest.raises(ValueError, match="penalty"):
        te.prune_filters(zoo.tiny_cnn(), "filters:0.5", importance="l1", penalty="l2")


def test_momentum_of_entries_that_change_side_is_reset(data):
    m = _wrapped(importance="random")  # the seed changes at every Z-step, so channels change side
    cb = te.ADMMUpdate(update_every=10 ** 6, verbose=0, score_ema=0.0, freeze_after=None)
    cb.set_model(m)
    cb.on_train_begin()
    try:
        for _ in range(3):
            m.train_on_batch(data[0][:16], data[1][:16])
        st = PruningState(m)
        before = [[np.asarray(v.numpy()) for v in w.mask] for w in st.wrappers]
        slots_before = [[[np.asarray(s.numpy()) for s in kc.optimizer_slots(m.optimizer, t)] for t in w.targets]
                        for w in st.wrappers]
        assert any(np.abs(s).sum() > 0 for ws in slots_before for ts in ws for s in ts)
        cb.z_step()
        assert cb.last["admm_mask_changes"] > 0 and 0 < cb.last["admm_support_jaccard"] < 1
        checked = 0
        for w, mb, sb in zip(st.wrappers, before, slots_before):
            for t, mask_before, mask_after, slots_b in zip(w.targets, mb, w.mask, sb):
                flipped = (mask_before > 0.5) != (mask_after.numpy() > 0.5)
                for s_before, s_after in zip(slots_b, kc.optimizer_slots(m.optimizer, t)):
                    after = np.asarray(s_after.numpy())
                    assert np.all(after[flipped] == 0)
                    np.testing.assert_array_equal(after[~flipped], s_before[~flipped])
                    checked += int(flipped.sum())
        assert checked > 0
    finally:
        cb.on_train_end()


def test_support_freezes_once_stable(data):
    m = _wrapped(importance="l1", lr=0.01)
    cb = te.ADMMUpdate(update_every=2, verbose=0, freeze_after=3)
    h = m.fit(*data, batch_size=16, epochs=3, verbose=0, callbacks=[cb]).history
    assert h["admm_frozen"][-1] == 1.0 and h["admm_mask_changes"][-1] == 0
    w = PruningState(m).wrappers[0]
    assert float(w.stable_zsteps.numpy()) >= 3  # kept in the wrappers: a reloaded model stays frozen
    with pytest.raises(ValueError, match="freeze_after"):
        te.ADMMUpdate(freeze_after=0)
    with pytest.raises(ValueError, match="score_ema"):
        te.ADMMUpdate(score_ema=1.0)


def test_scores_are_averaged_across_zsteps():
    cb = te.ADMMUpdate(score_ema=0.5)
    first = cb._smoothed({"g": np.array([1.0, 0.0])})
    second = cb._smoothed({"g": np.array([0.0, 1.0])})
    np.testing.assert_allclose(first["g"], [1.0, 0.0])
    np.testing.assert_allclose(second["g"], [0.5, 0.5])
    assert te.ADMMUpdate(score_ema=0.0)._smoothed({"g": np.array([3.0])})["g"][0] == 3.0


def test_easiedge_passes_the_search_options_on(data):
    keras.utils.set_random_seed(0)
    m = zoo.tiny_cnn()
    m.compile(keras.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy", metrics=["accuracy"])
    r = te.EasiEdge("filters:0.5", importance="l1", verbose=0,
                    admm_options={"penalty": "loss", "rank_on": "w_plus_u", "freeze_after": None}).run(
        m, data, admm_epochs=1, finetune_epochs=1, batch_size=16)
    assert PruningState(r.masked_model).wrappers[0].settings["penalty"] == "loss"
    assert "admm_support_jaccard" in r.history["admm"] and r.slim_max_abs_diff < 1e-4
    with pytest.raises(TypeError):
        te.EasiEdge("filters:0.5", admm_options={"no_such_option": 1}).run(m, data, admm_epochs=1)
