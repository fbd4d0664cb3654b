"""``easiedge demo``: the whole pipeline on a small CNN, offline (see :mod:`tfmot_easiedge.demo`)."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from tfmot_easiedge.cli._common import say
from tfmot_easiedge.cli.output import check_out, output_dir


def cmd_demo(args: argparse.Namespace) -> int:
    """Train a small CNN briefly, prune it with EasiEdge, export and time it, write the report (offline)."""
    import tfmot_easiedge as te
    from tfmot_easiedge import demo

    te.parse_budget(args.budget)  # a bad budget is a one-line error before anything runs
    settings = dataclasses.replace(demo.QUICK if args.quick else demo.FULL, seed=args.seed, budget=args.budget)
    check_out(Path(args.out), args.overwrite, demo.FILES)
    train, test, note = demo.load_demo_data(args.dataset, args.data_dir, settings=settings)
    print(f"data: {note}", flush=True)
    with output_dir(args.out, args.overwrite, demo.FILES) as tmp:
        result = demo.run_demo(tmp, train, test, settings, data_note=note, verbose=0 if args.quiet else 1,
                               log=lambda line: say(args, line))
    print("\n".join(demo.summary_lines(result, args.out)), flush=True)
    return 0 if result.passed else 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Adds ``demo`` to the subcommands ``sub``."""
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
    p.add_argument("--budget", default="macs:0.5", help="filters:0.8, macs:0.75 or macs:4x, params:0.5 "
                                                      "(share removed; default macs:0.5)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, data split and pruning (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or step lines; only the summary")
    p.set_defaults(func=cmd_demo)
