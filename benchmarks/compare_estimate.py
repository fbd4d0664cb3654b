"""The ``--estimate`` of ``benchmarks.compare``: times the pieces of a profile and projects its wall time.

Nothing is trained or pruned for real: untrained models at the profile's width take a few plain and masked
fine-tune steps, one evaluation, TBAA scorings and one TFLite export + latency, and the counts of the
profile multiply them.
"""
from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks import common
from benchmarks.compare_data import Data, accuracy, tflite_latency
from benchmarks.compare_prune import compile_for_finetune
from benchmarks.compare_spec import BUDGETS, METHODS, Profile


def estimate(profile: Profile, models: Sequence[str], steps: int = 20, log=print) -> dict[str, Any]:
    """Times the pieces of a profile on this machine and projects its wall time (no baseline is trained).

    Per model (untrained, at the profile's width): ``steps`` plain training steps and ``steps`` masked
    fine-tune steps (after a traced warm-up step each), one evaluation of the test subset, one TBAA scoring
    of the calibration set, one TFLite export + latency; the first steps' extra time is the tracing cost of
    a run. The projection multiplies these by the profile's counts (4 budgets x 6 methods per model).
    """
    import keras

    import tfmot_easiedge as te

    data = Data.load(profile)
    spe = math.ceil(len(data.x_train) / profile.batch_size)
    n_val = int(round(profile.val_split * len(data.x_train)))
    baseline_spe = math.ceil((len(data.x_train) - n_val) / profile.batch_size)
    runs = len(METHODS) * len(BUDGETS)
    report: dict[str, Any] = {"profile": profile.name, "load_before": os.getloadavg(), "models": {}}
    xs = data.x_train[:profile.batch_size * (steps + 1)].astype("float32")
    ys = data.y_train[:len(xs)]
    for name in models:
        net = common.model_builders()[name](width=profile.widths[name], seed=0)
        compile_for_finetune(net, profile, spe)
        plain = _time_steps(net, xs, ys, profile.batch_size, [])
        analysis = te.analyze(net)
        t0 = time.perf_counter()
        wrapped = te.prune_filters(net, "filters:0.5", importance="l1")
        wrapped.compile_from_config(net.get_compile_config())
        te.strip_pruning(wrapped)
        setup_s = time.perf_counter() - t0
        plan = te.select(analysis, te.importance.l1_norm(net, analysis=analysis), te.FilterBudget(0.5))
        masked = _time_steps(wrapped, xs, ys, profile.batch_size, [te.MaskedFineTune(plan, verbose=0)])
        t0 = time.perf_counter()
        accuracy(net, data)
        evaluate_s = time.perf_counter() - t0
        scorer = te.importance.TBAAScorer(net, analysis=analysis)
        tbaa_s = []
        for _ in range(2):  # the first call traces the scoring step, the second is a warm Z-step
            t0 = time.perf_counter()
            scorer(data.calibration, batch_size=64, progress=False)
            tbaa_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        tflite_latency(net, data, profile)
        export_s = time.perf_counter() - t0
        engine = te.EasiEdge("filters:0.5", zsteps_per_epoch=profile.zsteps_per_epoch,
                             min_update_interval=profile.min_update_interval)
        update_every, growth = engine.schedule(spe, profile.admm_epochs)
        scorings = _admm_scorings(engine, spe, profile.admm_epochs, update_every, growth)
        n_test = len(data.x_test)
        parts = {
            # epochs of steps, the held-out split after each epoch, the final evaluation on all 10,000 test images
            "baseline_training": profile.baseline_epochs * (baseline_spe * plain["step"] + n_val / n_test * evaluate_s)
            + plain["trace"] + 10000 / n_test * evaluate_s,
            "finetune_steps": runs * profile.finetune_epochs * spe * masked["step"],
            # per run: load + wrap + strip, the traced first step, accuracy before and after; EasiEdge fits twice
            "run_overhead": runs * (setup_s + masked["trace"] + 2 * evaluate_s) + len(BUDGETS) * masked["trace"],
            # one-shot TBAA and Taylor once per model (traced); per budget EasiEdge's first Z-step (traced) and
            # its warm re-scorings
            "scoring": 2 * tbaa_s[0] + len(BUDGETS) * (tbaa_s[0] + (scorings - 1) * tbaa_s[1]),
            "export_latency": (runs + 1) * export_s,
        }
        report["models"][name] = {"plain_step_s": plain["step"], "masked_step_s": masked["step"],
                                  "trace_s": masked["trace"], "setup_s": setup_s, "evaluate_s": evaluate_s,
                                  "tbaa_s": tbaa_s,
                                  "export_latency_s": export_s, "admm_scorings": scorings,
                                  "parts_s": {k: round(v, 1) for k, v in parts.items()},
                                  "total_s": round(sum(parts.values()), 1)}
        log(f"{name}: {json.dumps(report['models'][name])}")
        keras.backend.clear_session()
    report["load_after"] = os.getloadavg()
    report["total_s"] = round(sum(m["total_s"] for m in report["models"].values()), 1)
    log(f"projected {profile.name} profile: {report['total_s'] / 60:.0f} minutes (load average "
        f"{report['load_before'][0]:.2f} before, {report['load_after'][0]:.2f} after: on a loaded machine the "
        "projection is too long by about the load / cores ratio)")
    return report


def _time_steps(model, x, y, batch: int, callbacks) -> dict[str, float]:
    """Median training step after the first (traced) one, and the first step's extra time."""
    import keras

    times = []

    class Timer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self._t = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter() - self._t)

    model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0, callbacks=[*callbacks, Timer()])
    step = float(np.median(times[1:]))
    return {"step": step, "trace": max(0.0, times[0] - step)}


def _admm_scorings(engine, spe: int, epochs: int, update_every, growth: float) -> int:
    """How many Z-steps re-score (the first, and those before rho reaches ``DEFAULT_FREEZE_RHO``)."""
    from tfmot_easiedge.admm.update import DEFAULT_FREEZE_RHO

    zsteps = 1 + (epochs if update_every == "epoch" else (spe * epochs) // update_every)
    rho, scorings = engine.rho, 0
    for k in range(zsteps):  # the first Z-step projects at the initial rho; later ones grow it afterwards
        scorings += k == 0 or rho < DEFAULT_FREEZE_RHO
        if k > 0:
            rho = min(rho * growth, engine.rho_max)
    return scorings
