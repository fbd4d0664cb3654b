"""The pruning report: build_report's numbers, the schema and its checker, and the written files."""
from __future__ import annotations

import copy
import json

import keras
import numpy as np
import pytest
from keras import layers

import tfmot_easiedge as te
from tfmot_easiedge import report
from tfmot_easiedge.metrics.latency import LatencyResult
from tfmot_easiedge.report._jsonschema import schema_errors


def _model() -> keras.Model:
    """conv_a(8)-BN-ReLU -> conv_b(6) -> Lambda (a stop) -> conv_c(4) -> GAP -> head(3)."""
    x = inp = keras.Input((12, 12, 3), name="image")
    x = layers.ReLU()(layers.BatchNormalization(name="bn_a")(layers.Conv2D(8, 3, padding="same", name="conv_a")(x)))
    x = layers.Conv2D(6, 3, padding="same", name="conv_b")(x)
    x = layers.Lambda(lambda t: t * 2.0, name="double")(x)
    x = layers.Conv2D(4, 3, name="conv_c")(x)
    return keras.Model(inp, layers.Dense(3, name="head")(layers.GlobalAveragePooling2D()(x)), name="small")


@pytest.fixture(scope="module")
def pruned():
    model = _model()
    analysis = te.analyze(model)
    plan = te.PruningPlan({"conv_a": [1, 4, 6]}, {"conv_a": 8})
    return model, te.slim(model, plan, analysis=analysis), plan, analysis


def _stages(model, slim_model):
    return [{"stage": "baseline", "accuracy": 0.9, "macs": te.count_macs(model), "params": te.count_params(model)},
            {"name": "slim", "accuracy": None, "macs": te.count_macs(slim_model), "params": te.count_params(slim_model),
             "loss": float("nan")}]


@pytest.fixture(scope="module")
def built(pruned):
    model, slim_model, plan, analysis = pruned
    latency = {"slim": LatencyResult("keras", 2, 1, 1.5, 1.2, 2.0, 1.6, 0.1, 5)}
    return report.build_report(model, slim_model, plan, analysis, budget=te.FilterBudget(0.25), importance="l1",
                               stages=_stages(model, slim_model), latency=latency, timings={"total": 3.5},
                               history={"finetune": {"loss": [1.0, float("inf")], "accuracy": [0.5, 0.6]}},
                               config={"seed": 0})


def test_report_counts_match_the_models(pruned, built):
    model, slim_model, plan, analysis = pruned
    report.validate_report(built)
    s = built["summary"]
    assert (s["macs_before"], s["macs_after"]) == (te.count_macs(model), te.count_macs(slim_model))
    assert (s["params_before"], s["params_after"]) == (te.count_params(model), te.count_params(slim_model))
    # conv_a (8 -> 3) and conv_c (4, kept whole) are prunable
    assert s["prunable_filters_before"] == 12 and s["prunable_filters_after"] == 7 and s["filters_removed"] == 5
    rows = {r["name"]: r for r in built["layers"]}
    assert (rows["conv_a"]["filters_before"], rows["conv_a"]["filters_after"]) == (8, 3)
    assert rows["conv_a"]["group"] == "conv_a" and rows["conv_a"]["prunable"]
    per_layer = te.layer_macs(slim_model)
    for name, row in rows.items():
        assert row["macs_after"] == per_layer.get(name, 0), name
        assert row["params_after"] == slim_model.get_layer(name).count_params(), name
    assert rows["conv_b"]["macs_after"] < rows["conv_b"]["macs_before"]  # its input channels were cut
    assert not rows["conv_b"]["prunable"]


def test_report_says_why_layers_were_skipped(built):
    skipped = {(r["kind"], r["name"]): r for r in built["skipped"]}
    assert skipped[("stop", "double")]["class_name"] == "Lambda"
    assert "no channel rule" in skipped[("stop", "double")]["reason"]
    assert "reaches a model output" in skipped[("group", "head")]["reason"]
    assert "double" in skipped[("group", "conv_b")]["reason"]  # conv_b's filters feed the Lambda


def test_report_stages_latency_and_history(built):
    assert [s["stage"] for s in built["stages"]] == ["baseline", "slim"]
    assert built["stages"][1]["loss"] is None  # NaN is not JSON
    assert built["history"]["finetune"]["loss"] == [1.0, None]
    assert built["latency"] == [{"stage": "slim", "runtime": "keras", "threads": 2, "batch_size": 1, "median_ms": 1.5,
                                 "p10_ms": 1.2, "p90_ms": 2.0, "mean_ms": 1.6, "std_ms": 0.1, "runs": 5}]
    assert built["budget"] == {"kind": "filters", "ratio": 0.25} and built["config"] == {"seed": 0}
    json.dumps(built, allow_nan=False)


def test_budget_may_be_a_string_or_a_dict(pruned):
    model, slim_model, plan, analysis = pruned
    for budget in ("macs:0.5", {"kind": "macs", "ratio": 0.5}):
        r = report.build_report(model, slim_model, plan, analysis, budget=budget, importance="tbaa",
                                stages=_stages(model, slim_model))
        assert r["budget"] == {"kind": "macs", "ratio": 0.5}
    # a bare ratio is a filter budget, as everywhere a budget is accepted (selection.as_budget)
    r = report.build_report(model, slim_model, plan, analysis, budget=0.5, importance="x", stages=[])
    assert r["budget"] == {"kind": "filters", "ratio": 0.5}
    with pytest.raises(TypeError, match="budget"):
        report.build_report(model, slim_model, plan, analysis, budget=[0.5], importance="x", stages=[])


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.pop("summary"), "missing required key 'summary'"),
    (lambda r: r["layers"][0].update(filters_after="3"), r"\$.layers\[0\].filters_after: got str"),
    (lambda r: r["stages"][0].update(accuracy=1.5), "expected <= 1"),
    (lambda r: r["summary"].update(macs_after=float("nan")), "macs_after"),
    (lambda r: r.update(extra=1), "unexpected key 'extra'"),
    (lambda r: r["skipped"][0].update(kind="other"), "expected one of"),
    (lambda r: r.update(version=2), "version 2 is not supported"),
    (lambda r: r.update(format="something"), "not a pruning report"),
])
def test_validate_report_rejects_broken_reports(built, edit, message):
    broken = copy.deepcopy(built)
    edit(broken)
    with pytest.raises(ValueError, match=message):
        report.validate_report(broken)


def test_schema_is_plain_json_and_its_refs_resolve():
    text = json.dumps(report.REPORT_SCHEMA)
    schema = json.loads(text)
    refs = {part.split('"')[0] for part in text.split('"$ref": "#/$defs/')[1:]}
    assert refs and refs <= set(schema["$defs"])
    assert schema["properties"]["version"] == {"const": report.REPORT_VERSION}


def test_schema_checker_on_small_schemas():
    schema = {"type": "object", "required": ["a"], "additionalProperties": {"type": "integer"},
              "properties": {"a": {"type": "array", "minItems": 1, "items": {"type": ["string", "null"]}}}}
    assert schema_errors({"a": ["x", None], "n": 3}, schema) == []
    assert schema_errors({"a": []}, schema) == ["$.a: got 0 items, expected at least 1"]
    assert schema_errors({"a": [1]}, schema) == ["$.a[0]: got int 1, expected string or null"]
    assert schema_errors({"a": ["x"], "n": True}, schema) == ["$.n: got bool True, expected integer"]
    assert schema_errors([], schema) == ["$: got list [], expected object"]


def test_write_report_writes_three_valid_files(built, tmp_path):
    paths = report.write_report(built, tmp_path / "out")
    assert sorted(paths) == ["report.json", "report.md", "report.png"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(report.FILES)  # no temp files left
    assert report.read_report(paths["report.json"]) == json.loads(json.dumps(built))
    md = paths["report.md"].read_text()
    for text in ("# Pruning report: small", "| conv_a | Conv2D | conv_a | 8 | 3 | 38% |", "## Skipped layers and why",
                 "| double | layer analysis stopped |", "| baseline | 90.00% |", "## Latency", "| total | 3.50 |"):
        assert text in md, text
    assert paths["report.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_invalid_report_writes_nothing(built, tmp_path):
    broken = copy.deepcopy(built)
    broken["stages"][0]["macs"] = -1
    with pytest.raises(ValueError, match="expected >= 0"):
        report.write_report(broken, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_read_report_rejects_corrupt_json(tmp_path):
    (tmp_path / "report.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupt report JSON"):
        report.read_report(tmp_path / "report.json")


def test_markdown_without_latency_or_skips(pruned):
    x = inp = keras.Input((6, 6, 3))
    x = layers.Conv2D(4, 3, name="c1")(x)
    model = keras.Model(inp, layers.Dense(2, name="head")(layers.Flatten()(x)), name="plain")
    analysis = te.analyze(model)
    plan = te.PruningPlan.keep_all(analysis)
    r = report.build_report(model, model, plan, analysis, budget="filters:0.0", importance="l1",
                            stages=_stages(model, model))
    md = report.render_markdown(r)
    assert "## Latency" not in md and "## Timings" not in md
    assert np.isclose(r["summary"]["macs_ratio"], 1.0)
