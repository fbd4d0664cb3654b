"""The ``easiedge`` command, driven in-process through ``cli.main``: prune/export/bench/analyze/demo end to end,
and every bad input giving exit code 2, one line on stderr, and no output directory."""
from __future__ import annotations

import json
import os
import zipfile

import keras
import numpy as np
import pytest
from keras import layers

import tfmot_easiedge as te
from tfmot_easiedge import cli, report
from tfmot_easiedge.data import cifar10_dir, load_cifar10_arrays


def _tiny_model(name="tiny", shape=(32, 32, 3), classes=10, softmax=True) -> keras.Model:
    x = inp = keras.Input(shape, name="image")
    x = layers.Rescaling(1 / 255, name="scale")(x)
    for i, filters in enumerate((8, 12)):
        x = layers.Conv2D(filters, 3, padding="same", name=f"conv{i}")(x)
        x = layers.ReLU(name=f"relu{i}")(layers.BatchNormalization(name=f"bn{i}")(x))
        x = layers.MaxPooling2D(name=f"pool{i}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    out = layers.Dense(classes, activation="softmax" if softmax else None, name="head")(x)
    return keras.Model(inp, out, name=name)


def _arrays(split, n):
    if cifar10_dir() is not None:
        return load_cifar10_arrays(split, limit=n, allow_download=False)
    rng = np.random.default_rng(0)  # offline without the TFRecords: random images still exercise the plumbing
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    _tiny_model().save(root / "tiny.keras")
    for split, n in (("train", 256), ("test", 128)):
        x, y = _arrays(split, n)
        np.savez(root / f"{split}.npz", x=x, y=y)
    return root


def _run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line_error(code, err, pattern=None):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("easiedge: error: "), err
    if pattern is not None:
        assert pattern in lines[0], lines[0]


def _prune_args(files, out, *extra):
    return ["prune", files / "tiny.keras", "--data", files / "train.npz", "--budget", "filters:0.5", "--importance",
            "l1", "--calibration-size", "32", "--admm-epochs", "0", "--finetune-epochs", "0", "--out", out, *extra]


# ----------------------------------------------------------------------------- prune end to end


def test_prune_writes_slim_model_plan_and_valid_report(files, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = _run(capsys, "prune", files / "tiny.keras", "--data", files / "train.npz", "--val-data",
                             files / "test.npz", "--budget", "filters:0.5", "--admm-epochs", "1", "--finetune-epochs",
                             "1", "--importance", "l1", "--calibration-size", "64", "--batch-size", "64",
                             "--latency", "keras", "--runs", "3", "--out", out, "--quiet")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no temporary directory left beside it
    assert sorted(p.name for p in out.iterdir()) == sorted(cli.PRUNE_FILES)
    assert "━" not in stdout  # --quiet: no progress bars
    rep = json.loads((out / "report.json").read_text())
    report.validate_report(rep)
    slim_model = keras.saving.load_model(out / "model.keras", safe_mode=True)
    assert rep["summary"]["macs_after"] == te.count_macs(slim_model) < rep["summary"]["macs_before"]
    assert rep["summary"]["params_after"] == te.count_params(slim_model)
    assert [s["stage"] for s in rep["stages"]] == ["baseline", "admm", "hard_prune", "finetune", "slim"]
    assert all(s["accuracy"] is not None for s in rep["stages"])
    assert rep["stages"][-1]["macs"] == te.count_macs(slim_model)
    assert {r["stage"] for r in rep["latency"]} == {"baseline", "slim"}
    assert set(rep["history"]) == {"admm", "finetune"}
    assert rep["summary"]["prunable_filters_after"] == 10  # 20 prunable filters, half removed
    for row in rep["layers"]:
        if row["class_name"] == "Conv2D":
            assert slim_model.get_layer(row["name"]).filters == row["filters_after"]
    plan = te.PruningPlan.from_json((out / "plan.json").read_text())
    original = keras.saving.load_model(files / "tiny.keras")
    plan.validate(te.analyze(original))
    assert plan.removed_channels() == 10


def test_prune_one_shot_with_macs_budget_and_overwrite(files, tmp_path, capsys):
    out = tmp_path / "run"
    assert _run(capsys, *_prune_args(files, out, "--quiet"))[0] == 0
    first = (out / "plan.json").read_text()
    code, stdout, err = _run(capsys, *_prune_args(files, out, "--overwrite", "--budget", "macs:0.5",
                                                  "--importance", "tbaa"))
    assert code == 0, err
    assert "wrote" in stdout and "MACs" in stdout
    rep = report.read_report(out / "report.json")
    assert rep["budget"] == {"kind": "macs", "ratio": 0.5} and rep["importance"] == "tbaa"
    assert rep["summary"]["macs_after"] <= 0.5 * rep["summary"]["macs_before"]
    assert all(s["accuracy"] is None for s in rep["stages"])  # no --val-data
    assert (out / "plan.json").read_text() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


# ----------------------------------------------------------------------------- bad input


def _lambda_model(path):
    x = keras.Input((32, 32, 3))
    y = layers.Lambda(lambda t: t / 255.0)(x)
    keras.Model(x, layers.Dense(10)(layers.GlobalAveragePooling2D()(layers.Conv2D(4, 3)(y)))).save(path)


def _write_bad_inputs(root):
    (root / "notes.keras").write_text("not a model")
    (root / "weights.h5").write_bytes(b"\x00" * 32)
    _lambda_model(root / "lambda.keras")
    np.savez(root / "small_images.npz", x=np.zeros((4, 28, 28, 3), np.uint8), y=[0, 1, 2, 3])
    np.savez(root / "many_classes.npz", x=np.zeros((4, 32, 32, 3), np.uint8), y=[0, 1, 2, 11])
    (root / "corrupt.npz").write_bytes(b"garbage")
    (root / "taken").mkdir()
    (root / "taken" / "model.keras").write_text("earlier result")
    (root / "foreign").mkdir()
    (root / "foreign" / "thesis.tex").write_text("keep me")


@pytest.fixture(scope="module")
def bad(files):
    _write_bad_inputs(files)
    return files


def _bad_argv(f, case):
    args = _prune_args(f, f / "out")
    edits = {
        "missing model": {1: f / "missing.keras"},
        "text file as model": {1: f / "notes.keras"},
        "junk h5 as model": {1: f / "weights.h5"},
        "lambda without --unsafe": {1: f / "lambda.keras"},
        "image shape": {3: f / "small_images.npz"},
        "class count": {3: f / "many_classes.npz"},
        "corrupt data": {3: f / "corrupt.npz"},
        "missing data": {3: f / "nothing.npz"},
        "unparsable budget": {5: "filters:lots"},
        "unknown budget kind": {5: "flops:0.5"},
        "budget out of range": {5: "filters:1.5"},
        "impossible budget": {5: "macs:0.9999"},
        "bad rescale": {},
    }[case]
    for i, value in edits.items():
        args[i] = value
    if case == "bad rescale":
        args += ["--rescale", "1/x"]
    return args


@pytest.mark.parametrize("case, message", [
    ("missing model", "model file not found"),
    ("text file as model", "is not a Keras model file"),
    ("junk h5 as model", "is not a loadable Keras model"),
    ("lambda without --unsafe", "pass --unsafe"),
    ("image shape", "examples have shape (28, 28, 3) but model 'tiny' expects (32, 32, 3)"),
    ("class count", "labels go up to 11 but model 'tiny' has 10 output units"),
    ("corrupt data", "not a readable .npz"),
    ("missing data", "data not found"),
    ("unparsable budget", "does not parse"),
    ("unknown budget kind", "unknown kind 'flops', expected one of ['filters', "),
    ("budget out of range", "must be in [0, 1)"),
    ("impossible budget", "cannot remove"),
    ("bad rescale", "rescale '1/x' does not parse"),
])
def test_prune_bad_input_is_one_line_and_writes_nothing(bad, capsys, case, message):
    before = sorted(os.listdir(bad))
    code, _, err = _run(capsys, *_bad_argv(bad, case))
    _assert_one_line_error(code, err, message)
    assert sorted(os.listdir(bad)) == before  # no --out, no temporary directory


def test_existing_results_are_refused_without_overwrite(bad, capsys):
    code, _, err = _run(capsys, *_prune_args(bad, bad / "taken"))
    _assert_one_line_error(code, err, "already has results")
    assert (bad / "taken" / "model.keras").read_text() == "earlier result"
    code, _, err = _run(capsys, *_prune_args(bad, bad / "foreign", "--overwrite"))
    _assert_one_line_error(code, err, "holds files easiedge did not write")
    assert (bad / "foreign" / "thesis.tex").exists()


def test_usage_errors_are_one_line(capsys):
    code, _, err = _run(capsys, "prune", "model.keras", "--data", "cifar10")
    _assert_one_line_error(code, err, "the following arguments are required")
    code, _, err = _run(capsys, "prune", "m.keras", "--data", "d.npz", "--budget", "filters:0.5", "--out", "o",
                        "--importance", "magic")
    _assert_one_line_error(code, err, "invalid choice: 'magic'")


# ----------------------------------------------------------------------------- analyze, keras:NAME


def test_analyze_a_file_and_unsafe_lambda(bad, capsys):
    code, out, _ = _run(capsys, "analyze", bad / "tiny.keras")
    assert code == 0 and "2 prunable" in out and "MACs per example" in out
    code, out, err = _run(capsys, "analyze", bad / "lambda.keras", "--unsafe")
    assert code == 0, err
    assert "stop: lambda" in out and "no channel rule" in out


def test_keras_application_weights(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr("keras.src.backend.config.keras_home", lambda: str(tmp_path))  # an empty cache
    code, out, err = _run(capsys, "analyze", "keras:MobileNetV2", "--input-shape", "32,32,3", "--classes", "10",
                          "--weights", "none")
    assert code == 0, err
    assert "prunable" in out
    # imagenet weights are downloaded by Keras; offline (as here and in CI) that is one line naming the way out
    code, out, err = _run(capsys, "analyze", "keras:MobileNetV2", "--input-shape", "32,32,3", "--classes", "10")
    if code != 0:
        _assert_one_line_error(code, err, "could not download the ImageNet weights")
        assert "--weights none" in err
    code, _, err = _run(capsys, "analyze", "keras:MobileNetV2", "--weights", str(tmp_path / "missing.h5"))
    _assert_one_line_error(code, err, "expected imagenet, none or an existing weights file")
    code, _, err = _run(capsys, "analyze", "keras:MobileNetV9")
    _assert_one_line_error(code, err, "did you mean MobileNetV2")
    code, _, err = _run(capsys, "analyze", "keras:ResNet50", "--input-shape", "32x32", "--weights", "none")
    _assert_one_line_error(code, err, "keras:ResNet50")


def test_keras_application_weights_file(capsys, tmp_path):
    base = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), include_top=False, pooling="avg")
    base.save_weights(tmp_path / "mnv2.weights.h5")
    code, out, err = _run(capsys, "analyze", "keras:MobileNetV2", "--input-shape", "32,32,3", "--classes", "10",
                          "--weights", tmp_path / "mnv2.weights.h5")
    assert code == 0, err


def test_from_logits_follows_the_final_activation():
    assert cli._from_logits(_tiny_model()) is False
    assert cli._from_logits(_tiny_model(softmax=False)) is True
    x = keras.Input((4,))
    assert cli._from_logits(keras.Model(x, layers.Softmax()(layers.Dense(3)(x)))) is False


# ----------------------------------------------------------------------------- export and bench


def test_export_int8_tflite_and_onnx_then_bench(files, tmp_path, capsys):
    out = tmp_path / "exports"
    code, stdout, err = _run(capsys, "export", files / "tiny.keras", "--to", "tflite,onnx", "--int8", "--data",
                             files / "test.npz", "--calibration-size", "64", "--out", out)
    assert code == 0, err
    assert "onnx and saved_model are written in float32" in err
    assert sorted(p.name for p in out.iterdir()) == ["exports.json", "model.onnx", "model.tflite"]
    rows = json.loads((out / "exports.json").read_text())
    assert [(r["format"], r["precision"]) for r in rows] == [("tflite", "int8"), ("onnx", "float32")]
    assert all(r["n_samples"] == 64 for r in rows) and rows[1]["max_rel_diff"] < 1e-3
    assert "top-1 agreement" in stdout
    code, stdout, err = _run(capsys, "bench", out / "model.tflite", "--runs", "3", "--threads", "1", "--quiet",
                             "--json", tmp_path / "bench.json")
    assert code == 0, err
    assert "tflite (1 thread, batch 1): median" in stdout
    assert json.loads((tmp_path / "bench.json").read_text())[0]["runs"] == 3


def test_bench_a_keras_model_on_two_runtimes(files, capsys):
    code, stdout, err = _run(capsys, "bench", files / "tiny.keras", "--runtime", "keras,onnx", "--runs", "2",
                             "--warmup", "1", "--batch-size", "4", "--quiet")
    assert code == 0, err
    lines = [l for l in stdout.splitlines() if "median" in l]
    assert [l.split(" ")[0] for l in lines] == ["keras", "onnxruntime"] and all("batch 4" in l for l in lines)


def test_export_and_bench_errors(files, tmp_path, capsys):
    code, _, err = _run(capsys, "export", files / "tiny.keras", "--to", "tflite", "--int8", "--out", tmp_path / "o")
    _assert_one_line_error(code, err, "--int8 needs --data")
    code, _, err = _run(capsys, "export", files / "tiny.keras", "--to", "coreml", "--out", tmp_path / "o")
    _assert_one_line_error(code, err, "--to 'coreml'")
    code, _, err = _run(capsys, "export", files / "tiny.keras", "--to", "tensorrt", "--out", tmp_path / "o")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "tensorrt" in err.lower()
    code, _, err = _run(capsys, "bench", tmp_path / "missing.onnx")
    _assert_one_line_error(code, err, "model file not found")
    code, _, err = _run(capsys, "bench", files / "tiny.keras", "--runtime", "tvm")
    _assert_one_line_error(code, err, "unknown runtime 'tvm'")
    assert not (tmp_path / "o").exists() and os.listdir(tmp_path) == []


def test_output_dir_replacement_is_atomic_on_failure(files, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="boom"):
        with cli._output_dir(str(out), False, cli.PRUNE_FILES) as tmp:
            (tmp / "model.keras").write_text("half")
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []
    with cli._output_dir(str(out), False, cli.PRUNE_FILES) as tmp:
        (tmp / "plan.json").write_text("{}")
    assert os.listdir(out) == ["plan.json"] and not zipfile.is_zipfile(out / "plan.json")
