"""Coverage sweep: analyse, randomly prune and slim every architecture of ``keras.applications``.

For each architecture (built with ``weights=None`` at its smallest legal input size) the sweep runs
``analyze`` -> a random 30 % plan -> ``slim`` and compares the slim model with ``masked_copy`` (the
same plan applied by zeroing the consumers' input weights) on two random inputs. When the model has
approximate groups (e.g. LayerNormalization over channels) the checked plan cuts only the exact
groups; the error of a plan that also cuts the approximate groups is reported beside it.

Very deep networks with random weights amplify float32 rounding (summing over fewer channels changes the
order of the additions) until it reaches the outputs: EfficientNetV2L shows a 0.2 relative error in float32
but 1e-8 in float64. So an architecture whose float32 error is over the tolerance is run again in
float64 (a fresh subprocess with ``keras.config.set_dtype_policy("float64")``); it passes when the float64
error is within the tolerance, and both errors are reported.

Each architecture runs in its own subprocess (a crash or a memory blow-up costs one row, and timings
do not depend on what ran before). Results go to ``coverage.json`` and ``coverage.md``, written
atomically after every architecture so a long sweep can be watched.

Usage::

    python benchmarks/coverage.py                         # all architectures (about an hour on 2 cores)
    python benchmarks/coverage.py --only ResNet152,EfficientNetB7
    python benchmarks/coverage.py --out /tmp/cov          # another results folder

With ``--only`` the rows of the other architectures already in ``--out`` are kept.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

RATIO = 0.3
SEED = 0
TOLERANCE = 1e-4
N_INPUTS = 2
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
WORKER_TIMEOUT_S = 1800

# Smallest input size each builder accepts (keras.applications checks it in obtain_input_shape);
# everything else accepts 32. A builder that still refuses its size is retried at the next candidate.
MIN_INPUT_SIZE = {"InceptionV3": 75, "InceptionResNetV2": 75, "Xception": 71}
FALLBACK_SIZES = (32, 64, 71, 75, 96, 128, 224, 331)


# ----------------------------------------------------------------------------- architectures
def architectures() -> list[str]:
    """Every public model builder of ``keras.applications`` (the capitalised callables), sorted."""
    import keras

    return sorted(n for n in dir(keras.applications)
                  if n[:1].isupper() and callable(getattr(keras.applications, n)))


def build(name: str):
    """Returns ``(model, input_size)``: ``name`` built with random weights at its smallest legal size."""
    import inspect

    import keras

    builder = getattr(keras.applications, name)
    kwargs = {"weights": None}
    if "classifier_activation" in inspect.signature(builder).parameters:
        kwargs["classifier_activation"] = None
    first = MIN_INPUT_SIZE.get(name, 32)
    errors = []
    for size in [first, *[s for s in FALLBACK_SIZES if s > first]]:
        try:
            return builder(input_shape=(size, size, 3), **kwargs), size
        except ValueError as e:
            errors.append(f"{size}: {_first_line(e)}")
    raise ValueError(f"no legal input size found: {'; '.join(errors)}")


def randomize_channel_params(model, seed: int) -> None:
    """Gives every per-channel parameter (BatchNorm statistics, biases, LayerScale...) random values.

    Freshly built models have gamma=1, beta=0, mean=0, variance=1 and zero biases: every channel looks
    the same there, so a misaligned slice would go unnoticed. Kernels keep their (random) initialisation.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    for layer in _all_layers(model):
        if type(layer).__name__ == "Normalization":  # input preprocessing statistics: leave them
            continue
        for v in layer.weights:
            if not v.dtype.startswith("float") or len(v.shape) != 1:
                continue
            name = v.path.split("/")[-1]
            if "variance" in name or name in ("gamma", "scale") or type(layer).__name__ == "LayerScale":
                value = rng.uniform(0.5, 1.5, v.shape)
            else:
                value = rng.normal(0.0, 0.2, v.shape)
            v.assign(value.astype(v.dtype))


def _all_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)
        yield layer


# ----------------------------------------------------------------------------- one architecture
def run_one(name: str, float64: bool = False) -> dict:
    """Runs the whole check for one architecture; returns its result row (never raises)."""
    row: dict = {"architecture": name, "status": "fail", "reason": None}
    stage = "build"
    try:
        import keras
        import numpy as np

        import tfmot_easiedge as te

        if float64:
            keras.config.set_floatx("float64")
            keras.config.set_dtype_policy("float64")
        keras.utils.set_random_seed(SEED)
        t0 = time.perf_counter()
        model, size = build(name)
        row.update(input_size=size, build_s=round(time.perf_counter() - t0, 2), layers=len(model.layers))
        randomize_channel_params(model, SEED)

        stage = "analyze"
        t0 = time.perf_counter()
        analysis = te.analyze(model)
        analyze_s = time.perf_counter() - t0
        prunable = analysis.prunable_groups
        approx = sorted(g for g, grp in prunable.items() if grp.approximate)
        row.update(groups=len(analysis.groups), prunable_groups=len(prunable),
                   prunable_share=round(analysis.prunable_share(), 4), stops=len(analysis.stops),
                   stop_details=[f"{s.layer} ({s.class_name}): {s.reason}" for s in analysis.stops][:20],
                   approximate_groups=len(approx), exact=not approx)

        stage = "plan"
        full_plan = te.PruningPlan.random(analysis, RATIO, seed=SEED)
        plan = _without(full_plan, approx)
        row["cut_groups"] = len(plan.kept)
        row["removed_channels"] = plan.removed_channels()

        stage = "slim"
        t0 = time.perf_counter()
        slim_model = te.slim(model, plan, analysis=analysis)
        slim_s = time.perf_counter() - t0
        row.update(analyze_s=round(analyze_s, 2), slim_s=round(slim_s, 2),
                   analysis_slim_s=round(analyze_s + slim_s, 2))

        stage = "count"
        row.update(macs_before=te.count_macs(model), macs_after=te.count_macs(slim_model),
                   params_before=te.count_params(model), params_after=te.count_params(slim_model))

        stage = "compare"
        rng = np.random.default_rng(SEED)
        inputs = rng.uniform(0.0, 255.0, (N_INPUTS, size, size, 3)).astype("float32")
        row["max_rel_err"] = _compare(te, keras, model, plan, analysis, slim_model, inputs)
        if approx:
            stage = "compare (approximate groups cut)"
            approx_slim = te.slim(model, full_plan, analysis=analysis)
            row["max_rel_err_with_approximate"] = _compare(te, keras, model, full_plan, analysis,
                                                           approx_slim, inputs)

        if not plan.kept:
            row["reason"] = "no exact prunable group to cut"
        elif row["max_rel_err"] > TOLERANCE or not np.isfinite(row["max_rel_err"]):
            row["reason"] = f"slim differs from masked_copy: max rel err {row['max_rel_err']:.3g} > {TOLERANCE}"
        elif not row["macs_after"] < row["macs_before"]:
            row["reason"] = "slim model is not smaller"
        else:
            row["status"] = "pass"
    except Exception as e:  # noqa: BLE001 - the sweep records every failure and goes on
        row["reason"] = f"{stage}: {type(e).__name__}: {_first_line(e)}"
        row["traceback"] = traceback.format_exc(limit=6)
    return row


def _without(plan, group_ids):
    from tfmot_easiedge import PruningPlan

    kept = {g: k for g, k in plan.kept.items() if g not in group_ids}
    return PruningPlan(kept, {g: plan.group_sizes[g] for g in kept}, plan.model_name, plan.budget,
                       dict(plan.metadata))


def _compare(te, keras, model, plan, analysis, slim_model, inputs) -> float:
    import numpy as np

    masked = te.masked_copy(model, plan, analysis=analysis)
    errs = []
    for x in inputs:
        a = keras.ops.convert_to_numpy(slim_model(x[None], training=False))
        b = keras.ops.convert_to_numpy(masked(x[None], training=False))
        errs.append(float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30)))
    return max(errs)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]


# ----------------------------------------------------------------------------- sweep
def run_checked(name: str) -> dict:
    """``run_in_subprocess``, with a float64 rerun when the float32 error is over the tolerance."""
    row = run_in_subprocess(name)
    if row.get("max_rel_err") is None or row["max_rel_err"] <= TOLERANCE:
        return row
    row64 = run_in_subprocess(name, float64=True)
    row["max_rel_err_float64"] = row64.get("max_rel_err")
    if row64["status"] == "pass":
        row["status"] = "pass"
        row["reason"] = (f"float32 error {row['max_rel_err']:.2g} is rounding amplified by depth: "
                         f"{row64['max_rel_err']:.2g} in float64")
    else:
        row["reason"] = f"{row['reason']}; in float64: {row64.get('reason')}"
    return row


def run_in_subprocess(name: str, float64: bool = False) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", name] + (["--float64"] if float64 else [])
    load = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None  # timings are only as good as this
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"architecture": name, "status": "fail", "reason": f"timed out after {WORKER_TIMEOUT_S} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            row = json.loads(line[len("RESULT "):])
            row["wall_s"] = round(time.perf_counter() - t0, 1)
            row["load_avg_1min"] = load
            return row
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"architecture": name, "status": "fail",
            "reason": f"worker exited with code {proc.returncode}: {' | '.join(tail)[:300]}"}


def machine_info() -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": cores, "memory_gib": mem_gib, "platform": platform.platform(),
            "python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__, "backend": keras.backend.backend()}


def write_atomic(path: Path, text: str) -> None:
    from tfmot_easiedge._files import write_text_atomic  # the library's one atomic writer

    write_text_atomic(path, text, overwrite=True)


def _fmt(v, spec="") -> str:
    if v is None:
        return "–"
    return format(v, spec) if spec else str(v)


def _macs(v) -> str:
    return "–" if v is None else f"{v / 1e6:.1f}M"


def to_markdown(report: dict) -> str:
    rows = report["results"]
    m = report["machine"]
    n_pass = sum(r["status"] == "pass" for r in rows)
    lines = [
        "# keras.applications coverage of tfmot-easiedge",
        "",
        f"Generated {report['date']} by `{report['command']}`.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; {m['platform']}; Python {m['python']}, "
        f"TensorFlow {m['tensorflow']}, Keras {m['keras']} ({m['backend']}), NumPy {m['numpy']}.",
        "",
        f"Each model: `weights=None`, per-channel parameters randomised, a random {int(RATIO * 100)} % plan "
        f"(seed {SEED}) over the exact prunable groups, `slim` compared with `masked_copy` on {N_INPUTS} random "
        f"inputs; pass = max relative error <= {TOLERANCE:g} and fewer MACs. "
        "*err (approx.)* is the error when the approximate groups are cut too; *err float64* is the error of "
        "a float64 rerun, made when the float32 error is over the tolerance. "
        "*seconds* = `analyze` + `slim` (model building excluded); *load* = the 1-minute load average when "
        "the architecture started (other jobs share the machine).",
        "",
        f"**{n_pass} / {len(rows)} pass.**",
        "",
        "| architecture | input | groups | prunable | % filters prunable | stops | exact | max rel err | "
        "err (approx.) | err float64 | seconds | load | MACs before | MACs after | result |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        share = r.get("prunable_share")
        exact = r.get("exact")
        if r["status"] == "pass":
            result = "pass" + (f" ({r['reason']})" if r.get("reason") else "")
        else:
            result = f"**fail**: {r.get('reason')}"
        lines.append("| " + " | ".join([
            r["architecture"], _fmt(r.get("input_size")), _fmt(r.get("groups")), _fmt(r.get("prunable_groups")),
            "–" if share is None else f"{100 * share:.1f}", _fmt(r.get("stops")),
            "–" if exact is None else ("yes" if exact else f"no ({r.get('approximate_groups')} approx.)"),
            _fmt(r.get("max_rel_err"), ".1e"), _fmt(r.get("max_rel_err_with_approximate"), ".1e"),
            _fmt(r.get("max_rel_err_float64"), ".1e"),
            _fmt(r.get("analysis_slim_s"), ".1f"), _fmt(r.get("load_avg_1min"), ".1f"),
            _macs(r.get("macs_before")), _macs(r.get("macs_after")),
            result.replace("|", "\\|"),
        ]) + " |")
    stops = [(r["architecture"], s) for r in rows for s in r.get("stop_details", [])]
    if stops:
        lines += ["", "## Stops", ""] + [f"- {a}: {s}" for a, s in stops]
    return "\n".join(lines) + "\n"


def write_report(out: Path, rows: list[dict], command: str) -> dict:
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "command": command, "machine": machine_info(),
              "settings": {"ratio": RATIO, "seed": SEED, "tolerance": TOLERANCE, "inputs": N_INPUTS},
              "results": rows}
    write_atomic(out / "coverage.json", json.dumps(report, indent=2) + "\n")
    write_atomic(out / "coverage.md", to_markdown(report))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated architecture names (default: all)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results folder (default {DEFAULT_OUT})")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--float64", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(run_one(args.worker, args.float64)), flush=True)
        return 0

    names = architectures()
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in names]
        if unknown:
            parser.error(f"unknown architectures {unknown}; choose from {', '.join(names)}")
        names = wanted
    rows: dict[str, dict] = {}
    old = args.out / "coverage.json"
    if args.only and old.exists():
        rows = {r["architecture"]: r for r in json.loads(old.read_text())["results"]}
    command = "python benchmarks/coverage.py" + "".join(
        f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    for i, name in enumerate(names, 1):
        print(f"[{i}/{len(names)}] {name} ...", end=" ", flush=True)
        row = run_checked(name)
        rows[name] = row
        print(row["status"], row.get("analysis_slim_s", ""), row.get("reason") or "", flush=True)
        write_report(args.out, [rows[n] for n in sorted(rows)], command)
    failed = [n for n in names if rows[n]["status"] != "pass"]
    print(f"{len(names) - len(failed)}/{len(names)} pass" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
