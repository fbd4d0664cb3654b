"""The ``easiedge`` command: ``analyze``, ``prune``, ``export`` and ``bench`` a Keras model, or run the ``demo``.

Every subcommand takes a model as a ``.keras``/``.h5`` file (loaded in Keras safe mode; ``--unsafe`` allows
Lambda layers) or ``keras:NAME`` for a ``keras.applications`` model. Results go to a fresh ``--out``
directory, written under a temporary name next to it and renamed when complete, so a failed run leaves
nothing behind.

Exit codes: 0 success, 1 a check failed (an export disagrees with Keras, the demo's slim model differs),
2 bad input or an unwritable disk (printed as one line ``easiedge: error: ...``, no traceback), 130 interrupted
(Ctrl-C), 143 SIGTERM, 129 SIGHUP; a stopped run leaves no ``--out`` and no temporary directory behind, and
one killed with SIGKILL leaves a hidden ``.OUT.tmp-PID-*`` that the next run into the same ``--out`` removes.
``prune`` keeps the checkpoints of its finished epochs in ``OUT.resume/`` (the stop message names it) for
``--resume``; a completed run removes it.
See docs/cli.md for every flag, with examples.

Layout: this module parses, dispatches and maps errors to exit codes; each command is a module
(:mod:`~tfmot_easiedge.cli.analyze`, :mod:`~tfmot_easiedge.cli.prune`, :mod:`~tfmot_easiedge.cli.export`,
:mod:`~tfmot_easiedge.cli.bench`, :mod:`~tfmot_easiedge.cli.demo_cmd`) with ``cmd_NAME`` and ``add_parser``;
models and data are loaded in :mod:`~tfmot_easiedge.cli.loading`, ``--out`` is handled in
:mod:`~tfmot_easiedge.cli.output`. Nothing here imports TensorFlow or Keras before a command runs.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

from tfmot_easiedge.cli import analyze, bench, demo_cmd, export, profile, prune
from tfmot_easiedge.cli._common import LATENCY_RUNTIMES, Parser, UserError
from tfmot_easiedge.cli.analyze import cmd_analyze
from tfmot_easiedge.cli.bench import cmd_bench
from tfmot_easiedge.cli.demo_cmd import cmd_demo
from tfmot_easiedge.cli.export import EXPORT_FILES, EXPORT_SUMMARY, cmd_export
from tfmot_easiedge.cli.loading import from_logits as _from_logits  # noqa: F401 - the old name, kept
from tfmot_easiedge.cli.loading import keras_cause as _keras_cause  # noqa: F401 - the old name, kept
from tfmot_easiedge.cli.loading import load_model
from tfmot_easiedge.cli.output import check_out as _check_out  # noqa: F401 - the old name, kept
from tfmot_easiedge.cli.output import output_dir as _output_dir  # noqa: F401 - the old name, kept
from tfmot_easiedge.cli.prune import PRUNE_FILES, cmd_prune
from tfmot_easiedge.cli.resume import resume_note

__all__ = ["EXPORT_FILES", "EXPORT_SUMMARY", "LATENCY_RUNTIMES", "PRUNE_FILES", "Terminated", "UserError",
           "build_parser", "cmd_analyze", "cmd_bench", "cmd_demo", "cmd_export", "cmd_prune",
           "import_tensorflow_quietly", "load_model", "main", "validate_args"]


def build_parser() -> argparse.ArgumentParser:
    """The ``easiedge`` argument parser, one subcommand per command module."""
    from tfmot_easiedge import __version__

    p = Parser(prog="easiedge", description="Global filter pruning for Keras 3 CNNs.")
    p.add_argument("--version", action="version", version=f"easiedge (tfmot-easiedge) {__version__}")
    p.add_argument("--verbose", action="store_true", help="keep TensorFlow's start-up log lines")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (analyze, prune, export, bench, profile, demo_cmd):
        command.add_parser(sub)
    return p


#: ``flag: (test, what it must be)`` for every numeric option; checked before any work starts.
_NUMERIC_RULES = {
    "lr": (lambda v: math.isfinite(v) and v > 0, "a finite number > 0"),
    "batch_size": (lambda v: v >= 1, "an integer >= 1"),
    "calibration_size": (lambda v: v >= 1, "an integer >= 1"),
    "limit": (lambda v: v >= 1, "an integer >= 1"),
    "threads": (lambda v: v >= 1, "an integer >= 1"),
    "runs": (lambda v: v >= 1, "an integer >= 1"),
    "warmup": (lambda v: v >= 0, "an integer >= 0"),
    "admm_epochs": (lambda v: v >= 0, "an integer >= 0"),
    "finetune_epochs": (lambda v: v >= 0, "an integer >= 0"),
    "min_fraction": (lambda v: math.isfinite(v) and 0 <= v < 1, "a number in [0, 1)"),
    "round_to": (lambda v: v >= 1, "an integer >= 1"),
    "classes": (lambda v: v >= 1, "an integer >= 1"),
}


def validate_args(args: argparse.Namespace) -> None:
    """Refuses bad numbers and an ``--out`` that is the working directory or above it, before any work."""
    for name, (ok, what) in _NUMERIC_RULES.items():
        value = getattr(args, name, None)
        if value is not None and not ok(value):
            raise UserError(f"--{name.replace('_', '-')} must be {what}, got {value}")
    out = getattr(args, "out", None)
    if out is not None:
        here, target = Path.cwd().resolve(), Path(out).resolve()
        if target == here or target in here.parents:
            raise UserError(f"--out {out} is the working directory or one above it; name a new directory")


_TF_NOISE = ("All log messages before absl::InitializeLog()", "oneDNN custom operations are on",
             "cpu_feature_guard.cc", "To enable the following instructions", "rebuild TensorFlow with")


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow with its C++ start-up banners held back (the CLI's default; ``--verbose`` skips it).

    Called only by the ``easiedge`` entry point, never on library import: sets ``TF_CPP_MIN_LOG_LEVEL=2`` for
    this process unless the user set it (logging only: numerics and speed are unchanged; oneDNN stays on),
    and drops the banners TensorFlow writes to the stderr file descriptor while it loads; any other line
    written then is passed on.
    """
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401 - imported for its side effect: loaded once, quietly
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
    kept = [line for line in text.splitlines() if line.strip() and not any(n in line for n in _TF_NOISE)]
    if kept:
        print("\n".join(kept), file=sys.stderr, flush=True)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that are the user's input or environment, not a bug: reported in one line."""
    from tfmot_easiedge.export import MissingDependencyError, TensorRTUnavailableError

    return (UserError, ValueError, FileExistsError, FileNotFoundError, MissingDependencyError,
            TensorRTUnavailableError)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised like Ctrl-C so every cleanup on the way out runs."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """While active, SIGTERM and SIGHUP (what timeout, Docker, Kubernetes and Slurm send) raise ``Terminated``."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated(signum)

    found = [n for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]
    previous = {n: signal.signal(getattr(signal, n), handler) for n in found}
    try:
        yield
    finally:
        for n, h in previous.items():
            signal.signal(getattr(signal, n), h)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``easiedge`` with ``argv`` (default ``sys.argv[1:]``) and returns the exit code."""
    with _stop_on_signals():
        return _main(argv)


def _one_line(error: BaseException, code: int) -> int:
    print(f"easiedge: error: {' '.join(str(error).split())}", file=sys.stderr)
    return code


def _main(argv: Sequence[str] | None) -> int:
    args = None
    try:  # parsed before the exporters' errors are imported: --help stays free of NumPy and TensorFlow
        args = build_parser().parse_args(argv)
        validate_args(args)
    except UserError as e:
        return _one_line(e, 2)
    from tfmot_easiedge.export import ExportVerificationError

    try:
        file_only = args.command == "bench" and Path(args.model).suffix.lower() in (".tflite", ".onnx")
        if not args.verbose and not file_only:
            import_tensorflow_quietly()
        return args.func(args)
    except ExportVerificationError as e:
        return _one_line(e, 1)
    except _user_errors() as e:
        return _one_line(e, 2)
    except OSError as e:  # disk full, read-only or vanished directory: one line, nothing half-written
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        print(f"easiedge: error: cannot write{where}: {e.strerror or e}; nothing was written", file=sys.stderr)
        return 2
    except Terminated as e:
        import signal

        print(f"easiedge: stopped by {signal.Signals(e.signum).name}; nothing was written{resume_note(args)}",
              file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:
        print(f"easiedge: interrupted; nothing was written{resume_note(args)}", file=sys.stderr)
        return 130
