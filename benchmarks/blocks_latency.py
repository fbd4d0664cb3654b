"""Residual-block removal vs channel pruning on ResNet-56: TFLite fp32 latency, 1 thread (issue 16 item 4).

Channel pruning alone cannot make ResNet-56 much faster: its 87 TFLite operators cost a fixed few µs each
whatever their widths. This benchmark times, on this machine's CPU with LiteRT (XNNPACK, 1 thread, batch 1):

* the dense ResNet-56 (CIFAR-10 input, width 1),
* channel-only plans at MAC budgets up to the deepest one the 10% floor allows,
* plans whose removable blocks compete with channels (``select(..., block_scores=...)``) at the same
  budgets, and every removable block removed plus channels.

Latency does not depend on the weights, so the net is untrained and the scores are seeded random
(channels uniform in [0, 1e-3], blocks in [0, 5e-3]: the ratio the committed block-TBAA test measured);
the trained-net accuracy comparison is a separate benchmark. Each file is timed in ``--rounds``
interleaved rounds of ``--runs`` invokes (thread CPU time, so waiting for a core on a shared machine is not
counted) and the median per file is reported.

From the repository root (a few minutes; run it on a quiet machine)::

    nice .venv/bin/python -m benchmarks.blocks_latency
"""
from __future__ import annotations

import argparse
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402

BUDGETS = (0.5, 0.75, 0.85)
MIN_FRACTION = 0.1


def _plans(model, analysis, seed: int) -> list[tuple[str, Any]]:
    import tfmot_easiedge as te

    rng = np.random.default_rng(seed)
    scores = {g: rng.uniform(0, 1e-3, grp.size) for g, grp in analysis.prunable_groups.items()}
    blocks = {b: float(rng.uniform(0, 5e-3)) for b in analysis.removable_blocks}
    plans: list[tuple[str, Any]] = [("dense", None)]
    for r in BUDGETS:
        for label, extra in (("channels", {}), ("channels+blocks", {"block_scores": blocks})):
            try:
                plan = te.select(analysis, scores, te.MacsBudget(r), min_fraction=MIN_FRACTION, **extra)
            except ValueError as e:
                print(f"{label} at macs:{r}: {e}")
                continue
            plans.append((f"{label} macs:{r}", plan))
    sizes = {g: grp.size for g, grp in analysis.prunable_groups.items()}  # every group at its 10% floor:
    deepest = {g: sorted(np.argsort(-s)[:max(1, math.ceil(MIN_FRACTION * sizes[g]))].tolist())
               for g, s in scores.items()}
    plans.append(("channels at the 10% floor", te.PruningPlan(deepest, sizes)))
    everything = te.PruningPlan(deepest, sizes, removed_blocks=tuple(analysis.removable_blocks))
    plans.append(("every removable block + channels at the floor", everything))
    return plans


def run(args: argparse.Namespace) -> dict[str, Any]:
    import tfmot_easiedge as te
    from tfmot_easiedge.export.tflite import make_interpreter
    from tfmot_easiedge.models import zoo

    load0, t0 = os.getloadavg(), time.perf_counter()
    model = zoo.resnet56(width=1.0, seed=0)
    analysis = te.analyze(model)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="easiedge-bench-blocks-") as tmp:
        files = []
        for i, (label, plan) in enumerate(_plans(model, analysis, args.seed)):
            small = model if plan is None else te.slim(model, plan, analysis=analysis)
            path = Path(tmp) / f"m{i}.tflite"
            te.export.tflite(small, path, verify=False)
            ops = len(make_interpreter(path)._get_ops_details())  # noqa: SLF001 - LiteRT's only op listing
            rows.append({"plan": label, "macs": te.count_macs(small), "params": te.count_params(small),
                         "tflite_operators": ops, "removed_blocks": 0 if plan is None else len(plan.removed_blocks),
                         "ms": []})
            files.append(path)
            print(f"exported {label}: {rows[-1]['macs']:,} MACs, {ops} operators", flush=True)
        x = np.random.default_rng(0).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
        order = list(range(len(files)))
        for r in range(args.rounds):
            random.Random(args.seed + r).shuffle(order)
            for i in order:
                res = te.measure_latency(files[i], runtime="tflite", threads=1, runs=args.runs, warmup=args.warmup,
                                         input_data=x, progress=False, clock=time.thread_time)
                rows[i]["ms"].append(res.median_ms)
            print(f"round {r + 1}/{args.rounds} done", flush=True)
    dense = float(np.median(rows[0]["ms"]))
    for row in rows:
        row["median_ms"] = float(np.median(row["ms"]))
        row["spread_ms"] = float(np.median(np.abs(np.asarray(row["ms"]) - row["median_ms"])))
        row["speedup"] = dense / row["median_ms"]
        row["mac_reduction"] = rows[0]["macs"] / row["macs"]
    return {"model": "resnet56 width 1 (untrained; latency does not depend on the weights)", "rows": rows,
            "runtime": "tflite (LiteRT, XNNPACK), fp32, 1 thread, batch 1, thread CPU time",
            "rounds": args.rounds, "runs": args.runs, "min_fraction": MIN_FRACTION, **common.run_stamp(load0, t0)}


def markdown(result: dict[str, Any]) -> str:
    """The result as a Markdown table.

    Example:
        >>> row = {"plan": "dense", "macs": 10, "params": 5, "tflite_operators": 87, "removed_blocks": 0,
        ...        "median_ms": 2.0, "spread_ms": 0.01, "speedup": 1.0, "mac_reduction": 1.0}
        >>> print(markdown({"rows": [row], "runtime": "r", "machine": {"cpu_model": "c"}, "date": "d",
        ...                 "loadavg_before": [0.1], "command": "cmd", "rounds": 1, "runs": 1}).splitlines()[4])
        | dense | 10 | 1.0x | 5 | 87 | 0 | 2.000 ± 0.010 | 1.00x |
    """
    lines = ["# Block removal vs channel pruning: ResNet-56, TFLite fp32, 1 thread", "",
             "| plan | MACs | MAC reduction | params | TFLite operators | removed blocks | ms (median ± MAD) | "
             "speed-up |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in result["rows"]:
        lines.append(f"| {r['plan']} | {r['macs']:,} | {r['mac_reduction']:.1f}x | {r['params']:,} | "
                     f"{r['tflite_operators']} | {r['removed_blocks']} | {r['median_ms']:.3f} ± {r['spread_ms']:.3f} | "
                     f"{r['speedup']:.2f}x |")
    lines += ["", f"{result['runtime']}; {result['rounds']} interleaved rounds x {result['runs']} invokes per file; "
              f"{result['machine']['cpu_model']}, {result['date']}, load average before {result['loadavg_before']}.",
              "", f"Command: `{result['command']}`", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    result = run(args)
    result["command"] = "python -m benchmarks.blocks_latency " + " ".join(sys.argv[1:] if argv is None else argv)
    common.write_result(common.RESULTS_DIR / "blocks_latency_resnet56.json", result, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
