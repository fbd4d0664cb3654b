"""Times a profile directory (the segment models of ``easiedge profile``) and builds the :class:`LatencyTable`.

Needs only numpy and the runtime (``ai_edge_litert`` for ``.tflite``, ``onnxruntime`` for ``.onnx``): no
TensorFlow, no Keras, so it runs on the edge board itself (``python -m tfmot_easiedge.device_profile DIR``).
Every file is timed in each of ``rounds`` interleaved rounds (a fresh runtime session per round, ``warmup``
untimed invokes, then ``runs`` timed ones), and its latency is the median of its round medians: a slow
spell of a loaded machine then hits every width alike instead of one.
"""
from __future__ import annotations

import datetime
import gc
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tfmot_easiedge._files import read_json
from tfmot_easiedge.latency.table import LatencyTable, check_monotone, detect_step, interpolate

#: The ``format`` field of a profile directory's ``manifest.json``, and the version written and read.
PROFILE_FORMAT = "tfmot_easiedge.latency_profile"
PROFILE_VERSION = 1
MANIFEST = "manifest.json"


def _tflite_invoke(path: Path, threads: int, batch_size: int) -> tuple[Callable[[], Any], str]:
    try:
        import ai_edge_litert
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as err:
        raise ImportError(f"timing .tflite files needs LiteRT ({err}): pip install ai-edge-litert") from None
    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    detail = interpreter.get_input_details()[0]
    shape = [batch_size if int(s) < 0 else int(s) for s in detail["shape_signature"]]
    interpreter.resize_tensor_input(detail["index"], shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], np.random.default_rng(0).random(shape).astype(detail["dtype"]))
    return interpreter.invoke, f"ai_edge_litert {getattr(ai_edge_litert, '__version__', '')}".strip()


def _onnx_invoke(path: Path, threads: int, batch_size: int) -> tuple[Callable[[], Any], str]:
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise ImportError(f"timing .onnx files needs ONNX Runtime ({err}): pip install onnxruntime") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    first = session.get_inputs()[0]
    shape = [d if isinstance(d, int) and d > 0 else batch_size for d in first.shape]
    feed = {first.name: np.random.default_rng(0).random(shape).astype("float32")}
    return (lambda: session.run(None, feed)), f"onnxruntime {ort.__version__}"


_INVOKERS = {"tflite": _tflite_invoke, "onnxruntime": _onnx_invoke}


def time_files(paths: list[Path], runtime: str, *, threads: int = 1, batch_size: int = 1, rounds: int = 3,
               runs: int = 15, warmup: int = 3, seed: int = 0) -> tuple[dict[Path, list[float]], str]:
    """``{path: [median ms of each round]}`` of every file, timed in interleaved rounds (order shuffled per
    round with ``seed``), and the runtime's name and version."""
    invoker = _INVOKERS[runtime]
    rng = np.random.default_rng(seed)
    medians: dict[Path, list[float]] = {p: [] for p in paths}
    version = runtime
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            for k in rng.permutation(len(paths)):
                invoke, version = invoker(paths[k], threads, batch_size)
                for _ in range(warmup):
                    invoke()
                times = np.empty(runs)
                for i in range(runs):
                    start = time.perf_counter()
                    invoke()
                    times[i] = (time.perf_counter() - start) * 1000.0
                medians[paths[k]].append(float(np.median(times)))
                del invoke
    finally:
        if gc_was_enabled:
            gc.enable()
    return medians, version


def machine_info() -> dict[str, Any]:
    """Where the table was measured: CPU model, cores, OS, Python, and the load average then."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return {"cpu": cpu, "machine": platform.machine(), "usable_cores": cores, "system": platform.platform(),
            "python": platform.python_version(), "load_average": load}


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a profile directory, checked for its format and version.

    Raises:
        ValueError: not a profile directory, a stale version, a listed file missing.
    """
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise ValueError(f"{directory} is not a profile directory: no {MANIFEST} (write one with easiedge profile)")
    manifest = read_json(path, str(path))
    if not isinstance(manifest, dict) or manifest.get("format") != PROFILE_FORMAT:
        raise ValueError(f"{path} is not a tfmot-easiedge profile manifest")
    if manifest.get("format_version") != PROFILE_VERSION:
        raise ValueError(f"{path} has format version {manifest.get('format_version')!r}; this tfmot-easiedge reads "
                         f"version {PROFILE_VERSION}: write the profile again with easiedge profile")
    missing = [f for f in manifest_files(manifest) if not (Path(directory) / f).is_file()]
    if missing:
        raise ValueError(f"{directory} lacks {len(missing)} files its manifest lists, e.g. {missing[0]}")
    return manifest


def manifest_files(manifest: dict[str, Any]) -> list[str]:
    """Every model file a manifest lists, each once."""
    files = [manifest["model"], manifest["calibration"]["one"], manifest["calibration"]["chain"]]
    for prof in manifest["profiles"]:
        files += [f for row in prof["files"] for f in row]
        if prof.get("probe"):
            files += prof["probe"]["files"]
    return list(dict.fromkeys(files))


def run_profile(directory: str | os.PathLike, *, threads: int = 1, rounds: int = 3, runs: int = 20,
                warmup: int = 10, seed: int = 0) -> LatencyTable:
    """Times every model of a profile directory on its runtime and returns the model's latency table.

    Example:
        >>> run_profile("profile_dir", threads=1).save("table.json")  # doctest: +SKIP
    """
    for name, value, least in (("threads", threads, 1), ("rounds", rounds, 1), ("runs", runs, 1),
                               ("warmup", warmup, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise ValueError(f"{name} must be an int >= {least}; got {value!r}")
    start = time.perf_counter()
    directory = Path(directory)
    manifest = read_manifest(directory)
    files = [directory / f for f in manifest_files(manifest)]
    load_before = machine_info()["load_average"]
    timed, version = time_files(files, manifest["runtime"], threads=threads, batch_size=manifest["batch_size"],
                                rounds=rounds, runs=runs, warmup=warmup, seed=seed)
    ms = {p.name: float(np.median(v)) for p, v in timed.items()}
    spread = {p.name: float(np.median(np.abs(np.asarray(v) - np.median(v)))) for p, v in timed.items()}
    table = build_table(manifest, ms, spread, runtime_version=version, threads=threads)
    table.extra.update({"rounds": rounds, "runs": runs, "warmup": warmup, "files": len(files),
                        "timing_seconds": time.perf_counter() - start, "load_average_before": load_before})
    return table


def build_table(manifest: dict[str, Any], ms: dict[str, float], spread: dict[str, float], *, runtime_version: str,
                threads: int) -> LatencyTable:
    """The table from a manifest and the median ms (and spread) of each of its files."""
    cal = manifest["calibration"]
    op_ms = max((ms[cal["chain"]] - ms[cal["one"]]) / (cal["chain_ops"] - 1), 0.0)
    invoke_ms = max(ms[cal["one"]] - op_ms, 0.0)
    grids, steps = [], []
    for prof in manifest["profiles"]:
        raw = np.array([[ms[f] for f in row] for row in prof["files"]]) - invoke_ms
        grids.append(check_monotone(np.maximum(raw, 0.0)).tolist())
        probe = prof.get("probe")
        if probe:
            noise = max(spread[f] for f in probe["files"])
            steps.append(detect_step(probe["widths"], [ms[f] for f in probe["files"]], noise))
        else:
            steps.append(1)
    segments = []
    for seg in manifest["segments"]:
        entry = {k: v for k, v in seg.items() if k != "key"}
        entry["key"] = seg["key"]
        entry["out"] = dict(seg["out"], step=steps[seg["key"]])
        entry["ms"] = grids[seg["key"]]
        segments.append(entry)
    full_segments = sum(float(interpolate(s, np.array([s["in"]["full"]], float),
                                          np.array([s["out"]["full"]], float))[0]) for s in segments)
    others = dict(manifest["others"])
    residual = max(ms[manifest["model"]] - invoke_ms - full_segments, 0.0)
    fixed = min(len(others["names"]) * op_ms, residual)
    others.update(n_ops=len(others["names"]), fixed_ms=fixed, variable_ms=residual - fixed)
    return LatencyTable(runtime=manifest["runtime"], runtime_version=runtime_version, threads=threads,
                        batch_size=manifest["batch_size"], machine=machine_info(),
                        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                        fingerprint=manifest["fingerprint"], model_name=manifest["model_name"],
                        groups=manifest["groups"], invoke_ms=invoke_ms, op_ms=op_ms, segments=segments, others=others,
                        extra={"model_ms": ms[manifest["model"]], "segments_full_ms": full_segments,
                               "created": manifest.get("created", {})})
