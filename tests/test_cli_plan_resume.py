"""``easiedge prune --plan FILE`` (apply an edited plan), ``--resume`` (continue an interrupted prune from the
checkpoints kept in ``OUT.resume``) and progress output when stdout is not a terminal (issue 13, items 6, 7, 11)."""
from __future__ import annotations

import json
import signal
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
from tfmot_easiedge.admm.checkpoint import Checkpoints

from cli_helpers import one_line_error, run_cli

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("planresume")
    x = inp = keras.Input((8, 8, 3))
    for i, f in enumerate((8, 8)):
        x = layers.ReLU()(layers.BatchNormalization(name=f"bn{i}")(layers.Conv2D(f, 3, padding="same",
                                                                                  name=f"conv{i}")(x)))
    out = layers.Dense(3, activation="softmax", name="head")(layers.GlobalAveragePooling2D()(x))
    keras.Model(inp, out, name="small").save(root / "m.keras")
    other = inp = keras.Input((8, 8, 3))
    other = layers.Conv2D(5, 3, name="conv0")(other)
    keras.Model(inp, layers.Dense(3, activation="softmax")(layers.GlobalAveragePooling2D()(other)),
                name="other").save(root / "other.keras")
    rng = np.random.default_rng(0)
    np.savez(root / "d.npz", x=rng.integers(0, 256, (48, 8, 8, 3), dtype=np.uint8), y=rng.integers(0, 3, 48))
    return root


def _argv(files, out, *extra, admm=3, finetune=2, budget=("--budget", "filters:0.5")):
    return ["prune", str(files / "m.keras"), "--data", str(files / "d.npz"), *budget, "--importance", "l1",
            "--calibration-size", "16", "--admm-epochs", str(admm), "--finetune-epochs", str(finetune),
            "--batch-size", "16", "--out", str(out), *map(str, extra)]


@pytest.fixture(scope="module")
def finished(files, tmp_path_factory):
    """One uninterrupted run: its output directory."""
    out = tmp_path_factory.mktemp("full") / "run"
    assert cli.main(_argv(files, out, "--quiet")) == 0
    return out


# --------------------------------------------------------------------------- --plan


def _edited_plan(finished, tmp_path):
    plan = json.loads((finished / "plan.json").read_text())
    gid = sorted(plan["groups"])[0]
    plan["groups"][gid]["kept"] = [0, 1, 2]  # the user keeps three channels of the first group
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(plan))
    return path, gid


def test_plan_is_applied_exactly(files, finished, tmp_path, capsys):
    path, gid = _edited_plan(finished, tmp_path)
    out = tmp_path / "applied"
    code, _, err = run_cli(capsys, _argv(files, out, "--plan", path, "--quiet", budget=()))
    assert code == 0, err
    applied = te.PruningPlan.from_json((out / "plan.json").read_text())
    wanted = te.PruningPlan.from_json(path.read_text())
    assert applied.kept == wanted.kept and applied.kept[gid] == [0, 1, 2]
    report = json.loads((out / "report.json").read_text())
    assert report["budget"]["kind"] == "plan" and report["importance"] == f"plan from {path}"
    assert report["config"]["plan"] == str(path)
    hard = [s for s in report["stages"] if s["stage"] == "hard_prune"][0]
    assert "the given plan applied" in hard["note"]
    assert "admm" not in report["history"] and len(report["history"]["finetune"]["loss"]) == 2
    slim = keras.saving.load_model(out / "model.keras")
    assert slim.get_layer(gid).filters == 3 if gid.startswith("conv") else True


def test_bad_plans_are_one_line_before_any_work(files, finished, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"format": "tfmot_easiedge.PruningPlan", "version": 1, "groups": [')
    plan = json.loads((finished / "plan.json").read_text())
    gid = sorted(plan["groups"])[0]
    out_of_range = dict(plan, groups={**plan["groups"], gid: {"size": plan["groups"][gid]["size"], "kept": [0, 99]}})
    missing = dict(plan, groups={g: v for g, v in plan["groups"].items() if g != gid})
    extra = dict(plan, groups={**plan["groups"], "nope": {"size": 4, "kept": [0]}})
    cases = {"corrupt pruning plan JSON": corrupt, "out of range": out_of_range, "no entry for group": missing,
             "does not exist in model": extra, "cannot read it": tmp_path / "absent.json"}
    for text, content in cases.items():
        path = content if isinstance(content, Path) else tmp_path / f"{len(text)}.json"
        if not isinstance(content, Path):
            path.write_text(json.dumps(content))
        out = tmp_path / "never"
        code, _, err = run_cli(capsys, _argv(files, out, "--plan", path, budget=()))
        one_line_error(code, err, text)
        assert not out.exists() and not Path(str(out) + ".resume").exists()
    other = ["prune", str(files / "other.keras"), *_argv(files, tmp_path / "o", "--plan", finished / "plan.json",
                                                          budget=())[2:]]
    code, _, err = run_cli(capsys, other)
    one_line_error(code, err, "a plan made for another model")
    code, _, err = run_cli(capsys, _argv(files, tmp_path / "o", "--plan", finished / "plan.json", "--round-to", "4",
                                      budget=()))
    one_line_error(code, err, "--round-to has no effect with --plan")
    code, _, err = run_cli(capsys, _argv(files, tmp_path / "o", "--plan", finished / "plan.json"))
    one_line_error(code, err, "not allowed with argument")


# --------------------------------------------------------------------------- --resume


def _plan(out):
    return te.PruningPlan.from_json((out / "plan.json").read_text())


def _interrupt_after(files, out, epochs, monkeypatch):
    """Runs prune in this process and raises KeyboardInterrupt once ``epochs`` checkpoints were saved."""
    real = Checkpoints.save

    def save(self, *args, **kwargs):
        path = real(self, *args, **kwargs)
        if kwargs["epoch"] == epochs:
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(Checkpoints, "save", save)
    try:
        return cli.main(_argv(files, out, "--quiet"))
    finally:
        monkeypatch.setattr(Checkpoints, "save", real)


@pytest.mark.parametrize("stop_at", [2, 4], ids=["in-admm", "in-finetune"])
def test_resume_continues_to_the_same_plan(stop_at, files, finished, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert _interrupt_after(files, out, stop_at, monkeypatch) == 130
    err = capsys.readouterr().err
    resume = tmp_path / "run.resume"
    assert "interrupted" in err and str(resume) in err and "--resume" in err, err
    assert not out.exists() and sorted(p.name for p in resume.iterdir()) == [f"epoch-{stop_at:04d}"]
    code, _, err = run_cli(capsys, _argv(files, out, "--quiet", "--resume"))
    assert code == 0, err
    assert not resume.exists()  # a completed run removes its checkpoints
    assert _plan(out).kept == _plan(finished).kept
    report, full = (json.loads((d / "report.json").read_text()) for d in (out, finished))
    for stage in ("admm", "finetune"):  # every epoch once: no restart from epoch 0, none lost
        assert len(report["history"][stage]["loss"]) == len(full["history"][stage]["loss"]), stage
    assert [s["stage"] for s in report["stages"]] == [s["stage"] for s in full["stages"]]


def test_resume_refusals(files, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, _argv(files, out, "--resume"))
    one_line_error(code, err, "no checkpoint in")
    assert _interrupt_after(files, out, 1, monkeypatch) == 130
    capsys.readouterr()
    code, _, err = run_cli(capsys, _argv(files, out, "--resume", budget=("--budget", "filters:0.25")))
    one_line_error(code, err, "--budget is 'filters:0.25' but the interrupted run")
    other = ["prune", str(files / "other.keras"), *_argv(files, out, "--resume")[2:]]
    code, _, err = run_cli(capsys, other)
    one_line_error(code, err, "--resume: MODEL is")
    code, _, err = run_cli(capsys, _argv(files, out))  # a fresh run does not silently discard the checkpoints
    one_line_error(code, err, "add --resume to continue it, or --overwrite")
    assert (tmp_path / "run.resume").exists()
    code, _, err = run_cli(capsys, _argv(files, out, "--quiet", "--overwrite", admm=1, finetune=0))
    assert code == 0, err
    assert "removed" in err and not (tmp_path / "run.resume").exists()


def test_sigterm_then_resume(files, finished, tmp_path):
    """A real process stopped by SIGTERM after its second checkpoint, then resumed to the same plan."""
    out = tmp_path / "run"
    argv = _argv(files, out, "--quiet")
    proc = subprocess.Popen([sys.executable, "-m", "tfmot_easiedge.cli", *argv], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    resume, deadline = tmp_path / "run.resume", time.monotonic() + 120
    while not (resume / "epoch-0002").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint after 120 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the run finished before SIGTERM arrived")
    assert proc.returncode == 143, err
    assert "stopped by SIGTERM" in err and str(resume) in err, err
    assert not out.exists() and resume.exists()
    done = proc_epoch = json.loads(next(resume.glob("epoch-*/state.json")).read_text())["epoch"]
    assert proc_epoch >= 2
    resumed = subprocess.run([sys.executable, "-m", "tfmot_easiedge.cli", *argv, "--resume"], cwd=REPO, text=True,
                             capture_output=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert _plan(out).kept == _plan(finished).kept and not resume.exists()
    history = json.loads((out / "report.json").read_text())["history"]
    assert len(history["admm"]["loss"]) + len(history["finetune"]["loss"]) == 5 >= done


# --------------------------------------------------------------------------- progress in a log file


def test_progress_in_a_log_file_is_one_line_per_epoch(files, tmp_path):
    out = tmp_path / "run"
    log = tmp_path / "log.txt"
    with open(log, "w") as stdout:
        proc = subprocess.run([sys.executable, "-m", "tfmot_easiedge.cli", *_argv(files, out, admm=2, finetune=1),
                               "--val-data", str(files / "d.npz")], cwd=REPO, stdout=stdout,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = log.read_text()
    assert "\r" not in text and "\x1b" not in text and "\b" not in text
    assert text.count("Epoch ") == 3
    assert len(text.splitlines()) < 40, text  # epoch lines, Z-step lines and the summary; no per-step updates


def test_scoring_bar_has_a_known_total(capsys):
    import tensorflow as tf

    from tfmot_easiedge.importance._common import num_batches

    x = np.zeros((10, 4, 4, 3), "float32")
    assert num_batches(x, 4, None) == 3 and num_batches((x, np.zeros(10)), 4, 6) == 2
    examples = tf.data.Dataset.from_tensor_slices(x)
    assert num_batches(examples, 4, None, input_rank=4) == 3
    assert num_batches(examples.batch(5), 4, None, input_rank=4) == 2

    class Seq(keras.utils.PyDataset):
        def __len__(self):
            return 7

        def __getitem__(self, i):
            return x[:2]

    assert num_batches(Seq(), 4, None) == 7
    m = keras.Sequential([keras.Input((4, 4, 3)), layers.Conv2D(4, 3, name="c"), layers.GlobalAveragePooling2D(),
                          layers.Dense(3, activation="softmax")])
    te.importance.tbaa(m, x, batch_size=4, progress=True)
    out = capsys.readouterr().out
    assert "3/3" in out and "Unknown" not in out
