"""Latency of globally pruned CNNs on CPU: TFLite fp32/int8 (XNNPACK), onnxruntime and Keras, batch 1.

For each model (VGG-16 CIFAR, ResNet-56, MobileNetV2 at 32x32, and the trained ``vgg_small``) and each
ratio of filters removed, the script scores channels with a real criterion (TBAA on CIFAR-10
calibration images when a trained model is cached as ``benchmarks/cache/<name>.keras``, else the L2
norm of the initialised filters), selects channels globally (``select`` with ``FilterBudget``, and with
``MacsBudget`` for the ``--macs`` ratios, 90% of MACs by default; every selection keeps the library's
``min_fraction`` floor), slims the model, exports TFLite float32 and full-integer int8 (calibrated on
CIFAR-10 images) and ONNX, and times batch-1 inference with ``measure_latency``. The configurations
of one model are timed round-robin (``--rounds`` passes of ``runs / rounds`` timed runs each), so a
burst of load on the shared machine hits all of them alike instead of one.

Every model's most pruned configuration is checked against 0.8x its MAC reduction (TFLite float32,
1 thread), VGG-16 at 80% also against a 9.6x speedup. For VGG-16 (``--breakdown-models``) the script
cuts the chain after each ReLU / pooling and times every segment (conv+BN+ReLU, pool, classifier) as a
standalone model at 0% and at that ratio, so each layer's share of the time can be read off
(``--breakdown auto``: only when the check fails). VGG-16 and ResNet-56 at 80% are also pruned with
``round_to`` 8 and 4. Single-thread runs are also timed in the calling thread's CPU time, which does not
count waits for a core.

Run from the repository root:

    .venv/bin/python -m benchmarks.latency --quick     # about a minute: vgg_small, 0/50%, few runs
    .venv/bin/python -m benchmarks.latency             # the four default models (12-25 minutes)
    # the committed results (about 30 minutes):
    .venv/bin/python -m benchmarks.latency --models vgg16,resnet56,mobilenetv2,vgg_small,vgg16_w0.25_cpu,\
resnet56_w0.25_cpu

Writes ``benchmarks/results/latency.json`` and ``latency.md``.

This module is the command line; the benchmark is split by role (and the names callers use are
re-exported here): ``latency_spec`` (models, defaults, runtimes, targets, labels), ``latency_run`` (one
model's configurations: prune, export, time, check), ``latency_timing`` (round-robin timing, thread CPU
time), ``latency_breakdown`` (per-segment timing of a chain) and ``latency_render`` (``latency.md``).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` and ``tfmot_easiedge`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# The benchmark lives in small modules by role; the names tests and other scripts use are re-exported here.
from benchmarks import common  # noqa: E402
from benchmarks.latency_breakdown import (  # noqa: E402,F401
    cut_points,
    is_chain,
    layer_breakdown,
    segment_model,
    segments,
    summarize_breakdown,
)
from benchmarks.latency_render import read_analysis, to_markdown, write_report  # noqa: E402,F401
from benchmarks.latency_run import (  # noqa: E402,F401
    export_all,
    floor_summary,
    layer_mac_table,
    load_data,
    load_model,
    prune,
    prune_to_floor,
    run_model,
    score_channels,
    shortfall,
)
from benchmarks.latency_spec import (  # noqa: E402,F401
    ANALYSIS_BEGIN,
    ANALYSIS_END,
    CPU_COLUMNS,
    DEFAULT_MACS,
    DEFAULT_MODELS,
    DEFAULT_RATIOS,
    FLOOR_LABEL,
    RUNTIMES,
    TARGET_EFFICIENCY,
    TARGET_SPEEDUP,
    WALL_COLUMNS,
    Runtime,
    config_label,
    model_specs,
)
from benchmarks.latency_timing import latency_jobs, thread_time_latency, time_round_robin  # noqa: E402,F401

_config_label = config_label  # its name before the split, which the tests use


# --------------------------------------------------------------------------- command line
def _floats(text: str) -> list[float]:
    return [float(t) for t in text.split(",") if t.strip()]


def _ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _default_min_fraction() -> float:
    from tfmot_easiedge.admm.prune import DEFAULT_MIN_FRACTION

    return DEFAULT_MIN_FRACTION


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line's arguments, checked, with the defaults (``--quick``'s or the full run's) filled in."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=_names, default=None,
                   help=f"comma-separated, from {', '.join(model_specs())} (default {', '.join(DEFAULT_MODELS)})")
    p.add_argument("--ratios", type=_floats, default=None, help="filter ratios removed (default 0,0.5,0.8)")
    p.add_argument("--macs", type=_floats, default=None,
                   help="MAC ratios removed by a global MacsBudget selection (default 0.9, a 10x reduction; "
                        "none with --quick)")
    p.add_argument("--no-floor", dest="floor", action="store_false",
                   help="skip the floor configuration (every prunable group at 1 channel)")
    p.add_argument("--min-fraction", type=float, default=None,
                   help="every group keeps at least this fraction of its channels (default: the library's "
                        "EasiEdge/prune_filters default, admm.prune.DEFAULT_MIN_FRACTION)")
    p.add_argument("--runs", type=int, default=None, help="timed runs per configuration and runtime (default 200)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds the runs are split into (default 5)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs per round (default 10)")
    p.add_argument("--calibration", type=int, default=None,
                   help="CIFAR-10 training images for TBAA and int8 calibration (default 256)")
    p.add_argument("--round-to", type=_ints, default=None, help="round_to study multiples (default 8,4)")
    p.add_argument("--round-to-models", type=_names, default=["vgg16", "resnet56"],
                   help="models that also get the round_to configurations (default vgg16,resnet56)")
    p.add_argument("--breakdown", choices=("auto", "always", "never"), default="always",
                   help="per-layer timing of the --breakdown-models: always (default), only when the speedup "
                        "check fails (auto), or never")
    p.add_argument("--breakdown-models", type=_names, default=None, help="default vgg16 (vgg_small with --quick)")
    p.add_argument("--runtimes", type=_names, default=None, help="default all: " + ",".join(r.key for r in RUNTIMES))
    p.add_argument("--report-only", action="store_true",
                   help="rewrite --out's .md from its .json (no timing), e.g. after editing the report code")
    p.add_argument("--merge", action="store_true",
                   help="keep the other models' results already in --out (re-run only --models)")
    p.add_argument("--quick", action="store_true", help="seconds-long smoke run: vgg_small, 0/50%%, few runs")
    p.add_argument("--out", default=None, help="output path without suffix (default benchmarks/results/latency; "
                   "with --quick, latency_quick in the temporary folder)")
    args = p.parse_args(argv)
    quick = args.quick
    defaults = {"models": ["vgg_small"] if quick else list(DEFAULT_MODELS),
                "ratios": [0.0, 0.5] if quick else list(DEFAULT_RATIOS), "runs": 6 if quick else 200,
                "macs": [] if quick else list(DEFAULT_MACS), "min_fraction": _default_min_fraction(),
                "rounds": 2 if quick else 5, "warmup": 2 if quick else 10, "calibration": 16 if quick else 256,
                "round_to": [] if quick else [8, 4], "breakdown_models": ["vgg_small"] if quick else ["vgg16"],
                "runtimes": [r.key for r in RUNTIMES],
                "out": str(Path(tempfile.gettempdir()) / "latency_quick") if quick
                else str(common.RESULTS_DIR / "latency")}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    unknown = set(args.models) - set(model_specs())
    if unknown:
        p.error(f"unknown models {sorted(unknown)}; choose from {', '.join(model_specs())}")
    if not args.ratios or min(args.ratios) != 0.0:
        p.error("--ratios must include 0 (the reference of every speedup)")
    args.ratios = sorted(set(args.ratios))
    if any(not 0.0 < r < 1.0 for r in args.macs):
        p.error("--macs ratios must be in (0, 1)")
    if not 0.0 <= args.min_fraction < 1.0:
        p.error("--min-fraction must be in [0, 1)")
    args.formats = sorted({rt.fmt for rt in RUNTIMES if rt.key in args.runtimes} - {"keras"})
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Runs the command line: times every model of ``--models``, writes the JSON and the report; returns it."""
    args = parse_args(argv)
    if args.report_only:
        report = json.loads(Path(args.out).with_suffix(".json").read_text(encoding="utf-8"))
        print(write_report(report, Path(args.out)))
        return report
    start = time.perf_counter()
    data = load_data(args.calibration)
    command = "python -m benchmarks.latency " + " ".join(sys.argv[1:] if argv is None else argv)
    report: dict[str, Any] = {
        "benchmark": "latency", "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command.strip(), "machine": common.machine_info(),
        "settings": {"models": args.models, "ratios": args.ratios, "macs": args.macs,
                     "min_fraction": args.min_fraction, "floor": args.floor, "runs": args.runs,
                     "rounds": args.rounds,
                     "warmup": args.warmup, "batch_size": 1, "calibration_images": args.calibration,
                     "check_images": 32, "round_to": args.round_to, "round_to_models": args.round_to_models,
                     "runtimes": args.runtimes, "quick": args.quick},
        "models": {}}
    out = Path(args.out)
    if args.merge and out.with_suffix(".json").exists():
        previous = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))["models"]
        report["models"] = {k: v for k, v in previous.items() if k not in args.models}
    for name in args.models:
        report["models"][name] = {**run_model(name, args, data), "command": report["command"],
                                  "run_date": report["date"], "settings": report["settings"]}
        report["wall_seconds"] = round(time.perf_counter() - start, 1)
        common.write_json_atomic(out.with_suffix(".json"), report)  # after every model: a long run can be watched
    order = [m for m in model_specs() if m in report["models"]]
    report["models"] = {m: report["models"][m] for m in order}
    common.write_json_atomic(out.with_suffix(".json"), report)
    print(write_report(report, out))
    return report


if __name__ == "__main__":
    main()
