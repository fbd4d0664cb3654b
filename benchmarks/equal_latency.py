"""A plan against a MAC-budget plan at the same measured latency, on a trained CIFAR-10 net (issue 16).

On a committed baseline (``benchmarks/baselines/NET.keras``), channels scored by TBAA on 512 training
images, every group keeping >= 10%:

1. the plan under test (``--method``):
   * ``blocks``: ``select(..., MacsBudget(r), block_scores=...)``, removable residual blocks (block TBAA)
     competing with channels;
   * ``latency``: ``select(..., LatencyBudget(r, table=...))`` with the net's TFLite table, profiled here
     (1 thread; the time it takes is recorded);
2. **channels at a MAC budget** at the same measured latency: the MAC budget is bisected until the slim
   model's TFLite latency (fp32, 1 thread, batch 1, thread CPU time, median of rounds) is within
   ``--tolerance`` of the first plan's;
3. both slim models: BatchNorm re-estimated on 2,048 augmented training images, top-1 on the 10,000 test
   images, then the same fine-tune (``common.finetune``: SGD, cosine, augmentation) and top-1 again.

A difference within twice the standard error of the paired per-image difference is a tie.

From the repository root (about half an hour each on two cores)::

    nice .venv/bin/python -m benchmarks.equal_latency --method blocks --net resnet20_w1 --ratio 0.85
    nice .venv/bin/python -m benchmarks.equal_latency --method latency --net resnet20_w1 --ratio 0.5
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402
from benchmarks.qat import paired  # noqa: E402

MIN_FRACTION = 0.1


def tflite_ms(model, tmp: Path, rounds: int = 3, runs: int = 30) -> float:
    """Median TFLite fp32 latency of ``model`` (1 thread, batch 1, thread CPU time) over ``rounds`` rounds."""
    import tfmot_easiedge as te

    path = tmp / f"{model.name}_{time.monotonic_ns()}.tflite"
    te.export.tflite(model, path, verify=False)
    x = np.random.default_rng(0).uniform(0, 255, (1, *model.input_shape[1:])).astype("float32")
    ms = [te.measure_latency(path, runtime="tflite", threads=1, runs=runs, warmup=10, input_data=x,
                             progress=False, clock=time.thread_time).median_ms for _ in range(rounds)]
    path.unlink()
    return float(np.median(ms))


def _augmented(x: np.ndarray, n: int) -> np.ndarray:
    from benchmarks.fast_train import augment_batch

    return augment_batch(x[:n], np.random.default_rng(1)).astype("float32")


def run(args: argparse.Namespace) -> dict[str, Any]:
    import keras

    import tfmot_easiedge as te

    load0, t0 = os.getloadavg(), time.perf_counter()
    x_train, y_train = common.load_split("train", limit=args.train_limit)
    x_test, y_test = common.load_split("test", limit=args.test_limit)
    model = keras.saving.load_model(common.BENCHMARKS_DIR / "baselines" / f"{args.net}.keras", compile=False,
                                    safe_mode=True)
    analysis = te.analyze(model)
    calib = x_train[:512].astype("float32")
    recal = _augmented(x_train, 2048)
    scores = te.importance.tbaa(model, calib, analysis=analysis, progress=False)
    extra: dict[str, Any] = {}
    if args.method == "blocks":
        blocks = te.importance.block_tbaa(model, calib, analysis=analysis, progress=False)
        name_a = "blocks+channels"
        with_blocks = te.select(analysis, scores, te.MacsBudget(args.ratio), block_scores=blocks,
                                min_fraction=MIN_FRACTION)
        print(f"blocks + channels at macs:{args.ratio}: {len(with_blocks.removed_blocks)} blocks removed "
              f"{list(with_blocks.removed_blocks)}", flush=True)
    else:
        t = time.perf_counter()
        table = te.profile_latency(model, runtime="tflite", threads=1)
        extra["profile_seconds"] = round(time.perf_counter() - t, 1)
        name_a = "latency budget"
        with_blocks = te.select(analysis, scores, te.LatencyBudget(args.ratio, table=table),
                                min_fraction=MIN_FRACTION)
        extra["predicted_ms"] = with_blocks.metadata["cost"]["predicted"]
        extra["target_ms"] = with_blocks.metadata["cost"]["target"]
        print(f"latency budget {args.ratio}: predicted {extra['predicted_ms']:.3f} ms "
              f"(table profiled in {extra['profile_seconds']:.0f} s)", flush=True)
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="easiedge-bench-equal-latency-") as tmp_dir:
        tmp = Path(tmp_dir)
        dense_ms = tflite_ms(model, tmp, args.rounds)
        slim_b = te.slim(model, with_blocks, analysis=analysis)
        target = tflite_ms(slim_b, tmp, args.rounds)
        lo, hi, search = 0.0, 0.99, []  # channel-only MAC share removed; more removed = faster
        best = None
        for _ in range(args.bisect_steps):
            mid = (lo + hi) / 2
            try:
                plan = te.select(analysis, scores, te.MacsBudget(mid), min_fraction=MIN_FRACTION)
            except ValueError:  # past the floor
                hi = mid
                continue
            ms = tflite_ms(te.slim(model, plan, analysis=analysis), tmp, args.rounds)
            search.append({"macs_ratio": round(mid, 4), "ms": ms})
            print(f"channels only at macs:{mid:.3f}: {ms:.3f} ms (target {target:.3f})", flush=True)
            if best is None or abs(ms - target) < abs(best[1] - target):
                best = (plan, ms, mid)
            if abs(ms - target) <= args.tolerance * target:
                break
            lo, hi = (mid, hi) if ms > target else (lo, mid)
        assert best is not None, "no channel-only plan met the floor"
        channels, channels_ms, channels_ratio = best
        slim_c = te.slim(model, channels, analysis=analysis)
        correct: dict[str, dict[str, np.ndarray]] = {}
        for name, small, ms, plan in ((name_a, slim_b, target, with_blocks),
                                      ("channels at a MAC budget", slim_c, channels_ms, channels)):
            te.recalibrate_batchnorm(small, recal, max_examples=len(recal), batch_size=256)
            before = np.argmax(small.predict(x_test.astype("float32"), batch_size=500, verbose=0), -1) == y_test
            common.finetune(small, x_train, y_train, args.finetune_epochs, lr=args.lr)
            after = np.argmax(small.predict(x_test.astype("float32"), batch_size=500, verbose=0), -1) == y_test
            correct[name] = {"before": before, "after": after}
            rows[name] = {"macs": te.count_macs(small), "params": te.count_params(small),
                          "removed_blocks": list(plan.removed_blocks), "tflite_ms": ms,
                          "speedup": dense_ms / ms, "top1_before_finetune": float(np.mean(before)),
                          "top1_after_finetune": float(np.mean(after)),
                          "narrowest": min(((g, len(k), plan.group_sizes[g]) for g, k in plan.kept.items()),
                                           key=lambda t: t[1] / t[2])}
            print(f"{name}: {rows[name]['top1_after_finetune']:.4f} after fine-tune, {ms:.3f} ms", flush=True)
    comparison = paired(correct[name_a]["after"], correct["channels at a MAC budget"]["after"])
    before = paired(correct[name_a]["before"], correct["channels at a MAC budget"]["before"])
    return {"net": args.net, "method": args.method, "ratio": args.ratio, "channels_only_macs_ratio": channels_ratio,
            "measured_target_ms": target, **extra, "difference_before_finetune": before,
            "dense_tflite_ms": dense_ms, "dense_macs": te.count_macs(model), "search": search, "rows": rows,
            "difference_after_finetune": comparison, "finetune_epochs": args.finetune_epochs,
            "finetune_lr": args.lr, "test_images": int(len(y_test)), "train_images": int(len(y_train)),
            **common.run_stamp(load0, t0)}


def markdown(result: dict[str, Any]) -> str:
    """The result as a Markdown table.

    Example:
        >>> row = {"macs": 10, "params": 5, "removed_blocks": ["a"], "tflite_ms": 1.0, "speedup": 3.0,
        ...        "top1_before_finetune": 0.5, "top1_after_finetune": 0.8, "narrowest": ["g", 1, 10]}
        >>> r = {"net": "n", "method": "blocks", "ratio": 0.8, "channels_only_macs_ratio": 0.9,
        ...      "dense_tflite_ms": 3.0, "rows": {"blocks+channels": row}, "test_images": 1, "finetune_epochs": 1,
        ...      "finetune_lr": 0.05, "difference_after_finetune": {"difference": 0.0, "standard_error": 0.0,
        ...      "verdict": "tie"}, "machine": {"cpu_model": "c"}, "date": "d", "loadavg_before": [0.1],
        ...      "command": "cmd"}
        >>> print(markdown(r).splitlines()[4])
        | blocks+channels | 10 | 1 | 1.000 | 3.00x | 50.00% | 80.00% | g 1/10 |
    """
    what = {"blocks": "block removal", "latency": "a latency budget"}[result["method"]]
    lines = [f"# {what.capitalize()} vs channels at a MAC budget, equal measured latency: {result['net']}", "",
             "| plan | MACs | removed blocks | TFLite ms | speed-up | top-1 before fine-tune | top-1 after | "
             "narrowest group |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for name, r in result["rows"].items():
        g, k, n = r["narrowest"]
        lines.append(f"| {name} | {r['macs']:,} | {len(r['removed_blocks'])} | {r['tflite_ms']:.3f} | "
                     f"{r['speedup']:.2f}x | {100 * r['top1_before_finetune']:.2f}% | "
                     f"{100 * r['top1_after_finetune']:.2f}% | {g} {k}/{n} |")
    c = result["difference_after_finetune"]
    first = "macs" if result["method"] == "blocks" else "latency"
    lines += ["", f"{what.capitalize()} minus channels at a MAC budget, after fine-tuning: "
              f"{100 * c['difference']:+.2f} ± {100 * c['standard_error']:.2f} points ({c['verdict']}). "
              f"First plan at {first}:{result['ratio']}; "
              f"channel-only plan at macs:{result['channels_only_macs_ratio']:.3f} (bisected to the same "
              f"measured latency); dense {result['dense_tflite_ms']:.3f} ms.", "",
              f"TFLite fp32, 1 thread, batch 1, thread CPU time; fine-tune {result['finetune_epochs']} epochs "
              f"(SGD cosine from {result['finetune_lr']:g}, augmentation); {result['test_images']} test images; "
              f"{result['machine']['cpu_model']}, {result['date']}, load average before {result['loadavg_before']}.",
              "", f"Command: `{result['command']}`", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--method", choices=("blocks", "latency"), default="blocks")
    p.add_argument("--net", default="resnet20_w1", help="a baseline in benchmarks/baselines/ (a ResNet for blocks)")
    p.add_argument("--ratio", type=float, default=0.85,
                   help="share removed by the first plan: of MACs (blocks) or of predicted latency (latency)")
    p.add_argument("--finetune-epochs", type=int, default=5)
    p.add_argument("--lr", type=float, default=0.05, help="fine-tune SGD peak learning rate")
    p.add_argument("--rounds", type=int, default=3, help="timing rounds per latency")
    p.add_argument("--bisect-steps", type=int, default=8)
    p.add_argument("--tolerance", type=float, default=0.03, help="relative latency match of the channel-only plan")
    p.add_argument("--smoke", action="store_true", help="tiny data, 1 epoch, written under benchmarks/cache/")
    args = p.parse_args(argv)
    args.train_limit, args.test_limit = (1024, 256) if args.smoke else (None, None)
    if args.smoke:
        args.finetune_epochs, args.rounds, args.bisect_steps = 1, 1, 3
    result = run(args)
    result["command"] = "python -m benchmarks.equal_latency " + " ".join(sys.argv[1:] if argv is None else argv)
    name = f"equal_latency_{args.method}_{args.net}_{args.ratio:g}{'_smoke' if args.smoke else ''}.json"
    out = (common.CACHE_DIR if args.smoke else common.RESULTS_DIR) / name
    common.write_result(out, result, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
