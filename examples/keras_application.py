"""Prune ``keras.applications.MobileNetV2`` for CIFAR-10-sized inputs (32x32, 10 classes) with EasiEdge.

    python examples/keras_application.py             # 10,000 images, 3 + 2 + 2 epochs
    python examples/keras_application.py --tiny      # a smoke test: 300 images, one-shot L2, no training

MobileNetV2's inverted residual blocks couple channels: the projections of blocks joined by an ``Add``
form one channel group and are cut together, each expansion with its depthwise convolution forms
another. ``te.analyze`` finds these groups; the global ranking then decides how much each one keeps.

Weights: ImageNet's (Keras downloads them once into ``~/.keras/models``), with a new 10-way head; ``--weights
none`` for random weights (what ``--tiny`` uses, so the smoke test runs offline). Inputs are scaled to
[-1, 1] as MobileNetV2 expects. Writes ``slim.keras``, ``plan.json`` and ``results.json`` to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import keras

import tfmot_easiedge as te
from tfmot_easiedge import export
from tfmot_easiedge.cli import load_model
from tfmot_easiedge.data import load_data


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-images", type=int, default=10_000, help="CIFAR-10 training images (default 10000)")
    p.add_argument("--test-images", type=int, default=1_000, help="CIFAR-10 test images (default 1000)")
    p.add_argument("--epochs", type=int, default=3, help="training epochs before pruning (default 3)")
    p.add_argument("--admm-epochs", type=int, default=2, help="ADMM epochs (default 2)")
    p.add_argument("--finetune-epochs", type=int, default=2, help="masked fine-tune epochs (default 2)")
    p.add_argument("--budget", default="macs:0.5", help="filters:R or macs:R (default macs:0.5)")
    p.add_argument("--importance", default="tbaa", help="channel ranking: tbaa (default), l2, taylor_fo...")
    p.add_argument("--round-to", type=int, help="round kept channel counts up to a multiple of this, e.g. 8")
    p.add_argument("--runs", type=int, default=100, help="timed LiteRT runs per model (default 100)")
    p.add_argument("--out", default="runs/mobilenetv2", help="output directory")
    p.add_argument("--weights", default=None, help="imagenet (default), none or a weights file (--tiny: none)")
    p.add_argument("--tiny", action="store_true", help="a smoke test: 300 images, one-shot L2 ranking, no "
                                                       "training (not even a fine-tune epoch)")
    args = p.parse_args(argv)
    if args.tiny:  # on 2 CPU cores each Keras trace of MobileNetV2's train step (fit, ADMM, fine-tune) costs ~55 s
        args.train_images, args.test_images, args.runs = 300, 200, 10
        args.epochs, args.admm_epochs, args.finetune_epochs, args.importance = 0, 0, 0, "l2"
    args.weights = args.weights or ("none" if args.tiny else "imagenet")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    train = load_data("cifar10", split="train", limit=args.train_images, rescale="1/127.5,-1")
    test = load_data("cifar10", split="test", limit=args.test_images, rescale="1/127.5,-1")
    keras.utils.set_random_seed(0)
    model = load_model("keras:MobileNetV2", input_shape=(32, 32, 3), classes=10, weights=args.weights)

    analysis = te.analyze(model)
    print("\n".join(analysis.summary().splitlines()[:3]))
    print(f"{len(analysis.prunable_groups)} prunable channel groups, {analysis.prunable_share():.1%} of the filters")

    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    if args.epochs:
        model.fit(train.x, train.y, epochs=args.epochs, batch_size=64, verbose=2)
    result = te.EasiEdge(args.budget, importance=args.importance, round_to=args.round_to,
                         calibration_size=256, verbose=1).run(
        model, (train.x, train.y), admm_epochs=args.admm_epochs, finetune_epochs=args.finetune_epochs,
        batch_size=64, validation_data=(test.x, test.y))
    slim = result.model

    latency = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, m in (("original", model), ("slim", slim)):
            exported = export.tflite(m, Path(tmp) / f"{name}.tflite", sample_inputs=test.x[:64])
            latency[name] = te.measure_latency(exported.path, threads=1, runs=args.runs, input_data=test.x[:1],
                                               progress=False).median_ms

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    slim.save(out / "slim.keras")
    (out / "plan.json").write_text(result.plan.to_json(indent=2) + "\n", encoding="utf-8")
    results = {"stages": result.stages, "tflite_median_ms": latency, "budget": args.budget,
               "round_to": args.round_to, "train_images": len(train), "test_images": len(test),
               "kept_per_group": {g: len(k) for g, k in result.plan.kept.items()}}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    for stage in result.stages:
        print(f"{stage['stage']:>10}: accuracy {stage['accuracy']:.4f}  MACs {stage['macs']:>11,}  "
              f"params {stage['params']:>9,}")
    seconds = result.timings
    print(f"EasiEdge: ADMM {seconds['admm_fit']:.0f}s ({seconds['zsteps']} Z-steps, {seconds['zstep_total']:.0f}s), "
          f"fine-tune {seconds['finetune_fit']:.0f}s")
    print(f"TFLite fp32 median latency {latency['original']:.3f} ms -> {latency['slim']:.3f} ms "
          f"(batch 1, 1 thread); wrote {out}")
    return results


if __name__ == "__main__":
    main()
