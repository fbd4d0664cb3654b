"""``LatencyTable``: measured latency of a model's segments at a grid of widths, and its predictions.

A *segment* is one convolution, depthwise convolution or Dense layer with the BatchNormalization and
activation that the runtime folds into it. For each segment the table holds its own latency (milliseconds,
the per-invoke cost taken off) at a grid of input x output channel counts, interpolated bilinearly between
grid points; where the runtime's kernels work in tiles of output channels (a *staircase*: 65 channels cost
what 72 cost), the width is rounded up to the measured ``step`` first. On top of the segments come the
per-invoke cost, and the other operators (pooling, Add, Flatten, softmax...): a fixed cost each plus a share
of what is left of the measured full model, in proportion to the activation elements they touch.

Each segment also records how its input and output channel counts follow the channel groups of
:func:`~tfmot_easiedge.analyze` (``weights``: channel positions per kept channel of a group, ``const``: the
positions no group moves), so a prediction from a plan needs no model and no TensorFlow.

This module imports neither Keras nor TensorFlow (the on-device profiler writes tables with it).

Example:
    >>> t = LatencyTable.from_dict(example_table())
    >>> t.runtime, t.segment_names()
    ('tflite', ['conv'])
    >>> round(t.predict_counts({"conv": 8}), 3), round(t.predict_counts({"conv": 4}), 3)
    (1.1, 0.6)
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from tfmot_easiedge._files import read_json, write_json_atomic

#: The ``format`` field of a table file, and the version this code reads and writes.
TABLE_FORMAT = "tfmot_easiedge.latency_table"
TABLE_VERSION = 1
#: The runtimes a table can be measured on.
TABLE_RUNTIMES = ("tflite", "onnxruntime")


def _axis_width(values: np.ndarray, axis: Mapping[str, Any]) -> np.ndarray:
    """Widths rounded up to the axis's measured step (the staircase), within [first grid point, full]."""
    step = int(axis.get("step", 1) or 1)
    grid = axis["grid"]
    w = np.asarray(values, dtype=float)
    if step > 1:
        w = np.minimum(np.ceil(np.round(w, 6) / step) * step, float(axis["full"]))
    return np.clip(w, grid[0], grid[-1])


def _locate(grid: Sequence[float], w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the grid cell holding each ``w`` and the position inside it, in [0, 1]."""
    g = np.asarray(grid, dtype=float)
    if len(g) == 1:
        return np.zeros(len(w), dtype=int), np.zeros(len(w))
    i = np.clip(np.searchsorted(g, w, side="right") - 1, 0, len(g) - 2)
    return i, (w - g[i]) / (g[i + 1] - g[i])


def interpolate(segment: Mapping[str, Any], n_in: np.ndarray, n_out: np.ndarray) -> np.ndarray:
    """A segment's latency (ms) at input/output channel counts ``n_in``/``n_out`` (arrays of one shape).

    Example:
        >>> seg = example_table()["segments"][0]
        >>> interpolate(seg, np.array([3.0]), np.array([6.0])).round(3)
        array([0.75])
    """
    z = np.asarray(segment["ms"], dtype=float)
    x = _axis_width(n_in, segment["in"])
    y = _axis_width(n_out, segment["out"])
    i, tx = _locate(segment["in"]["grid"], x)
    j, ty = _locate(segment["out"]["grid"], y)
    i1 = np.minimum(i + 1, z.shape[0] - 1)
    j1 = np.minimum(j + 1, z.shape[1] - 1)
    return ((1 - tx) * (1 - ty) * z[i, j] + tx * (1 - ty) * z[i1, j] + (1 - tx) * ty * z[i, j1]
            + tx * ty * z[i1, j1])


def example_table() -> dict[str, Any]:
    """A tiny hand-written table (one 3x3 convolution, 3 -> 8 channels), for examples and tests."""
    return {"format": TABLE_FORMAT, "format_version": TABLE_VERSION, "model_name": "example",
            "fingerprint": "0" * 12, "runtime": "tflite", "runtime_version": "example", "threads": 1,
            "batch_size": 1, "machine": {}, "date": "", "invoke_ms": 0.1, "op_ms": 0.0,
            "groups": {"conv": 8},
            "segments": [{"name": "conv", "kind": "conv", "key": 0,
                          "in": {"grid": [3], "full": 3, "step": 1, "weights": {}, "const": 3.0},
                          "out": {"grid": [1, 4, 8], "full": 8, "step": 1, "weights": {"conv": 1.0}, "const": 0.0},
                          "ms": [[0.2, 0.5, 1.0]]}],
            "others": {"n_ops": 0, "fixed_ms": 0.0, "variable_ms": 0.0, "weights": {}, "const": 0.0}}


class Predictor:
    """The table compiled for one order of groups: ``predictor(K)`` -> ms for each row of kept counts ``K``.

    Attributes:
        group_ids: the order of the columns of ``K``.
    """

    def __init__(self, table: LatencyTable, group_ids: Sequence[str]):
        self.table = table
        self.group_ids = list(group_ids)
        index = {g: i for i, g in enumerate(self.group_ids)}

        def row(weights: Mapping[str, float]) -> np.ndarray:
            w = np.zeros(len(index))
            for g, v in weights.items():
                if g not in index:
                    raise ValueError(f"the latency table names group {g!r}, which this model does not have")
                w[index[g]] = float(v)
            return w

        segs = table.segments
        self.w_in = np.array([row(s["in"]["weights"]) for s in segs]).reshape(len(segs), len(index))
        self.u_in = np.array([float(s["in"]["const"]) for s in segs])
        self.w_out = np.array([row(s["out"]["weights"]) for s in segs]).reshape(len(segs), len(index))
        self.u_out = np.array([float(s["out"]["const"]) for s in segs])
        self.w_elem = row(table.others["weights"])
        self.u_elem = float(table.others["const"])
        full = np.array([float(table.groups.get(g, 0)) for g in self.group_ids])
        self.full_elements = float(self.w_elem @ full + self.u_elem)

    def __call__(self, kept: np.ndarray) -> np.ndarray:
        k = np.atleast_2d(np.asarray(kept, dtype=float))
        total = float(self.table.invoke_ms) + self.segments_ms(k, range(len(self.table.segments)))
        return total + self.table.others_ms(k @ self.w_elem + self.u_elem, self.full_elements)

    def segments_ms(self, kept: np.ndarray, segments: Iterable[int]) -> np.ndarray:
        """The summed latency of the segments numbered ``segments`` for each row of kept counts."""
        k = np.atleast_2d(np.asarray(kept, dtype=float))
        total = np.zeros(len(k))
        for s in segments:
            seg = self.table.segments[s]
            n_in = k @ self.w_in[s] + self.u_in[s]
            n_out = k @ self.w_out[s] + self.u_out[s]
            total += interpolate(seg, n_in, n_out)
        return total


@dataclasses.dataclass
class LatencyTable:
    """Measured latency of one model's segments on one runtime (see the module docstring).

    Attributes:
        runtime: ``"tflite"`` or ``"onnxruntime"``; ``runtime_version`` the version it ran.
        threads, batch_size: how it was timed.
        machine, date: where and when.
        fingerprint: :attr:`ModelAnalysis.fingerprint <tfmot_easiedge.ModelAnalysis.fingerprint>` of the
            profiled model (its prunable groups and their sizes); ``model_name`` its name.
        groups: ``{group id: full size}``.
        invoke_ms: the cost of one invoke with nothing in it; ``op_ms`` the fixed cost of one more operator.
        segments: per segment ``name``, ``kind``, the ``in``/``out`` axes (``grid``, ``full``, ``step``,
            ``weights``, ``const``) and ``ms`` (len(in grid) x len(out grid)).
        others: the other operators: ``n_ops``, ``fixed_ms``, ``variable_ms`` (at full width), ``weights`` and
            ``const`` of their activation elements.
        extra: anything else recorded (measured full-model latency, profiling time).
    """

    runtime: str
    runtime_version: str
    threads: int
    batch_size: int
    machine: dict
    date: str
    fingerprint: str
    model_name: str
    groups: dict
    invoke_ms: float
    op_ms: float
    segments: list
    others: dict
    extra: dict = dataclasses.field(default_factory=dict)

    # -- plain data -------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON-able form (what :meth:`save` writes)."""
        data = {"format": TABLE_FORMAT, "format_version": TABLE_VERSION}
        data.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, what: str = "latency table") -> LatencyTable:
        """A table from :meth:`to_dict`'s form; refuses another format, another version or a malformed table.

        Raises:
            ValueError: one line saying what is wrong.
        """
        if not isinstance(data, Mapping) or data.get("format") != TABLE_FORMAT:
            raise ValueError(f"{what} is not a tfmot-easiedge latency table (no format {TABLE_FORMAT!r})")
        version = data.get("format_version")
        if version != TABLE_VERSION:
            raise ValueError(f"{what} has format version {version!r}; this tfmot-easiedge reads version "
                             f"{TABLE_VERSION}: profile the model again (te.profile_latency or easiedge profile)")
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in data and n != "extra"]
        if missing:
            raise ValueError(f"{what} lacks the fields {missing}")
        table = cls(**{n: data[n] for n in names if n in data})
        table._validate(what)
        return table

    def _validate(self, what: str) -> None:
        if self.runtime not in TABLE_RUNTIMES:
            raise ValueError(f"{what}: runtime must be one of {TABLE_RUNTIMES}, got {self.runtime!r}")
        for seg in self.segments:
            z = np.asarray(seg.get("ms"), dtype=float)
            shape = (len(seg["in"]["grid"]), len(seg["out"]["grid"]))
            if z.shape != shape or not np.isfinite(z).all():
                raise ValueError(f"{what}: segment {seg.get('name')!r} has ms of shape {z.shape}, expected "
                                 f"{shape}, finite")
            for axis in ("in", "out"):
                if list(seg[axis]["grid"]) != sorted(set(seg[axis]["grid"])):
                    raise ValueError(f"{what}: segment {seg['name']!r} has an unsorted {axis} grid")

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Writes the table as JSON (atomically; an existing file is refused unless ``overwrite``)."""
        return write_json_atomic(path, self.to_dict(), overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike, *, runtime: str | None = None) -> LatencyTable:
        """Reads a table written by :meth:`save`; ``runtime`` given: refuses a table measured on another one.

        Raises:
            ValueError: not a table, a stale format version, another runtime.
            FileNotFoundError: no file at ``path``.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no latency table at {path}")
        data = read_json(path, f"latency table {path}")
        table = cls.from_dict(data, what=f"latency table {path}")
        if runtime is not None:
            table.check_runtime(runtime)
        return table

    def check_runtime(self, runtime: str) -> None:
        """Raises ValueError when the table was measured on another runtime than ``runtime``."""
        name = {"litert": "tflite", "onnx": "onnxruntime"}.get(str(runtime).lower(), str(runtime).lower())
        if name != self.runtime:
            raise ValueError(f"the latency table was measured on {self.runtime}, not {name}: profile the model "
                             f"on {name} (te.profile_latency(model, runtime={name!r}))")

    def __repr__(self) -> str:
        return (f"LatencyTable({self.runtime} {self.runtime_version}, {self.threads} thread(s), model "
                f"{self.model_name!r}, {len(self.segments)} segments, fingerprint {self.fingerprint})")

    # -- predictions ------------------------------------------------------------------------------------------
    def segment_names(self) -> list[str]:
        """The profiled segments' layer names, in graph order."""
        return [s["name"] for s in self.segments]

    def others_ms(self, elements: np.ndarray, full_elements: float) -> np.ndarray:
        """The other operators' latency with ``elements`` activation elements (``full_elements`` unpruned)."""
        elements = np.asarray(elements, dtype=float)
        share = elements / full_elements if full_elements > 0 else np.ones_like(elements)
        return float(self.others["fixed_ms"]) + float(self.others["variable_ms"]) * share

    def compile(self, group_ids: Sequence[str]) -> Predictor:
        """A :class:`Predictor` over kept-count vectors ordered by ``group_ids`` (for cost models)."""
        return Predictor(self, group_ids)

    def predict_counts(self, kept: Mapping[str, int]) -> float:
        """Milliseconds with ``kept[g]`` channels kept in group ``g`` (groups not named stay whole)."""
        unknown = set(kept) - set(self.groups)
        if unknown:
            raise ValueError(f"the latency table (model {self.model_name!r}) has no groups {sorted(unknown)[:5]}")
        order = list(self.groups)
        counts = np.array([float(kept.get(g, self.groups[g])) for g in order])
        return float(self.compile(order)(counts)[0])

    def predict_widths(self, widths: Mapping[str, tuple[float, float]], elements: float) -> float:
        """Milliseconds from each segment's ``(input, output)`` channels and the others' activation elements."""
        missing = [s["name"] for s in self.segments if s["name"] not in widths]
        if missing:
            raise ValueError(f"the latency table is for another model: it has no layers {missing[:5]}")
        total = float(self.invoke_ms)
        for seg in self.segments:
            n_in, n_out = widths[seg["name"]]
            for axis, n in (("in", n_in), ("out", n_out)):
                if n > seg[axis]["full"]:
                    raise ValueError(f"layer {seg['name']!r} has {n} {axis}put channels, more than the "
                                     f"{seg[axis]['full']} profiled: the table is for another model")
            total += float(interpolate(seg, np.array([n_in], float), np.array([n_out], float))[0])
        full = float(self.compile(list(self.groups)).full_elements)
        return total + float(self.others_ms(np.array(elements, dtype=float), full))

    def predict(self, model_or_plan: Any) -> float:
        """Predicted milliseconds per invoke of a pruned model: a ``PruningPlan`` made for the profiled model,
        or a Keras model (the profiled one, or a slim model of it).

        Raises:
            ValueError: a plan or model of another model.
        """
        if hasattr(model_or_plan, "kept") and hasattr(model_or_plan, "group_sizes"):
            if getattr(model_or_plan, "removed_blocks", ()):
                raise ValueError("the plan removes residual blocks, whose layers a latency table cannot tell "
                                 "without the model: read the prediction select made "
                                 "(plan.metadata['cost']['predicted'], with a LatencyBudget) or time the slim model")
            return self.predict_counts(self._plan_counts(model_or_plan))
        from tfmot_easiedge.latency.segments import model_widths

        widths, elements = model_widths(model_or_plan, self)
        return self.predict_widths(widths, elements)

    def _plan_counts(self, plan: Any) -> dict[str, int]:
        wrong = [g for g, size in plan.group_sizes.items() if self.groups.get(g) not in (None, size)]
        unknown = [g for g in plan.group_sizes if g not in self.groups]
        if wrong or unknown:
            raise ValueError(f"the plan (model {plan.model_name!r}) is not for the profiled model "
                             f"{self.model_name!r}: groups {sorted(wrong + unknown)[:5]} differ")
        return {g: len(k) for g, k in plan.kept.items()}


def check_monotone(ms: np.ndarray) -> np.ndarray:
    """Measurements made non-decreasing along both axes (timing noise must not make a narrower layer slower),
    plus a nanosecond per grid step so every removal saves something (far below any timing resolution).

    Example:
        >>> check_monotone(np.array([[1.0, 0.9, 2.0]])).round(6)
        array([[1.      , 1.000001, 2.000002]])
    """
    z = np.maximum.accumulate(np.maximum.accumulate(np.asarray(ms, dtype=float), axis=0), axis=1)
    i, j = np.indices(z.shape)
    return z + 1e-6 * (i + j)


def detect_step(widths: Sequence[int], ms: Sequence[float], noise: float) -> int:
    """The staircase step of an output axis from probes at ``p, p+1, p+4, p+8, p+16`` channels: the largest
    ``s`` where one channel more than ``p`` already costs (most of) what ``s`` more cost; 1 when the probes
    rise smoothly or the differences are within ``noise`` (ms).

    Example:
        >>> detect_step([32, 33, 36, 40, 48], [1.0, 1.2, 1.2, 1.2, 1.4], noise=0.01)
        8
        >>> detect_step([32, 33, 36, 40, 48], [1.0, 1.01, 1.05, 1.1, 1.2], noise=0.01)
        1
    """
    at = dict(zip((int(w) for w in widths), (float(t) for t in ms)))
    p = min(at)
    one = at.get(p + 1)
    if one is None:
        return 1
    for s in (16, 8, 4):
        if p + s in at:
            rise = at[p + s] - at[p]
            if rise > 3 * noise and one - at[p] >= 0.75 * rise:
                return s
    return 1
