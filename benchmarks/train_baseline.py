"""Trains a zoo model on the local CIFAR-10 and caches it as the unpruned baseline of the benchmarks.

Writes the model to ``benchmarks/cache/<out>.keras`` and the result (test accuracy, epochs, params, time,
machine, date, per-epoch history) to ``benchmarks/results/baseline_<out>.json``, both atomically.

Example (from the repository root)::

    python benchmarks/train_baseline.py --model vgg_small --epochs 20
    python benchmarks/train_baseline.py --model resnet20 --width 0.5 --epochs 2 --train-limit 2000 --out smoke
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` and ``tfmot_easiedge`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parses the command line; see ``--help``."""
    defaults = common.TrainConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=defaults.model, choices=sorted(common.MODEL_NAMES))
    p.add_argument("--width", type=float, default=defaults.width, help="filter-count multiplier")
    p.add_argument("--epochs", type=int, default=defaults.epochs)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--lr", type=float, default=defaults.lr, help="peak learning rate")
    p.add_argument("--optimizer", default=defaults.optimizer, choices=["sgd", "adam"])
    p.add_argument("--weight-decay", type=float, default=defaults.weight_decay,
                   help="decoupled decay (Keras semantics: kernel *= 1 - lr * wd each step)")
    p.add_argument("--warmup-epochs", type=float, default=defaults.warmup_epochs)
    p.add_argument("--no-augment", action="store_true", help="train without random crop and flip")
    p.add_argument("--val-split", type=float, default=defaults.val_split,
                   help="hold out this fraction of train and keep the best epoch on it (default: keep the last)")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    p.add_argument("--jit-compile", action="store_true", help="compile the train step with XLA")
    p.add_argument("--out", default=None,
                   help="run name: writes cache/<out>.keras and results/baseline_<out>.json "
                        "(default: the model name, plus _w<width> when width != 1)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Runs the training described by ``argv`` and returns the result dict that was written."""
    args = parse_args(argv)
    cfg = common.TrainConfig(model=args.model, width=args.width, epochs=args.epochs, batch_size=args.batch_size,
                             lr=args.lr, optimizer=args.optimizer, weight_decay=args.weight_decay,
                             warmup_epochs=args.warmup_epochs, augment=not args.no_augment,
                             val_split=args.val_split, seed=args.seed, train_limit=args.train_limit,
                             jit_compile=args.jit_compile)
    _, result = common.train_and_save(cfg, name=args.out, log=lambda line: print(line, flush=True))
    return result


if __name__ == "__main__":
    main()
