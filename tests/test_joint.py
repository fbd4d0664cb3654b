"""Joint allocation from damage curves: exact against brute force, budgets met, floors kept, and TBAA's Fisher."""
import itertools

import keras
import numpy as np
import pytest
from keras import layers

from tfmot_easiedge.graph import analyze
from tfmot_easiedge.importance.damage import DamageCurve, curve_from_fisher, curves_from_scores, damage_curves
from tfmot_easiedge.importance.tbaa import TBAAScorer
from tfmot_easiedge.selection.joint import allocate_counts, allocate_separable, select_joint


def _random_curves(rng, sizes, convex):
    curves = {}
    for i, n in enumerate(sizes):
        steps = rng.random(n) ** 2 * 3
        steps = np.sort(steps) if convex else steps  # convex: increments grow with each removal
        curves[f"g{i}"] = DamageCurve(rng.permutation(n), np.concatenate([[0.0], np.cumsum(steps)]))
    return curves


def _brute(curves, cost, target, floors):
    names = list(curves)
    best, best_k = np.inf, None
    for ks in itertools.product(*[range(floors[g], curves[g].size + 1) for g in names]):
        k = dict(zip(names, ks))
        if cost(k) <= target:
            d = sum(curves[g].at_kept(k[g]) for g in names)
            if d < best - 1e-12:
                best, best_k = d, k
    return best, best_k


@pytest.mark.parametrize("seed", range(6))
def test_separable_dp_is_the_exact_optimum_even_for_non_convex_curves(seed):
    rng = np.random.default_rng(seed)
    curves = _random_curves(rng, (4, 5, 3, 4), convex=False)
    weights = {"g0": 1, "g1": 2, "g2": 1, "g3": 3}
    floors = {g: 1 for g in curves}
    units = 14
    counts = allocate_separable(curves, weights, units, floors)
    cost = lambda k: sum(weights[g] * k[g] for g in k)  # noqa: E731
    best, _ = _brute(curves, cost, units, floors)
    assert cost(counts) <= units
    assert sum(curves[g].at_kept(counts[g]) for g in curves) == pytest.approx(best)


@pytest.mark.parametrize("seed", range(6))
def test_lagrangian_on_a_bilinear_chain_is_optimal_for_convex_curves_and_always_feasible(seed):
    # A chain g0 -> g1 -> g2 -> g3: each "layer" costs k_in * k_out (MAC-like), the first 3 * k_0.
    rng = np.random.default_rng(100 + seed)
    curves = _random_curves(rng, (4, 4, 5, 3), convex=True)
    names = list(curves)

    def cost(k):
        return 3 * k["g0"] + sum(k[a] * k[b] for a, b in zip(names, names[1:]))

    floors = {g: 1 for g in curves}
    full = cost({g: c.size for g, c in curves.items()})
    for share in (0.3, 0.5, 0.75):
        target = share * full
        counts = allocate_counts(curves, cost, target, floors)
        assert cost(counts) <= target and all(counts[g] >= floors[g] for g in curves)
        best, _ = _brute(curves, cost, target, floors)
        got = sum(curves[g].at_kept(counts[g]) for g in curves)
        # Convex curves, bilinear cost: the relaxation, add-back and exchange land within 21% of the optimum
        # (measured worst case over 30 seeds x 3 budgets: 1.20x; the median case is exact). Not exact: a MAC
        # cost couples neighbouring groups, so there is a duality gap; the filter DP above is exact.
        assert got <= best * 1.21 + 1e-9, (share, got, best)


def test_impossible_budget_names_the_floor_cost():
    curves = {"g0": DamageCurve(np.arange(3), np.array([0.0, 1.0, 2.0, 3.0]))}
    with pytest.raises(ValueError, match="cannot be met"):
        allocate_counts(curves, lambda k: float(k["g0"]), 1.0, {"g0": 2})


def _chain_model():
    keras.utils.set_random_seed(0)
    inp = keras.Input((12, 12, 3))
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inp)
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="c2")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(12, 3, padding="same", activation="relu", name="c3")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, layers.Dense(5, name="head")(x))


def test_fisher_diagonal_is_tbaa_and_curves_price_joint_removal():
    model = _chain_model()
    data = np.random.default_rng(0).random((48, 12, 12, 3)).astype("float32")
    scorer = TBAAScorer(model, variant="expected")
    scores = scorer(data, progress=False)
    fisher = scorer.fisher(data, progress=False)
    for gid, f in fisher.items():
        np.testing.assert_allclose(0.5 * np.diag(f), scores[gid], rtol=1e-4, atol=1e-9)
        np.testing.assert_allclose(f, f.T, rtol=1e-4, atol=1e-9)
        assert np.linalg.eigvalsh(0.5 * (f + f.T)).min() > -1e-6 * np.abs(f).max()  # a Fisher is PSD
    curves = damage_curves(model, data, scorer=scorer, progress=False)
    for gid, c in curves.items():
        assert c.size == len(scores[gid]) and c.damage[0] == 0.0
        # removing the whole group: the curve's last point is the quadratic form of all ones
        assert c.damage[-1] == pytest.approx(0.5 * fisher[gid].sum(), rel=1e-6)
        # the first removal is the cheapest single channel
        assert c.damage[1] == pytest.approx(scores[gid].min(), rel=1e-4)


@pytest.mark.parametrize("budget", ["macs:0.5", "filters:0.5", "params:0.6"])
def test_select_joint_meets_the_budget_and_keeps_the_floor(budget):
    import tfmot_easiedge as te

    model = _chain_model()
    analysis = analyze(model)
    data = np.random.default_rng(1).random((32, 12, 12, 3)).astype("float32")
    curves = damage_curves(model, data, analysis=analysis, progress=False)
    plan = select_joint(analysis, curves, budget, min_fraction=0.25)
    small = te.slim(model, plan)
    kind, ratio = budget.split(":")
    if kind == "macs":
        target = (1 - float(ratio)) * te.count_macs(model)
        assert 0.97 * target <= te.count_macs(small) <= target * 1.0001  # met, and not by cutting far more
    elif kind == "params":
        assert te.count_params(small) <= (1 - float(ratio)) * te.count_params(model) * 1.0001
    else:
        total = sum(g.size for g in analysis.prunable_groups.values())
        assert sum(len(k) for k in plan.kept.values()) <= total - int(np.floor(float(ratio) * total))
    for gid, kept in plan.kept.items():
        assert len(kept) >= np.ceil(0.25 * analysis.groups[gid].size)
    assert plan.metadata["mode"] == "joint"
    again = select_joint(analysis, damage_curves(model, data, analysis=analysis, progress=False), budget,
                         min_fraction=0.25)
    assert again.kept == plan.kept  # same model, data, seed: the same plan


def test_per_channel_curves_are_running_sums():
    c = curves_from_scores({"g": np.array([0.3, 0.1, 0.2])})["g"]
    assert c.order.tolist() == [1, 2, 0] and np.allclose(c.damage, [0, 0.1, 0.3, 0.6])


def test_curves_reject_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        curve_from_fisher(np.array([[np.nan]]))
    with pytest.raises(ValueError, match="must not decrease"):
        DamageCurve(np.arange(2), np.array([0.0, 1.0, 0.5]))
    with pytest.raises(ValueError, match="square"):
        curve_from_fisher(np.ones((2, 3)))
    model = _chain_model()
    analysis = analyze(model)
    with pytest.raises(ValueError, match="not in the model"):
        select_joint(analysis, {"nope": DamageCurve(np.arange(2), np.zeros(3))}, "macs:0.5")
    with pytest.raises(ValueError, match="channels, the group"):
        select_joint(analysis, {"c1": DamageCurve(np.arange(2), np.zeros(3))}, "macs:0.5")


def test_measured_curves_match_the_kl_of_a_masked_copy():
    import tfmot_easiedge as te
    from tfmot_easiedge.importance.damage import measure_curves
    from tfmot_easiedge.plan import PruningPlan

    model = _chain_model()
    analysis = analyze(model)
    data = np.random.default_rng(2).random((40, 12, 12, 3)).astype("float32")
    scorer = TBAAScorer(model, analysis=analysis)
    curves = damage_curves(model, data, scorer=scorer, progress=False)
    measured = measure_curves(scorer, data, curves, widths=4, from_logits=True)
    gid = "c2"
    m = 8  # a measured point: 2/4 of the 16 channels
    keep = sorted(set(range(16)) - set(curves[gid].order[:m].tolist()))
    cut = te.masked_copy(model, PruningPlan({gid: keep}, {gid: 16}), analysis=analysis)

    def logp(out):
        out = np.asarray(out, np.float64)
        out = out - out.max(-1, keepdims=True)
        return out - np.log(np.exp(out).sum(-1, keepdims=True))

    p0, q = logp(model.predict(data, verbose=0)), logp(cut.predict(data, verbose=0))
    kl = float(np.mean(np.sum(np.exp(p0) * (p0 - q), -1)))
    assert measured[gid].damage[m] == pytest.approx(kl, rel=1e-3, abs=1e-7)
    assert measured[gid].order.tolist() == curves[gid].order.tolist()


def test_select_dispatches_damage_curves_to_the_joint_allocator():
    import tfmot_easiedge as te

    model = _chain_model()
    analysis = analyze(model)
    data = np.random.default_rng(3).random((32, 12, 12, 3)).astype("float32")
    curves = te.importance.as_criterion("tbaa_curves").score(model, data, analysis=analysis, measure=2)
    plan = te.select(analysis, curves, "macs:0.5", min_fraction=0.1)
    assert plan.metadata["mode"] == "joint"
    with pytest.raises(ValueError, match="jointly"):
        te.select(analysis, curves, "macs:0.5", mode="uniform")
    with pytest.raises(ValueError, match="tbaa_curves"):
        te.select(analysis, {g: np.ones(c.size) for g, c in curves.items()}, "macs:0.5", mode="joint")


@pytest.mark.parametrize("pipeline", ["oneshot", "easiedge"])
def test_pipelines_prune_with_damage_curves(pipeline):
    import tfmot_easiedge as te

    model = _chain_model()
    model.compile(keras.optimizers.SGD(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(4)
    x, y = rng.random((64, 12, 12, 3)).astype("float32"), rng.integers(0, 5, 64)
    kwargs = {"importance": te.importance.TBAACurves(measure=2), "calibration_size": 32, "verbose": 0,
              "recalibrate_bn": 0}
    if pipeline == "oneshot":
        result = te.OneShot("macs:0.5", **kwargs).run(model, (x, y), finetune_epochs=1)
    else:
        result = te.EasiEdge("macs:0.5", **kwargs).run(model, (x, y), admm_epochs=1, finetune_epochs=1)
    assert te.count_macs(result.model) <= 0.5 * te.count_macs(model) * 1.0001
    assert result.plan.metadata.get("mode") == "joint" or result.plan.metadata.get("importance") == "tbaa_curves"
    with pytest.raises(ValueError, match="iterative"):
        te.OneShot("macs:0.5", importance="tbaa_curves", iterations=2)


def test_select_refuses_unknown_protect_names():
    import tfmot_easiedge as te

    analysis = analyze(_chain_model())
    scores = {g: np.ones(grp.size) for g, grp in analysis.prunable_groups.items()}
    with pytest.raises(ValueError, match="'c9' is not a layer or group"):
        te.select(analysis, scores, "macs:0.5", protect=["c9"])
    curves = {g: DamageCurve(np.arange(grp.size), np.linspace(0, 1, grp.size + 1))
              for g, grp in analysis.prunable_groups.items()}
    with pytest.raises(ValueError, match="'c9' is not a layer or group"):
        select_joint(analysis, curves, "macs:0.5", protect=["c9"])
    assert "c2" not in select_joint(analysis, curves, "macs:0.2", protect=["c2"]).kept


@pytest.mark.parametrize("kind", ["sequential", "h5"])
def test_joint_allocation_on_sequential_and_h5_loaded_models(kind, tmp_path):
    import tfmot_easiedge as te

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((12, 12, 3)), layers.Conv2D(8, 3, activation="relu", name="c1"),
                              layers.BatchNormalization(name="bn"), layers.Conv2D(12, 3, activation="relu", name="c2"),
                              layers.GlobalAveragePooling2D(), layers.Dense(5, name="head")])
    if kind == "h5":
        path = tmp_path / "m.h5"
        model.save(path)
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    data = np.random.default_rng(5).random((32, 12, 12, 3)).astype("float32")
    analysis = analyze(model)
    curves = te.importance.as_criterion("tbaa_curves").score(model, data, analysis=analysis, measure=2)
    plan = te.select(analysis, curves, "macs:0.5", min_fraction=0.25)
    small = te.slim(model, plan, analysis=analysis)
    assert te.count_macs(small) <= 0.5 * te.count_macs(model) * 1.0001
    np.testing.assert_allclose(small.predict(data, verbose=0),
                               te.masked_copy(model, plan, analysis=analysis).predict(data, verbose=0), atol=1e-4)
