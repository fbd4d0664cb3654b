"""The ``easiedge`` options of the front door: --version, --protect/--min-fraction/--round-to, --log-dir,
export --int8-io, every numeric flag validated before any work, a fast --help that imports no TensorFlow, and
TensorFlow's start-up banners held back unless --verbose."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import layers

import tfmot_easiedge as te
from tfmot_easiedge import cli

from cli_helpers import one_line_error, run_cli

REPO = Path(__file__).resolve().parents[1]


def _model(path):
    x = inp = keras.Input((16, 16, 3), name="image")
    for i, f in enumerate((16, 16)):
        x = layers.ReLU(name=f"relu{i}")(layers.BatchNormalization(name=f"bn{i}")(
            layers.Conv2D(f, 3, padding="same", name=f"conv{i}")(x)))
    out = layers.Dense(4, activation="softmax", name="head")(layers.GlobalAveragePooling2D(name="gap")(x))
    keras.Model(inp, out, name="small").save(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("opts")
    _model(root / "m.keras")
    rng = np.random.default_rng(0)
    np.savez(root / "d.npz", x=rng.integers(0, 256, (64, 16, 16, 3), dtype=np.uint8), y=rng.integers(0, 4, 64))
    return root


def _prune(files, out, *extra):
    return ["prune", files / "m.keras", "--data", files / "d.npz", "--budget", "filters:0.75", "--importance", "l1",
            "--calibration-size", "32", "--admm-epochs", "0", "--finetune-epochs", "1", "--batch-size", "16",
            "--out", out, "--quiet", *extra]


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    assert te.__version__ in capsys.readouterr().out


@pytest.mark.parametrize("flag, value, text", [
    ("--lr", "-1", "--lr must be a finite number > 0"),
    ("--lr", "nan", "--lr must be a finite number > 0"),
    ("--lr", "inf", "--lr must be a finite number > 0"),
    ("--batch-size", "0", "--batch-size must be an integer >= 1"),
    ("--calibration-size", "-5", "--calibration-size must be an integer >= 1"),
    ("--limit", "0", "--limit must be an integer >= 1"),
    ("--min-fraction", "1", "--min-fraction must be a number in [0, 1)"),
    ("--min-fraction", "nan", "--min-fraction must be a number in [0, 1)"),
    ("--round-to", "0", "--round-to must be an integer >= 1"),
    ("--admm-epochs", "-1", "--admm-epochs must be an integer >= 0"),
    ("--threads", "0", "--threads must be an integer >= 1"),
    ("--protect", "no_such_layer", "--protect 'no_such_layer' is not a layer or group"),
])
def test_bad_numbers_are_refused_before_any_work(flag, value, text, files, tmp_path, capsys):
    start = time.perf_counter()
    code, _, err = run_cli(capsys, *_prune(files, tmp_path / "out", flag, value))
    one_line_error(code, err, text)
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []
    assert time.perf_counter() - start < 10  # refused up front, not after a run


def test_out_cannot_be_the_working_directory(files, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for out in (".", ".."):
        code, _, err = run_cli(capsys, *_prune(files, out))
        one_line_error(code, err, "is the working directory or one above it")


def test_protect_min_fraction_round_to_and_log_dir(files, tmp_path, capsys):
    out, logs = tmp_path / "run", tmp_path / "tb"
    code, _, err = run_cli(capsys, *_prune(files, out, "--protect", "conv0", "--round-to", "4", "--min-fraction",
                                        "0.25", "--log-dir", logs, "--budget", "filters:0.25"))
    assert code == 0, err
    plan = te.PruningPlan.from_json((out / "plan.json").read_text())
    conv0 = next(g for g in plan.kept if "conv0" in g)
    assert len(plan.kept[conv0]) == 16  # protected
    others = [len(k) for g, k in plan.kept.items() if g != conv0]
    assert others and all(n % 4 == 0 and n >= 4 for n in others), plan.kept
    assert any(p.name.startswith("events.out.tfevents") for p in logs.rglob("*")), list(logs.rglob("*"))


def test_export_int8_io(files, tmp_path, capsys):
    code, _, err = run_cli(capsys, "export", files / "m.keras", "--to", "tflite", "--int8-io", "--out", tmp_path / "a")
    one_line_error(code, err, "--int8-io needs --int8")
    code, _, err = run_cli(capsys, "export", files / "m.keras", "--to", "tflite", "--int8", "--int8-io", "--data",
                        files / "d.npz", "--out", tmp_path / "b", "--quiet")
    assert code == 0, err
    from tfmot_easiedge.export.tflite import make_interpreter

    interp = make_interpreter(tmp_path / "b" / "model.tflite")
    assert interp.get_input_details()[0]["dtype"] == np.int8
    assert interp.get_output_details()[0]["dtype"] == np.int8


def _fresh_python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


def test_import_and_help_need_no_tensorflow():
    r = _fresh_python("import sys, tfmot_easiedge as te, tfmot_easiedge.cli\n"
                      "print('tensorflow' in sys.modules, 'keras' in sys.modules, te.__version__)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[:2] == ["False", "False"], r.stdout
    best = min(_timed_help() for _ in range(3))
    assert best < 1.0, f"easiedge --help took {best:.2f} s"


def _timed_help() -> float:
    start = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "tfmot_easiedge.cli", "--help"], cwd=REPO, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "prune" in r.stdout, r.stderr
    return time.perf_counter() - start


def test_tensorflow_banners_are_held_back_unless_verbose(files):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    run = [sys.executable, "-m", "tfmot_easiedge.cli"]
    quiet = subprocess.run([*run, "analyze", str(files / "m.keras")], capture_output=True, text=True, env=env,
                           timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    assert "oneDNN" not in quiet.stderr and "cpu_feature_guard" not in quiet.stderr, quiet.stderr
    loud = subprocess.run([*run, "--verbose", "analyze", str(files / "m.keras")], capture_output=True, text=True,
                          env=env, timeout=300)
    assert loud.returncode == 0 and "prunable" in loud.stdout
    assert "oneDNN" in loud.stderr  # the banner this build prints; --verbose keeps it


def test_loader_keeps_keras_cause(tmp_path, capsys):
    @keras.saving.register_keras_serializable("easiedge_test")
    class NoSuchLayer(layers.Layer):
        def call(self, x):
            return x

    x = keras.Input((4,))
    keras.Model(x, NoSuchLayer()(layers.Dense(2)(x))).save(tmp_path / "custom.keras")
    keras.saving.get_custom_objects().pop("easiedge_test>NoSuchLayer")
    code, _, err = run_cli(capsys, "analyze", tmp_path / "custom.keras")
    one_line_error(code, err, "Could not locate class 'NoSuchLayer'")
    assert "register_keras_serializable" in err and "config" not in err


def test_non_finite_model_and_data_are_refused(files, tmp_path, capsys):
    model = keras.saving.load_model(files / "m.keras")
    kernel, bias = model.get_layer("conv0").get_weights()
    kernel[0, 0, 0, 0] = np.nan
    model.get_layer("conv0").set_weights([kernel, bias])
    model.save(tmp_path / "nan.keras")
    code, _, err = run_cli(capsys, *_prune(files, tmp_path / "a")[:1], tmp_path / "nan.keras",
                        *_prune(files, tmp_path / "a")[2:])
    one_line_error(code, err, "contains NaN")
    code, _, err = run_cli(capsys, "export", tmp_path / "nan.keras", "--to", "tflite", "--out", tmp_path / "b")
    one_line_error(code, err, "contains NaN")
    x = np.load(files / "d.npz")["x"].astype("float32")
    x[33, 1, 2, 0] = np.inf
    np.savez(tmp_path / "inf.npz", x=x, y=np.load(files / "d.npz")["y"])
    args = _prune(files, tmp_path / "c")
    args[3] = tmp_path / "inf.npz"
    code, _, err = run_cli(capsys, *args)
    one_line_error(code, err, "example 33 contains inf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inf.npz", "nan.keras"]


def test_bench_of_a_tflite_file_needs_neither_tensorflow_nor_keras(tmp_path):
    # The on-device case: only LiteRT is installed. TensorFlow and Keras are made unimportable in the child.
    pytest.importorskip("ai_edge_litert")
    x = inp = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, activation="relu")(x)
    model = keras.Model(inp, layers.Dense(2)(layers.GlobalAveragePooling2D()(x)))
    path = tmp_path / "m.tflite"
    te.export.tflite(model, path, sample_inputs=np.random.rand(4, 8, 8, 3).astype("float32"))
    code = ("import sys\n"
            "for name in ('tensorflow', 'keras', 'tf_keras'):\n"
            "    sys.modules[name] = None  # import raises ImportError\n"
            "from tfmot_easiedge.cli import main\n"
            f"code = main(['bench', {str(path)!r}, '--runs', '3', '--warmup', '1', '--quiet'])\n"
            "print('loaded:', sorted(m for m in ('tensorflow', 'keras') if sys.modules.get(m) is not None))\n"
            "sys.exit(code)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=str(Path(__file__).resolve().parents[1]))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "tflite" in done.stdout and "loaded: []" in done.stdout, done.stdout
