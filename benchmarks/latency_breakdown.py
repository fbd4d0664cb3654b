"""The per-layer breakdown of ``benchmarks.latency``: a chain cut into segments, each timed standalone.

Cutting a VGG-style chain after every ReLU / pooling and timing each segment at 0% and pruned shows where
a pruned model's time goes when its speedup falls short of its MAC reduction.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.latency_timing import thread_time_latency, time_round_robin

# Layers after which a chain model is cut for the per-layer breakdown (XNNPACK fuses conv+BN+ReLU).
_CUT_TYPES = ("ReLU", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D")


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
                    warmup: int, fine: bool = True, exported: dict | None = None) -> list[dict[str, Any]]:
    """Per segment of a chain (conv+BN+ReLU, pool, ...): MACs and TFLite fp32 1-thread ms, at 0% and pruned.

    Each segment (the layers after one cut up to the next) becomes a standalone model on the real
    activations of ``sample`` at its input, is exported (float32, unverified: the full models were
    verified) and timed, in thread CPU time (``ms_*``, see :func:`thread_time_latency`) and wall clock
    (``wall_ms_*``); all segments of both models are timed round-robin. The first segment (the input's
    rescaling) shows the interpreter's fixed cost per ``invoke``, which every segment also pays.

    ``exported`` (a dict kept across calls, whose files must outlive them) holds each model's exported
    segments: several breakdowns against the same 0% model export its segments once and time those files.
    """
    import tfmot_easiedge as te
    from tfmot_easiedge import measure_latency

    parts = segments(base, cut_points(base, fine))
    jobs, params = {}, {}
    for tag, model in (("base", base), ("pruned", pruned)):
        for i, (path, feed, n_params) in enumerate(_exported_segments(model, parts, folder, tag, sample, exported)):
            params[tag, i] = n_params
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


def _exported_segments(model, parts: list[list[str]], folder: Path, tag: str, sample: np.ndarray,
                       exported: dict | None) -> list[tuple[Path, np.ndarray, int]]:
    """``(tflite path, input activations, params)`` per segment of ``model``, from ``exported`` when there."""
    import keras

    from tfmot_easiedge import export

    key = (id(model), tuple(tuple(names) for names in parts))
    hit = exported.get(key) if exported is not None else None
    if hit is not None and hit[0] is model:  # the model is kept in the entry, so its id is not reused
        return hit[1]
    out = []
    for i, names in enumerate(parts):
        feed = keras.Model(model.input, model.get_layer(names[0]).input)(sample, training=False)
        seg = segment_model(model, names)
        n_params = int(seg.count_params())
        path = export.tflite(seg, folder / f"segment_{tag}_{i}.tflite", verify=False).path
        out.append((path, np.asarray(feed), n_params))
    if exported is not None:
        exported[key] = (model, out)
    return out


# Layer types whose segments do no multiply-accumulates: their time does not shrink with the MACs.
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
