"""The report of ``benchmarks.latency``: ``latency.md`` from the results, keeping the hand-written analysis.

Tables per model (wall clock and thread CPU time), the checks, the floor and the per-layer breakdown;
``--report-only`` rewrites it from ``latency.json`` alone.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.latency_spec import ANALYSIS_BEGIN, ANALYSIS_END, CPU_COLUMNS, WALL_COLUMNS


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


def write_report(report: dict[str, Any], out: Path) -> str:
    """Writes ``out``.md from ``report``, keeping the hand-written analysis already there; returns the text."""
    markdown = to_markdown(report, read_analysis(out.with_suffix(".md")))
    common.write_text_atomic(out.with_suffix(".md"), markdown)
    return markdown
