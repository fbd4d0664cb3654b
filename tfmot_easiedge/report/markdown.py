"""``render_markdown(report)``: the report as Markdown tables for people (``report.md``)."""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines + [""]


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _change(before: int, after: int) -> str:
    return f"{(after - before) / before:+.1%}" if before else "–"


def _percent(value) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


def _budget(budget: Mapping) -> str:
    ratio = budget.get("ratio")
    return f"{budget['kind']} {ratio:.0%} removed" if isinstance(ratio, (int, float)) else str(budget["kind"])


def _summary(report: Mapping) -> list[str]:
    s = report["summary"]
    rows = [("parameters", s["params_before"], s["params_after"], _change(s["params_before"], s["params_after"])),
            ("MACs per example", s["macs_before"], s["macs_after"], _change(s["macs_before"], s["macs_after"])),
            ("prunable filters", s["prunable_filters_before"], s["prunable_filters_after"],
             _change(s["prunable_filters_before"], s["prunable_filters_after"]))]
    return ["## Summary", "", *_table(("", "before", "after", "change"), rows),
            f"{100 * s['prunable_share']:.1f}% of the model's filters are in prunable groups.", ""]


def _stages(report: Mapping) -> list[str]:
    rows = [(st["stage"], _percent(st["accuracy"]),
             _percent(st["accuracy_before_bn"]) if st.get("accuracy_before_bn") is not None else "",
             st.get("batchnorm", ""), st["macs"], st["params"], st.get("note", "")) for st in report["stages"]]
    return ["## Accuracy and cost per stage", "",
            "Every accuracy is measured on the same validation data; the BatchNorm column says whether the "
            "stage's statistics were re-estimated before measuring (the baseline is then measured the same way "
            "as the slim model).", "",
            *_table(("stage", "accuracy", "before BN re-estimation", "BatchNorm", "MACs", "params", "what"), rows)]


def _latency(report: Mapping) -> list[str]:
    if not report["latency"]:
        return []
    rows = [(r["stage"], r["runtime"], r["threads"], r["batch_size"], f"{r['median_ms']:.3f}", f"{r['p10_ms']:.3f}",
             f"{r['p90_ms']:.3f}", r["runs"]) for r in report["latency"]]
    return ["## Latency (ms per batch)", "",
            *_table(("stage", "runtime", "threads", "batch", "median", "p10", "p90", "runs"), rows)]


def _layers(report: Mapping) -> list[str]:
    rows = []
    for r in report["layers"]:
        kept = (f"{r['filters_after'] / r['filters_before']:.0%}"
                if r["filters_before"] and r["filters_after"] is not None else "–")
        rows.append((r["name"], r["class_name"], r["group"] or "–", r["filters_before"], r["filters_after"], kept,
                     r["params_before"], r["params_after"], r["macs_before"], r["macs_after"]))
    header = ("layer", "class", "group", "filters before", "filters after", "kept", "params before", "params after",
              "MACs before", "MACs after")
    return ["## Filters per layer", "", *_table(header, rows)]


def _skipped(report: Mapping) -> list[str]:
    if not report["skipped"]:
        return ["## Skipped layers", "", "None: every group of filters was prunable.", ""]
    rows = [(r["name"], "layer analysis stopped" if r["kind"] == "stop" else "group kept whole",
             ", ".join(r["layers"][:4]) + (" …" if len(r["layers"]) > 4 else ""), r["reason"])
            for r in report["skipped"]]
    return ["## Skipped layers and why", "", *_table(("name", "kind", "layers", "reason"), rows)]


def _quantization(report: Mapping) -> list[str]:
    if not report.get("quantization"):
        return []

    def pct(v):
        return None if v is None else f"{100 * v:.2f}%"

    rows = [("QAT" if r["method"] == "qat" else "post-training", r["epochs"] if r["method"] == "qat" else "–",
             pct(r["accuracy"]), pct(r["float_accuracy"]), pct(r["top1_agreement"]), r["size_bytes"], r["path"])
            for r in report["quantization"]]
    return ["## int8", "", *_table(("method", "QAT epochs", "int8 top-1", "float top-1", "agreement", "bytes",
                                    "file"), rows)]


def _timings(report: Mapping) -> list[str]:
    if not report["timings"]:
        return []
    rows = [(k, f"{v:.2f}") for k, v in report["timings"].items()]
    return ["## Timings", "", *_table(("step", "seconds"), rows)]


def render_markdown(report: Mapping) -> str:
    """The report as Markdown: summary, accuracy/cost per stage, latency, filters per layer, skipped layers.

    Example:
        >>> from tfmot_easiedge.report.markdown import _table
        >>> _table(("a", "b"), [(1, None)])
        ['| a | b |', '| --- | --- |', '| 1 | – |', '']
    """
    m = report["model"]
    head = [f"# Pruning report: {m['name']}", "",
            f"Budget: {_budget(report['budget'])} · importance: {report['importance']} · "
            f"input {tuple(m['input_shape'])} · tfmot-easiedge {report['library_version']} · {report['created']}", ""]
    parts = [head, _summary(report), _stages(report), _latency(report), _quantization(report), _layers(report),
             _skipped(report), _timings(report)]
    return "\n".join(line for part in parts for line in part)
