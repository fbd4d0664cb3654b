"""benchmarks/latency.py: filter and MAC-budget configurations, the selection floor, skipped budgets, the report."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for ``benchmarks``
from benchmarks import latency  # noqa: E402


def test_arguments_mac_budgets_and_floor():
    from tfmot_easiedge.admm.prune import DEFAULT_MIN_FRACTION

    args = latency.parse_args(["--models", "vgg_small"])
    assert args.macs == list(latency.DEFAULT_MACS) and args.min_fraction == DEFAULT_MIN_FRACTION
    assert latency.parse_args(["--quick"]).macs == []
    args = latency.parse_args(["--quick", "--macs", "0.9,0.5", "--min-fraction", "0"])
    assert (args.macs, args.min_fraction) == ([0.9, 0.5], 0.0)
    for bad in (["--macs", "1.0"], ["--macs", "0"], ["--min-fraction", "1"], ["--ratios", "0.5"],
                ["--models", "vgg17"]):
        with pytest.raises(SystemExit):
            latency.parse_args(["--quick", *bad])
    assert latency._config_label(0.8, None) == "80%"
    assert latency._config_label(0.9, None, "macs") == "MACs -90%"
    assert latency._config_label(0.8, 4) == "80% round_to=4"


def test_small_run_times_filter_and_mac_budgets(tmp_path):
    from tfmot_easiedge.data import cifar10_dir

    if cifar10_dir() is None:
        pytest.skip("local CIFAR-10 TFRecords not found (../shared/data/cifar10 or $EASIEDGE_CIFAR10_DIR)")
    out = tmp_path / "lat"
    # --quick: coarse segments for the breakdowns (one per conv block), few runs; the rest is explicit
    report = latency.main(["--quick", "--models", "vgg_small", "--ratios", "0,0.5", "--macs", "0.75,0.99",
                           "--runs", "4", "--rounds", "2", "--warmup", "1", "--calibration", "8", "--runtimes",
                           "tflite_fp32_t1,tflite_fp32_t1_cpu", "--breakdown", "always",
                           "--breakdown-models", "vgg_small", "--out", str(out)])
    r = report["models"]["vgg_small"]
    assert [c["label"] for c in r["configs"]] == ["0%", "50%", "MACs -75%", latency.FLOOR_LABEL]
    by_label = {c["label"]: c for c in r["configs"]}
    assert by_label["MACs -75%"]["budget"] == {"kind": "macs", "ratio": 0.75}
    assert 4.0 <= by_label["MACs -75%"]["mac_reduction"] <= 4.0 * 1.02  # the MAC budget is met, tightly
    assert by_label["50%"]["filters_kept"] == 224  # half of vgg_small's 448 prunable filters
    # 99% of the MACs cannot go with every group keeping 10% of its channels: reported, not fatal
    assert [s["label"] for s in r["skipped"]] == ["MACs -99%"] and "cannot remove 99% of MACs" in r["skipped"][0]["why"]
    for c in r["configs"]:
        for key in ("tflite_fp32_t1", "tflite_fp32_t1_cpu"):
            assert c["latency"][key]["median_ms"] > 0
        assert c["exports"]["fp32"]["max_rel_diff"] <= 1e-4
    base = r["configs"][0]["latency"]["tflite_fp32_t1_cpu"]["median_ms"]
    mac_cfg = by_label["MACs -75%"]["latency"]["tflite_fp32_t1_cpu"]
    assert mac_cfg["speedup"] == pytest.approx(base / mac_cfg["median_ms"], rel=1e-2)
    assert {(c["config"], c["runtime"]) for c in r["macs_checks"]} == {
        ("MACs -75%", "tflite_fp32_t1"), ("MACs -75%", "tflite_fp32_t1_cpu")}
    assert r["settings"]["min_fraction"] == 0.1
    # the floor: one channel in every prunable group, the fewest MACs of all, its latency the bound
    floor = by_label[latency.FLOOR_LABEL]
    assert floor["filters_kept"] == len([c for c in r["layer_macs"] if c["layer"] != "logits"])
    assert floor["macs"] < min(c["macs"] for c in r["configs"] if c is not floor)
    summary = r["floor"]["runtimes"]["tflite_fp32_t1_cpu"]
    assert summary["max_speedup"] == pytest.approx(base / floor["latency"]["tflite_fp32_t1_cpu"]["median_ms"], rel=0.02)
    assert r["floor"]["against"] == "50%" and 0 < summary["share_of_top"]
    saved = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert saved["models"]["vgg_small"]["skipped"] == r["skipped"]
    text = out.with_suffix(".md").read_text(encoding="utf-8")
    assert "Check at MACs -75% (tflite_fp32_t1_cpu)" in text and "Skipped MACs -99%" in text
    assert "Floor (every prunable group at its best channel" in text
    # per-segment timing of the top filter configuration and of the MAC-budget one, with parameters
    rows = r["breakdown_macs"]["MACs -75%"]
    assert [x["segment"] for x in rows] == [x["segment"] for x in r["breakdown"]]
    assert sum(x["macs_pruned"] for x in rows) == by_label["MACs -75%"]["macs"]
    assert sum(x["params_base"] for x in rows) == r["configs"][0]["params"]
    assert all(x["ms_pruned"] > 0 for x in rows) and "Per segment at MACs -75%" in text
