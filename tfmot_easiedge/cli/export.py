"""``easiedge export MODEL --to ...``: TFLite, ONNX, TensorRT or a SavedModel, each verified against Keras."""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from tfmot_easiedge.cli._common import UserError, data_options, model_options, output_options, say, warn
from tfmot_easiedge.cli.loading import load_data, model_from_args
from tfmot_easiedge.cli.output import check_out, output_dir

#: ``--to`` target: the file (or directory) it writes in ``--out``.
EXPORT_FILES = {"saved_model": "saved_model", "tflite": "model.tflite", "onnx": "model.onnx",
                "tensorrt": "model.engine"}
#: The summary of every export, next to them.
EXPORT_SUMMARY = "exports.json"
#: The quantization-aware trained int8 TFLite file (``--qat-epochs``).
QAT_FILE = "model_qat.tflite"


def _targets(text: str) -> list[str]:
    found = [t.strip().lower() for t in text.split(",") if t.strip()]
    bad = [n for n in found if n not in EXPORT_FILES]
    if not found or bad:
        raise UserError(f"--to {text!r}: expected a comma-separated list of {', '.join(EXPORT_FILES)}")
    return list(dict.fromkeys(found))


def _export_one(model, target: str, path: Path, args: argparse.Namespace, samples):
    from tfmot_easiedge import export

    if target == "tflite":
        return export.tflite(model, path, quantization="int8" if args.int8 else None, representative_data=samples,
                             int8_io=args.int8_io)
    if target == "onnx":
        return export.onnx(model, path, sample_inputs=samples)
    if target == "tensorrt":
        return export.tensorrt(model, path, precision="int8" if args.int8 else "fp16", representative_data=samples)
    return export.saved_model(model, path, sample_inputs=samples)


def _check_flags(args: argparse.Namespace, targets: list[str]) -> None:
    if args.int8_io and not args.int8:
        raise UserError("--int8-io needs --int8: int8 inputs and outputs come with a full-integer model")
    if args.int8 and not args.data:
        raise UserError("--int8 needs --data: a few hundred images to calibrate the int8 ranges")
    if args.int8 and ("onnx" in targets or "saved_model" in targets):
        warn("--int8 applies to tflite and tensorrt; onnx and saved_model are written in float32")
    if args.qat_epochs < 0:
        raise UserError(f"--qat-epochs must be >= 0; got {args.qat_epochs}")
    if args.qat_epochs and not (args.int8 and "tflite" in targets):
        raise UserError("--qat-epochs needs --int8 and tflite in --to: QAT writes a full-integer TFLite file")


def _qat(model, args: argparse.Namespace, samples, val, path: Path):
    """The QAT int8 file (``--qat-epochs``), fine-tuned on all of ``--data``'s training split."""
    import tfmot_easiedge as te

    train = load_data(args.data, model, split="train", what="--data", args=args)
    return te.qat(model, train, epochs=args.qat_epochs, path=path, representative_data=samples,
                  validation_data=val, int8_io=args.int8_io, verbose=0 if args.quiet else 1)


def _accuracy_row(row: dict, model, path: Path, val) -> dict:
    """``row`` with the top-1 of an int8 TFLite file on ``--val-data`` (post-training int8)."""
    if val is None or row["format"] != "tflite" or row["precision"] != "int8":
        return row
    from tfmot_easiedge import quantize

    return {**row, "method": "ptq", "accuracy": quantize.tflite_accuracy(path, model, val)}


def cmd_export(args: argparse.Namespace) -> int:
    """Writes every ``--to`` target and ``exports.json`` to ``--out``; prints one line per export."""
    from tfmot_easiedge.data import check_finite_weights

    targets = _targets(args.to)
    _check_flags(args, targets)
    ours = [*EXPORT_FILES.values(), EXPORT_SUMMARY, QAT_FILE]
    check_out(Path(args.out), args.overwrite, ours)
    model = model_from_args(args)
    check_finite_weights(model)
    samples = None
    if args.data:
        samples = load_data(args.data, model, split="train", what="--data", args=args, limit=args.calibration_size).x
    val = load_data(args.val_data, model, split="test", what="--val-data", args=args) if args.val_data else None
    results, qat = [], None
    with output_dir(args.out, args.overwrite, ours) as tmp:
        for target in targets:
            say(args, f"exporting {target} ...")
            results.append(_export_one(model, target, tmp / EXPORT_FILES[target], args, samples))
        rows = [_accuracy_row({**dataclasses.asdict(r), "path": EXPORT_FILES[r.format]}, model, r.path, val)
                for r in results]
        if args.qat_epochs:
            say(args, f"quantization-aware training, {args.qat_epochs} epoch(s) ...")
            qat = _qat(model, args, samples, val, tmp / QAT_FILE)
            rows.append({**qat.as_dict(), "format": "tflite", "precision": "int8", "path": QAT_FILE})
        (tmp / EXPORT_SUMMARY).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    for r, row in zip(results, rows):
        accuracy = f"; int8 top-1 {100 * row['accuracy']:.2f}% on --val-data" if "accuracy" in row else ""
        say(args, dataclasses.replace(r, path=Path(args.out) / EXPORT_FILES[r.format]).summary() + accuracy)
    if qat is not None:
        say(args, dataclasses.replace(qat, path=Path(args.out) / QAT_FILE).summary())
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Adds ``export`` to the subcommands ``sub``."""
    p = sub.add_parser("export", help="export a model to TFLite, ONNX, TensorRT or a SavedModel, verified")
    p.add_argument("model", help="a .keras/.h5 file or keras:NAME")
    p.add_argument("--to", default="tflite,onnx", help="comma-separated: tflite, onnx, tensorrt, saved_model "
                                                       "(default tflite,onnx)")
    p.add_argument("--int8", action="store_true", help="full-integer TFLite and int8 TensorRT, calibrated on --data")
    p.add_argument("--int8-io", action="store_true",
                   help="with --int8: int8 input and output tensors too (else float32 in and out)")
    data_options(p, required=False, help_text="images to calibrate --int8 and to verify the exports on")
    p.add_argument("--calibration-size", type=int, default=500, metavar="K",
                   help="use the first K images of --data (default 500)")
    p.add_argument("--qat-epochs", type=int, default=0, metavar="N",
                   help="with --int8: also quantization-aware train N epochs on --data (tf_keras + tfmot, the "
                        f"[qat] extra) and write {QAT_FILE}")
    p.add_argument("--val-data", metavar="SPEC",
                   help="labelled data to measure the int8 files' top-1 on (cifar10 reads the test split)")
    model_options(p)
    output_options(p)
    p.set_defaults(func=cmd_export)
