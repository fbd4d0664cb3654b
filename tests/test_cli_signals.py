"""Stopping ``easiedge prune`` the ways real runs are stopped: SIGTERM (timeout, Docker, Kubernetes, Slurm),
SIGHUP (a closed terminal), SIGKILL (the OOM killer), and a disk that fills up. Nothing half-written stays in
``--out``; what SIGKILL leaves is removed by the next run."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from keras import layers

from tfmot_easiedge import _files, cli


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("sig")
    x = inp = keras.Input((8, 8, 3))
    x = layers.ReLU()(layers.Conv2D(8, 3, padding="same", name="conv")(x))
    keras.Model(inp, layers.Dense(2, activation="softmax")(layers.GlobalAveragePooling2D()(x))).save(root / "m.keras")
    rng = np.random.default_rng(0)
    np.savez(root / "d.npz", x=rng.integers(0, 256, (32, 8, 8, 3), dtype=np.uint8), y=rng.integers(0, 2, 32))
    return root


def _argv(files, out, epochs):
    return ["prune", str(files / "m.keras"), "--data", str(files / "d.npz"), "--budget", "filters:0.5",
            "--importance", "l1", "--calibration-size", "16", "--admm-epochs", str(epochs), "--finetune-epochs", "0",
            "--batch-size", "16", "--out", str(out), "--quiet"]


def _start(files, out):
    proc = subprocess.Popen([sys.executable, "-m", "tfmot_easiedge.cli", *_argv(files, out, 100000)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not list(out.parent.glob(f".{out.name}.tmp-*")):  # the run is writing
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run never started writing"
        time.sleep(0.2)
    time.sleep(1.0)
    return proc


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)], ids=["SIGTERM", "SIGHUP"])
def test_term_and_hup_stop_cleanly(sig, code, files, tmp_path):
    out = tmp_path / "run"
    proc = _start(files, out)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert f"stopped by {sig.name}" in err
    # no --out and no hidden temporary directory; only the checkpoints --resume needs (named in the message)
    assert [p.name for p in tmp_path.iterdir()] in ([], ["run.resume"])
    assert "run.resume" in err or not (tmp_path / "run.resume").exists()


def test_sigkill_leftovers_are_swept_by_the_next_run(files, tmp_path, capsys):
    out = tmp_path / "run"
    proc = _start(files, out)
    proc.kill()
    proc.communicate(timeout=60)
    left = list(tmp_path.glob(".run.tmp-*"))
    assert left  # SIGKILL cannot be caught: the temporary directory stays
    code = cli.main([*_argv(files, out, 0), "--overwrite"])  # --overwrite: the killed run's checkpoints go too
    err = capsys.readouterr().err
    assert code == 0, err
    assert "left by an earlier run that was killed" in err and str(left[0]) in err
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_a_concurrent_writers_temporary_is_kept(tmp_path):
    mine = tmp_path / f".run.tmp-{os.getpid()}-abcd"  # this process is alive: a writer at work
    mine.mkdir()
    assert _files.sweep_leftovers(tmp_path / "run") == [] and mine.exists()


def test_full_disk_is_one_line_and_writes_nothing(files, tmp_path, capsys, monkeypatch):
    def full_disk(tmp, final, overwrite):  # a mock of a full disk: the final rename fails with ENOSPC
        raise OSError(errno.ENOSPC, "No space left on device", str(final))

    monkeypatch.setattr(_files, "_commit", full_disk)
    code = cli.main(_argv(files, tmp_path / "run", 0))
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0] and "nothing was written" in lines[0], err
    assert list(tmp_path.iterdir()) == []
