"""Tests of ``PruningPlan``: construction, JSON round trip, validation against an analysis, corrupt input."""
from __future__ import annotations

import json

import numpy as np
import pytest

import tfmot_easiedge as te
from tfmot_easiedge.plan import PLAN_FORMAT, PLAN_VERSION

from models import BUILDERS


@pytest.fixture(scope="module")
def analysis():
    return te.analyze(BUILDERS["residual_projection"]())


@pytest.fixture(scope="module")
def other_analysis():
    return te.analyze(BUILDERS["concat_block"]())


def _plan_json(groups: dict, **fields) -> str:
    data = {"format": PLAN_FORMAT, "version": PLAN_VERSION, "model_name": "m", "budget": None, "metadata": {},
            "groups": groups}
    data.update(fields)
    return json.dumps(data)


# ----------------------------------------------------------------------------- construction
def test_random_plan_is_seeded_and_respects_the_ratio(analysis):
    p1 = te.PruningPlan.random(analysis, 0.5, seed=3)
    p2 = te.PruningPlan.random(analysis, 0.5, seed=3)
    p3 = te.PruningPlan.random(analysis, 0.5, seed=4)
    assert p1 == p2 and p1 != p3
    assert set(p1.kept) == set(analysis.prunable_groups)
    for gid, kept in p1.kept.items():
        size = analysis.groups[gid].size
        assert p1.group_sizes[gid] == size
        assert len(kept) == size - size // 2 and kept == sorted(set(kept))
    assert p1.removed_channels() == sum(g.size // 2 for g in analysis.prunable_groups.values())
    assert p1.budget == {"kind": "random", "ratio": 0.5} and p1.metadata == {"seed": 3}
    p1.validate(analysis)


def test_random_plan_keeps_at_least_one_channel_and_checks_the_ratio(analysis):
    plan = te.PruningPlan.random(analysis, 0.99, seed=0)
    assert all(len(k) >= 1 for k in plan.kept.values())
    plan.validate(analysis)
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="ratio must be in"):
            te.PruningPlan.random(analysis, bad)


def test_keep_all_and_from_masks(analysis):
    full = te.PruningPlan.keep_all(analysis)
    assert full.removed_channels() == 0
    full.validate(analysis)
    mask = np.zeros(analysis.groups["b2_conv2"].size, bool)
    mask[[0, 5]] = True
    plan = te.PruningPlan.from_masks(analysis, {"b2_conv2": mask})
    assert plan.kept == {"b2_conv2": [0, 5]} and plan.group_sizes == {"b2_conv2": 12}
    assert plan.kept_mask("b2_conv2").tolist() == mask.tolist()
    assert plan.model_name == "residual_projection"


def test_constructor_normalises_indices():
    plan = te.PruningPlan({"c": [3, np.int64(1), 2.0]}, {"c": np.int32(5)})
    assert plan.kept == {"c": [1, 2, 3]} and plan.group_sizes == {"c": 5}
    assert all(type(i) is int for i in plan.kept["c"])


# ----------------------------------------------------------------------------- JSON
def test_json_round_trip(analysis):
    plan = te.PruningPlan.random(analysis, 0.3, seed=1)
    plan.metadata["criterion"] = "random"
    text = plan.to_json()
    back = te.PruningPlan.from_json(text)
    assert back == plan
    assert back.budget == plan.budget and back.metadata == {"seed": 1, "criterion": "random"}
    assert te.PruningPlan.from_json(plan.to_json(indent=2)) == plan
    data = json.loads(text)
    assert data["format"] == PLAN_FORMAT and data["version"] == PLAN_VERSION
    assert data["groups"]["stem"] == {"size": 8, "kept": plan.kept["stem"]}
    back.validate(analysis)


def test_json_round_trip_of_an_empty_plan():
    plan = te.PruningPlan({}, {})
    assert te.PruningPlan.from_json(plan.to_json()) == plan


# ----------------------------------------------------------------------------- validation
def test_unknown_group_is_named(analysis):
    plan = te.PruningPlan({"no_such_conv": [0]}, {"no_such_conv": 4})
    with pytest.raises(ValueError, match=r"'no_such_conv' does not exist in model 'residual_projection'"):
        plan.validate(analysis)


def test_emptied_group_is_named(analysis):
    with pytest.raises(ValueError, match=r"empties group 'b1_conv1'"):
        te.PruningPlan({"b1_conv1": []}, {"b1_conv1": 8}).validate(analysis)


@pytest.mark.parametrize("bad", [8, 100, -1])
def test_out_of_range_index_is_named(analysis, bad):
    plan = te.PruningPlan({"b1_conv1": [0, bad]}, {"b1_conv1": 8})
    with pytest.raises(ValueError, match=rf"'b1_conv1' has indices \[{bad}\] out of range \[0, 8\)"):
        plan.validate(analysis)


def test_duplicate_indices_are_named(analysis):
    plan = te.PruningPlan({"b1_conv1": [2, 0, 2]}, {"b1_conv1": 8})
    with pytest.raises(ValueError, match=r"'b1_conv1' lists channels \[2\] more than once"):
        plan.validate(analysis)


def test_plan_for_another_model_is_recognised(analysis, other_analysis):
    # concat_block's "post" group has 5 channels; residual_projection's has 6.
    plan = te.PruningPlan.random(other_analysis, 0.5, seed=0)
    with pytest.raises(ValueError, match=r"another model"):
        plan.validate(analysis)
    size_only = te.PruningPlan({"post": [0, 1]}, {"post": 5})
    with pytest.raises(ValueError, match=r"'post' had 5 channels but the model's group has 6"):
        size_only.validate(analysis)


def test_cutting_an_unprunable_group_is_refused_with_its_reason(analysis):
    with pytest.raises(ValueError, match=r"group 'head' is not prunable: reaches a model output"):
        te.PruningPlan({"head": [0]}, {"head": 3}).validate(analysis)


def test_keeping_every_channel_of_an_unprunable_group_is_allowed(analysis):
    te.PruningPlan({"head": [0, 1, 2]}, {"head": 3}).validate(analysis)


def test_validation_of_group_without_recorded_size(analysis):
    plan = te.PruningPlan({"b1_conv1": [0, 9]}, {})
    with pytest.raises(ValueError, match="out of range"):
        plan.validate(analysis)


# ----------------------------------------------------------------------------- corrupt JSON
def test_truncated_json_raises_value_error(analysis):
    text = te.PruningPlan.random(analysis, 0.3).to_json()
    for cut in (1, len(text) // 2, len(text) - 1):
        with pytest.raises(ValueError, match="corrupt pruning plan JSON"):
            te.PruningPlan.from_json(text[:cut])
    with pytest.raises(ValueError):
        te.PruningPlan.from_json("")


@pytest.mark.parametrize("text, message", [
    (_plan_json({}, format="something.else"), "not a pruning plan"),
    (json.dumps({"groups": {}}), "not a pruning plan"),
    (json.dumps([1, 2, 3]), "not a pruning plan"),
    (json.dumps("plan"), "not a pruning plan"),
    (_plan_json({}, version=99), "version 99 is not supported"),
    (_plan_json([1, 2]), "'groups' must be an object"),
    (_plan_json({"c": {"size": 4}}), "group 'c' needs integer 'size' and a list 'kept'"),
    (_plan_json({"c": {"kept": [0]}}), "group 'c'"),
    (_plan_json({"c": {"size": "four", "kept": [0]}}), "group 'c'"),
    (_plan_json({"c": {"size": 4, "kept": ["a", 1]}}), "group 'c'"),
    (_plan_json({"c": {"size": 4, "kept": [None]}}), "group 'c'"),
    (_plan_json({"c": {"size": 4, "kept": 3}}), "group 'c'"),
    (_plan_json({"c": [0, 1]}), "group 'c'"),
])
def test_corrupt_plan_raises_value_error(text, message):
    with pytest.raises(ValueError, match=message):
        te.PruningPlan.from_json(text)


def test_fractional_index_raises_value_error():
    with pytest.raises(ValueError, match="group 'c'"):
        te.PruningPlan.from_json(_plan_json({"c": {"size": 4, "kept": [0, 1.5]}}))


def test_string_kept_raises_value_error():
    with pytest.raises(ValueError, match="group 'c'"):
        te.PruningPlan.from_json(_plan_json({"c": {"size": 4, "kept": "12"}}))
