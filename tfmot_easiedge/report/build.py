"""``build_report``: what pruning did to a model, as a plain JSON-able dict in the :data:`REPORT_SCHEMA` format."""
from __future__ import annotations

import datetime
import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from tfmot_easiedge._version import __version__
from tfmot_easiedge.graph.analysis import ModelAnalysis
from tfmot_easiedge.graph.model_graph import ModelGraph
from tfmot_easiedge.latency.measure import LatencyResult
from tfmot_easiedge.metrics.counting import count_macs, count_params, layer_macs
from tfmot_easiedge.plan import PruningPlan
from tfmot_easiedge.report.schema import REPORT_FORMAT, REPORT_VERSION
from tfmot_easiedge.selection.budgets import as_budget

if TYPE_CHECKING:
    import keras

    from tfmot_easiedge.selection.budgets import BudgetSpec

_LATENCY_FIELDS = ("runtime", "threads", "batch_size", "median_ms", "p10_ms", "p90_ms", "mean_ms", "std_ms", "runs")


def _finite(value) -> float | None:
    """A float, or None for None/NaN/inf (JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _budget(budget) -> dict:
    """The budget's ``describe()`` dict; a dict with ``"kind"`` is a description already (of any kind, a user's
    unregistered one included) and is kept as it is."""
    if isinstance(budget, Mapping) and "kind" in budget:
        return dict(budget)
    return dict(as_budget(budget).describe())


def _model_info(original, slim_model) -> dict:
    inputs, outputs = list(original.inputs or []), list(original.outputs or [])
    shape = [None if d is None else int(d) for d in inputs[0].shape[1:]] if inputs else []
    units = outputs[0].shape[-1] if len(outputs) == 1 else None
    return {"name": original.name, "slim_name": slim_model.name, "input_shape": shape,
            "output_units": None if units is None else int(units)}


def _producer_groups(analysis: ModelAnalysis) -> dict[str, str]:
    return {layer: gid for gid, g in analysis.groups.items() for layer in g.producers}


def _params(layer) -> int:
    return int(layer.count_params()) if getattr(layer, "weights", None) else 0


def _layer_rows(original, slim_model, analysis: ModelAnalysis, slim_graph: ModelGraph) -> list[dict]:
    """One row per layer that makes filters or costs MACs, matched to the slim layer of the same name."""
    graph = analysis.graph
    macs0, macs1 = layer_macs(original, graph=graph), layer_macs(slim_model, graph=slim_graph)
    slim_nodes = {n.name: n for n in slim_graph.nodes}
    producer_group = _producer_groups(analysis)
    rows, seen = [], set()
    for node in graph.nodes:
        if node.name in seen or not (node.name in producer_group or node.name in macs0):
            continue
        seen.add(node.name)
        twin = slim_nodes.get(node.name) or slim_nodes.get(getattr(node.layer, "name", ""))
        gid = producer_group.get(node.name)
        after = slim_graph.tensors[twin.outputs[0]].channels if twin is not None else None
        rows.append({
            "name": node.name, "class_name": type(node.layer).__name__, "group": gid,
            "prunable": bool(gid is not None and analysis.groups[gid].prunable),
            "filters_before": graph.tensors[node.outputs[0]].channels, "filters_after": after,
            "params_before": _params(node.layer), "params_after": _params(twin.layer) if twin is not None else 0,
            "macs_before": int(macs0.get(node.name, 0)),
            "macs_after": int(macs1.get(twin.name, 0)) if twin is not None else 0})
    return rows


def _groups(analysis: ModelAnalysis, plan: PruningPlan) -> list[dict]:
    return [{"id": gid, "size": g.size, "kept": len(plan.kept.get(gid, range(g.size))), "prunable": g.prunable,
             "producers": list(g.producers), "members": list(g.members), "reasons": list(g.reasons),
             "approximate": g.approximate}
            for gid, g in analysis.groups.items() if g.producers]


def _skipped(analysis: ModelAnalysis) -> list[dict]:
    """Stops (layers channels are not followed through), then unprunable groups of filters, with the reason."""
    rows: list[dict[str, Any]] = [
        {"kind": "stop", "name": s.layer, "class_name": s.class_name, "layers": [s.layer], "reason": s.reason}
        for s in analysis.stops]
    classes = {n.name: type(n.layer).__name__ for n in analysis.graph.nodes}
    for gid, g in analysis.groups.items():
        if g.producers and not g.prunable:
            rows.append({"kind": "group", "name": gid, "class_name": classes.get(g.producers[0]),
                         "layers": list(g.producers), "reason": "; ".join(g.reasons) or "not prunable"})
    return rows


def _stage(entry: Mapping) -> dict:
    name = entry.get("stage", entry.get("name"))
    if not isinstance(name, str):
        raise ValueError(f"each stage needs a 'stage' (or 'name') string; got {dict(entry)!r}")
    row = {"stage": name, "accuracy": _finite(entry.get("accuracy")), "macs": int(entry["macs"]),
           "params": int(entry["params"])}
    if "loss" in entry:
        row["loss"] = _finite(entry["loss"])
    for key in ("note", "batchnorm"):
        if entry.get(key) is not None:
            row[key] = str(entry[key])
    if entry.get("accuracy_before_bn") is not None:
        row["accuracy_before_bn"] = _finite(entry["accuracy_before_bn"])
    return row


def _latency(latency: Mapping[str, LatencyResult | Sequence[LatencyResult]] | None) -> list[dict]:
    rows = []
    for stage, results in (latency or {}).items():
        for r in [results] if isinstance(results, LatencyResult) else results:
            rows.append({"stage": str(stage), **{f: getattr(r, f) for f in _LATENCY_FIELDS}})
    return rows


def _history(history: Mapping | None) -> dict:
    return {str(stage): {str(k): [_finite(v) for v in values] for k, values in (h or {}).items()}
            for stage, h in (history or {}).items()}


def _quantization(rows: Sequence[Mapping]) -> list[dict]:
    """One row per int8 file: ``method`` ``"ptq"`` or ``"qat"`` (``QATResult.as_dict()`` fits as it is)."""
    out = []
    for row in rows:
        if row.get("method") not in ("ptq", "qat"):
            raise ValueError(f"each quantization row needs method 'ptq' or 'qat'; got {row.get('method')!r}")
        entry: dict[str, Any] = {"method": row["method"], "epochs": int(row.get("epochs") or 0)}
        for key in ("accuracy", "float_accuracy", "top1_agreement"):
            entry[key] = _finite(row.get(key))
        entry["size_bytes"] = int(row.get("size_bytes") or 0)
        entry["path"] = str(row.get("path", ""))
        out.append(entry)
    return out


def _summary(original, slim_model, analysis, plan, slim_graph) -> dict:
    p0, p1 = count_params(original), count_params(slim_model)
    m0, m1 = count_macs(original, graph=analysis.graph), count_macs(slim_model, graph=slim_graph)
    prunable = analysis.prunable_groups
    f0 = sum(g.size for g in prunable.values())
    f1 = sum(len(plan.kept.get(gid, range(g.size))) for gid, g in prunable.items())
    return {"params_before": p0, "params_after": p1, "params_ratio": p1 / p0 if p0 else 0.0,
            "macs_before": m0, "macs_after": m1, "macs_ratio": m1 / m0 if m0 else 0.0,
            "prunable_filters_before": f0, "prunable_filters_after": f1, "filters_removed": f0 - f1,
            "prunable_share": analysis.prunable_share()}


def build_report(original: keras.Model, slim_model: keras.Model, plan: PruningPlan, analysis: ModelAnalysis, *,
                 budget: BudgetSpec, importance: str,
                 stages: Sequence[Mapping], latency: Mapping[str, Any] | None = None,
                 timings: Mapping[str, float] | None = None, history: Mapping[str, Mapping] | None = None,
                 data: Mapping | None = None, config: Mapping | None = None,
                 quantization: Sequence[Mapping] | None = None) -> dict:
    """Builds the pruning report of ``original`` -> ``slim_model`` (see :data:`REPORT_SCHEMA`).

    Args:
        original: the model before pruning.
        slim_model: the pruned model (layers keep the names of the original's).
        plan: the :class:`PruningPlan` that made ``slim_model``.
        analysis: :func:`tfmot_easiedge.analyze` of ``original``.
        budget: the budget met: a ``FilterBudget``/``MacsBudget``, ``"filters:0.5"``, or its ``describe()`` dict.
        importance: the importance criterion's name, e.g. ``"tbaa"``.
        stages: one dict per stage in order (``"stage"`` or ``"name"``: ``"baseline"``, ``"admm"``,
            ``"hard_prune"``, ``"finetune"``, ``"slim"``...; ``"accuracy"`` (None when not measured),
            ``"macs"``, ``"params"``, optionally ``"loss"``).
        latency: ``{stage: LatencyResult or [LatencyResult, ...]}``.
        timings: ``{step: seconds}``.
        history: ``{stage: keras History.history}`` (non-finite values become null).
        data: a free-form description of the data (source, example counts, rescale).
        config: the run's settings (free form, JSON-able).
        quantization: the int8 files and their top-1, one dict per file with ``method`` ``"ptq"`` (post-training,
            e.g. ``export.tflite(..., quantization="int8")`` and its measured accuracy) or ``"qat"``
            (``te.qat(...).as_dict()``); ``epochs``, ``accuracy``, ``float_accuracy``, ``top1_agreement``,
            ``size_bytes``, ``path`` as known.

    Returns:
        A JSON-able dict; check it with :func:`validate_report`, write it with :func:`write_report`.

    Example:
        >>> import keras, numpy as np, tfmot_easiedge as te
        >>> x = keras.Input((8, 8, 3))
        >>> h = keras.layers.Conv2D(6, 3, name="c1")(x)
        >>> m = keras.Model(x, keras.layers.Dense(2, name="head")(keras.layers.Flatten()(h)))
        >>> a = te.analyze(m)
        >>> plan = te.select(a, te.importance.l1_norm(m, analysis=a), te.FilterBudget(0.5))
        >>> small = te.slim(m, plan, analysis=a)
        >>> r = build_report(m, small, plan, a, budget="filters:0.5", importance="l1",
        ...                  stages=[{"stage": "slim", "accuracy": None, "macs": te.count_macs(small),
        ...                           "params": te.count_params(small)}])
        >>> [(row["name"], row["filters_before"], row["filters_after"]) for row in r["layers"]]
        [('c1', 6, 3), ('head', 2, 2)]
    """
    slim_graph = ModelGraph.from_model(slim_model)
    layers = _layer_rows(original, slim_model, analysis, slim_graph)
    report = {
        "format": REPORT_FORMAT, "version": REPORT_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "library_version": __version__, "model": _model_info(original, slim_model), "budget": _budget(budget),
        "importance": str(importance), "summary": _summary(original, slim_model, analysis, plan, slim_graph),
        "groups": _groups(analysis, plan), "layers": layers, "skipped": _skipped(analysis),
        "stages": [_stage(s) for s in stages], "latency": _latency(latency),
        "timings": {str(k): float(v) for k, v in (timings or {}).items()}, "history": _history(history)}
    if data is not None:
        report["data"] = dict(data)
    if config is not None:
        report["config"] = dict(config)
    if quantization:
        report["quantization"] = _quantization(quantization)
    return report
