"""A saved ``.keras`` model → pruned (one-shot or EasiEdge) → slim → full-integer TFLite, with latencies.

    python examples/saved_model_to_tflite_int8.py my_cnn.keras --data cifar10 --budget macs:0.5
    python examples/saved_model_to_tflite_int8.py my_cnn.keras --method easiedge --admm-epochs 3
    python examples/saved_model_to_tflite_int8.py --tiny     # no model given: trains a small one first

``--method oneshot`` ranks the trained model's channels once with TBAA on calibration images, slims it and
fine-tunes the slim model (a plain ``keras.Model``) with ``fit``; ``--method easiedge`` runs the ADMM
pipeline (``te.EasiEdge(...).run``). Both models are then converted to full-integer int8 TFLite (weights
and activations, calibrated on training images), checked against Keras, run with LiteRT on the test
images, and timed (batch 1, one thread).

The model must take the data as ``--data`` gives it (raw 0..255 pixels unless ``--rescale``) and end in a
softmax (pass ``--from-logits`` otherwise). Writes ``original_int8.tflite``, ``slim.keras``,
``slim_int8.tflite``, ``plan.json`` and ``results.json`` to ``--out``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import keras
import numpy as np

import tfmot_easiedge as te
from tfmot_easiedge import export
from tfmot_easiedge.data import check_fits, load_data
from tfmot_easiedge.models import zoo


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", nargs="?", help="a .keras file (default: train zoo.vgg_small briefly and save it)")
    p.add_argument("--data", default="cifar10", help="training/test data, as for `easiedge prune` (default cifar10)")
    p.add_argument("--rescale", help="inputs become x*SCALE+OFFSET, e.g. 1/255 (default: raw pixels)")
    p.add_argument("--from-logits", action="store_true", help="the model outputs logits, not probabilities")
    p.add_argument("--method", choices=("oneshot", "easiedge"), default="oneshot", help="default oneshot")
    p.add_argument("--budget", default="macs:0.5", help="filters:R or macs:R (default macs:0.5)")
    p.add_argument("--images", type=int, default=10_000, help="training images (default 10000)")
    p.add_argument("--test-images", type=int, default=1_000, help="test images (default 1000)")
    p.add_argument("--epochs", type=int, default=2, help="fine-tune epochs (default 2)")
    p.add_argument("--admm-epochs", type=int, default=2, help="ADMM epochs with --method easiedge (default 2)")
    p.add_argument("--calibration", type=int, default=500, help="images for TBAA and int8 ranges (default 500)")
    p.add_argument("--runs", type=int, default=100, help="timed runs per model (default 100)")
    p.add_argument("--out", default="runs/tflite_int8", help="output directory")
    p.add_argument("--tiny", action="store_true", help="300 images, one epoch, few runs (a smoke test)")
    args = p.parse_args(argv)
    if args.tiny:
        args.images, args.test_images, args.epochs, args.admm_epochs = 300, 200, 1, 1
        args.calibration, args.runs = 100, 10
    return args


def compile_for(model, from_logits: bool) -> None:
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits), metrics=["accuracy"])


def a_trained_model(train, out: Path, epochs: int) -> Path:
    """Stands in for your model when none is given: zoo.vgg_small trained briefly, saved as a .keras file."""
    keras.utils.set_random_seed(0)
    model = zoo.vgg_small(train.image_shape, train.num_classes, width=0.5, seed=0)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(train.x, train.y, epochs=epochs, batch_size=64, verbose=2)
    model.save(out / "original.keras")
    return out / "original.keras"


def prune_one_shot(model, train, args):
    """Rank once with TBAA, select globally, slim, then fine-tune the slim model like any Keras model."""
    analysis = te.analyze(model)
    scores = te.importance.tbaa(model, train.x[:args.calibration], analysis=analysis, progress=False)
    plan = te.select(analysis, scores, te.parse_budget(args.budget))
    slim = te.slim(model, plan, analysis=analysis)
    compile_for(slim, args.from_logits)
    slim.fit(train.x, train.y, epochs=args.epochs, batch_size=64, verbose=2)
    return slim, plan


def prune_easiedge(model, train, args):
    compile_for(model, args.from_logits)
    result = te.EasiEdge(args.budget, calibration_size=args.calibration).run(
        model, (train.x, train.y), admm_epochs=args.admm_epochs, finetune_epochs=args.epochs, batch_size=64)
    return result.model, result.plan


def litert_accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of a .tflite file run with LiteRT, one image at a time as on a device."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner()
    (input_name,) = runner.get_input_details()
    hits = [int(np.argmax(next(iter(runner(**{input_name: x[i:i + 1]}).values()))) == y[i]) for i in range(len(x))]
    return float(np.mean(hits))


def main(argv=None) -> dict:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train = load_data(args.data, split="train", limit=args.images, rescale=args.rescale)
    test = load_data(args.data, split="test", limit=args.test_images, rescale=args.rescale)
    model_path = Path(args.model) if args.model else a_trained_model(train, out, args.epochs)
    model = keras.saving.load_model(model_path, compile=False)  # safe mode: no Lambda code runs
    check_fits(model, train)

    slim, plan = (prune_easiedge if args.method == "easiedge" else prune_one_shot)(model, train, args)
    slim.save(out / "slim.keras")
    (out / "plan.json").write_text(plan.to_json(indent=2) + "\n", encoding="utf-8")

    rows = {}
    for name, m in (("original", model), ("slim", slim)):
        exported = export.tflite(m, out / f"{name}_int8.tflite", quantization="int8", overwrite=True,
                                 representative_data=train.x[:args.calibration], sample_inputs=test.x[:256])
        latency = te.measure_latency(exported.path, threads=1, runs=args.runs, input_data=test.x[:1],
                                     progress=False)
        rows[name] = {"macs": te.count_macs(m), "params": te.count_params(m), "tflite_bytes": exported.size_bytes,
                      "int8_top1_agreement_with_keras": exported.top1_agreement,
                      "int8_accuracy": litert_accuracy(exported.path, test.x, test.y),
                      "median_ms": latency.median_ms, "p10_ms": latency.p10_ms, "p90_ms": latency.p90_ms}

    results = {"method": args.method, "budget": args.budget, "model": str(model_path), "data": train.source,
               "test_images": len(test), **rows,
               "speedup": rows["original"]["median_ms"] / rows["slim"]["median_ms"]}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\n{'int8 TFLite':12} {'MACs':>12} {'params':>9} {'KiB':>7} {'accuracy':>9} {'median ms':>10}")
    for name, r in rows.items():
        print(f"{name:12} {r['macs']:>12,} {r['params']:>9,} {r['tflite_bytes'] / 1024:>7.1f} "
              f"{r['int8_accuracy']:>9.4f} {r['median_ms']:>10.3f}")
    print(f"speedup {results['speedup']:.2f}x (LiteRT, batch 1, 1 thread); wrote {out}")
    return results


if __name__ == "__main__":
    main()
