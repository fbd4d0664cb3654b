"""Latency of globally pruned CNNs on CPU: TFLite fp32/int8 (XNNPACK), onnxruntime and Keras, batch 1.

For each model (VGG-16 CIFAR, ResNet-56, MobileNetV2 at 32x32, and the trained ``vgg_small``) and each
ratio of filters removed, the script scores channels with a real criterion (TBAA on CIFAR-10
calibration images when a trained model is cached as ``benchmarks/cache/<name>.keras``, else the L2
norm of the initialised filters), selects channels globally (``select`` with ``FilterBudget``, and with
``MacsBudget`` for the ``--macs`` ratios, 90% of MACs by default; every selection keeps the library's
``min_fraction`` floor), slims the model, exports TFLite float32 and full-integer int8 (calibrated on CIFAR-10 images) and ONNX, and
times batch-1 inference with ``measure_latency``. The configurations of one model are timed round-robin
(``--rounds`` passes of ``runs / rounds`` timed runs each), so a burst of load on the shared machine
hits all of them alike instead of one.

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
    .venv/bin/python -m benchmarks.latency --models vgg16,resnet56,mobilenetv2,vgg_small,vgg16_w0.25_cpu,resnet56_w0.25_cpu
                                                       # the committed results (about 30 minutes)

Writes ``benchmarks/results/latency.json`` and ``latency.md``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` and ``tfmot_easiedge`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402
from benchmarks.coverage import write_atomic  # noqa: E402

DEFAULT_MODELS = ("vgg16", "resnet56", "mobilenetv2", "vgg_small")
DEFAULT_RATIOS = (0.0, 0.5, 0.8)
DEFAULT_MACS = (0.9,)  # MAC ratios removed: the paper's 80%-of-filters VGG-16 ran 9.6x faster
# The acceptance bar for VGG-16 at 80% of filters removed (TFLite float32, 1 thread).
TARGET_SPEEDUP = 9.6
TARGET_EFFICIENCY = 0.8  # speedup / MAC reduction


class Runtime(NamedTuple):
    """One timed runtime: result key, runtime name, export format, threads (None: process-wide), clock.

    ``clock="wall"`` is ``measure_latency`` (``perf_counter``); ``clock="thread"`` times the same
    1-thread run with the calling thread's CPU time (``time.thread_time``), which does not count the
    time the thread waits for a core, so it stays honest on a machine shared with other jobs.
    """

    key: str
    runtime: str
    fmt: str
    threads: int | None
    clock: str = "wall"


RUNTIMES = (Runtime("tflite_fp32_t1", "tflite", "fp32", 1), Runtime("tflite_fp32_t2", "tflite", "fp32", 2),
            Runtime("tflite_int8_t1", "tflite", "int8", 1), Runtime("tflite_int8_t2", "tflite", "int8", 2),
            Runtime("onnxruntime_t1", "onnxruntime", "onnx", 1), Runtime("keras", "keras", "keras", None),
            Runtime("tflite_fp32_t1_cpu", "tflite", "fp32", 1, "thread"),
            Runtime("tflite_int8_t1_cpu", "tflite", "int8", 1, "thread"),
            Runtime("onnxruntime_t1_cpu", "onnxruntime", "onnx", 1, "thread"))
WALL_COLUMNS = ("tflite_fp32_t1", "tflite_fp32_t2", "tflite_int8_t1", "tflite_int8_t2", "onnxruntime_t1", "keras")
CPU_COLUMNS = ("tflite_fp32_t1_cpu", "tflite_int8_t1_cpu", "onnxruntime_t1_cpu")
# Layers after which a chain model is cut for the per-layer breakdown (XNNPACK fuses conv+BN+ReLU).
_CUT_TYPES = ("ReLU", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D")


# --------------------------------------------------------------------------- models and data


def _mobilenetv2(seed: int = 0):
    import keras

    keras.utils.set_random_seed(seed)
    return keras.applications.MobileNetV2(input_shape=(32, 32, 3), weights=None, classes=10)


def model_specs() -> dict[str, dict[str, Any]]:
    """``{name: {"build": () -> keras.Model, "builder": str, "input": str, "preprocess": fn}}``.

    The zoo models take images in the uint8 range (they rescale them); MobileNetV2 takes ``[-1, 1]``.
    """
    from tfmot_easiedge.models import zoo

    raw = ("float32 pixels in [0, 255] (the model rescales)", lambda x: x.astype("float32"))
    centred = ("float32 pixels / 127.5 - 1", lambda x: x.astype("float32") / 127.5 - 1.0)
    return {
        "vgg16": {"build": lambda: zoo.vgg16_cifar(seed=0), "builder": "zoo.vgg16_cifar(seed=0)",
                  "input": raw},
        "resnet56": {"build": lambda: zoo.resnet56(seed=0), "builder": "zoo.resnet56(seed=0)", "input": raw},
        "mobilenetv2": {"build": _mobilenetv2,
                        "builder": "keras.applications.MobileNetV2(input_shape=(32, 32, 3), weights=None, "
                                   "classes=10)",
                        "input": centred},
        "vgg_small": {"build": lambda: zoo.vgg_small(seed=0), "builder": "zoo.vgg_small(seed=0)", "input": raw},
        # The trained baselines of the compare benchmark's cpu profile (benchmarks/cache/<name>.keras, made by
        # ``python -m benchmarks.compare --profile cpu``): real TBAA selections on trained weights, width 0.25.
        "vgg16_w0.25_cpu": {"build": lambda: zoo.vgg16_cifar(width=0.25, seed=0),
                            "builder": "zoo.vgg16_cifar(width=0.25, seed=0)", "input": raw},
        "resnet56_w0.25_cpu": {"build": lambda: zoo.resnet56(width=0.25, seed=0),
                               "builder": "zoo.resnet56(width=0.25, seed=0)", "input": raw},
    }


def load_model(name: str) -> tuple[Any, bool]:
    """Returns ``(model, trained)``: the cached trained model when there is one, else a seeded fresh build."""
    import keras

    path = common.cache_path(name)
    if path.exists():
        return keras.saving.load_model(path), True
    return model_specs()[name]["build"](), False


def score_channels(model, analysis, trained: bool, calibration: np.ndarray) -> tuple[dict, dict[str, Any]]:
    """TBAA on ``calibration`` for a trained model, else the L2 norm of the filters; returns (scores, info)."""
    from tfmot_easiedge import importance

    start = time.perf_counter()
    if trained:
        scores = importance.tbaa(model, calibration, analysis=analysis, batch_size=64, progress=False)
        info = {"criterion": "tbaa", "variant": "auto (top3)",
                "calibration_images": int(len(calibration))}
    else:
        scores = importance.l2_norm(model, analysis=analysis)
        info = {"criterion": "l2", "calibration_images": 0}
    info["seconds"] = round(time.perf_counter() - start, 2)
    return scores, info


# --------------------------------------------------------------------------- one pruned configuration


def prune(model, analysis, scores: dict, budget, round_to: int | None, min_fraction: float = 0.0):
    """Global selection under ``budget`` (a ``FilterBudget`` or ``MacsBudget``), then slimming.

    Returns:
        ``(slim model, kept filters)``.
    """
    import tfmot_easiedge as te

    plan = te.select(analysis, scores, budget, round_to=round_to, min_fraction=min_fraction)
    slim = te.slim(model, plan, analysis=analysis)
    return slim, sum(len(k) for k in plan.kept.values())


def export_all(model, folder: Path, tag: str, calibration: np.ndarray, check: np.ndarray,
               formats: Sequence[str]) -> tuple[dict[str, Path], dict[str, dict]]:
    """Exports ``model`` as TFLite fp32 / int8 and ONNX into ``folder``; returns (paths, export records).

    A format whose file cannot be verified (e.g. int8 of a model with a dead layer) gets ``{"error": ...}``
    in the records and no path, so it is not timed.
    """
    from tfmot_easiedge import export

    paths, records = {}, {}
    for fmt in formats:
        start = time.perf_counter()
        try:
            result = _export_one(export, model, folder, tag, fmt, calibration, check)
        except export.ExportVerificationError as e:
            records[fmt] = {"error": str(e), "seconds": round(time.perf_counter() - start, 1)}
            continue
        if result is None:
            continue
        paths[fmt] = result.path
        records[fmt] = {"size_bytes": int(result.size_bytes), "max_rel_diff": result.max_rel_diff,
                        "top1_agreement": result.top1_agreement,
                        "seconds": round(time.perf_counter() - start, 1)}
    return paths, records


def _export_one(export, model, folder: Path, tag: str, fmt: str, calibration, check):
    """One verified export of ``model`` in ``fmt`` (``"fp32"``, ``"int8"``, ``"onnx"``); None for others."""
    if fmt == "fp32":
        return export.tflite(model, folder / f"{tag}_fp32.tflite", sample_inputs=check)
    if fmt == "int8":
        return export.tflite(model, folder / f"{tag}_int8.tflite", quantization="int8",
                             representative_data=calibration, sample_inputs=check)
    if fmt == "onnx":
        return export.onnx(model, folder / f"{tag}.onnx", sample_inputs=check)
    return None


def layer_mac_table(base, pruned) -> list[dict[str, Any]]:
    """Per counted layer: MACs at 0% and pruned, their ratio, and the layer's input/output channels."""
    import tfmot_easiedge as te

    before, after = te.layer_macs(base), te.layer_macs(pruned)
    rows = []
    for name, macs0 in before.items():
        macs = after.get(name, 0)
        layer0, layer = base.get_layer(name), pruned.get_layer(name)
        rows.append({"layer": name, "macs_0": int(macs0), "macs": int(macs),
                     "reduction": round(macs0 / macs, 2) if macs else None,
                     "channels_in": [int(layer0.input.shape[-1]), int(layer.input.shape[-1])],
                     "channels_out": [int(layer0.output.shape[-1]), int(layer.output.shape[-1])]})
    return rows


# --------------------------------------------------------------------------- timing


def _stats(times: np.ndarray) -> dict[str, float]:
    p10, median, p90 = np.percentile(times, [10, 50, 90])
    return {"median_ms": round(float(median), 4), "p10_ms": round(float(p10), 4), "p90_ms": round(float(p90), 4),
            "mean_ms": round(float(times.mean()), 4), "runs": int(times.size)}


def time_round_robin(jobs: dict[str, Callable[[int], Any]], runs: int, rounds: int) -> dict[str, dict]:
    """Runs every job ``rounds`` times in turn, ``runs // rounds`` timed runs each; pooled statistics per job.

    ``jobs`` maps a key to ``fn(runs) -> LatencyResult``. Interleaving spreads any burst of machine load
    over all jobs, so ratios between them (speedups) stay fair even when absolute times drift.
    """
    per_round = max(1, runs // rounds)
    times: dict[str, list[float]] = {k: [] for k in jobs}
    threads: dict[str, int] = {}
    for _ in range(rounds):
        for key, job in jobs.items():
            result = job(per_round)
            times[key].extend(result.times_ms)
            threads[key] = result.threads
    return {k: {**_stats(np.asarray(v)), "threads": threads[k]} for k, v in times.items()}


def latency_jobs(tag: str, paths: dict[str, Path], model, sample: np.ndarray, warmup: int,
                 runtimes: Sequence[str]) -> dict[str, Callable[[int], Any]]:
    """``{"<tag>|<runtime key>": fn(runs)}`` for the runtimes of one configuration."""
    from tfmot_easiedge import measure_latency

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    jobs = {}
    for rt in RUNTIMES:
        if rt.key not in runtimes or (rt.fmt != "keras" and rt.fmt not in paths):
            continue
        target = model if rt.fmt == "keras" else paths[rt.fmt]
        if rt.clock == "thread":
            jobs[f"{tag}|{rt.key}"] = (lambda runs, target=target, rt=rt:
                                       thread_time_latency(target, rt.runtime, sample, warmup, runs))
            continue

        def job(runs, target=target, runtime=rt.runtime, threads=rt.threads or cores):
            return measure_latency(target, runtime=runtime, threads=threads, batch_size=1, warmup=warmup,
                                   runs=runs, input_data=sample, progress=False)

        jobs[f"{tag}|{rt.key}"] = job
    return jobs


class _Times(NamedTuple):
    times_ms: tuple
    threads: int


def thread_time_latency(path: Path, runtime: str, sample: np.ndarray, warmup: int, runs: int) -> _Times:
    """1-thread batch-1 latency of a .tflite / .onnx file in CPU time of the calling thread (ms per run).

    With one thread, XNNPACK and onnxruntime run the whole graph on the calling thread, so its CPU time
    is the work done, without the time spent waiting for a core. Reuses the runners of
    ``measure_latency`` (the same interpreter set-up and inputs).
    """
    from tfmot_easiedge.latency import measure as _latency

    make = _latency._tflite_step if runtime == "tflite" else _latency._onnx_step  # noqa: SLF001 - same set-up
    step = make(Path(path), 1, 1, sample)
    for _ in range(warmup):
        step()
    times = np.empty(runs)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for i in range(runs):
            start = time.thread_time()
            step()
            times[i] = (time.thread_time() - start) * 1000.0
    finally:
        if gc_was_enabled:
            gc.enable()
    return _Times(tuple(float(t) for t in times), 1)


def _load() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


# --------------------------------------------------------------------------- per-layer breakdown


def is_chain(model) -> bool:
    """True when every layer reads exactly the previous layer's output (a plain VGG-style stack)."""
    layers = model.layers
    return all(len(getattr(b, "_inbound_nodes", [])) == 1 and b.input is a.output for a, b in zip(layers, layers[1:]))


def cut_points(model, fine: bool = True) -> list[str]:
    """Names of the layers a chain is cut after: the first layer, every ReLU / pooling (only the poolings
    when not ``fine``), and the last layer."""
    types = _CUT_TYPES if fine else _CUT_TYPES[1:]
    names = [model.layers[1].name]
    names += [layer.name for layer in model.layers[2:-1] if type(layer).__name__ in types]
    return names + [model.layers[-1].name]


def segments(model, cuts: Sequence[str]) -> list[list[str]]:
    """The layer names of each segment ending at a cut (the first segment starts after the input)."""
    out, current = [], []
    for layer in model.layers[1:]:
        current.append(layer.name)
        if layer.name in cuts:
            out.append(current)
            current = []
    return out


def segment_model(model, names: Sequence[str]):
    """A standalone model running the layers ``names`` of a chain (sharing their weights) on a fresh input."""
    import keras

    first = model.get_layer(names[0])
    inputs = keras.Input(shape=tuple(first.input.shape[1:]), name="segment_input")
    x = inputs
    for name in names:
        x = model.get_layer(name)(x)
    return keras.Model(inputs, x, name=f"segment_{names[0]}")


def layer_breakdown(base, pruned, folder: Path, sample: np.ndarray, runs: int, rounds: int,
                    warmup: int, fine: bool = True) -> list[dict[str, Any]]:
    """Per segment of a chain (conv+BN+ReLU, pool, ...): MACs and TFLite fp32 1-thread ms, at 0% and pruned.

    Each segment (the layers after one cut up to the next) becomes a standalone model on the real
    activations of ``sample`` at its input, is exported (float32, unverified: the full models were
    verified) and timed, in thread CPU time (``ms_*``, see :func:`thread_time_latency`) and wall clock
    (``wall_ms_*``); all segments of both models are timed round-robin. The first segment (the input's
    rescaling) shows the interpreter's fixed cost per ``invoke``, which every segment also pays.
    """
    import keras

    import tfmot_easiedge as te
    from tfmot_easiedge import export, measure_latency

    cuts = cut_points(base, fine)
    parts = segments(base, cuts)
    jobs, params = {}, {}
    for tag, model in (("base", base), ("pruned", pruned)):
        for i, names in enumerate(parts):
            feed = keras.Model(model.input, model.get_layer(names[0]).input)(sample, training=False)
            seg = segment_model(model, names)
            params[tag, i] = int(seg.count_params())
            path = export.tflite(seg, folder / f"segment_{tag}_{i}.tflite", verify=False).path
            feed = np.asarray(feed)
            jobs[f"{tag}|{i}|wall"] = (lambda n, path=path, feed=feed: measure_latency(
                path, runtime="tflite", threads=1, warmup=warmup, runs=n, input_data=feed, progress=False))
            jobs[f"{tag}|{i}|cpu"] = (lambda n, path=path, feed=feed: thread_time_latency(
                path, "tflite", feed, warmup, n))
    timed = time_round_robin(jobs, runs, rounds)
    macs = {tag: te.layer_macs(m) for tag, m in (("base", base), ("pruned", pruned))}
    rows = []
    for i, names in enumerate(parts):
        row = {"segment": names[0] if len(names) == 1 else f"{names[0]} .. {names[-1]}", "layers": names,
               "kinds": sorted({type(base.get_layer(n)).__name__ for n in names})}
        for tag in ("base", "pruned"):
            cpu, wall = timed[f"{tag}|{i}|cpu"], timed[f"{tag}|{i}|wall"]
            row[f"ms_{tag}"] = cpu["median_ms"]
            row[f"p10_ms_{tag}"], row[f"p90_ms_{tag}"] = cpu["p10_ms"], cpu["p90_ms"]
            row[f"wall_ms_{tag}"] = wall["median_ms"]
            row[f"macs_{tag}"] = int(sum(macs[tag].get(n, 0) for n in names))
            row[f"params_{tag}"] = params[tag, i]
        row["speedup"] = round(row["ms_base"] / row["ms_pruned"], 2) if row["ms_pruned"] > 0 else None
        row["mac_reduction"] = round(row["macs_base"] / row["macs_pruned"], 2) if row["macs_pruned"] else None
        rows.append(row)
    return rows


ANALYSIS_BEGIN = "<!-- analysis: hand-written, kept when the report is regenerated -->"
ANALYSIS_END = "<!-- /analysis -->"
_MEMORY_BOUND = {"Rescaling", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "Flatten", "Dropout",
                 "Activation", "ReLU", "InputLayer"}


def summarize_breakdown(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Where the pruned time goes: fixed cost, MAC-free (memory-bound) segments, and the slowest segments.

    ``mac_ideal_ms`` is the pruned time if every segment with MACs sped up exactly by its MAC reduction
    and the MAC-free segments kept their 0% time.
    """
    total = {t: sum(r[f"ms_{t}"] for r in rows) for t in ("base", "pruned")}
    fixed = rows[0]
    free = [r for r in rows[1:] if set(r["kinds"]) <= _MEMORY_BOUND]
    compute = [r for r in rows[1:] if r not in free]
    ideal = fixed["ms_base"] + sum(r["ms_base"] for r in free) + sum(
        r["ms_base"] / r["mac_reduction"] for r in compute if r["mac_reduction"])
    slowest = sorted(compute, key=lambda r: -r["ms_pruned"])[:4]
    return {
        "total_ms": {t: round(v, 4) for t, v in total.items()},
        "fixed_ms": {"base": fixed["ms_base"], "pruned": fixed["ms_pruned"], "segment": fixed["segment"]},
        "mac_free_ms": {t: round(sum(r[f"ms_{t}"] for r in free), 4) for t in ("base", "pruned")},
        "mac_free_segments": [r["segment"] for r in free],
        "mac_ideal_ms": round(ideal, 4),
        "slowest_pruned_segments": [{k: r[k] for k in ("segment", "ms_base", "ms_pruned", "speedup", "macs_base",
                                                       "macs_pruned", "mac_reduction")} for r in slowest],
    }


# --------------------------------------------------------------------------- one model


def _config_label(ratio: float, round_to: int | None, kind: str = "filters") -> str:
    """``"80%"`` for a filter ratio, ``"MACs -90%"`` for a MAC budget, plus ``" round_to=N"``."""
    label = f"{ratio:.0%}" if kind == "filters" else f"MACs -{ratio:.0%}"
    return label + (f" round_to={round_to}" if round_to else "")


FLOOR_LABEL = "floor (1 channel/group)"


def prune_to_floor(model, analysis, scores: dict):
    """Every prunable group cut to its one best-scored channel: what does not shrink with channels.

    Not a useful model; its latency is the architecture's floor (per-op and per-invoke costs, the unpruned
    input and classifier), so ``latency(0%) / latency(floor)`` bounds the speedup any channel pruning of
    it can give on that runtime. Returns ``(slim model, kept filters)``.
    """
    import tfmot_easiedge as te

    groups = analysis.prunable_groups
    plan = te.PruningPlan({g: [int(np.argmax(scores[g]))] for g in groups}, {g: groups[g].size for g in groups},
                          analysis.graph.model_name, {"kind": "floor"})
    return te.slim(model, plan, analysis=analysis), len(groups)


def run_model(name: str, args, data: dict[str, np.ndarray], log: Callable[[str], None] = print) -> dict[str, Any]:
    """All configurations of one model: prune, export, time; the model's result record."""
    import tfmot_easiedge as te

    spec = model_specs()[name]
    input_desc, preprocess = spec["input"]
    calibration = preprocess(data["calibration"])
    check, sample = preprocess(data["check"]), preprocess(data["sample"])
    record: dict[str, Any] = {"builder": spec["builder"], "input": input_desc, "load_before": _load(),
                              "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    start = time.perf_counter()
    model, trained = load_model(name)
    analysis = te.analyze(model)
    scores, criterion = score_channels(model, analysis, trained, calibration)
    weights = (str(common.cache_path(name).relative_to(common.BENCHMARKS_DIR.parent)) if trained
               else "initialised (seed 0), untrained")
    record.update({"trained": trained, "weights": weights, "selection": criterion,
                   "prunable_filters": int(sum(g.size for g in analysis.prunable_groups.values()))})
    log(f"[{name}] {'trained' if trained else 'untrained'}, criterion {criterion['criterion']}, "
        f"{record['prunable_filters']} prunable filters")
    settings = [("filters", r, None) for r in args.ratios]
    if name in args.round_to_models and args.round_to:
        settings += [("filters", max(args.ratios), m) for m in args.round_to]
    settings += [("macs", r, None) for r in args.macs]
    if args.floor:
        settings.append(("floor", 0.0, None))
    configs, jobs, slim_models, skipped = [], {}, {}, []
    with tempfile.TemporaryDirectory(prefix=f"latency-{name}-") as tmp:
        folder = Path(tmp)
        for i, (kind, ratio, round_to) in enumerate(settings):
            if kind == "floor":
                label, described = FLOOR_LABEL, {"kind": "floor"}
                slim, kept = prune_to_floor(model, analysis, scores)
            else:
                label = _config_label(ratio, round_to, kind)
                budget = te.parse_budget(f"{kind}:{ratio}")
                described = budget.describe()
                try:
                    slim, kept = prune(model, analysis, scores, budget, round_to, args.min_fraction)
                except ValueError as e:  # e.g. a MAC budget the selection floor cannot reach: say so, go on
                    skipped.append({"label": label, "budget": described, "why": str(e)})
                    log(f"[{name}] {label}: skipped ({e})")
                    continue
            paths, exports = export_all(slim, folder, f"c{i}", calibration, check, args.formats)
            slim_models[label] = slim
            configs.append({"label": label, "budget": described, "ratio": ratio, "round_to": round_to,
                            "filters_kept": int(kept), "params": te.count_params(slim),
                            "macs": te.count_macs(slim), "exports": exports})
            jobs.update(latency_jobs(label, paths, slim, sample, args.warmup, args.runtimes))
            took = ", ".join(f"{k} {v['seconds']}s" for k, v in exports.items())
            log(f"[{name}] {label}: {kept} filters, {configs[-1]['macs'] / 1e6:.1f}M MACs, exported ({took})")
        load_mid = _load()
        timed = time_round_robin(jobs, args.runs, args.rounds)
        _attach_latency(configs, timed)
        top = _config_label(max(args.ratios), None)
        base_label = _config_label(min(args.ratios), None)
        record["layer_macs"] = layer_mac_table(slim_models[base_label], slim_models[top])
        target = TARGET_SPEEDUP if name == "vgg16" and max(args.ratios) == 0.8 else None
        record["shortfall_check"] = shortfall(configs, top, target_speedup=target)
        record["shortfall_check_cpu"] = shortfall(configs, top, "tflite_fp32_t1_cpu", target_speedup=target)
        # equal-MAC configurations: a trained selection at 80% of filters removes mostly cheap late filters
        record["macs_checks"] = [shortfall(configs, c["label"], key, target_speedup=target)
                                 for c in configs if c["budget"]["kind"] == "macs"
                                 for key in ("tflite_fp32_t1", "tflite_fp32_t1_cpu")]
        record["skipped"] = skipped
        record["floor"] = floor_summary(configs)
        needs = args.breakdown == "always" or (args.breakdown == "auto" and not record["shortfall_check"]["met"])
        if name in args.breakdown_models and needs and is_chain(model):
            log(f"[{name}] breakdown by layer ({record['shortfall_check']['why']})")
            record["breakdown"] = layer_breakdown(slim_models[base_label], slim_models[top], folder,
                                                  sample, args.runs, args.rounds, args.warmup,
                                                  fine=not args.quick)
            record["breakdown_summary"] = summarize_breakdown(record["breakdown"])
            # the MAC-budget configurations: where their time goes against the same 0% segments
            record["breakdown_macs"] = {}
            for k, c in enumerate(c for c in configs if c["budget"]["kind"] == "macs"):
                log(f"[{name}] breakdown by layer at {c['label']}")
                sub = folder / f"breakdown_macs_{k}"
                sub.mkdir()
                record["breakdown_macs"][c["label"]] = layer_breakdown(
                    slim_models[base_label], slim_models[c["label"]], sub, sample, args.runs, args.rounds,
                    args.warmup, fine=not args.quick)
    record.update({"configs": configs, "load_before_timing": load_mid, "load_after": _load(),
                   "seconds": round(time.perf_counter() - start, 1)})
    return record


def floor_summary(configs: list[dict]) -> dict[str, Any] | None:
    """The 1-channel floor against 0% and the most pruned filter configuration, per 1-thread runtime.

    ``share``: the floor's fraction of that configuration's time (what more pruning cannot remove).
    """
    floor = next((c for c in configs if c["label"] == FLOOR_LABEL), None)
    if floor is None:
        return None
    filters = [c for c in configs if c.get("budget", {}).get("kind", "filters") == "filters" and not c["round_to"]]
    top = max(filters, key=lambda c: c["ratio"])
    out: dict[str, Any] = {"macs": floor["macs"], "params": floor["params"], "against": top["label"], "runtimes": {}}
    for key, stats in floor["latency"].items():
        if key in ("keras",) or key.endswith("_t2"):
            continue
        base, pruned = configs[0]["latency"].get(key), top["latency"].get(key)
        if base and pruned:
            out["runtimes"][key] = {"floor_ms": stats["median_ms"],
                                    "max_speedup": round(base["median_ms"] / stats["median_ms"], 2),
                                    "share_of_top": round(stats["median_ms"] / pruned["median_ms"], 2)}
    return out


def _attach_latency(configs: list[dict], timed: dict[str, dict]) -> None:
    """Puts each timing under its configuration, with speedup vs the first (0%) configuration."""
    for c in configs:
        c["latency"] = {key: stats for k, stats in timed.items() for label, key in [k.split("|", 1)]
                        if label == c["label"]}
    base = configs[0]
    for c in configs:
        c["mac_reduction"] = round(base["macs"] / c["macs"], 3)
        for key, stats in c["latency"].items():
            ref = base["latency"].get(key)
            if ref:
                stats["speedup"] = round(ref["median_ms"] / stats["median_ms"], 3)
                # the fast tail is least disturbed by other processes on a shared machine
                stats["speedup_p10"] = round(ref["p10_ms"] / stats["p10_ms"], 3)
                stats["speedup_per_mac_reduction"] = round(stats["speedup"] / c["mac_reduction"], 3)


def shortfall(configs: list[dict], label: str, key: str = "tflite_fp32_t1",
              target_speedup: float | None = None) -> dict[str, Any]:
    """Whether the ``label`` configuration reaches ``target_speedup`` (if any) and ``TARGET_EFFICIENCY`` on ``key``."""
    c = next(c for c in configs if c["label"] == label)
    stats = c["latency"].get(key, {})
    speedup = stats.get("speedup")
    if speedup is None:
        return {"config": label, "runtime": key, "met": True, "why": "not measured"}
    eff = speedup / c["mac_reduction"]
    reasons = []
    if target_speedup is not None and speedup < target_speedup:
        reasons.append(f"speedup {speedup:.2f}x < {target_speedup}x")
    if eff < TARGET_EFFICIENCY:
        reasons.append(f"speedup / MAC reduction {eff:.2f} < {TARGET_EFFICIENCY}")
    return {"config": label, "runtime": key, "speedup": speedup, "mac_reduction": c["mac_reduction"],
            "speedup_per_mac_reduction": round(eff, 3), "target_speedup": target_speedup,
            "target_speedup_per_mac_reduction": TARGET_EFFICIENCY, "met": not reasons,
            "why": "; ".join(reasons) or "met"}


# --------------------------------------------------------------------------- report


def _ms(stats: dict | None) -> str:
    return "–" if not stats else f"{stats['median_ms']:.3f} [{stats['p10_ms']:.3f}–{stats['p90_ms']:.3f}]"


def _x(value) -> str:
    return "–" if value is None else f"{value:.2f}"


def to_markdown(report: dict[str, Any], analysis: str = "") -> str:
    """The results as Markdown: a table per model, the shortfall check, the per-layer breakdown, and
    ``analysis`` (hand-written Markdown kept across runs between ``ANALYSIS_BEGIN`` and ``ANALYSIS_END``)."""
    s = report["settings"]
    lines = ["# Latency of globally pruned CNNs (batch 1, CPU)", "",
             f"{report['date']} on {report['machine']['cpu_model']} ({report['machine']['cpu_count_usable']} usable "
             f"cores, shared machine), TensorFlow {report['machine']['tensorflow']}. Median [p10–p90] ms of the "
             "timed runs of each configuration, taken in interleaved rounds with warm-up runs per round. Speedup "
             "is vs 0% on the same runtime, of the medians (in brackets: of the 10th percentiles, less disturbed "
             "by other jobs on this shared machine); MAC reduction is MACs(0%) / MACs; efficiency is speedup / "
             "MAC reduction. `keras` uses TensorFlow's process-wide pool (all usable cores).", ""]
    for name, r in report["models"].items():
        sel, settings = r["selection"], r.get("settings", s)
        lines += [f"## {name}", "",
                  f"`{r['builder']}`; weights: {r['weights']}; selection: `{sel['criterion']}`"
                  + (f" on {sel['calibration_images']} CIFAR-10 training images" if sel["calibration_images"] else
                     " of the filters") + f"; {r['prunable_filters']} prunable filters. "
                  f"Run {r.get('date', report['date'])}, "
                  f"{settings['runs']} timed runs in {settings['rounds']} rounds; load average "
                  f"{r['load_before']} before, {r['load_before_timing']} at timing, {r['load_after']} after.", "",
                  "Wall clock (`measure_latency`):", "",
                  "| config | filters kept | params | MMACs | MAC red. | TFLite fp32 1t ms | speedup | eff. | "
                  "fp32 2t ms | speedup | int8 1t ms | speedup | int8 2t ms | speedup | ORT 1t ms | speedup | "
                  "Keras ms | speedup |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        lines += _latency_rows(r["configs"], WALL_COLUMNS, with_sizes=True)
        if any(k in c["latency"] for c in r["configs"] for k in CPU_COLUMNS):
            lines += ["", "CPU time of the calling thread, 1 thread (not counting waits for a core):", "",
                      "| config | TFLite fp32 ms | speedup | eff. | TFLite int8 ms | speedup | ORT ms | speedup |",
                      "|---|---|---|---|---|---|---|---|"]
            lines += _latency_rows(r["configs"], CPU_COLUMNS, with_sizes=False)
        int8 = [f"{c['label']}: {c['exports']['int8']['top1_agreement']:.3f}" for c in r["configs"]
                if c["exports"].get("int8", {}).get("top1_agreement") is not None]
        if int8:
            lines += ["", "int8 top-1 agreement with Keras (on the check images): " + ", ".join(int8) + "."
                      + ("" if r["trained"] else " Untrained weights give near-uniform outputs, so the int8 "
                         "softmax ties classes and this agreement says nothing about quantization quality.")]
        for chk in (r["shortfall_check"], r.get("shortfall_check_cpu", {}), *r.get("macs_checks", [])):
            if "speedup" in chk:
                lines += ["", f"Check at {chk['config']} ({chk['runtime']}): speedup {chk['speedup']:.2f}x, MAC "
                              f"reduction {chk['mac_reduction']:.2f}x, "
                              f"efficiency {chk['speedup_per_mac_reduction']:.2f}"
                              f" → {'met' if chk['met'] else 'NOT met: ' + chk['why']}."]
        for c in r["configs"]:
            for fmt, rec in c["exports"].items():
                if "error" in rec:
                    lines += ["", f"Export failed, not timed: {c['label']} {fmt}: {rec['error']}"]
        for skip in r.get("skipped", []):
            lines += ["", f"Skipped {skip['label']}: {skip['why']}."]
        floor = r.get("floor")
        if floor and floor["runtimes"]:
            parts = [f"{k} {v['floor_ms']:.3f} ms (at most {v['max_speedup']:.1f}x over 0%; "
                     f"{v['share_of_top']:.0%} of {floor['against']})" for k, v in floor["runtimes"].items()]
            lines += ["", f"Floor (every prunable group at its best channel, {floor['macs'] / 1e6:.2f} MMACs): "
                      + "; ".join(parts) + ". This is what channel pruning cannot remove on that runtime: "
                      "per-op and per-invoke costs, the input layer and the classifier."]
        lines += _breakdown_markdown(r) + [""]
    if analysis:
        lines += [ANALYSIS_BEGIN, analysis.strip(), ANALYSIS_END, ""]
    runs = sorted({(r.get("command", report["command"]), r.get("run_date", report["date"]))
                   for r in report["models"].values()}, key=lambda t: t[1])
    lines += ["Reproduce: " + "; ".join(f"`{c}` ({d})" for c, d in runs)
              + f". Last run's wall time {report['wall_seconds'] / 60:.1f} min.", ""]
    return "\n".join(lines)


def read_analysis(path: Path) -> str:
    """The hand-written analysis kept between the markers of an existing report, or an empty string."""
    if not path.exists():
        return ""
    text = path.read_text(encoding="utf-8")
    start, end = text.find(ANALYSIS_BEGIN), text.find(ANALYSIS_END)
    return text[start + len(ANALYSIS_BEGIN):end] if 0 <= start < end else ""


def _latency_rows(configs: list[dict], keys: Sequence[str], with_sizes: bool) -> list[str]:
    """Table rows: per config, ``ms [p10–p90]`` and speedup per runtime key (and efficiency after the first)."""
    rows = []
    for c in configs:
        cells = [c["label"]]
        if with_sizes:
            cells += [str(c["filters_kept"]), f"{c['params']:,}", f"{c['macs'] / 1e6:.1f}", _x(c["mac_reduction"])]
        for i, key in enumerate(keys):
            st = c["latency"].get(key) or {}
            cells += [_ms(st), f"{_x(st.get('speedup'))} ({_x(st.get('speedup_p10'))})"]
            if i == 0:
                cells.append(_x(st.get("speedup_per_mac_reduction") if st else None))
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def _breakdown_markdown(r: dict) -> list[str]:
    lines = []
    if r.get("breakdown_summary"):
        b = r["breakdown_summary"]
        slow = ", ".join(f"{x['segment']} {x['ms_pruned']:.3f} ms ({_x(x['speedup'])}x faster, "
                         f"{_x(x['mac_reduction'])}x fewer MACs)" for x in b["slowest_pruned_segments"])
        full = [c["latency"].get("tflite_fp32_t1_cpu", {}).get("median_ms") for c in r["configs"]
                if c["label"] in (r["shortfall_check"]["config"], r["configs"][0]["label"])]
        whole = (f" (the whole models: {full[0]:.3f} → {full[-1]:.3f} ms)" if len(full) == 2 and None not in full
                 else "")
        lines += ["", "Breakdown summary: sum of segments "
                      f"{b['total_ms']['base']:.3f} → {b['total_ms']['pruned']:.3f} ms"
                      f"{whole}; "
                      f"fixed cost per invoke (the {b['fixed_ms']['segment']} segment) {b['fixed_ms']['base']:.3f} → "
                      f"{b['fixed_ms']['pruned']:.3f} ms; MAC-free segments ({', '.join(b['mac_free_segments'])}) "
                      f"{b['mac_free_ms']['base']:.3f} → {b['mac_free_ms']['pruned']:.3f} ms; time if every layer "
                      f"sped up by its MAC reduction: {b['mac_ideal_ms']:.3f} ms. Slowest pruned segments: {slow}."]
    if r.get("breakdown"):
        lines += ["", "Per-segment TFLite fp32 1-thread median ms in thread CPU time (each segment timed as a "
                      "standalone model on its real input activations; wall-clock medians in the JSON) and MACs, "
                      "0% vs the most pruned config:", "",
                  "| segment | kinds | ms 0% | ms pruned | speedup | MMACs 0% | MMACs pruned | MAC red. |",
                  "|---|---|---|---|---|---|---|---|"]
        for row in r["breakdown"]:
            lines.append(f"| {row['segment']} | {', '.join(row['kinds'])} | {row['ms_base']:.3f} | "
                         f"{row['ms_pruned']:.3f} | {_x(row['speedup'])} | {row['macs_base'] / 1e6:.2f} | "
                         f"{row['macs_pruned'] / 1e6:.2f} | {_x(row['mac_reduction'])} |")
    elif r.get("layer_macs") and not r["shortfall_check"].get("met", True):
        lines += ["", "| layer | channels in | channels out | MMACs 0% | MMACs pruned | reduction |",
                  "|---|---|---|---|---|---|"]
        for row in r["layer_macs"]:
            lines.append(f"| {row['layer']} | {row['channels_in'][0]}→{row['channels_in'][1]} | "
                         f"{row['channels_out'][0]}→{row['channels_out'][1]} | {row['macs_0'] / 1e6:.2f} | "
                         f"{row['macs'] / 1e6:.2f} | {_x(row['reduction'])} |")
    for label, rows in (r.get("breakdown_macs") or {}).items():
        total = {t: sum(x[f"ms_{t}"] for x in rows) for t in ("base", "pruned")}
        lines += ["", f"Per segment at {label} (the same measurement; sum of segments {total['base']:.3f} → "
                      f"{total['pruned']:.3f} ms), with each segment's parameters:", "",
                  "| segment | ms 0% | ms | speedup | MMACs 0% | MMACs | MAC red. | kparams 0% | kparams |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for row in rows:
            lines.append(f"| {row['segment']} | {row['ms_base']:.3f} | {row['ms_pruned']:.3f} | {_x(row['speedup'])} | "
                         f"{row['macs_base'] / 1e6:.2f} | {row['macs_pruned'] / 1e6:.2f} | "
                         f"{_x(row['mac_reduction'])} | {row.get('params_base', 0) / 1e3:.1f} | "
                         f"{row.get('params_pruned', 0) / 1e3:.1f} |")
    return lines


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


def load_data(n_calibration: int) -> dict[str, np.ndarray]:
    """CIFAR-10 images (uint8): calibration (train), 32 export-check images and the timed sample (test)."""
    x_train, _ = common.load_split("train", limit=n_calibration)
    x_test, _ = common.load_split("test", limit=32)
    return {"calibration": x_train, "check": x_test, "sample": x_test[:1]}


def write_report(report: dict[str, Any], out: Path) -> str:
    """Writes ``out``.md from ``report``, keeping the hand-written analysis already there; returns the text."""
    markdown = to_markdown(report, read_analysis(out.with_suffix(".md")))
    write_atomic(out.with_suffix(".md"), markdown)
    return markdown


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
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
