"""Runs the QAT child process (:mod:`tfmot_easiedge.quantize.worker`) and brings back its result.

The child gets a copy of this process's environment with ``TF_USE_LEGACY_KERAS=1`` added (tfmot works only
on tf_keras); this process's environment is never changed. Its stdout is read line by line: epoch lines go
to ``on_epoch``, the rest is dropped; its stderr (TensorFlow's logs, a traceback) goes to a file in the job
directory, whose last line explains a child that died without a result.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

__all__ = ["QATError", "format_epoch", "run_child"]

PROGRESS_PREFIX = "EASIEDGE_QAT_EPOCH "  # the worker's (kept equal by tests/test_qat.py)


class QATError(RuntimeError):
    """The QAT child process failed; the message is its error in one line.

    Attributes:
        kind: the child's exception class name (e.g. ``"RebuildError"``), or "" when it died without one.
        detail: the child's error line.
    """

    def __init__(self, message: str, kind: str = "", detail: str = ""):
        super().__init__(message)
        self.kind = kind
        self.detail = detail


def format_epoch(logs: dict[str, Any]) -> str:
    """One progress line for an epoch of QAT.

    Example:
        >>> format_epoch({"epoch": 1, "epochs": 3, "loss": 0.4123, "accuracy": 0.875})
        'QAT epoch 1/3: loss 0.4123, accuracy 0.8750'
    """
    values = ", ".join(f"{k} {'nan' if v is None else format(v, '.4f')}" for k, v in logs.items()
                       if k not in ("epoch", "epochs"))
    return f"QAT epoch {logs['epoch']}/{logs['epochs']}: {values}"


def _last_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [line for line in lines if line]
    return lines[-1] if lines else ""


def run_child(job_dir: Path, on_epoch: Callable[[dict], None] | None = None, timeout: float | None = None
              ) -> dict[str, Any]:
    """Runs the worker on ``job_dir``; returns its ``result.json``.

    Raises:
        QATError: the child reported an error, died without a result, or ran past ``timeout`` seconds.
    """
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "PYTHONUNBUFFERED": "1"}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    stderr_path = job_dir / "stderr.log"
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "tfmot_easiedge.quantize.worker", str(job_dir)],
                                stdout=subprocess.PIPE, stderr=stderr, env=env, text=True)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith(PROGRESS_PREFIX) and on_epoch is not None:
                    on_epoch(json.loads(line[len(PROGRESS_PREFIX):]))
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise QATError(f"the QAT child process ran past {timeout:g} s and was stopped; nothing was written"
                           ) from None
        except BaseException:  # Ctrl-C, or an on_epoch callback that raised: do not leave the child training
            proc.kill()
            proc.wait()
            raise
    result_path = job_dir / "result.json"
    if not result_path.exists():
        raise QATError(f"the QAT child process exited with code {proc.returncode} without a result "
                       f"({_last_line(stderr_path) or 'no message'}); nothing was written")
    result = json.loads(result_path.read_text(encoding="utf-8"))
    if "error" in result:
        raise QATError(f"QAT failed in the tf_keras child process: {result['error']}; nothing was written",
                       kind=str(result.get("kind", "")), detail=str(result["error"]))
    return result
