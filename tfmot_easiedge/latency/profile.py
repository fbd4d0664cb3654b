"""Profiling a model's latency table: ``write_profile`` (the segment models, on the host) and
``profile_latency`` (write, then time here with :func:`~tfmot_easiedge.latency.runner.run_profile`).

Each distinct segment (layer class and configuration, input shape, folded activation) is exported once per
grid point: input widths x output widths from :func:`~tfmot_easiedge.latency.segments.width_grid` on the axes
that pruning moves, plus five *staircase probes* of the output width (``p, p+1, p+4, p+8, p+16`` at the full
input width, ``p`` the multiple of 16 nearest half the width) that show whether the runtime pays for output
channels in tiles. Two calibration models (one operator; a chain of 16) give the per-invoke and per-operator
costs (tiny Dense layers), and the whole model is exported once for the cost of the other operators.
"""
from __future__ import annotations

import datetime
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfmot_easiedge._files import atomic_output, write_json_atomic
from tfmot_easiedge.latency.runner import MANIFEST, PROFILE_FORMAT, PROFILE_VERSION, run_profile
from tfmot_easiedge.latency.segments import SegmentSpec, find_segments, segment_model

if TYPE_CHECKING:
    import keras

    from tfmot_easiedge.latency.table import LatencyTable

_SUFFIX = {"tflite": ".tflite", "onnxruntime": ".onnx"}
_CHAIN_OPS = 16


def _runtime(runtime: str) -> str:
    name = {"litert": "tflite", "onnx": "onnxruntime"}.get(str(runtime).lower(), str(runtime).lower())
    if name not in _SUFFIX:
        raise ValueError(f"runtime must be 'tflite' or 'onnxruntime'; got {runtime!r}")
    return name


def _writer(runtime: str, fast: bool = False):
    """``(model, path) -> None`` writing ``model`` for ``runtime``; ``fast``: a segment or calibration model,
    converted straight from Keras (a third of the time of the SavedModel route the exporter takes, the
    same kernels for a single layer)."""
    if runtime == "tflite":
        if fast:
            import tensorflow as tf

            return lambda model, path: Path(path).write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
        from tfmot_easiedge.export.tflite import convert

        return lambda model, path: Path(path).write_bytes(convert(model))
    from tfmot_easiedge.export.onnx import DEFAULT_OPSET, write_onnx

    if fast:
        def write_segment(model, path):
            write_onnx(model, path, DEFAULT_OPSET)
            drop_layout_transposes(path)

        return write_segment
    return lambda model, path: write_onnx(model, path, DEFAULT_OPSET)


def drop_layout_transposes(path: str | os.PathLike) -> int:
    """Removes the NHWC->NCHW ``Transpose`` after the graph input and the NCHW->NHWC one before the graph
    output of an ONNX file, so the file reads and writes NCHW; returns how many were removed.

    tf2onnx wraps a Keras (NHWC) model in these; inside a whole model they exist only at its ends, so in a
    one-layer segment file they would be timed as if every layer paid for two. On the 3-segment model of
    ``tests/test_latency_table.py`` (microsecond layers, 2 loaded cores) dropping them brought the table's
    prediction of the whole model from 3.0x to 2.0x of its measured time; the rest is per-call overhead of
    layers that small.
    """
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    inputs = {i.name: i for i in graph.input}
    outputs = {o.name: o for o in graph.output}
    removed = 0
    for node in list(graph.node):
        if node.op_type != "Transpose":
            continue
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        if node.input[0] in inputs and perm == [0, 3, 1, 2]:  # readers of the transpose read the input
            _rename(graph, "input", node.output[0], node.input[0])
            _permute(inputs[node.input[0]])
        elif node.output[0] in outputs and perm == [0, 2, 3, 1]:  # its producer writes the output
            _rename(graph, "output", node.input[0], node.output[0])
            _permute(outputs[node.output[0]])
        else:
            continue
        graph.node.remove(node)
        removed += 1
    if removed:
        onnx.save(model, str(path))
    return removed


def _rename(graph, field: str, old: str, new: str) -> None:
    """Every node's ``field`` (``"input"`` or ``"output"``) tensor named ``old`` renamed ``new``."""
    for other in graph.node:
        names = getattr(other, field)
        for k, name in enumerate(names):
            if name == old:
                names[k] = new


def _permute(value_info) -> None:
    """An NHWC tensor declaration made NCHW."""
    dims = value_info.type.tensor_type.shape.dim
    copies = [type(d)() for d in dims]
    for c, d in zip(copies, dims):
        c.CopyFrom(d)
    for k, src in enumerate((0, 3, 1, 2)):
        dims[k].CopyFrom(copies[src])


def _probe_widths(seg: SegmentSpec) -> list[int] | None:
    out = seg.axes["out"]
    if len(out["grid"]) == 1 or out["full"] < 48:
        return None
    p = max(16, int(round(out["full"] / 32.0)) * 16)
    while p + 16 > out["full"]:
        p -= 16
    return [p, p + 1, p + 4, p + 8, p + 16]


def _calibration_models(batch_size: int) -> tuple[keras.Model, keras.Model]:
    import keras

    def chain(n: int) -> keras.Model:
        # tiny Dense+ReLU layers: operators the runtime's CPU delegate runs, as it runs the segments, so the
        # per-invoke cost includes entering the delegate (a builtin-only op would leave that out)
        x = inp = keras.Input((8,), batch_size=batch_size)
        for i in range(n):
            x = keras.layers.Dense(8, activation="relu", kernel_initializer=keras.initializers.Identity(),
                                   name=f"op{i}")(x)
        return keras.Model(inp, x)

    return chain(1), chain(_CHAIN_OPS)


def write_profile(model: keras.Model, directory: str | os.PathLike, *, runtime: str = "tflite", batch_size: int = 1,
                  overwrite: bool = False) -> dict[str, Any]:
    """Writes the segment models of ``model`` (and a ``manifest.json``) to a new ``directory``, for
    :func:`~tfmot_easiedge.latency.runner.run_profile` here or ``python -m tfmot_easiedge.device_profile`` on
    the device. The directory appears complete or not at all.

    Returns:
        The manifest.

    Raises:
        ValueError: an unknown runtime, a model with nothing to profile.
        FileExistsError: ``directory`` exists and ``overwrite`` is False.

    Example:
        >>> from tfmot_easiedge.models import zoo
        >>> write_profile(zoo.tiny_cnn(), "profile_dir")  # doctest: +SKIP
    """
    import tensorflow as tf

    from tfmot_easiedge._version import __version__
    from tfmot_easiedge.graph.analysis import analyze

    runtime = _runtime(runtime)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1; got {batch_size!r}")
    start = time.perf_counter()
    analysis = analyze(model)
    segments, others = find_segments(analysis)
    if not segments:
        raise ValueError(f"model {model.name!r} has no convolution or Dense layer to profile")
    write, suffix = _writer(runtime, fast=True), _SUFFIX[runtime]
    with atomic_output(directory, overwrite=overwrite) as tmp:
        tmp.mkdir()
        keys: dict[str, int] = {}
        profiles: list[dict[str, Any]] = []
        entries = []
        for seg in segments:
            key = seg.key()
            if key not in keys:
                keys[key] = len(profiles)
                profiles.append(_write_segment(seg, len(profiles), tmp, write, suffix, batch_size))
            entries.append({"name": seg.name, "kind": seg.kind, "key": keys[key], "in": seg.axes["in"],
                            "out": seg.axes["out"]})
        one, chain = _calibration_models(batch_size)
        write(one, tmp / f"calibration_1{suffix}")
        write(chain, tmp / f"calibration_{_CHAIN_OPS}{suffix}")
        _writer(runtime)(model, tmp / f"model{suffix}")
        manifest = {
            "format": PROFILE_FORMAT, "format_version": PROFILE_VERSION, "runtime": runtime, "batch_size": batch_size,
            "model_name": analysis.graph.model_name, "fingerprint": analysis.fingerprint,
            "groups": {g: grp.size for g, grp in analysis.groups.items()},
            "calibration": {"one": f"calibration_1{suffix}", "chain": f"calibration_{_CHAIN_OPS}{suffix}",
                            "chain_ops": _CHAIN_OPS},
            "model": f"model{suffix}", "segments": entries, "profiles": profiles, "others": others,
            "created": {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                        "tfmot_easiedge": __version__, "tensorflow": tf.__version__,
                        "export_seconds": time.perf_counter() - start},
        }
        write_json_atomic(tmp / MANIFEST, manifest)
    return manifest


def _write_segment(seg: SegmentSpec, index: int, directory: Path, write, suffix: str, batch_size: int) -> dict:
    grid_in, grid_out = seg.axes["in"]["grid"], seg.axes["out"]["grid"]

    def export(n_in: int, n_out: int) -> str:
        name = f"seg{index:03d}_i{n_in}_o{n_out}{suffix}"
        if not (directory / name).exists():
            write(segment_model(seg, n_in, n_out, batch_size), directory / name)
        return name

    files = [[export(i, o) for o in grid_out] for i in grid_in]
    probe = _probe_widths(seg)
    return {"name": seg.name, "files": files,
            "probe": None if probe is None else {"at_in": grid_in[-1], "widths": probe,
                                                 "files": [export(grid_in[-1], w) for w in probe]}}


def profile_latency(model: keras.Model, *, runtime: str = "tflite", threads: int = 1, batch_size: int = 1,
                    rounds: int = 3, runs: int = 20, warmup: int = 10, workdir: str | os.PathLike | None = None,
                    seed: int = 0) -> LatencyTable:
    """Measures ``model``'s latency table on this machine: its segments at a grid of widths, the staircase
    of their output widths, the per-operator and per-invoke costs (see the module docstring).

    Args:
        model: a built functional or Sequential Keras model (the unpruned one).
        runtime: ``"tflite"`` (LiteRT with XNNPACK) or ``"onnxruntime"``.
        threads: runtime threads, as the pruned model will run.
        batch_size: samples per invoke.
        rounds, runs, warmup: interleaved timing rounds; timed and untimed invokes per file and round.
        workdir: keep the segment models there (a new directory); default a temporary one.
        seed: the order of the files in each round.

    Returns:
        A :class:`~tfmot_easiedge.latency.table.LatencyTable`; ``table.extra`` records how long it took.

    Example:
        >>> import tfmot_easiedge as te
        >>> from tfmot_easiedge.models import zoo
        >>> table = te.profile_latency(zoo.tiny_cnn(), runtime="tflite")  # doctest: +SKIP
        >>> table.predict(model)  # doctest: +SKIP
        0.41
    """
    runtime = _runtime(runtime)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="easiedge-profile-") as tmp:
        directory = Path(workdir) if workdir is not None else Path(tmp) / "profile"
        manifest = write_profile(model, directory, runtime=runtime, batch_size=batch_size)
        exported = time.perf_counter() - start
        table = run_profile(directory, threads=threads, rounds=rounds, runs=runs, warmup=warmup, seed=seed)
    table.extra.update({"export_seconds": exported, "profile_seconds": time.perf_counter() - start,
                        "profiled_segments": len(manifest["profiles"])})
    return table
