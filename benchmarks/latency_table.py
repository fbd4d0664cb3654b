"""How well a latency table predicts pruned models, and how close a ``LatencyBudget`` lands (issue 16).

For each net: profile its latency table (TFLite, 1 thread; the time it takes is recorded), prune it with
L2 scores to each share of filters, each MAC budget and each latency budget, then time the dense net and
every pruned TFLite file in interleaved rounds (1 thread, median of round medians) and compare with the
table's prediction. Writes ``OUT_DIR/latency_table.json`` and ``.md`` with the machine, date, load averages
and the command.

The committed run is made on a quiet machine with::

    nice python -m benchmarks.latency_table --models vgg16,resnet56,mobilenetv2 --filters 0.3,0.5,0.8 \
        --macs 0.5,0.75,0.9 --latency 0.5,0.75 --rounds 7 --runs 30 --out-dir benchmarks/results

A smoke run (one small net, few points, written under ``benchmarks/cache/``)::

    nice python -m benchmarks.latency_table --models tiny_cnn --filters 0.5 --macs 0.5 --latency 0.5 \
        --rounds 2 --runs 5 --out-dir benchmarks/cache/latency_table_smoke
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmarks import common


def _specs() -> dict[str, dict[str, Any]]:
    from benchmarks.latency import model_specs
    from tfmot_easiedge.models import zoo

    specs = model_specs()
    specs["tiny_cnn"] = {"build": lambda: zoo.tiny_cnn(seed=0), "builder": "zoo.tiny_cnn(seed=0)"}
    return specs


def _budgets(args: argparse.Namespace, table) -> list[tuple[str, Any]]:
    import tfmot_easiedge as te

    out: list[tuple[str, Any]] = [(f"filters {r:.0%}", te.FilterBudget(r)) for r in args.filters]
    out += [(f"MACs -{r:.0%}", te.MacsBudget(r)) for r in args.macs]
    out += [(f"latency -{r:.0%}", te.LatencyBudget(r, table=table)) for r in args.latency]
    return out


def run_model(name: str, args: argparse.Namespace, work: Path, log=print) -> dict[str, Any]:
    """Profiles, prunes and times one net; returns its rows."""
    import tfmot_easiedge as te
    from tfmot_easiedge import importance
    from tfmot_easiedge.export.tflite import convert
    from tfmot_easiedge.latency.runner import time_files

    spec = _specs()[name]
    model = spec["build"]()
    start = time.perf_counter()
    table = te.profile_latency(model, runtime="tflite", threads=args.threads, rounds=args.profile_rounds,
                               runs=args.runs, warmup=args.warmup)
    profile_s = time.perf_counter() - start
    log(f"{name}: profiled {len(table.segments)} segments in {profile_s:.0f} s")
    table.save(work / f"{name}_table.json", overwrite=True)
    analysis = te.analyze(model)
    scores = importance.l2_norm(model, analysis=analysis)
    files = {"dense": work / f"{name}_dense.tflite"}
    files["dense"].write_bytes(convert(model))
    rows = [{"config": "dense", "predicted_ms": table.predict(model), "target_ms": None,
             "macs": te.count_macs(model)}]
    for label, budget in _budgets(args, table):
        plan = te.select(analysis, scores, budget)
        slim = te.slim(model, plan, analysis=analysis)
        path = work / f"{name}_{len(rows)}.tflite"
        path.write_bytes(convert(slim))
        files[label] = path
        target = plan.metadata["cost"]["target"] if budget.kind == "latency" else None
        rows.append({"config": label, "predicted_ms": table.predict(plan), "target_ms": target,
                     "macs": te.count_macs(slim), "kept_filters": sum(len(k) for k in plan.kept.values())})
        log(f"{name}: {label}: predicted {rows[-1]['predicted_ms']:.3f} ms")
    load_before = os.getloadavg()
    timed, version = time_files(list(files.values()), "tflite", threads=args.threads, rounds=args.rounds,
                                runs=args.runs, warmup=args.warmup)
    for row, path in zip(rows, files.values()):
        measured = float(np.median(timed[path]))
        row.update(measured_ms=measured, error=row["predicted_ms"] / measured - 1.0,
                   round_medians_ms=timed[path])
        if row["target_ms"] is not None:
            row["measured_vs_target"] = measured / row["target_ms"] - 1.0
    errors = np.abs([r["error"] for r in rows])
    return {"model": name, "builder": spec["builder"], "runtime": version, "profile_seconds": profile_s,
            "profiled_segments": table.extra.get("profiled_segments"), "segments": len(table.segments),
            "load_average_at_timing": [load_before, os.getloadavg()], "rows": rows,
            "median_abs_error": float(np.median(errors)), "max_abs_error": float(errors.max())}


def to_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown."""
    lines = ["# Latency table: predicted vs measured TFLite latency (batch 1)", "",
             f"{report['date']} on {report['machine']['cpu_model']} ({report['machine']['cpu_count_usable']} usable "
             f"cores), TensorFlow {report['machine']['tensorflow']}; load average {report['load_average_before']} "
             f"before, {report['load_average_after']} after. Command: `{report['command']}`.",
             f"{report['threads']} thread(s), {report['rounds']} interleaved rounds of {report['runs']} runs, median "
             "of the round medians. Error = predicted / measured - 1. L2 filter scores on seeded untrained weights.",
             ""]
    for m in report["models"]:
        lines += [f"## {m['model']}", "",
                  f"`{m['builder']}`, {m['runtime']}; profiled {m['segments']} segments ({m['profiled_segments']} "
                  f"distinct) in {m['profile_seconds']:.0f} s. Median |error| {m['median_abs_error']:.1%}, max "
                  f"{m['max_abs_error']:.1%}.", "",
                  "| config | MMACs | predicted ms | measured ms | error | target ms | measured vs target |",
                  "|---|---|---|---|---|---|---|"]
        for r in m["rows"]:
            target = "" if r["target_ms"] is None else f"{r['target_ms']:.3f}"
            vs = "" if r.get("measured_vs_target") is None else f"{r['measured_vs_target']:+.1%}"
            lines.append(f"| {r['config']} | {r['macs'] / 1e6:.1f} | {r['predicted_ms']:.3f} | {r['measured_ms']:.3f} "
                         f"| {r['error']:+.1%} | {target} | {vs} |")
        lines.append("")
    return "\n".join(lines)


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The benchmark's command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="vgg16,resnet56,mobilenetv2")
    p.add_argument("--filters", type=_floats, default=[0.3, 0.5, 0.8])
    p.add_argument("--macs", type=_floats, default=[0.5, 0.75, 0.9])
    p.add_argument("--latency", type=_floats, default=[0.5, 0.75])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds timing the pruned models")
    p.add_argument("--profile-rounds", type=int, default=3, help="interleaved rounds profiling the table")
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--out-dir", default=str(common.RESULTS_DIR))
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the benchmark; writes ``latency_table.json`` and ``.md`` into ``--out-dir``."""
    args = parse_args(argv)
    out = Path(args.out_dir)
    report: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m benchmarks.latency_table " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": common.machine_info(), "load_average_before": list(os.getloadavg()),
        "threads": args.threads, "rounds": args.rounds, "runs": args.runs, "models": []}
    with tempfile.TemporaryDirectory(prefix="latency-table-") as work:
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            report["models"].append(run_model(name, args, Path(work)))
    report["load_average_after"] = list(os.getloadavg())
    common.write_json_atomic(out / "latency_table.json", report)
    common.write_text_atomic(out / "latency_table.md", to_markdown(report))
    print(f"wrote {out / 'latency_table.json'} and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
