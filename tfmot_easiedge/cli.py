"""The ``easiedge`` command: ``analyze``, ``prune``, ``export`` and ``bench`` a Keras model, or run the ``demo``.

Every subcommand takes a model as a ``.keras``/``.h5`` file (loaded in Keras safe mode; ``--unsafe`` allows
Lambda layers) or ``keras:NAME`` for a ``keras.applications`` model. Results go to a fresh ``--out``
directory, written under a temporary name next to it and renamed when complete, so a failed run leaves
nothing behind.

Exit codes: 0 success, 1 a check failed (an export disagrees with Keras, the demo's slim model differs),
2 bad input or an unwritable disk (printed as one line ``easiedge: error: ...``, no traceback), 130 interrupted
(Ctrl-C), 143 SIGTERM, 129 SIGHUP; a stopped run leaves no ``--out`` and no temporary directory behind, and
one killed with SIGKILL leaves a hidden ``.OUT.tmp-PID-*`` that the next run into the same ``--out`` removes.
See docs/cli.md for every flag, with examples.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable, Sequence

from tfmot_easiedge.data import check_finite_weights
from tfmot_easiedge.report import FILES as REPORT_FILES

#: What ``prune`` and ``export`` write; an ``--out`` directory holding only these may be replaced with --overwrite.
PRUNE_FILES = ("model.keras", "plan.json", *REPORT_FILES)
EXPORT_FILES = {"saved_model": "saved_model", "tflite": "model.tflite", "onnx": "model.onnx",
                "tensorrt": "model.engine"}
EXPORT_SUMMARY = "exports.json"
LATENCY_RUNTIMES = ("keras", "tflite", "onnxruntime")


class UserError(Exception):
    """Bad input from the user: printed as one line, no traceback."""


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one-line ``UserError``s, like every other input error."""

    def error(self, message):
        raise UserError(f"{message} (see: {self.prog} --help)")


def _say(args, *parts) -> None:
    if not getattr(args, "quiet", False):
        print(*parts, flush=True)


def _warn(message: str) -> None:
    print(f"easiedge: warning: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- models


def _parse_shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(p) for p in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if not shape or any(d < 1 for d in shape):
        raise UserError(f"--input-shape {text!r} does not parse: expected sizes like 32,32,3 (height, width, channels)")
    return shape


def _application(name: str, input_shape, classes: int | None, weights: str = "imagenet"):
    """``keras.applications.NAME`` with ``weights``: ``imagenet`` (downloaded by Keras, or from its cache),
    ``none`` (random) or the path of a weights file."""
    import keras

    builder = getattr(keras.applications, name, None)
    if builder is None or not callable(builder) or isinstance(builder, type(keras)):
        known = [n for n in dir(keras.applications) if n[:1].isupper()]
        hint = difflib.get_close_matches(name, known, n=3)
        raise UserError(f"keras.applications has no model {name!r}"
                        + (f"; did you mean {', '.join(hint)}?" if hint else ""))
    if weights not in ("imagenet", "none") and not Path(weights).is_file():
        raise UserError(f"--weights {weights!r}: expected imagenet, none or an existing weights file")
    source = None if weights == "none" else weights
    shape_kw = {"input_shape": input_shape} if input_shape else {}
    try:
        if source is None:
            return builder(weights=None, classes=classes or 1000, **shape_kw)
        if classes in (None, 1000) and input_shape is None:
            return builder(weights=source)
        base = builder(weights=source, include_top=False, pooling="avg", **shape_kw)
        head = keras.layers.Dense(classes or 1000, activation="softmax", name="predictions")(base.output)
        return keras.Model(base.input, head, name=base.name)
    except (ValueError, TypeError) as e:
        raise UserError(f"keras:{name}: {str(e).splitlines()[0]}") from None
    except Exception as e:  # noqa: BLE001 - Keras raises a bare Exception("URL fetch failure ...") when offline
        if "URL fetch failure" not in str(e) and not isinstance(e, OSError):
            raise
        raise UserError(f"keras:{name}: could not download the ImageNet weights ({str(e).splitlines()[0][-80:]}); "
                        "connect to the internet, or pass --weights none (random weights) or --weights FILE"
                        ) from None


def _load_file(spec: str, unsafe: bool):
    import zipfile

    import keras

    path = Path(spec)
    if not path.exists():
        raise UserError(f"model file not found: {spec}")
    if path.is_dir() or (path.suffix.lower() == ".keras" and not zipfile.is_zipfile(path)):
        raise UserError(f"{spec} is not a Keras model file (expected a .keras archive or an .h5 file)")
    try:
        model = keras.saving.load_model(spec, compile=False, safe_mode=not unsafe)
    except Exception as e:  # noqa: BLE001 - any loader failure is a user-facing one-liner
        text = str(e)
        if "safe_mode" in text or "arbitrary code" in text:
            raise UserError(f"{spec} contains Python code (a Lambda layer); pass --unsafe if you trust it") from None
        raise UserError(f"{spec} is not a loadable Keras model: {_keras_cause(text) or type(e).__name__}") from None
    if not isinstance(model, keras.Model):
        raise UserError(f"{spec} holds a {type(model).__name__}, not a keras.Model")
    return model


def _keras_cause(text: str) -> str:
    """The informative part of a Keras loading error: the innermost ``Exception encountered:`` (e.g. "Could not
    locate class 'MyLayer'. Make sure custom classes ... are decorated ..."), without the config dumps."""
    cause = text.rsplit("Exception encountered:", 1)[-1]
    for cut in ("Full object config", "\n\nconfig=", "config={"):
        cause = cause.split(cut, 1)[0]
    return " ".join(cause.split()).rstrip(" .") + "." if cause.strip() else ""


def load_model(spec: str, *, unsafe: bool = False, input_shape: Sequence[int] | None = None,
               classes: int | None = None, weights: str = "imagenet"):
    """Loads a ``.keras``/``.h5`` file (Keras safe mode unless ``unsafe``) or builds ``keras:NAME``.

    ``keras:NAME`` builds ``keras.applications.NAME`` with ``weights``: ``"imagenet"`` (Keras downloads them
    once into ``~/.keras/models``; offline without them is a one-line error), ``"none"`` (random weights) or
    a weights file. A new ``classes``-way softmax head is added when ``input_shape`` or ``classes`` differ
    from ImageNet's.

    Raises:
        UserError: a missing file, a file that is not a model, a Lambda model without ``unsafe``, an
            unknown application.

    Example:
        >>> load_model("keras:MobileNetV2", input_shape=(32, 32, 3), classes=10).output_shape  # doctest: +SKIP
        (None, 10)
    """
    if spec.startswith("keras:"):
        return _application(spec.split(":", 1)[1], tuple(input_shape) if input_shape else None, classes, weights)
    if input_shape or classes or weights != "imagenet":
        _warn("--input-shape, --classes and --weights apply to keras:NAME models only; ignored for a model file")
    return _load_file(spec, unsafe)


def _model_from_args(args):
    return load_model(args.model, unsafe=args.unsafe, input_shape=_parse_shape(args.input_shape),
                      classes=args.classes, weights=args.weights)


def _analyze(model):
    import tfmot_easiedge as te

    try:
        return te.analyze(model)
    except te.GraphError as e:
        raise UserError(str(e)) from None


# --------------------------------------------------------------------------- output directories


def _check_out(out: Path, overwrite: bool, ours: Iterable[str]) -> bool:
    """Refuses an ``--out`` that holds results (unless ``overwrite``) or other files; True when it exists."""
    if not out.exists():
        return False
    if not out.is_dir():
        raise UserError(f"--out {out} is a file; expected a directory")
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return True
    listed = ", ".join(entries[:4]) + (" ..." if len(entries) > 4 else "")
    foreign = [e for e in entries if e not in set(ours)]
    if foreign:
        raise UserError(f"--out {out} is not empty ({listed}) and holds files easiedge did not write; "
                        "choose a new directory")
    if not overwrite:
        raise UserError(f"--out {out} already has results ({listed}); pass --overwrite to replace them")
    return True


@contextlib.contextmanager
def _output_dir(out: str, overwrite: bool, ours: Iterable[str]):
    """Yields a fresh temporary directory next to ``out`` that replaces ``out`` when the block succeeds."""
    from tfmot_easiedge.export._common import atomic_output, sweep_leftovers

    final = Path(out)
    for left in sweep_leftovers(final):
        _warn(f"removed {left}, left by an earlier run that was killed")
    exists = _check_out(final, overwrite, ours)
    try:
        with atomic_output(final, overwrite=exists) as tmp:
            tmp.mkdir()
            yield tmp
    except FileExistsError:
        raise UserError(f"--out {out} was created by another process while this run was writing; nothing was "
                        "replaced: choose a new directory, or pass --overwrite to replace it") from None


# --------------------------------------------------------------------------- data


def _channels(model) -> int:
    c = model.inputs[0].shape[-1] if model.inputs else None
    return c if c in (1, 3, 4) else 3


def _load_data(spec: str, model, *, split: str, what: str, args, limit: int | None = None):
    from tfmot_easiedge.data import check_fits, load_data

    data = load_data(spec, split=split, limit=limit, rescale=args.rescale, channels=_channels(model),
                     verbose=not args.quiet)
    check_fits(model, data, what)
    return data


def _from_logits(model) -> bool:
    """False when the model ends in a softmax (an activation, a Softmax layer), True for logits."""
    import keras

    from tfmot_easiedge.graph.model_graph import ModelGraph

    graph = ModelGraph.from_model(model)
    producer = graph.tensors[graph.output_ids[0]].producer
    layer = graph.nodes[producer].layer if producer is not None else None
    if isinstance(layer, keras.layers.Softmax):
        return False
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", "") != "softmax"


def _compile(model, args) -> bool:
    import keras

    from_logits = _from_logits(model)
    if args.optimizer == "adam":
        optimizer = keras.optimizers.Adam(learning_rate=args.lr or 1e-3)
    else:
        optimizer = keras.optimizers.SGD(learning_rate=args.lr or 0.01, momentum=0.9)
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
                  metrics=["accuracy"])
    return from_logits


# --------------------------------------------------------------------------- analyze


def cmd_analyze(args) -> int:
    import tfmot_easiedge as te

    model = _model_from_args(args)
    analysis = _analyze(model)
    print(analysis.summary())
    print(f"MACs per example: {te.count_macs(model, graph=analysis.graph):,}   params: {te.count_params(model):,}")
    return 0


# --------------------------------------------------------------------------- prune


def _runtimes(text: str | None) -> list[str]:
    if not text:
        return []
    names = [r.strip().lower() for r in text.split(",") if r.strip()]
    aliases = {"onnx": "onnxruntime", "litert": "tflite"}
    names = [aliases.get(n, n) for n in names]
    bad = [n for n in names if n not in LATENCY_RUNTIMES]
    if bad:
        raise UserError(f"unknown runtime {bad[0]!r}; expected a comma-separated list of {', '.join(LATENCY_RUNTIMES)}")
    return list(dict.fromkeys(names))


def _latency(model, runtime: str, args, workdir: Path, label: str, *, batch_size: int = 1, warmup: int = 10):
    """Latency of ``model`` on ``runtime``: Keras directly, TFLite/ONNX Runtime through a verified export."""
    from tfmot_easiedge import export
    from tfmot_easiedge.metrics.latency import measure_latency

    target = model
    if runtime == "tflite":
        target = export.tflite(model, workdir / f"{label}.tflite", overwrite=True).path
    elif runtime == "onnxruntime":
        target = export.onnx(model, workdir / f"{label}.onnx", overwrite=True).path
    return measure_latency(target, runtime=runtime, threads=args.threads, batch_size=batch_size, runs=args.runs,
                           warmup=warmup, progress=not args.quiet)


def _prune_latency(original, slim_model, args) -> dict:
    runtimes = _runtimes(args.latency)
    results: dict[str, list] = {}
    with tempfile.TemporaryDirectory(prefix="easiedge-latency-") as workdir:
        for label, model in (("baseline", original), ("slim", slim_model)):
            for runtime in runtimes:
                _say(args, f"latency: {label} on {runtime}")
                results.setdefault(label, []).append(_latency(model, runtime, args, Path(workdir), label))
    return results


def _run_pipeline(model, train, val, args, budget):
    from tfmot_easiedge.admm import EasiEdge

    import keras

    calibration = train.subset(args.calibration_size, seed=args.seed).x
    options = {k: getattr(args, k) for k in ("min_fraction", "round_to") if getattr(args, k) is not None}
    pipeline = EasiEdge(budget, importance=args.importance, calibration_size=args.calibration_size, seed=args.seed,
                        verbose=0 if args.quiet else 1, protect=_names(args.protect), **options)
    callbacks = [keras.callbacks.TensorBoard(args.log_dir)] if args.log_dir else []
    return pipeline.run(model, (train.x, train.y), calibration_data=calibration, admm_epochs=args.admm_epochs,
                        finetune_epochs=args.finetune_epochs, batch_size=args.batch_size,
                        validation_data=None if val is None else (val.x, val.y), callbacks=callbacks)


def _names(text: str | None) -> list[str]:
    return [n.strip() for n in (text or "").split(",") if n.strip()]


def _check_protect(args, analysis) -> None:
    """Every ``--protect`` name must be a group id or a layer of the model."""
    layers = {n.name for n in analysis.graph.nodes} | set(analysis.groups)
    unknown = [n for n in _names(args.protect) if n not in layers]
    if unknown:
        hint = difflib.get_close_matches(unknown[0], sorted(layers), n=3)
        raise UserError(f"--protect {unknown[0]!r} is not a layer or group of the model"
                        + (f"; did you mean {', '.join(hint)}?" if hint else ""))


def _prune_config(args, from_logits: bool) -> dict:
    keys = ("data", "val_data", "budget", "admm_epochs", "finetune_epochs", "importance", "calibration_size",
            "batch_size", "rescale", "optimizer", "lr", "seed", "limit", "latency", "protect", "min_fraction",
            "round_to")
    return {**{k: getattr(args, k) for k in keys}, "model": args.model, "from_logits": from_logits}


def cmd_prune(args) -> int:
    import tfmot_easiedge as te
    from tfmot_easiedge import report

    t_start = time.perf_counter()
    budget = te.parse_budget(args.budget)
    for flag in ("admm_epochs", "finetune_epochs"):
        if getattr(args, flag) < 0:
            raise UserError(f"--{flag.replace('_', '-')} must be >= 0, got {getattr(args, flag)}")
    if "keras" in _runtimes(args.latency):
        _set_threads(args.threads)
    _check_out(Path(args.out), args.overwrite, PRUNE_FILES)
    model = _model_from_args(args)
    check_finite_weights(model)
    analysis = _analyze(model)
    _check_protect(args, analysis)
    train = _load_data(args.data, model, split="train", what="--data", args=args, limit=args.limit)
    val = (_load_data(args.val_data, model, split="test", what="--val-data", args=args, limit=args.limit)
           if args.val_data else None)
    from_logits = _compile(model, args)
    t_load = time.perf_counter() - t_start
    with _output_dir(args.out, args.overwrite, PRUNE_FILES) as tmp:
        result = _run_pipeline(model, train, val, args, budget)
        check_finite_weights(result.model, "pruned model")  # never write a model with NaN/inf weights
        result.model.save(tmp / "model.keras")
        (tmp / "plan.json").write_text(result.plan.to_json(indent=2) + "\n", encoding="utf-8")
        latency = _prune_latency(model, result.model, args) if args.latency else None
        timings = {"load": t_load, **{k: float(v) for k, v in result.timings.items() if k != "zsteps"},
                   "total": time.perf_counter() - t_start}
        data = {"train": train.describe(), "validation": None if val is None else val.describe(),
                "rescale": args.rescale}
        rep = report.build_report(model, result.model, result.plan, analysis, budget=budget,
                                  importance=args.importance, stages=result.stages, latency=latency,
                                  timings=timings, history=result.history, data=data,
                                  config=_prune_config(args, from_logits))
        report.write_report(rep, tmp)
    _print_prune_summary(args, rep)
    return 0


def _print_prune_summary(args, rep: dict) -> None:
    s = rep["summary"]
    _say(args, f"\nparams {s['params_before']:,} -> {s['params_after']:,} ({s['params_ratio']:.1%})   "
               f"MACs {s['macs_before']:,} -> {s['macs_after']:,} ({s['macs_ratio']:.1%})")
    accuracies = [f"{st['stage']} {100 * st['accuracy']:.2f}%" for st in rep["stages"] if st["accuracy"] is not None]
    if accuracies:
        _say(args, "accuracy: " + ", ".join(accuracies))
    _say(args, f"wrote {args.out}: {', '.join(PRUNE_FILES)}")


# --------------------------------------------------------------------------- export


def _targets(text: str) -> list[str]:
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in EXPORT_FILES]
    if not names or bad:
        raise UserError(f"--to {text!r}: expected a comma-separated list of {', '.join(EXPORT_FILES)}")
    return list(dict.fromkeys(names))


def _export_one(model, target: str, path: Path, args, samples):
    from tfmot_easiedge import export

    if target == "tflite":
        return export.tflite(model, path, quantization="int8" if args.int8 else None, representative_data=samples,
                             int8_io=args.int8_io)
    if target == "onnx":
        return export.onnx(model, path, sample_inputs=samples)
    if target == "tensorrt":
        return export.tensorrt(model, path, precision="int8" if args.int8 else "fp16", representative_data=samples)
    return export.saved_model(model, path, sample_inputs=samples)


def cmd_export(args) -> int:
    targets = _targets(args.to)
    if args.int8_io and not args.int8:
        raise UserError("--int8-io needs --int8: int8 inputs and outputs come with a full-integer model")
    if args.int8 and not args.data:
        raise UserError("--int8 needs --data: a few hundred images to calibrate the int8 ranges")
    if args.int8 and ("onnx" in targets or "saved_model" in targets):
        _warn("--int8 applies to tflite and tensorrt; onnx and saved_model are written in float32")
    _check_out(Path(args.out), args.overwrite, [*EXPORT_FILES.values(), EXPORT_SUMMARY])
    model = _model_from_args(args)
    check_finite_weights(model)
    samples = None
    if args.data:
        samples = _load_data(args.data, model, split="train", what="--data", args=args,
                             limit=args.calibration_size).x
    results = []
    with _output_dir(args.out, args.overwrite, [*EXPORT_FILES.values(), EXPORT_SUMMARY]) as tmp:
        for target in targets:
            _say(args, f"exporting {target} ...")
            result = _export_one(model, target, tmp / EXPORT_FILES[target], args, samples)
            results.append(result)
        rows = [{**dataclasses.asdict(r), "path": EXPORT_FILES[r.format]} for r in results]
        (tmp / EXPORT_SUMMARY).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    for r in results:
        _say(args, dataclasses.replace(r, path=Path(args.out) / EXPORT_FILES[r.format]).summary())
    return 0


# --------------------------------------------------------------------------- bench


def _set_threads(threads: int) -> None:
    """Sizes TensorFlow's thread pool for the Keras runtime; only possible before TensorFlow has run an op."""
    import tensorflow as tf

    with contextlib.suppress(RuntimeError):
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)


def cmd_bench(args) -> int:
    from tfmot_easiedge.metrics.latency import measure_latency

    runtimes = _runtimes(args.runtime)
    for flag in ("threads", "runs", "batch_size"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    suffix = Path(args.model).suffix.lower()
    results = []
    if suffix in (".tflite", ".onnx"):
        if not Path(args.model).is_file():
            raise UserError(f"model file not found: {args.model}")
        file_runtime = "tflite" if suffix == ".tflite" else "onnxruntime"
        if runtimes and runtimes != [file_runtime]:
            raise UserError(f"{args.model} runs on {file_runtime} only; got --runtime {args.runtime}")
        results.append(measure_latency(args.model, runtime=file_runtime, threads=args.threads,
                                       batch_size=args.batch_size, runs=args.runs, warmup=args.warmup,
                                       progress=not args.quiet))
    else:
        if "keras" in (runtimes or ["keras"]):
            _set_threads(args.threads)
        model = _model_from_args(args)
        with tempfile.TemporaryDirectory(prefix="easiedge-bench-") as workdir:
            for runtime in runtimes or ["keras"]:
                _say(args, f"{runtime}:")
                results.append(_latency(model, runtime, args, Path(workdir), "model", batch_size=args.batch_size,
                                        warmup=args.warmup))
    for r in results:
        print(r.summary())
    if args.json:
        rows = [{k: v for k, v in dataclasses.asdict(r).items() if k != "times_ms"} for r in results]
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


# --------------------------------------------------------------------------- demo


def cmd_demo(args) -> int:
    """Train a small CNN briefly, prune it with EasiEdge, export and time it, write the report (offline)."""
    import tfmot_easiedge as te
    from tfmot_easiedge import demo

    te.parse_budget(args.budget)  # a bad budget is a one-line error before anything runs
    settings = dataclasses.replace(demo.QUICK if args.quick else demo.FULL, seed=args.seed, budget=args.budget)
    _check_out(Path(args.out), args.overwrite, demo.FILES)
    train, test, note = demo.load_demo_data(args.dataset, args.data_dir, settings=settings)
    print(f"data: {note}", flush=True)
    with _output_dir(args.out, args.overwrite, demo.FILES) as tmp:
        result = demo.run_demo(tmp, train, test, settings, data_note=note, verbose=0 if args.quiet else 1,
                               log=lambda line: _say(args, line))
    print("\n".join(demo.summary_lines(result, args.out)), flush=True)
    return 0 if result.passed else 1


def _add_demo(sub) -> None:
    from tfmot_easiedge.demo import DATASETS

    p = sub.add_parser("demo", help="train a small CNN, prune it with EasiEdge, export it to TFLite and time it, "
                                    "offline, in a few minutes")
    p.add_argument("--out", default="easiedge-demo", metavar="DIR",
                   help="directory to create for the results (default easiedge-demo)")
    p.add_argument("--overwrite", action="store_true", help="replace an --out directory holding earlier results")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: a few hundred images, one epoch per stage (for tests)")
    p.add_argument("--dataset", default="auto", choices=DATASETS,
                   help="cifar10 (local TFRecords only), digits (bundled with scikit-learn), or auto: CIFAR-10 "
                        "when found, else digits (default)")
    p.add_argument("--data-dir", metavar="DIR", help="directory holding CIFAR-10's train.tfrecord and test.tfrecord "
                                                     "(default: $EASIEDGE_CIFAR10_DIR, then ../shared/data/cifar10)")
    p.add_argument("--budget", default="macs:0.5", help="filters:RATIO or macs:RATIO (default macs:0.5)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, data split and pruning (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or step lines; only the summary")
    p.set_defaults(func=cmd_demo)


# --------------------------------------------------------------------------- parser


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--unsafe", action="store_true", help="allow models with Lambda layers (runs their code)")
    p.add_argument("--input-shape", metavar="H,W,C", help="input shape of a keras:NAME model, e.g. 32,32,3")
    p.add_argument("--classes", type=int, metavar="N", help="output classes of a keras:NAME model")
    p.add_argument("--weights", default="imagenet", metavar="imagenet|none|FILE",
                   help="weights of a keras:NAME model: imagenet (downloaded once by Keras; default), none "
                        "(random) or a weights file")


def _data_options(p: argparse.ArgumentParser, *, required: bool, help_text: str) -> None:
    p.add_argument("--data", required=required, metavar="SPEC", help=help_text)
    p.add_argument("--rescale", metavar="SCALE[,OFFSET]",
                   help="inputs become x*SCALE+OFFSET, e.g. 1/255 or 1/127.5,-1 (default: raw 0..255 pixels)")


def _output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="DIR", help="directory to create for the results")
    p.add_argument("--overwrite", action="store_true", help="replace an --out directory holding earlier results")
    p.add_argument("--quiet", action="store_true", help="no progress bars or progress lines")


def _add_prune(sub) -> None:
    from tfmot_easiedge.importance import CRITERION_NAMES

    p = sub.add_parser("prune", help="prune a model to a budget, fine-tune it, write the slim model and a report")
    p.add_argument("model", help="a .keras/.h5 file or keras:NAME (keras.applications)")
    _data_options(p, required=True, help_text="training data: cifar10[:SPLIT], a TFRecord file/folder, an image "
                                              "folder, or an .npz with x and y")
    p.add_argument("--val-data", metavar="SPEC", help="validation data (same forms; cifar10 reads the test split); "
                                                      "accuracy per stage is reported when given")
    p.add_argument("--budget", required=True, help="filters:RATIO (share of filters removed) or macs:RATIO "
                                                   "(share of MACs removed)")
    p.add_argument("--admm-epochs", type=int, default=10, metavar="N",
                   help="epochs of ADMM training (0: one-shot pruning of the trained weights; default 10)")
    p.add_argument("--finetune-epochs", type=int, default=5, metavar="M", help="masked fine-tune epochs (default 5)")
    p.add_argument("--importance", default="tbaa", choices=sorted(CRITERION_NAMES), help="channel ranking (default tbaa)")
    p.add_argument("--calibration-size", type=int, default=512, metavar="K",
                   help="training examples used to score channels (default 512)")
    p.add_argument("--batch-size", type=int, default=64, metavar="B", help="training batch size (default 64)")
    p.add_argument("--optimizer", default="sgd", choices=("sgd", "adam"), help="sgd (momentum 0.9) or adam")
    p.add_argument("--lr", type=float, metavar="LR", help="learning rate (default 0.01 for sgd, 0.001 for adam)")
    p.add_argument("--limit", type=int, metavar="N", help="use only the first N examples of --data and --val-data")
    p.add_argument("--seed", type=int, default=0, help="seed of calibration sampling and training (default 0)")
    p.add_argument("--latency", metavar="RUNTIMES", help="also time the model before and after on these "
                                                         "runtimes (keras,tflite,onnxruntime), batch 1")
    p.add_argument("--threads", type=int, default=1, help="threads for --latency (default 1)")
    p.add_argument("--runs", type=int, default=50, help="timed runs for --latency (default 50)")
    p.add_argument("--protect", metavar="NAMES", help="comma-separated layer names or group ids never pruned")
    p.add_argument("--min-fraction", type=float, default=None, metavar="F",
                   help="every group keeps at least this fraction of its channels (default 0.1)")
    p.add_argument("--round-to", type=int, default=None, metavar="N",
                   help="round kept channel counts up to a multiple of N (e.g. 8 for fast kernels)")
    p.add_argument("--log-dir", metavar="DIR", help="write TensorBoard logs of the ADMM and fine-tune fits here")
    _model_options(p)
    _output_options(p)
    p.set_defaults(func=cmd_prune)


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="export a model to TFLite, ONNX, TensorRT or a SavedModel, verified")
    p.add_argument("model", help="a .keras/.h5 file or keras:NAME")
    p.add_argument("--to", default="tflite,onnx", help="comma-separated: tflite, onnx, tensorrt, saved_model "
                                                       "(default tflite,onnx)")
    p.add_argument("--int8", action="store_true", help="full-integer TFLite and int8 TensorRT, calibrated on --data")
    p.add_argument("--int8-io", action="store_true",
                   help="with --int8: int8 input and output tensors too (else float32 in and out)")
    _data_options(p, required=False, help_text="images to calibrate --int8 and to verify the exports on")
    p.add_argument("--calibration-size", type=int, default=500, metavar="K",
                   help="use the first K images of --data (default 500)")
    _model_options(p)
    _output_options(p)
    p.set_defaults(func=cmd_export)


def _add_bench(sub) -> None:
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
    _model_options(p)
    p.set_defaults(func=cmd_bench)


def build_parser() -> argparse.ArgumentParser:
    from tfmot_easiedge import __version__

    p = _Parser(prog="easiedge", description="Global filter pruning for Keras 3 CNNs.")
    p.add_argument("--version", action="version", version=f"easiedge (tfmot-easiedge) {__version__}")
    p.add_argument("--verbose", action="store_true", help="keep TensorFlow's start-up log lines")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    a = sub.add_parser("analyze", help="channel groups, prunable share, MACs and skipped layers of a model")
    a.add_argument("model", help="a .keras/.h5 file or keras:NAME (keras.applications)")
    _model_options(a)
    a.set_defaults(func=cmd_analyze)
    _add_prune(sub)
    _add_export(sub)
    _add_bench(sub)
    _add_demo(sub)
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


def validate_args(args) -> None:
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
def _stop_on_signals():
    """While active, SIGTERM and SIGHUP (what timeout, Docker, Kubernetes and Slurm send) raise ``Terminated``."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated(signum)

    names = [n for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]
    previous = {n: signal.signal(getattr(signal, n), handler) for n in names}
    try:
        yield
    finally:
        for n, h in previous.items():
            signal.signal(getattr(signal, n), h)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``easiedge`` with ``argv`` (default ``sys.argv[1:]``) and returns the exit code."""
    with _stop_on_signals():
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    from tfmot_easiedge.export import ExportVerificationError

    try:
        args = build_parser().parse_args(argv)
        validate_args(args)
        file_only = args.command == "bench" and Path(args.model).suffix.lower() in (".tflite", ".onnx")
        if not args.verbose and not file_only:
            import_tensorflow_quietly()
        return args.func(args)
    except ExportVerificationError as e:
        print(f"easiedge: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except _user_errors() as e:
        print(f"easiedge: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, read-only or vanished directory: one line, nothing half-written
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        print(f"easiedge: error: cannot write{where}: {e.strerror or e}; nothing was written", file=sys.stderr)
        return 2
    except Terminated as e:
        import signal

        print(f"easiedge: stopped by {signal.Signals(e.signum).name}; nothing was written", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:
        print("easiedge: interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
