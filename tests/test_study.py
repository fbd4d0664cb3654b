"""The study runner: campaign order, learning-rate choice, resumability, statistics, and its smoke profile."""
import dataclasses
import json

import numpy as np
import pytest

from benchmarks.study import render, run, spec


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setattr(run, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(run, "MODELS_DIR", tmp_path / "models")
    return tmp_path / "results"


def _write(results_dir, profile, key, **fields):
    path = results_dir / profile.name / key.relpath()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(fields))


def test_finals_wait_for_the_whole_grid_and_take_the_best_heldout_lr(results):
    profile = spec.PROFILES["smoke"]
    net, budget, arms = "tiny", "macs:0.5", ["easiedge", "tbaa"]
    first = list(run.planned(profile, [net], [budget], arms))
    assert [k.phase for k in first] == ["tune"] * 4  # no final before its arm's grid is done
    for lr, acc in zip(profile.lr_grid, (0.5, 0.7)):
        _write(results, profile, spec.RunKey(net, budget, "tbaa", 0, lr, "tune"), heldout_accuracy=acc)
    assert run.chosen_lr(profile, net, budget, "tbaa") == profile.lr_grid[1]
    assert run.chosen_lr(profile, net, budget, "easiedge") is None
    finals = [k for k in run.planned(profile, [net], [budget], arms) if k.phase == "final"]
    assert finals == [spec.RunKey(net, budget, "tbaa", 0, profile.lr_grid[1], "final")]


def test_later_budgets_reuse_the_first_budgets_learning_rate(results):
    profile = dataclasses.replace(spec.PROFILES["smoke"], budgets=("macs:0.5", "macs:0.75"))
    for lr in profile.lr_grid:
        _write(results, profile, spec.RunKey("tiny", "macs:0.5", "tbaa", 0, lr, "tune"), heldout_accuracy=lr)
    keys = list(run.planned(profile, ["tiny"], list(profile.budgets), ["tbaa"]))
    assert not [k for k in keys if k.phase == "tune" and k.budget == "macs:0.75"]
    assert spec.RunKey("tiny", "macs:0.75", "tbaa", 0, max(profile.lr_grid), "final") in keys
    keys = list(run.planned(profile, ["tiny"], list(profile.budgets), ["tbaa"], tune_every_budget=True))
    assert [k for k in keys if k.phase == "tune" and k.budget == "macs:0.75"]


def test_statistics_against_the_default_arm():
    labels = np.zeros(6, dtype=int)
    base = {"net": "n", "budget": "b", "test_images": 6, "mac_reduction": 2.0, "tflite_ms": 1.0, "lr": 0.01}
    records = []
    for seed, (acc_default, acc_other) in enumerate(((4, 2), (5, 3), (4, 3))):
        for arm, right in (("easiedge", acc_default), ("random", acc_other)):
            pred = "0" * right + "1" * (6 - right)
            records.append({**base, "arm": arm, "arm_label": arm, "seed": seed, "test_accuracy": right / 6,
                            "test_predictions": pred})
    rows = {r["arm"]: r for r in render.summarise(records, labels, "easiedge")}
    assert rows["easiedge"]["mean"] == pytest.approx(13 / 18) and "vs_default" not in rows["easiedge"]
    vs = rows["random"]["vs_default"]
    assert vs["paired_seeds"] == [0, 1, 2] and vs["mean_difference"] == pytest.approx(-5 / 18)
    assert vs["mcnemar"][:2] == (0, 5)  # every image random got right, EasiEdge got right too
    assert 0 < vs["t_test_p"] < 0.05


def test_smoke_profile_end_to_end_and_resumable(results):
    pytest.importorskip("tfmot_easiedge.data")
    try:
        from benchmarks import common

        common.load_split("test", limit=8)
    except (FileNotFoundError, OSError) as err:
        pytest.skip(f"CIFAR-10 TFRecords not available: {err}")
    assert run.main(["--profile", "smoke"]) == 0
    profile = spec.PROFILES["smoke"]
    finals = sorted((results / "smoke").rglob("final_*.json"))
    assert len(finals) == len(profile.arms) * len(profile.seeds)
    for path in finals:
        record = json.loads(path.read_text())
        for field in ("seed", "test_images", "epochs_after_baseline", "command", "machine", "date", "lr"):
            assert field in record, field
        assert record["test_images"] == profile.test_images == len(record["test_predictions"])
        assert record["mac_reduction"] >= 1.9  # macs:0.5 met after slimming
        assert 0.0 <= record["test_accuracy"] <= 1.0
    tunes = sorted((results / "smoke").rglob("tune_*.json"))
    assert len(tunes) == len(profile.arms) * len(profile.lr_grid)
    before = {p: p.stat().st_mtime_ns for p in finals + tunes}
    assert run.main(["--profile", "smoke"]) == 0  # everything done: nothing re-runs
    assert {p: p.stat().st_mtime_ns for p in finals + tunes} == before
    out = render.render("smoke", results)
    text = out.read_text()
    assert "EasiEdge" in text and "one-shot TBAA" in text
