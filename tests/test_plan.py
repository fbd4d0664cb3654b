"""Tests of ``PruningPlan``: construction, JSON round trip, validation against an analysis, corrupt input."""
from __future__ import annotations

import json
import random
import time

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


@pytest.mark.parametrize("text, message", [
    (_plan_json({}, version=True), "version True is not supported"),
    (_plan_json({}, version=1.0), "version 1.0 is not supported"),
    (_plan_json({}, version="1"), "version '1' is not supported"),
    (_plan_json({}, format=["tfmot_easiedge.PruningPlan"]), "not a pruning plan"),
    (_plan_json({}, metadata=[[1, 2]]), "'metadata' must be an object or null"),
    (_plan_json({}, metadata="seed=0"), "'metadata' must be an object or null"),
    (_plan_json({}, metadata=3), "'metadata' must be an object or null"),
    (_plan_json({}, budget="macs:0.5"), "'budget' must be an object or null"),
    (_plan_json({}, model_name=None), "'model_name' must be a string"),
    (_plan_json({}, model_name=["m"]), "'model_name' must be a string"),
    (_plan_json({"c": {"size": -1, "kept": []}}), r"group 'c' has size -1, not in \[0, 2147483648\)"),
    (_plan_json({"c": {"size": 10**30, "kept": [0]}}), "group 'c' has size"),
    (_plan_json({"c": {"size": 4, "kept": [0, 10**30]}}), r"group 'c' has indices .* out of range \[0, 4\)"),
    (_plan_json({"c": {"size": 4, "kept": [-1]}}), r"group 'c' has indices \[-1\] out of range \[0, 4\)"),
    (_plan_json({"c": {"size": True, "kept": [0]}}), "group 'c' needs integer 'size'"),
    (_plan_json({"c": {"size": 4, "kept": [False]}}), "group 'c' needs integer 'size'"),
    (_plan_json({}, metadata={"x": float("nan")}), "NaN is not a valid number"),
    (_plan_json({}, metadata={"x": float("inf")}), "Infinity is not a valid number"),
    (_plan_json({}, budget={"ratio": float("-inf")}), "-Infinity is not a valid number"),
    (_plan_json({}, metadata={"x": 1}).replace('"x": 1', '"x": 1e400'), "number '1e400' is out of range"),
    (_plan_json({}, metadata={"x": 1}).replace('"x": 1', '"x": ' + "9" * 5000), "more than 100 digits"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"a": ' * 100_000 + "1" + "}" * 100_000, "nested too deeply"),
    (_plan_json({}, metadata={"deep": 1}).replace("1}", "[" * 500 + "]" * 500 + "}"),
     "'metadata' is nested more than 64"),
    (b"\xff\xfe\x00garbage", "corrupt pruning plan JSON"),
    ("\ufeff" + _plan_json({}), "corrupt pruning plan JSON"),
])
def test_malformed_plan_raises_one_clear_value_error(text, message):
    with pytest.raises(ValueError, match=message) as info:
        te.PruningPlan.from_json(text)
    assert "\n" not in str(info.value) and len(str(info.value)) < 500


@pytest.mark.parametrize("data", [
    None, 3, "plan", [PLAN_FORMAT], {"format": PLAN_FORMAT, "version": 1, "groups": {1: {"size": 2, "kept": [0]}}},
    {"format": PLAN_FORMAT, "version": 1, "groups": {}, "metadata": {"s": {1, 2}}},
    {"format": PLAN_FORMAT, "version": 1, "groups": {}, "metadata": {3: "x"}},
    {"format": PLAN_FORMAT, "version": 1, "groups": {}, "metadata": {"f": object()}},
    {"format": PLAN_FORMAT, "version": 1, "groups": {}, "budget": {"ratio": float("nan")}},
    {"format": PLAN_FORMAT, "version": 1, "groups": {}, "budget": {"big": 10**200}},
    {"format": PLAN_FORMAT, "version": 1, "groups": {"c": {"size": 2**40, "kept": [0]}}},
    {"format": PLAN_FORMAT, "version": np.bool_(True), "groups": {}},
], ids=lambda d: type(d).__name__)
def test_from_dict_rejects_non_plan_python_data(data):
    with pytest.raises(ValueError):
        te.PruningPlan.from_dict(data)


def test_from_dict_rejects_self_referencing_metadata():
    loop: dict = {}
    loop["self"] = loop
    with pytest.raises(ValueError, match="nested more than 64 levels"):
        te.PruningPlan.from_dict({"format": PLAN_FORMAT, "version": 1, "groups": {}, "metadata": loop})


def test_non_text_raises_value_error():
    for bad in (None, 3, ["{}"], {"format": PLAN_FORMAT}):
        with pytest.raises(ValueError, match="expected text"):
            te.PruningPlan.from_json(bad)


def test_from_dict_keeps_python_side_values(analysis):
    plan = te.PruningPlan.random(analysis, 0.3, seed=2)
    plan.metadata.update(pair=(1, 2), count=np.int64(3), score=np.float32(0.5), none=None)
    back = te.PruningPlan.from_dict(plan.to_dict())
    assert back == plan and back.metadata["pair"] == (1, 2) and back.metadata["count"] == 3
    assert te.PruningPlan.from_dict({**plan.to_dict(), "metadata": None}).metadata == {}
    assert te.PruningPlan.from_dict({k: v for k, v in plan.to_dict().items() if k != "model_name"}).model_name == ""


# ----------------------------------------------------------------------------- scale and fuzzing
class _Group:
    def __init__(self, size: int):
        self.size, self.prunable, self.reasons = size, True, []


class _Analysis:
    """The two attributes ``validate`` reads, for one group far larger than any test model's."""

    def __init__(self, size: int):
        self.groups = {"big": _Group(size)}
        self.graph = type("Graph", (), {"model_name": "wide"})()


def _timed_validate(plan, analysis) -> float:
    start = time.perf_counter()
    try:
        plan.validate(analysis)
    finally:
        elapsed = time.perf_counter() - start
    return elapsed


def test_validation_of_a_large_plan_is_linear_time(analysis):
    n = 100_000
    wide = _Analysis(n)
    ok = te.PruningPlan({"big": list(range(0, n, 2))}, {"big": n})
    assert _timed_validate(ok, wide) < 1.0
    # ~100k indices, a third of them repeated: quadratic counting took minutes here.
    dup = te.PruningPlan({"big": list(range(0, n, 3)) * 3}, {"big": n})
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"plan group 'big' lists channels \[0, 3, 6, .*\] more than once") as info:
        dup.validate(wide)
    assert time.perf_counter() - start < 1.0
    assert str(info.value).count(",") == len(range(0, n, 3)) - 1
    # The same against a real model's 8-channel group: duplicates are reported before the range.
    real = te.PruningPlan({"b1_conv1": [0, 1] * 50_000 + list(range(8, n))}, {"b1_conv1": 8})
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"'b1_conv1' lists channels \[0, 1\] more than once"):
        real.validate(analysis)
    assert time.perf_counter() - start < 1.0
    # Parsing the JSON of such a plan is linear too.
    start = time.perf_counter()
    assert te.PruningPlan.from_json(dup.to_json()) == dup
    assert time.perf_counter() - start < 2.0


_NASTY_SCALARS = [None, True, False, 0, -1, 1, 2**31, 2**63, -(2**63) - 1, 10**99, 0.5, -0.0, 1e308, 5e-324, "",
                  "0", "\u0000", "\ud800", "é", "tfmot_easiedge.PruningPlan"]


def _random_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(8 if depth < 4 else 5)
    if kind == 0:
        return rng.choice(_NASTY_SCALARS)
    if kind == 1:
        return rng.randint(-10, 20)
    if kind == 2:
        return rng.uniform(-1e3, 1e3)
    if kind == 3:
        return "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(6)))
    if kind == 4:
        return rng.choice([[], {}, [0], {"size": 4, "kept": [0]}])
    if kind == 5:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["size", "kept", "format", "version", "x", str(rng.choice(_NASTY_SCALARS))]
    return {rng.choice(keys): _random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def _mutate(rng: random.Random, node):
    """Replaces, deletes or adds one thing at a random place in a JSON tree, in place; returns the tree."""
    if isinstance(node, dict) and node and rng.random() < 0.9:
        key = rng.choice(list(node))
        action = rng.randrange(4)
        if action == 0:
            node[key] = _random_value(rng)
        elif action == 1:
            del node[key]
        elif action == 2:
            node[str(rng.choice(_NASTY_SCALARS))] = _random_value(rng)
        else:
            node[key] = _mutate(rng, node[key])
        return node
    if isinstance(node, list) and node and rng.random() < 0.7:
        i = rng.randrange(len(node))
        if rng.random() < 0.5:
            node[i] = _random_value(rng)
        else:
            node[i] = _mutate(rng, node[i])
        return node
    return _random_value(rng)


def _mutate_text(rng: random.Random, text: str) -> str:
    pos = rng.randrange(len(text) + 1)
    action = rng.randrange(5)
    if action == 0:
        return text[:pos]
    if action == 1:
        return text[:pos] + text[pos + rng.randint(1, 5):]
    if action == 2:
        return text[:pos] + rng.choice("{}[]\",:-0.e1 \\tnfxu") + text[pos:]
    if action == 3:
        return text[:pos] + rng.choice(["NaN", "Infinity", "-Infinity", "1e999", "9" * 5000, "[" * 5000, "true",
                                        "null", '"\\ud800"', "\x00"]) + text[pos:]
    return text.replace(":", ": " * rng.randint(1, 3), 1).replace("4", "40000000000000000000000", 1)


def _fuzz_documents() -> list:
    rng = random.Random(20240607)
    base = te.PruningPlan({"a": [0, 2], "b/conv": [1]}, {"a": 4, "b/conv": 3}, "m", {"kind": "macs", "ratio": 0.5},
                          {"seed": 0, "nested": {"x": [1, 2.5, None, True, "s"]}})
    text = base.to_json()
    docs: list = [text, text.encode(), text.encode("utf-16")]
    for _ in range(150):
        tree = json.loads(text)
        for _ in range(rng.randint(1, 3)):
            tree = _mutate(rng, tree)
        docs.append(json.dumps(tree))
    for _ in range(150):
        docs.append(_mutate_text(rng, text))
    for _ in range(50):
        docs.append(json.dumps(_random_value(rng)))
    for _ in range(20):
        raw = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        docs.append(raw if rng.random() < 0.5 else raw.decode("latin-1"))
    docs += [
        "", " ", "null", "true", "1", '""', "[]", "{}", "\ufeff{}", '{"format": "tfmot_easiedge.PruningPlan"}',
        "[" * 200_000, "{" * 100_000, '{"a":' * 100_000, "[" * 900 + "]" * 900,
        text.replace(f'"version": {PLAN_VERSION}', '"version": true'),
        text.replace(f'"version": {PLAN_VERSION}', f'"version": {PLAN_VERSION}.0'),
        text.replace(f'"version": {PLAN_VERSION}', '"version": NaN'), text.replace('"seed": 0', '"seed": Infinity'),
        text.replace('"seed": 0', '"seed": -1e400'), text.replace('"seed": 0', '"seed": ' + "1" * 4301),
        text.replace('"seed": 0', '"seed": ' + "1" * 101), text.replace('"seed": 0', '"seed": ' + "1" * 100),
        text.replace('"metadata": {', '"metadata": [[1, 2]], "x": {'), text.replace('"size": 4', '"size": 1e3'),
        text.replace('"size": 4', '"size": 99999999999999999999999'), text.replace('[0, 2]', '[0, 2, 2]'),
        text.replace('[0, 2]', '[0, -2]'), text.replace('[0, 2]', '[0, 2e0]'), text.replace('"m"', '"\\ud800"'),
        text.replace('"groups": {', '"groups": {"": {"size": 0, "kept": []}, '),
        text.replace('{"x":', '{"x":' + "[" * 70) .replace('"s"]}', '"s"' + "]" * 70 + "]}"),
    ]
    return docs


def test_from_json_raises_only_value_error_on_fuzzed_input():
    docs = _fuzz_documents()
    assert len(docs) > 400
    parsed = rejected = 0
    for doc in docs:
        try:
            plan = te.PruningPlan.from_json(doc)
        except ValueError as e:
            message = str(e)
            assert message and "\n" not in message and len(message) < 1000, repr(doc)[:200]
            rejected += 1
            continue
        except Exception as e:  # noqa: BLE001 - the point of the test
            pytest.fail(f"{type(e).__name__}: {e} for input {repr(doc)[:200]}")
        # Whatever parses is a well-formed plan: it serialises, round-trips and answers its queries.
        assert te.PruningPlan.from_json(plan.to_json()) == plan, repr(doc)[:200]
        for gid in plan.kept:
            assert plan.kept_mask(gid).shape == (plan.group_sizes[gid],)
        plan.removed_channels()
        parsed += 1
    assert parsed >= 3 and rejected >= 250
