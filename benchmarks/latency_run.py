"""The runner of ``benchmarks.latency``: one model's configurations scored, pruned, exported and timed.

For each configuration (filter ratios, ``round_to`` multiples, MAC budgets, the 1-channel floor) the model
is selected and slimmed, exported (TFLite fp32 / int8, ONNX) and all of them are timed round-robin
(``latency_timing``); the checks against the MAC reduction and, for chains, the per-layer breakdown
(``latency_breakdown``) follow.
"""
from __future__ import annotations

import datetime as _dt
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common
from benchmarks.latency_breakdown import is_chain, layer_breakdown, summarize_breakdown
from benchmarks.latency_spec import FLOOR_LABEL, TARGET_EFFICIENCY, TARGET_SPEEDUP, config_label, model_specs
from benchmarks.latency_timing import latency_jobs, load_average, time_round_robin


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
    record: dict[str, Any] = {"builder": spec["builder"], "input": input_desc, "load_before": load_average(),
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
                label = config_label(ratio, round_to, kind)
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
        load_mid = load_average()
        timed = time_round_robin(jobs, args.runs, args.rounds)
        _attach_latency(configs, timed)
        top = config_label(max(args.ratios), None)
        base_label = config_label(min(args.ratios), None)
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
            exported: dict = {}  # the 0% model's segments, exported once for every breakdown below
            record["breakdown"] = layer_breakdown(slim_models[base_label], slim_models[top], folder,
                                                  sample, args.runs, args.rounds, args.warmup,
                                                  fine=not args.quick, exported=exported)
            record["breakdown_summary"] = summarize_breakdown(record["breakdown"])
            # the MAC-budget configurations: where their time goes against the same 0% segments (the same files)
            record["breakdown_macs"] = {}
            for k, c in enumerate(c for c in configs if c["budget"]["kind"] == "macs"):
                log(f"[{name}] breakdown by layer at {c['label']}")
                sub = folder / f"breakdown_macs_{k}"
                sub.mkdir()
                record["breakdown_macs"][c["label"]] = layer_breakdown(
                    slim_models[base_label], slim_models[c["label"]], sub, sample, args.runs, args.rounds,
                    args.warmup, fine=not args.quick, exported=exported)
    record.update({"configs": configs, "load_before_timing": load_mid, "load_after": load_average(),
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


def load_data(n_calibration: int) -> dict[str, np.ndarray]:
    """CIFAR-10 images (uint8): calibration (train), 32 export-check images and the timed sample (test)."""
    x_train, _ = common.load_split("train", limit=n_calibration)
    x_test, _ = common.load_split("test", limit=32)
    return {"calibration": x_train, "check": x_test, "sample": x_test[:1]}
