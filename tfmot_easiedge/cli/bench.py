"""``easiedge bench MODEL``: time inference of a model, or of a ``.tflite``/``.onnx`` file, on this CPU."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import tempfile
from pathlib import Path
from typing import Any

from tfmot_easiedge._files import write_json_atomic
from tfmot_easiedge.cli._common import UserError, model_options, runtimes, say
from tfmot_easiedge.cli.loading import model_from_args


def set_threads(threads: int) -> None:
    """Sizes TensorFlow's thread pool for the Keras runtime; only possible before TensorFlow has run an op."""
    import tensorflow as tf

    with contextlib.suppress(RuntimeError):
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)


def latency(model: Any, runtime: str, args: argparse.Namespace, workdir: Path, label: str, *, batch_size: int = 1,
            warmup: int = 10) -> Any:
    """Latency of ``model`` on ``runtime``: Keras directly, TFLite/ONNX Runtime through a verified export."""
    from tfmot_easiedge import export
    from tfmot_easiedge.latency.measure import measure_latency

    target = model
    if runtime == "tflite":
        target = export.tflite(model, workdir / f"{label}.tflite", overwrite=True).path
    elif runtime == "onnxruntime":
        target = export.onnx(model, workdir / f"{label}.onnx", overwrite=True).path
    return measure_latency(target, runtime=runtime, threads=args.threads, batch_size=batch_size, runs=args.runs,
                           warmup=warmup, progress=not args.quiet)


def _bench_file(args: argparse.Namespace, chosen: list[str], suffix: str):
    from tfmot_easiedge.latency.measure import measure_latency

    if not Path(args.model).is_file():
        raise UserError(f"model file not found: {args.model}")
    file_runtime = "tflite" if suffix == ".tflite" else "onnxruntime"
    if chosen and chosen != [file_runtime]:
        raise UserError(f"{args.model} runs on {file_runtime} only; got --runtime {args.runtime}")
    return measure_latency(args.model, runtime=file_runtime, threads=args.threads, batch_size=args.batch_size,
                           runs=args.runs, warmup=args.warmup, progress=not args.quiet)


def cmd_bench(args: argparse.Namespace) -> int:
    """Prints one latency line per runtime (and writes them to ``--json``)."""
    chosen = runtimes(args.runtime)
    for flag in ("threads", "runs", "batch_size"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    suffix = Path(args.model).suffix.lower()
    results = []
    if suffix in (".tflite", ".onnx"):
        results.append(_bench_file(args, chosen, suffix))
    else:
        if "keras" in (chosen or ["keras"]):
            set_threads(args.threads)
        model = model_from_args(args)
        with tempfile.TemporaryDirectory(prefix="easiedge-bench-") as workdir:
            for runtime in chosen or ["keras"]:
                say(args, f"{runtime}:")
                results.append(latency(model, runtime, args, Path(workdir), "model", batch_size=args.batch_size,
                                       warmup=args.warmup))
    for r in results:
        print(r.summary())
    if args.json:
        rows = [{k: v for k, v in dataclasses.asdict(r).items() if k != "times_ms"} for r in results]
        write_json_atomic(args.json, rows, overwrite=True)  # a rerun replaces its own results, as before
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Adds ``bench`` to the subcommands ``sub``."""
    p = sub.add_parser("bench", help="time inference of a model or a .tflite/.onnx file on this CPU")
    p.add_argument("model", help="a .keras/.h5 file, keras:NAME, or a .tflite/.onnx file")
    p.add_argument("--runtime", help="comma-separated: keras, tflite, onnxruntime (a model is exported for the "
                                     "last two; default: keras for a model, the file's own runtime for a file)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    p.add_argument("--runs", type=int, default=50, help="timed runs (default 50)")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs first (default 10)")
    p.add_argument("--batch-size", type=int, default=1, help="examples per run (default 1)")
    p.add_argument("--json", metavar="FILE", help="also write the results to FILE as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    model_options(p)
    p.set_defaults(func=cmd_bench)
