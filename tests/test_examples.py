"""The scripts in ``examples/`` run as written (with ``--tiny``: a few hundred CIFAR-10 images, one epoch per
stage) and write what they say, with numbers that add up."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tfmot_easiedge.data import cifar10_dir

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(cifar10_dir() is None, reason="the examples read CIFAR-10 and there are no local "
                                                               "TFRecords (tests download nothing)")


def _run_example(name: str, out: Path, *args: str) -> tuple[str, dict]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "EASIEDGE_CIFAR10_DIR": str(cifar10_dir())}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / name), "--tiny", "--out", str(out), *args],
                          cwd=out.parent, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, json.loads((out / "results.json").read_text())


def test_admm_in_your_fit(tmp_path):
    import keras

    import tfmot_easiedge as te

    out = tmp_path / "admm"
    stdout, r = _run_example("admm_in_your_fit.py", out)
    assert sorted(p.name for p in out.iterdir()) == ["plan.json", "results.json", "slim.keras"]
    assert (r["train_images"], r["test_images"]) == (300, 200)
    slim = keras.saving.load_model(out / "slim.keras")
    assert te.count_macs(slim) == r["macs_after"] < r["macs_before"]
    assert te.count_params(slim) == r["params_after"]
    assert r["filters_removed"] == te.PruningPlan.from_json((out / "plan.json").read_text()).removed_channels() > 0
    assert r["zsteps"] >= 1 and 0.0 <= r["slim_accuracy"] <= 1.0
    assert f"accuracy {r['baseline_accuracy']:.4f} -> {r['slim_accuracy']:.4f}" in stdout
    assert f"MACs {r['macs_before']:,} -> {r['macs_after']:,}" in stdout


def test_saved_model_to_tflite_int8(tmp_path):
    out = tmp_path / "int8"
    stdout, r = _run_example("saved_model_to_tflite_int8.py", out, "--budget", "filters:0.5")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["original.keras", "original_int8.tflite", "plan.json", "results.json", "slim.keras", "slim_int8.tflite"])
    orig, slim = r["original"], r["slim"]
    assert slim["macs"] < orig["macs"] and slim["params"] < orig["params"]
    assert slim["tflite_bytes"] < orig["tflite_bytes"] == (out / "original_int8.tflite").stat().st_size
    for row in (orig, slim):
        assert 0.0 <= row["int8_accuracy"] <= 1.0 and row["median_ms"] > 0
    assert f"speedup {r['speedup']:.2f}x" in stdout and f"{slim['macs']:>12,}" in stdout
    assert r["speedup"] == pytest.approx(orig["median_ms"] / slim["median_ms"])


@pytest.mark.slow  # ~40 s: two TFLite conversions of MobileNetV2 (--tiny trains nothing)
def test_keras_application_mobilenetv2(tmp_path):
    out = tmp_path / "mnv2"
    stdout, r = _run_example("keras_application.py", out)
    assert sorted(p.name for p in out.iterdir()) == ["plan.json", "results.json", "slim.keras"]
    stages = {s["stage"]: s for s in r["stages"]}
    assert stages["slim"]["macs"] <= 0.5 * stages["baseline"]["macs"] * 1.01  # the default macs:0.5 budget
    assert len(r["kept_per_group"]) > 20  # MobileNetV2's coupled groups, found by analyze
    assert set(r["tflite_median_ms"]) == {"original", "slim"}
    assert "prunable channel groups" in stdout and "TFLite fp32 median latency" in stdout
