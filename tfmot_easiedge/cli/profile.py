"""``easiedge profile MODEL --runtime tflite --out DIR``: the segment models of a latency table, to time anywhere.

Writes each segment of the model (a convolution or Dense layer with its folded BatchNormalization and
activation) at a grid of widths as ``.tflite`` (or ``.onnx``) files, with a ``manifest.json``; time them on
the device with ``python -m tfmot_easiedge.device_profile DIR --out table.json`` (LiteRT and numpy only), or
here with ``--measure`` (adds ``DIR/table.json``). Prune with ``easiedge prune ... --budget latency:0.5
--latency-table table.json``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from tfmot_easiedge._files import atomic_output
from tfmot_easiedge.cli._common import UserError, model_options, output_options, say
from tfmot_easiedge.cli.loading import model_from_args

#: The runtimes a profile can be written for.
PROFILE_RUNTIMES = ("tflite", "onnxruntime")


def cmd_profile(args: argparse.Namespace) -> int:
    """Writes the profile directory ``--out`` (and, with ``--measure``, its ``table.json``)."""
    from tfmot_easiedge.latency.profile import write_profile
    from tfmot_easiedge.latency.runner import run_profile

    if args.runtime not in PROFILE_RUNTIMES:
        raise UserError(f"--runtime must be one of {', '.join(PROFILE_RUNTIMES)}, got {args.runtime}")
    model = model_from_args(args)
    out = Path(args.out)
    with atomic_output(out, overwrite=args.overwrite) as tmp:  # a stopped run leaves no half profile
        manifest = write_profile(model, tmp, runtime=args.runtime, batch_size=args.batch_size)
        say(args, f"wrote {len(manifest['profiles'])} distinct segments of {len(manifest['segments'])} in "
                  f"{manifest['created']['export_seconds']:.0f} s")
        if args.measure:
            table = run_profile(tmp, threads=args.threads, rounds=args.rounds, runs=args.runs)
            table.save(tmp / "table.json")
            say(args, f"timed on this machine: full model {table.extra['model_ms']:.3f} ms "
                      f"({table.runtime_version}, {table.threads} thread(s))")
    print(f"wrote {out}: manifest.json and the segment models"
          + (", table.json" if args.measure else f"; time them with python -m tfmot_easiedge.device_profile {out} "
                                                   "--out table.json"))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Adds ``profile`` to the subcommands ``sub``."""
    p = sub.add_parser("profile", help="write a model's segment models for a latency table (time them on the device)")
    p.add_argument("model", help="a .keras/.h5 file or keras:NAME (keras.applications)")
    p.add_argument("--runtime", default="tflite", help="tflite (default) or onnxruntime")
    p.add_argument("--batch-size", type=int, default=1, help="samples per invoke (default 1)")
    p.add_argument("--measure", action="store_true", help="also time the segments here and write DIR/table.json")
    p.add_argument("--threads", type=int, default=1, help="threads for --measure (default 1)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds for --measure (default 3)")
    p.add_argument("--runs", type=int, default=20, help="timed invokes per file and round for --measure (default 20)")
    model_options(p)
    output_options(p)
    p.set_defaults(func=cmd_profile)
