"""Strategies as objects: criteria and budgets a user defines outside the package go through ``select``,
``EasiEdge`` and ``OneShot``; ``as_budget`` / ``as_criterion`` accept every documented form and refuse the rest
in one line; registries refuse duplicates; ``OneShot`` (one-shot and iterative) meets its budget after slimming."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import keras
import numpy as np
import pytest

import tfmot_easiedge as te
from tfmot_easiedge.importance import Criterion, FunctionCriterion, Norm, as_criterion, register_criterion
from tfmot_easiedge.models import zoo
from tfmot_easiedge.selection import Budget, FilterBudget, MacsBudget, ParamsBudget, as_budget, register_budget, select
from tfmot_easiedge.selection.cost import CostModel, MacsCost, ParamsCost

N = 64


# ----------------------------------------------------------------------------- a user's strategies
class SquaredWidthCost(CostModel):
    """A made-up, non-linear cost: the sum of the squared widths of the prunable groups."""

    name = label = "squared width"

    def __init__(self, analysis):
        super().__init__(analysis)
        self.on = np.array([g in analysis.prunable_groups for g in self.group_ids], dtype=float)

    def total(self, kept):
        return float((self.on * kept ** 2).sum())

    def saving(self, kept):
        return self.on * (2 * kept - 1)


@dataclasses.dataclass(frozen=True)
class SquaredWidthBudget(Budget):
    kind = "squared_width_test"
    ratio: float

    def cost_model(self, analysis):
        return SquaredWidthCost(analysis)

    def describe(self):
        return {"kind": self.kind, "ratio": self.ratio}


class ChannelIndex(Criterion):
    """Scores channel i of every group by i: the plan must keep the highest indices."""

    name, needs_data, units = "channel_index_test", False, "index"

    def score(self, model, data=None, *, analysis=None, **options):
        return {g: np.arange(grp.size, dtype=float) for g, grp in analysis.prunable_groups.items()}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.uniform(0, 255, (N, 32, 32, 3)).astype("float32"), rng.integers(0, 10, N)


def _compiled():
    m = zoo.tiny_cnn(seed=0)
    m.compile(keras.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def _squared_cost_ok(analysis, plan, ratio):
    cost = SquaredWidthCost(analysis)
    kept = cost.kept_counts(plan.kept)
    return cost.total(kept) <= (1 - ratio) * cost.total(cost.full())


# ----------------------------------------------------------------------------- select and EasiEdge end to end
def test_user_criterion_and_budget_go_through_select():
    m = zoo.tiny_cnn(seed=0)
    a = te.analyze(m)
    scores = ChannelIndex().score(m, analysis=a)
    plan = select(a, scores, SquaredWidthBudget(0.5))
    assert plan.budget == {"kind": "squared_width_test", "ratio": 0.5}
    assert _squared_cost_ok(a, plan, 0.5)
    for g, kept in plan.kept.items():  # the lowest indices go first
        assert kept == list(range(a.groups[g].size - len(kept), a.groups[g].size))
    # the add-back pass leaves no removed channel that would still fit
    cost = SquaredWidthCost(a)
    kept = cost.kept_counts(plan.kept)
    for i, g in enumerate(cost.group_ids):
        if g in plan.kept and len(plan.kept[g]) < a.groups[g].size:
            kept[i] += 1
            assert cost.total(kept) > 0.5 * cost.total(cost.full())
            kept[i] -= 1


def test_user_criterion_and_budget_go_through_easiedge(data):
    r = te.EasiEdge(SquaredWidthBudget(0.4), importance=ChannelIndex(), verbose=0).run(
        _compiled(), data, admm_epochs=1, finetune_epochs=1)
    a = te.analyze(zoo.tiny_cnn(seed=0))
    assert r.plan.removed_channels() > 0 and _squared_cost_ok(a, r.plan, 0.4)
    assert r.plan.metadata["importance"] == "channel_index_test"
    assert r.slim_max_abs_diff < 1e-4


def test_plain_function_criterion_goes_through_easiedge(data):
    def by_index(model, data, *, analysis):
        return {g: np.arange(grp.size, dtype=float) for g, grp in analysis.prunable_groups.items()}

    r = te.EasiEdge("filters:0.5", importance=by_index, verbose=0).run(_compiled(), data, admm_epochs=1,
                                                                      finetune_epochs=0)
    assert r.plan.metadata["importance"] == "by_index"
    for g, kept in r.plan.kept.items():
        assert kept == list(range(r.plan.group_sizes[g] - len(kept), r.plan.group_sizes[g]))


# ----------------------------------------------------------------------------- as_budget
@pytest.mark.parametrize("spec, expected", [
    ("0.8", FilterBudget(0.8)), (0.8, FilterBudget(0.8)), (0, FilterBudget(0.0)),
    ("filters:0.8", FilterBudget(0.8)), ("macs:0.5", MacsBudget(0.5)), ("macs:4x", MacsBudget(0.75)),
    ("MACS: 2X", MacsBudget(0.5)), ("params:0.5", ParamsBudget(0.5)), ("params:1x", ParamsBudget(0.0)),
    ({"kind": "macs", "ratio": 0.5}, MacsBudget(0.5)), (ParamsBudget(0.25), ParamsBudget(0.25)),
])
def test_as_budget_accepts_every_form(spec, expected):
    budget = as_budget(spec)
    assert budget == expected and type(budget) is type(expected)
    assert as_budget(budget.describe()) == budget  # describe() round-trips
    assert te.parse_budget(f"{budget.kind}:{budget.ratio}") == budget


@pytest.mark.parametrize("spec, error, match", [
    ("macs:1.5", ValueError, "ratio must be in"), ("filters:1.0", ValueError, "ratio must be in"),
    (-0.1, ValueError, "ratio must be in"), ("macs:0.5x", ValueError, "reduction factor"),
    ("flops:0.5", ValueError, "unknown kind 'flops'"), ("flops=0.5", ValueError, "does not parse"),
    ("macs:lots", ValueError, "does not parse"), ({"kind": "flops", "ratio": 0.5}, ValueError, "unknown kind"),
    ({"ratio": 0.5}, ValueError, "unknown kind"), (None, TypeError, "budget must be"),
    (True, TypeError, "budget must be"), ([0.5], TypeError, "budget must be"),
])
def test_as_budget_refuses_bad_forms_in_one_line(spec, error, match):
    with pytest.raises(error, match=match) as info:
        as_budget(spec)
    assert "\n" not in str(info.value)


def test_register_budget_refuses_duplicates_and_parses_registered_kinds():
    with pytest.raises(ValueError, match="already registered"):
        register_budget(MacsBudget)

    @dataclasses.dataclass(frozen=True)
    class TestBytes(ParamsBudget):
        kind = "bytes_test"

    register_budget(TestBytes)
    assert as_budget("bytes_test:2x") == TestBytes(0.5)
    assert as_budget({"kind": "bytes_test", "ratio": 0.5}) == TestBytes(0.5)
    with pytest.raises(ValueError, match="already registered"):
        register_budget(TestBytes)


def test_cost_models_agree_with_the_counters():
    m = zoo.resnet20(width=0.5, seed=0)
    a = te.analyze(m)
    plan = select(a, te.importance.l1_norm(m, analysis=a), "filters:0.4")
    small = te.slim(m, plan, analysis=a)
    for cost, count in ((MacsCost(a), te.count_macs), (ParamsCost(a), te.count_params)):
        assert cost.total(cost.full()) == pytest.approx(count(m))
        assert cost.total(cost.kept_counts(plan.kept)) == pytest.approx(count(small))


@pytest.mark.parametrize("budget", ["params:0.5", "macs:0.5"])
@pytest.mark.parametrize("mode", ["global", "uniform"])
def test_params_and_macs_budgets_are_met_after_slimming_in_both_modes(budget, mode):
    m = zoo.resnet20(width=0.5, seed=0)
    a = te.analyze(m)
    b = as_budget(budget)
    plan = select(a, te.importance.l1_norm(m, analysis=a), b, mode=mode)
    count = te.count_params if b.kind == "params" else te.count_macs
    achieved = 1 - count(te.slim(m, plan, analysis=a)) / count(m)
    # uniform shares move in steps of one channel in every group at once (groups of 8-32 channels here)
    assert b.ratio <= achieved <= b.ratio + (0.02 if mode == "global" else 0.08)


def test_impossible_budget_is_a_one_line_error():
    a = te.analyze(zoo.tiny_cnn(seed=0))
    scores = {g: np.ones(grp.size) for g, grp in a.prunable_groups.items()}
    for budget, match in (("macs:0.999", "cannot remove .* of MACs"), ("params:0.99", "of parameters"),
                          ("filters:0.99", "cannot remove")):
        with pytest.raises(ValueError, match=match) as info:
            select(a, scores, budget, min_fraction=0.1)
        assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- as_criterion
def test_as_criterion_accepts_names_objects_and_functions():
    l1 = as_criterion("l1")
    assert isinstance(l1, Norm) and l1.name == "l1" and not l1.needs_data
    assert as_criterion("tbaa").units == "nats" and as_criterion("tbaa").needs_data
    assert as_criterion("taylor_fo").needs_labels and as_criterion("random").stochastic
    c = ChannelIndex()
    assert as_criterion(c) is c

    def mine(model, data, *, analysis):
        return {}

    f = as_criterion(mine)
    assert isinstance(f, FunctionCriterion) and f.name == "mine" and f.needs_data
    assert f.score(None, None, analysis=None, batch_size=8, seed=3) == {}  # options it does not take are dropped
    assert set(te.importance.CRITERION_NAMES) == {"tbaa", "exact_ig", "l1", "l2", "bn_scale", "taylor_fo", "random",
                                                  "group_l2", "tbaa_curves"}
    assert as_criterion("tbaa_curves").returns_curves and not as_criterion("group_l2").needs_data
    assert te.importance.get("l2").__name__ == "l2_norm"


@pytest.mark.parametrize("spec, error", [("magic", ValueError), (42, TypeError), (None, TypeError)])
def test_as_criterion_refuses_unknown_names_and_other_things(spec, error):
    with pytest.raises(error, match="importance") as info:
        as_criterion(spec)
    assert "\n" not in str(info.value)


def test_register_criterion_refuses_duplicates_and_is_found_by_name(data):
    with pytest.raises(ValueError, match="already registered"):
        register_criterion("l1", ChannelIndex())
    registered = register_criterion("channel_index_registered_test", ChannelIndex())
    assert as_criterion("channel_index_registered_test") is registered
    with pytest.raises(ValueError, match="already registered"):
        register_criterion("channel_index_registered_test", lambda m, d, *, analysis: {})
    w = te.prune_filters(zoo.tiny_cnn(seed=0), "filters:0.5", importance="channel_index_registered_test")
    assert w.get_layer("admm_block1_conv1").settings["importance"] == "channel_index_registered_test"


def test_criteria_and_budgets_import_without_tensorflow():
    code = ("import sys; from tfmot_easiedge.importance import as_criterion; "
            "from tfmot_easiedge.selection import as_budget; "
            "print(as_criterion('tbaa').name, as_budget('macs:4x').ratio, "
            "'tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["tbaa", "0.75", "False", "False"]


# ----------------------------------------------------------------------------- OneShot
@pytest.mark.parametrize("iterations", [1, 2])
def test_oneshot_meets_its_mac_budget_after_slimming(data, iterations):
    m = _compiled()
    r = te.OneShot("macs:0.5", importance="l1", iterations=iterations, verbose=0).run(
        m, data, data, finetune_epochs=1, epochs_between=1)
    names = [s["stage"] for s in r.stages]
    rounds = ["prune_1", "finetune_1"] if iterations == 2 else []
    assert names == ["baseline", *rounds, "hard_prune", "finetune", "slim"]
    achieved = 1 - te.count_macs(r.model) / te.count_macs(m)
    assert 0.5 <= achieved <= 0.56
    assert r.stage("slim")["macs"] == te.count_macs(r.model) and r.slim_max_abs_diff < 1e-4
    assert r.plan.metadata["iterations"] == iterations and r.plan.metadata["importance"] == "l1"
    if iterations == 2:  # the first round stops half-way (geometrically), the second reaches the budget
        first = r.stage("prune_1")["macs"] / r.stage("baseline")["macs"]
        assert 0.5 < first <= np.sqrt(0.5) + 1e-9
        assert set(r.history) == {"finetune_1", "finetune"}
    assert all(s["accuracy"] is not None for s in r.stages)


def test_oneshot_with_a_user_budget_and_criterion(data):
    r = te.OneShot(SquaredWidthBudget(0.5), importance=ChannelIndex(), iterations=2, verbose=0).run(
        _compiled(), data, finetune_epochs=0, epochs_between=0)
    assert _squared_cost_ok(te.analyze(zoo.tiny_cnn(seed=0)), r.plan, 0.5)
    with pytest.raises(ValueError, match="iterations"):
        te.OneShot("macs:0.5", iterations=0)


def test_before_finetune_accuracy_is_measured_with_batchnorm_reestimated():
    import keras

    import tfmot_easiedge as te
    from tfmot_easiedge.models import zoo

    model = zoo.tiny_cnn()
    model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x, y = rng.random((96, 32, 32, 3)).astype("float32"), rng.integers(0, 10, 96)
    result = te.OneShot("macs:0.5", importance="l1", verbose=0, recalibrate_bn=64, iterations=2).run(
        model, (x, y), (x[:32], y[:32]), finetune_epochs=1)
    for name in ("prune_1", "hard_prune"):
        stage = result.stage(name)
        assert "re-estimated" in stage["batchnorm"] and stage["accuracy_before_bn"] is not None, stage
