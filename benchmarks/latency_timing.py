"""The timing of ``benchmarks.latency``: interleaved rounds, the runtimes' jobs, thread CPU time.

Every run is the library's ``measure_latency``; :func:`thread_time_latency` times the same runs in the
calling thread's CPU time (its ``clock=time.thread_time``).
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from benchmarks.latency_spec import RUNTIMES


def _stats(times: np.ndarray) -> dict[str, float]:
    """Median, p10, p90 and mean (ms, rounded) and the count of pooled run times."""
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
    """The part of a ``LatencyResult`` that :func:`time_round_robin` reads: per-run ms and the threads."""

    times_ms: tuple
    threads: int


def thread_time_latency(path: Path, runtime: str, sample: np.ndarray, warmup: int, runs: int) -> _Times:
    """1-thread batch-1 latency of a .tflite / .onnx file in CPU time of the calling thread (ms per run).

    With one thread, XNNPACK and onnxruntime run the whole graph on the calling thread, so its CPU time
    is the work done, without the time spent waiting for a core: ``measure_latency`` with
    ``clock=time.thread_time``.
    """
    from tfmot_easiedge import measure_latency

    r = measure_latency(Path(path), runtime=runtime, threads=1, batch_size=1, warmup=warmup, runs=runs,
                        input_data=sample, progress=False, clock=time.thread_time)
    return _Times(tuple(r.times_ms), 1)


def load_average() -> float | None:
    """The 1-minute load average (None where the platform has none), recorded beside every timing."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
