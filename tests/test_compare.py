"""benchmarks/compare.py: the tiny profile end to end (every method), budgets met, numbers consistent, resumable."""
from __future__ import annotations

import gc
import json
import math
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import tfmot_easiedge as te
from tfmot_easiedge.models import zoo
from tfmot_easiedge.selection import FilterBudget, MacsBudget, MacsModel, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for ``benchmarks``
from benchmarks import compare  # noqa: E402

# Every method runs once: the filter budget with the global criteria and the uniform split, the MAC budget
# with the global greedy selection (l1) and the uniform bisection.
FILTER_RUNS = (("easiedge", "tbaa", "taylor_fo", "random", "uniform_l1"), "filters:0.8")
MACS_RUNS = (("l1", "uniform_l1"), "macs:0.75")
MODEL = "vgg16"


# ----------------------------------------------------------------------------- fast unit checks
def test_budget_tags_and_run_names():
    assert compare.budget_tag("filters:0.5") == "filters50"
    assert compare.budget_tag("macs:0.75") == "macs75"
    assert compare.run_stem("resnet56", "uniform_l1", "macs:0.5") == "resnet56_uniform_l1_macs50"
    with pytest.raises(ValueError):
        compare.budget_tag("flops:0.5")


def test_arguments_select_and_default_report_path(tmp_path):
    args = compare.parse_args(["--profile", "tiny", "--models", "vgg16", "--methods", "l1,random",
                               "--budgets", "macs:0.5", "--results-dir", str(tmp_path / "r")])
    assert (args.models, args.methods, args.budgets) == (["vgg16"], ["l1", "random"], ["macs:0.5"])
    assert args.report == tmp_path / "RESULTS.md"
    with pytest.raises(SystemExit):
        compare.parse_args(["--methods", "l1,magic"])


def test_tuning_settings_override_only_what_comes_after_the_baseline(tmp_path):
    args = compare.parse_args(["--profile", "tiny", "--set", "finetune_lr=0.03", "--set", "min_fraction=0.1",
                               "--results-dir", str(tmp_path)])
    assert args.set == {"finetune_lr": "0.03", "min_fraction": "0.1"}
    base = compare.PROFILES["tiny"]
    tuned = base.with_overrides(args.set)
    assert (tuned.finetune_lr, tuned.min_fraction) == (0.03, 0.1)
    assert tuned.train_config("vgg16") == base.train_config("vgg16")  # the same cached baseline
    assert compare.tuning_tag(args.set) == "finetune_lr=0.03,min_fraction=0.1"
    assert "--set finetune_lr=0.03 --set min_fraction=0.1" in compare._command(args)
    for bad in (["--set", "baseline_epochs=3"], ["--set", "finetune_lr=fast"], ["--set", "finetune_lr"]):
        with pytest.raises(SystemExit):
            compare.parse_args(["--profile", "tiny", *bad])
    # a result recorded before a field existed still matches while that field holds its default
    stored = base.as_dict()
    del stored["min_fraction"]
    assert base.matches(stored) and not tuned.matches(stored)
    assert not base.matches({**stored, "unknown": 1}) and not base.matches(None)


def test_profiles_give_every_method_the_same_epochs():
    for profile in compare.PROFILES.values():
        assert 0 < profile.admm_epochs < profile.finetune_epochs
        assert set(profile.widths) == set(compare.MODELS)
    with pytest.raises(ValueError, match="admm_epochs"):
        compare.Profile(**{**compare.PROFILES["tiny"].as_dict(), "admm_epochs": 2})


@pytest.mark.parametrize("ratio", [0.5, 0.75])
def test_uniform_bisection_meets_the_mac_target_with_the_smallest_ratio(ratio):
    model = zoo.vgg_small(width=0.25, seed=0)
    analysis = te.analyze(model)
    scores = te.importance.l1_norm(model, analysis=analysis)
    plan, found = compare.uniform_plan_for_macs(analysis, scores, MacsBudget(ratio))
    base = te.count_macs(model)
    assert plan.metadata["mode"] == "uniform"
    assert 1 - te.count_macs(te.slim(model, plan, analysis=analysis)) / base >= ratio
    # a slightly smaller uniform ratio misses the target (as predicted by the selection's MAC model)
    mm = MacsModel(analysis)
    smaller = select(analysis, scores, FilterBudget(found - 1e-6), mode="uniform")
    kept = np.array([len(smaller.kept.get(g, range(analysis.groups[g].size))) for g in mm.group_ids], float)
    assert mm.macs(kept) > (1 - ratio) * base


# ----------------------------------------------------------------------------- the tiny profile
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny profile's runs (each method once) into temporary folders; the tests below read them.

    Python's garbage collector is frozen meanwhile (``gc.freeze``): the runs call ``gc.collect()`` about 20
    times (``keras.backend.clear_session``, the TFLite converter), and each would otherwise walk the million
    objects TensorFlow and the earlier tests keep alive (0.2 s alone, seconds in the full suite). Nothing
    frozen is lost: ``gc.unfreeze`` hands those objects back to the collector when the module is done.
    """
    from tfmot_easiedge.data import cifar10_dir

    if cifar10_dir() is None:
        pytest.skip("local CIFAR-10 TFRecords not found (../shared/data/cifar10 or $EASIEDGE_CIFAR10_DIR)")
    gc.collect()
    gc.freeze()
    try:
        yield _run_tiny(tmp_path_factory)
    finally:
        gc.unfreeze()


def _run_tiny(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("compare")
    common = ["--profile", "tiny", "--models", MODEL, "--results-dir", str(root / "results"),
              "--cache-dir", str(root / "cache"), "--save-models"]
    for methods, budget in (FILTER_RUNS, MACS_RUNS):
        assert compare.main([*common, "--methods", ",".join(methods), "--budgets", budget]) == 0
    folder = root / "results" / "tiny"
    records = [json.loads(path.read_text()) for path in folder.glob(f"{MODEL}_*.json")]
    runs = {(r["method"], r["budget_text"]): r for r in records}
    baseline = json.loads((folder / f"baseline_{MODEL}.json").read_text())
    return {"root": root, "folder": folder, "common": common, "runs": runs, "baseline": baseline}


def _expected_runs():
    return {(m, budget) for methods, budget in (FILTER_RUNS, MACS_RUNS) for m in methods}


@pytest.mark.slow
def test_every_method_wrote_a_result(tiny):
    assert set(tiny["runs"]) == _expected_runs()
    assert set(compare.METHODS) == {m for m, _ in tiny["runs"]}
    for (method, budget), r in tiny["runs"].items():
        assert (tiny["folder"] / f"{compare.run_stem(MODEL, method, budget)}.json").exists()
        assert 0.0 <= r["accuracy_before_finetune"] <= 1.0 and 0.0 <= r["accuracy_after_finetune"] <= 1.0
        assert r["latency"]["median_ms"] > 0 and r["latency"]["threads"] == 1 and r["latency"]["batch_size"] == 1
        assert r["seconds"]["total"] >= r["seconds"]["prune"] >= 0
        assert r["slim_max_abs_diff"] < 1e-3, "the slim model must compute what the masked model computes"


@pytest.mark.slow
def test_every_method_trains_the_same_epochs_after_the_baseline(tiny):
    epochs = compare.PROFILES["tiny"].finetune_epochs
    for (method, _), r in tiny["runs"].items():
        trained = sum(len(h["loss"]) for h in r["history"].values())
        assert trained == epochs == r["epochs_after_baseline"], method


@pytest.mark.slow
def test_reported_macs_and_params_are_those_of_the_slim_model(tiny):
    base_model = keras.saving.load_model(tiny["root"] / "cache" / f"{tiny['baseline']['cache_name']}.keras")
    assert te.count_macs(base_model) == tiny["baseline"]["macs"]
    for (method, budget), r in tiny["runs"].items():
        slim_model = keras.saving.load_model(tiny["folder"] / f"{compare.run_stem(MODEL, method, budget)}.keras")
        assert te.count_macs(slim_model) == r["macs"]
        assert te.count_params(slim_model) == r["params"]
        rebuilt = te.slim(base_model, te.PruningPlan.from_dict(r["plan"]))  # the plan alone gives the same model
        assert te.count_macs(rebuilt) == r["macs"]
        assert math.isclose(r["mac_reduction"], tiny["baseline"]["macs"] / r["macs"])
        layers = {layer.name: layer for layer in slim_model.layers}
        for name, (before, after) in r["kept_filters"].items():
            assert after == getattr(layers[name], "filters", None) or after == getattr(layers[name], "units", None)
            assert 1 <= after <= before


@pytest.mark.slow
def test_filter_budgets_are_met(tiny):
    for (method, budget), r in tiny["runs"].items():
        if not budget.startswith("filters"):
            continue
        met, ratio = r["budget_met"], float(budget.split(":")[1])
        groups = r["plan"]["groups"]
        removed = sum(g["size"] - len(g["kept"]) for g in groups.values())
        total = sum(g["size"] for g in groups.values())
        assert (met["filters_removed"], met["filters_total"]) == (removed, total)
        # the budget counts convolution filters per producer: at least the target, overshooting by < one channel
        target = math.floor(ratio * met["counted_filters_total"])
        assert met["target_filters_removed"] == target
        if method == "uniform_l1":  # every group loses round(ratio * size): within one channel per group
            assert all(abs((g["size"] - len(g["kept"])) - ratio * g["size"]) <= 1 for g in groups.values())
        else:
            assert target <= met["counted_filters_removed"] <= target + max(4, len(groups)), method


@pytest.mark.slow
def test_mac_budgets_are_met_within_one_percent(tiny):
    for (method, budget), r in tiny["runs"].items():
        if not budget.startswith("macs"):
            continue
        ratio = float(budget.split(":")[1])
        achieved = 1 - r["macs"] / tiny["baseline"]["macs"]
        assert achieved == pytest.approx(r["budget_met"]["achieved"])
        assert achieved >= ratio - 0.01, (method, achieved)
        assert achieved <= ratio + 0.1, (method, achieved)  # not grossly over-pruned either
    uniform = tiny["runs"][("uniform_l1", MACS_RUNS[1])]
    assert 0 < uniform["selection"]["uniform_ratio"] < 1


@pytest.mark.slow
def test_report_and_plot_written_and_runs_resumed(tiny):
    report = (tiny["root"] / "RESULTS.md").read_text()
    assert "Profile `tiny`" in report and "--profile tiny" in report
    assert all(f"| {m} |" in report for m in compare.METHODS)
    assert (tiny["folder"] / "accuracy_vs_macs.png").stat().st_size > 0
    path = tiny["folder"] / f"{compare.run_stem(MODEL, 'l1', MACS_RUNS[1])}.json"
    before = path.stat().st_mtime_ns
    assert compare.main([*tiny["common"], "--methods", "l1", "--budgets", MACS_RUNS[1]]) == 0
    assert path.stat().st_mtime_ns == before, "an existing result must be skipped without --force"


@pytest.mark.slow
def test_a_tuning_run_prunes_the_same_baseline_and_is_tabled(tiny):
    budget = MACS_RUNS[1]
    assert compare.main([*tiny["common"], "--methods", "l1", "--budgets", budget,
                         "--set", "min_fraction=0.25"]) == 0
    folder = tiny["root"] / "results" / "tiny-tuning" / "min_fraction=0.25"
    record = json.loads((folder / f"{compare.run_stem(MODEL, 'l1', budget)}.json").read_text())
    assert record["overrides"] == {"min_fraction": "0.25"} and record["profile_config"]["min_fraction"] == 0.25
    assert record["baseline"] == tiny["runs"][("l1", budget)]["baseline"]  # the same baseline, not retrained
    assert all(len(g["kept"]) >= math.ceil(0.25 * g["size"]) for g in record["plan"]["groups"].values())
    assert record["command"].endswith("--set min_fraction=0.25")
    report = (tiny["root"] / "RESULTS.md").read_text()
    assert "### Tuning" in report and "| min_fraction=0.25 |" in report and "| profile default |" in report
