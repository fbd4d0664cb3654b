"""EasiEdge inside your own ``model.fit``: ADMM filter pruning of a CIFAR-10 CNN with two Keras callbacks.

    python examples/admm_in_your_fit.py            # 10,000 images, 3 + 3 + 2 epochs
    python examples/admm_in_your_fit.py --tiny     # 300 images, one epoch per stage: a smoke test

The steps, each a plain Keras call you can mix with your own callbacks, schedules and data pipelines:

1. train (or load) your model as usual;
2. ``te.prune_filters(model, budget)``: a copy whose prunable layers carry the ADMM state (Z, U, mask);
3. ``fit`` with ``te.ADMMUpdate``: the W-step is your training on loss + rho/2·||W − Z + U||² (penalising
   only the entries the current projection removes); the callback runs the Z-step (global TBAA ranking,
   projection onto the budget) and the U-step, and grows rho;
4. ``fit`` with ``te.MaskedFineTune``: the mask is fixed and the removed channels are held at zero;
5. ``te.strip_pruning``: the slim model, with the removed filters physically gone.

CIFAR-10 is read from the local TFRecords (``../shared/data/cifar10`` or ``$EASIEDGE_CIFAR10_DIR``), else
downloaded once by Keras. Writes ``slim.keras``, ``plan.json`` and ``results.json`` to ``--out``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import keras

import tfmot_easiedge as te
from tfmot_easiedge.admm import top1_accuracy
from tfmot_easiedge.data import load_data
from tfmot_easiedge.models import zoo


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-images", type=int, default=10_000, help="CIFAR-10 training images (default 10000)")
    p.add_argument("--test-images", type=int, default=2_000, help="CIFAR-10 test images (default 2000)")
    p.add_argument("--epochs", type=int, default=3, help="baseline training epochs (default 3)")
    p.add_argument("--admm-epochs", type=int, default=3, help="ADMM epochs (default 3)")
    p.add_argument("--finetune-epochs", type=int, default=2, help="masked fine-tune epochs (default 2)")
    p.add_argument("--budget", default="filters:0.5", help="filters:R or macs:R (default filters:0.5)")
    p.add_argument("--width", type=float, default=0.5, help="width of zoo.vgg_small (default 0.5)")
    p.add_argument("--out", default="runs/admm_in_your_fit", help="output directory")
    p.add_argument("--tiny", action="store_true", help="300 images, one epoch per stage (a smoke test)")
    args = p.parse_args(argv)
    if args.tiny:
        args.train_images, args.test_images, args.width = 300, 200, 0.25
        args.epochs = args.admm_epochs = args.finetune_epochs = 1
    return args


def sgd() -> keras.optimizers.Optimizer:
    # ADMM's W-step: with SGD momentum 0.9 the removed weights settle within a few dozen steps.
    return keras.optimizers.SGD(0.01, momentum=0.9)


def main(argv=None) -> dict:
    args = parse_args(argv)
    train = load_data("cifar10", split="train", limit=args.train_images)
    test = load_data("cifar10", split="test", limit=args.test_images)
    print(f"data: {train.source} {len(train):,} / {test.source} {len(test):,} images")
    keras.utils.set_random_seed(0)

    # 1. Your model and your training (zoo models take 0..255 pixels and output softmax probabilities).
    model = zoo.vgg_small(width=args.width, seed=0)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(train.x, train.y, epochs=args.epochs, batch_size=64, verbose=2)
    baseline_accuracy = top1_accuracy(model, (test.x, test.y))

    # 2. Wrap for ADMM; `model` itself is not modified.
    pruned = te.prune_filters(model, args.budget, importance="tbaa")
    pruned.compile(sgd(), "sparse_categorical_crossentropy", metrics=["accuracy"])

    # 3. ADMM in fit. EasiEdge's default schedule: Z-steps every `update_every` steps, rho grown from
    #    0.01 to 10 over the first two thirds of the Z-steps, selection frozen once rho reaches 0.1.
    steps_per_epoch = -(-len(train) // 64)
    update_every, rho_growth = te.EasiEdge(args.budget).schedule(steps_per_epoch, args.admm_epochs)
    admm = te.ADMMUpdate(train.x[:512], update_every=update_every, rho_growth=rho_growth, verbose=1)
    pruned.fit(train.x, train.y, epochs=args.admm_epochs, batch_size=64, callbacks=[admm], verbose=2)

    # 4. Hard prune, then fine-tune with the removed channels held at zero.
    pruned.fit(train.x, train.y, epochs=args.finetune_epochs, batch_size=64, callbacks=[te.MaskedFineTune()],
               verbose=2)

    # 5. The slim model: a plain keras.Model with fewer filters.
    slim, plan = te.strip_pruning(pruned)
    slim_accuracy = top1_accuracy(slim, (test.x, test.y))

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    slim.save(out / "slim.keras")
    (out / "plan.json").write_text(plan.to_json(indent=2) + "\n", encoding="utf-8")
    results = {"baseline_accuracy": baseline_accuracy, "slim_accuracy": slim_accuracy,
               "macs_before": te.count_macs(model), "macs_after": te.count_macs(slim),
               "params_before": te.count_params(model), "params_after": te.count_params(slim),
               "filters_removed": plan.removed_channels(), "zsteps": len(admm.zstep_seconds),
               "admm_primal_residual": admm.last["admm_primal_residual"], "train_images": len(train),
               "test_images": len(test)}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"accuracy {baseline_accuracy:.4f} -> {slim_accuracy:.4f}")
    print(f"MACs {results['macs_before']:,} -> {results['macs_after']:,}   "
          f"params {results['params_before']:,} -> {results['params_after']:,}")
    print(f"wrote {out / 'slim.keras'}, {out / 'plan.json'}, {out / 'results.json'}")
    return results


if __name__ == "__main__":
    main()
