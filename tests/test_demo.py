"""``easiedge demo``: the quick run end to end on the bundled digits, the choice of data, and its input errors."""
from __future__ import annotations

import doctest
import sys

import numpy as np
import pytest

import tfmot_easiedge as te
from tfmot_easiedge import demo, report
from tfmot_easiedge.data import DataError, cifar10_dir

from cli_helpers import one_line_error, run_cli


@pytest.fixture
def no_cifar(monkeypatch):
    monkeypatch.setattr(demo, "cifar10_dir", lambda dirpath=None: None)


@pytest.fixture
def no_sklearn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # the import raises ImportError


def test_quick_demo_on_digits_writes_model_tflite_and_report(tmp_path, capsys):
    pytest.importorskip("sklearn")
    out = tmp_path / "demo"
    code, stdout, err = run_cli(capsys, "demo", "--quick", "--dataset", "digits", "--out", out, "--quiet")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == sorted(demo.FILES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # no temporary directory left beside it
    assert "━" not in stdout and "[1/5]" not in stdout  # --quiet: only the data line and the summary
    assert stdout.startswith("data: sklearn digits (8x8, upsampled to 16x16): 256 training and 128 test images")
    for label in ("test accuracy", "MACs / image", "parameters", "TFLite latency (ms)", "slim vs masked",
                  f"report: {out / 'report.md'}"):
        assert label in stdout, label
    rep = report.read_report(out / "report.json")
    s = rep["summary"]
    assert s["macs_after"] <= 0.5 * s["macs_before"] and s["params_after"] < s["params_before"]
    assert [st["stage"] for st in rep["stages"]] == ["baseline", "admm", "hard_prune", "finetune", "slim"]
    assert all(0.0 <= st["accuracy"] <= 1.0 for st in rep["stages"])
    assert {row["stage"] for row in rep["latency"]} == {"baseline", "slim"}
    assert all(row["runtime"] == "tflite" and row["median_ms"] > 0 for row in rep["latency"])
    assert set(rep["history"]) == {"train", "admm", "finetune"}
    assert rep["data"]["note"].startswith("sklearn digits") and rep["data"]["train"]["examples"] == 256
    assert rep["config"]["budget"] == "macs:0.5" and rep["config"]["command"] == "easiedge demo"
    assert f"{s['macs_after']:,}" in stdout and f"{100 * rep['stages'][-1]['accuracy']:.1f}%" in stdout
    plan = te.PruningPlan.from_json((out / "plan.json").read_text())
    assert plan.removed_channels() == s["prunable_filters_before"] - s["prunable_filters_after"] > 0


def test_existing_results_are_refused_and_nothing_runs(tmp_path, capsys):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "model.keras").write_text("an earlier result")
    one_line_error(*run_cli(capsys, "demo", "--quick", "--out", out)[::2], "pass --overwrite")
    (out / "thesis.tex").write_text("keep me")
    one_line_error(*run_cli(capsys, "demo", "--quick", "--out", out, "--overwrite")[::2], "did not write")
    assert sorted(p.name for p in out.iterdir()) == ["model.keras", "thesis.tex"]


@pytest.mark.parametrize("argv, message", [
    (["--budget", "filters:2"], "ratio"),
    (["--data-dir", "/nonexistent/cifar"], "no CIFAR-10 TFRecords"),
    (["--dataset", "mnist"], "invalid choice"),
])
def test_bad_input_is_one_line(tmp_path, capsys, argv, message):
    code, _, err = run_cli(capsys, "demo", "--quick", "--out", tmp_path / "o", *argv)
    one_line_error(code, err, message)
    assert not (tmp_path / "o").exists()


def test_no_data_at_all_is_one_line(tmp_path, capsys, no_cifar, no_sklearn):
    code, _, err = run_cli(capsys, "demo", "--quick", "--out", tmp_path / "o")
    one_line_error(code, err, "no data for the demo: CIFAR-10 TFRecords not found")
    assert "tfmot-easiedge[demo]" in err and not (tmp_path / "o").exists()
    with pytest.raises(DataError, match="needs scikit-learn"):
        demo.load_demo_data("digits", settings=demo.QUICK)


def test_auto_prefers_local_cifar10_else_digits(no_cifar):
    pytest.importorskip("sklearn")
    train, test, note = demo.load_demo_data("auto", settings=demo.QUICK)
    assert note.startswith("sklearn digits") and train.image_shape == (16, 16, 1) and len(test) == 128


@pytest.mark.skipif(cifar10_dir() is None, reason="no local CIFAR-10 TFRecords")
def test_cifar10_when_found():
    train, test, note = demo.load_demo_data("auto", settings=demo.QUICK)
    assert note.startswith(f"CIFAR-10 from the local TFRecords in {cifar10_dir()}: 256 training and 128 test")
    assert train.image_shape == (32, 32, 3) and train.num_classes == 10 and len(test) == 128


def test_digits_are_real_images_split_once():
    pytest.importorskip("sklearn")
    train, test = demo.digits_data()
    assert (len(train), len(test)) == (1438, 359) and train.image_shape == (16, 16, 1)
    assert train.x.min() == 0 and train.x.max() == 255 and set(np.unique(train.y)) == set(range(10))
    assert np.array_equal(train.x[:, ::2, ::2], train.x[:, 1::2, 1::2])  # each pixel repeated 2x2
    assert demo._epochs(demo.FULL, train) == (4 * 3, 2 * 3, 2 * 3)  # 5,000 / 1,438 -> 3x the epochs


def test_docstring_examples():
    pytest.importorskip("sklearn")
    result = doctest.testmod(demo, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0 and result.failed == 0
