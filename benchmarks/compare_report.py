"""The report of ``benchmarks.compare``: ``RESULTS.md`` and one accuracy-vs-MACs plot per profile.

Reads every ``<results-dir>/<profile>/baseline_*.json`` and run JSON written by ``benchmarks.compare``; a
profile folder is one holding a baseline file. A hand-written ``<profile>/analysis.md`` (what the numbers
say, written after reading them) is copied in below the profile's tables. Regenerate the page alone with
``.venv/bin/python -m benchmarks.compare --report-only``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.compare_spec import METHODS

PLOT_NAME = "accuracy_vs_macs.png"
ANALYSIS_NAME = "analysis.md"
_MARKERS = "osD^v<>P*X"


def collect(results_dir: Path) -> dict[str, dict[str, Any]]:
    """``{profile: {"baselines": {model: record}, "runs": [record, ...]}}`` from the JSON files, sorted."""
    profiles: dict[str, dict[str, Any]] = {}
    folders = Path(results_dir).iterdir() if Path(results_dir).is_dir() else ()
    for folder in sorted(p for p in folders if p.is_dir()):
        baselines = {}
        for path in sorted(folder.glob("baseline_*.json")):
            record = json.loads(path.read_text(encoding="utf-8"))
            if record.get("kind") == "baseline":
                baselines[record["model"]] = record
        if not baselines:
            continue
        runs = []
        for path in sorted(folder.glob("*.json")):
            record = json.loads(path.read_text(encoding="utf-8"))
            if record.get("kind") == "run":
                runs.append(record)
        tuning = []
        for path in sorted((Path(results_dir) / f"{folder.name}-tuning").glob("*/*.json")):
            record = json.loads(path.read_text(encoding="utf-8"))
            if record.get("kind") == "run":
                tuning.append(record)
        profiles[folder.name] = {"baselines": baselines, "runs": runs, "folder": folder, "tuning": tuning}
    return profiles


def _setting(record: dict[str, Any]) -> str:
    overrides = record.get("overrides") or {}
    return ", ".join(f"{k}={v}" for k, v in sorted(overrides.items())) or "profile default"


def _tuning_markdown(entry: dict[str, Any]) -> list[str]:
    """Each tuned (model, budget, method) with the profile's default run beside its ``--set`` variants."""
    tuned = entry.get("tuning") or []
    if not tuned:
        return []
    keys = sorted({(r["model"], r["budget_text"], r["method"]) for r in tuned})
    lines = ["", "### Tuning", "",
             "Runs with `--set FIELD=VALUE` (results in `<profile>-tuning/<setting>/`): the same baseline, data "
             "and epochs, one setting changed. The baselines' one knob is the fine-tune learning rate; "
             "EasiEdge's are rho, the Z-step spacing and the calibration size.", "",
             "| model | budget | method | setting | top-1 before FT % | top-1 after FT % | MAC reduction |",
             "|---|---|---|---|---|---|---|"]
    for model, budget, method in keys:
        rows = [r for r in entry["runs"] if (r["model"], r["budget_text"], r["method"]) == (model, budget, method)]
        rows += [r for r in tuned if (r["model"], r["budget_text"], r["method"]) == (model, budget, method)]
        for r in rows:
            lines.append(f"| {model} | {budget} | {method} | {_setting(r)} | {_pct(r['accuracy_before_finetune'])} | "
                         f"{_pct(r['accuracy_after_finetune'])} | {r['mac_reduction']:.2f}x |")
    return lines


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _load_range(records) -> str:
    loads = [r["load_average"]["before"][0] for r in records if "load_average" in r]
    loads += [r["latency"]["load_average"][0] for r in records if "latency" in r]
    return f"{min(loads):.1f}–{max(loads):.1f}" if loads else "–"


def _profile_markdown(name: str, entry: dict[str, Any], report_path: Path) -> list[str]:
    baselines, runs = entry["baselines"], entry["runs"]
    records = [*baselines.values(), *runs]
    config = next(iter(baselines.values()))["profile_config"]
    machines = sorted({f"{r['machine'].get('cpu_model')} ({r['machine'].get('cpu_count_usable')} usable CPUs, "
                       f"{'GPU ' + ', '.join(r['machine']['gpus']) if r['machine'].get('gpus') else 'no GPU'})"
                       for r in records})
    dates = sorted(r["date"] for r in records)
    epochs_note = (f"{config['finetune_epochs']} epochs after the baseline for every method (EasiEdge: "
                   f"{config['admm_epochs']} ADMM + {config['finetune_epochs'] - config['admm_epochs']} fine-tune)")
    lines = [f"## Profile `{name}`", "",
             f"Reproduce: `.venv/bin/python -m benchmarks.compare --profile {name}`. "
             f"Widths {', '.join(f'{m} {w:g}' for m, w in config['widths'].items())}; "
             f"{config['train_images'] or 50000} training images ({config['val_split']:g} held out for the baseline's "
             f"epoch choice), baseline trained {config['baseline_epochs']} epochs; "
             f"{epochs_note}, SGD momentum 0.9 cosine from lr {config['finetune_lr']:g} to 0; "
             f"{config['calibration_images']} calibration images; top-1 on the first "
             f"{config['test_images'] or 10000} test images; TFLite float32, XNNPACK, 1 thread, batch 1.", "",
             f"Machine: {'; '.join(machines)}. Runs from {dates[0]} to {dates[-1]}, load average "
             f"{_load_range(records)} (2-core machine shared with other jobs: read latencies with it).", "",
             "| model | width | top-1 % | params | MACs | TFLite ms |", "|---|---|---|---|---|---|"]
    for model, b in baselines.items():
        lines.append(f"| {model} | {b['width']:g} | {_pct(b['accuracy'])} | {b['params']:,} | {b['macs']:,} | "
                     f"{b['latency']['median_ms']:.3f} |")
    plot = entry["folder"] / PLOT_NAME
    if plot.exists():
        lines += ["", f"![accuracy vs MAC reduction]({Path(os.path.relpath(plot, report_path.parent)).as_posix()})"]
    order = {m: i for i, m in enumerate(METHODS)}
    for model in baselines:
        rows = sorted((r for r in runs if r["model"] == model), key=lambda r: (
            r["budget"]["kind"] != "filters", r["budget"]["ratio"], order.get(r["method"], 99)))
        if not rows:
            continue
        base = baselines[model]
        lines += ["", f"### {model}", "",
                  "| budget | method | top-1 before FT % | top-1 after FT % | Δ vs baseline | filters removed | "
                  "MACs removed | MAC reduction | params | TFLite ms | speedup | pruning s | total s |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            met = r["budget_met"]
            delta = 100 * (r["accuracy_after_finetune"] - base["accuracy"])
            speedup = base["latency"]["median_ms"] / r["latency"]["median_ms"]
            lines.append(
                f"| {r['budget']['kind']} {r['budget']['ratio']:g} | {r['method']} | "
                f"{_pct(r['accuracy_before_finetune'])} | {_pct(r['accuracy_after_finetune'])} | {delta:+.1f} | "
                f"{_pct(met['filter_ratio'])}% | {_pct(met['macs_ratio'])}% | {r['mac_reduction']:.2f}x | "
                f"{r['params']:,} | {r['latency']['median_ms']:.3f} | {speedup:.2f}x | {r['seconds']['prune']:.0f} | "
                f"{r['seconds']['total']:.0f} |")
    lines += _tuning_markdown(entry)
    analysis = entry["folder"] / ANALYSIS_NAME
    if analysis.exists():
        lines += ["", analysis.read_text(encoding="utf-8").strip()]
    lines += ["", "Methods: " + "; ".join(f"`{k}` {m.label}" for k, m in METHODS.items()) + ". "
              "`pruning s` is the time to choose the channels (scoring + selection; EasiEdge: the ADMM epochs), "
              "`total s` adds the fine-tune. `uniform_l1` at a MAC budget uses the smallest uniform ratio that "
              "meets it (found by bisection).", ""]
    return lines


def plot(entry: dict[str, Any], path: Path) -> Path | None:
    """Top-1 after fine-tune against MAC reduction, one panel per model (Agg canvas): per method a line
    through its MAC-budget runs and hollow markers for its filter-budget runs."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    models = [m for m in entry["baselines"] if any(r["model"] == m for r in entry["runs"])]
    if not models:
        return None
    fig = Figure(figsize=(5.5 * len(models), 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    for ax, model in zip(axes, models):
        for i, method in enumerate(METHODS):
            runs = [r for r in entry["runs"] if r["model"] == model and r["method"] == method]
            marker, color = _MARKERS[i % len(_MARKERS)], f"C{i}"
            # MAC budgets (the comparable runs) as a line; filter budgets as hollow markers, unconnected:
            # their MAC reductions differ from method to method
            for kind, style in (("macs", {"linestyle": "-"}), ("filters", {"linestyle": "none",
                                                                              "markerfacecolor": "none"})):
                points = sorted((r["mac_reduction"], 100 * r["accuracy_after_finetune"]) for r in runs
                                if r["budget"]["kind"] == kind)
                if points:
                    ax.plot(*zip(*points), marker=marker, color=color, **style,
                            label=method if kind == "macs" or not any(r["budget"]["kind"] == "macs" for r in runs)
                            else None)
        ax.axhline(100 * entry["baselines"][model]["accuracy"], color="grey", linestyle="--", label="baseline")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("MAC reduction (baseline MACs / slim MACs)")
        ax.set_ylabel("top-1 after fine-tune (%)")
        ax.set_title(f"{model} (width {entry['baselines'][model]['width']:g})")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, title="filled: MAC budgets\nhollow: filter budgets", title_fontsize=7)
    fig.savefig(path, dpi=110)
    os.chmod(path, 0o644)
    return path


def to_markdown(profiles: dict[str, dict[str, Any]], report_path: Path) -> str:
    lines = ["# Pruning methods compared on CIFAR-10", "",
             "Generated by `benchmarks/compare.py` from its result files; do not edit by hand. Every method "
             "prunes the same trained baseline and trains the same number of epochs after it.", ""]
    if not profiles:
        lines += ["No results yet: run `.venv/bin/python -m benchmarks.compare --profile cpu` (see "
                  "`benchmarks/README.md`, section compare).", ""]
    for name, entry in profiles.items():
        lines += _profile_markdown(name, entry, report_path)
    return "\n".join(lines)


def write(results_dir: Path, report_path: Path) -> list[Path]:
    """Redraws every profile's plot and rewrites the Markdown report; returns the files written."""
    profiles = collect(results_dir)
    written = [p for entry in profiles.values() if (p := plot(entry, entry["folder"] / PLOT_NAME)) is not None]
    common.write_text_atomic(Path(report_path), to_markdown(profiles, Path(report_path)))
    return [*written, Path(report_path)]
