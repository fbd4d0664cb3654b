"""How ``benchmarks.compare`` prunes: the shared fine-tune recipe, each method, and one run's record.

The one-shot methods score the trained baseline once (:func:`cached_scores`), select (globally, or uniformly
with :func:`uniform_plan_for_macs` for a MAC budget), hard prune and fine-tune under ``MaskedFineTune``;
EasiEdge runs ``EasiEdge.run``. :func:`run_pruning` prunes one baseline with one method at one budget and
measures the slim model like the baseline (``compare_data``).
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common
from benchmarks.compare_data import Data, accuracy, load_model, now, tflite_latency
from benchmarks.compare_spec import LOSS, METHODS, Method, Profile


def compile_for_finetune(model, profile: Profile, steps_per_epoch: int) -> None:
    """Compiles ``model`` with the fine-tune recipe every method shares (the pruned copies reuse its config).

    The compile config carries ``profile.run_eagerly`` too, so the wrapped copies (one-shot and EasiEdge's)
    run their steps in the same mode.
    """
    import keras

    schedule = keras.optimizers.schedules.CosineDecay(profile.finetune_lr, profile.finetune_epochs * steps_per_epoch,
                                                      alpha=0.0)
    optimizer = keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True,
                                     weight_decay=profile.finetune_weight_decay or None)
    model.compile(optimizer=optimizer, loss=LOSS, metrics=["accuracy"], run_eagerly=profile.run_eagerly)


def _before_finetune_callback(measure: Callable[[Any], float]):
    """A callback measuring the hard-pruned model when ``MaskedFineTune`` has attached, before any step.

    Put it after ``MaskedFineTune`` in the callback list (EasiEdge appends user callbacks after its own).
    """
    import keras

    from tfmot_easiedge.admm import find_wrappers

    class BeforeFinetune(keras.callbacks.Callback):
        accuracy = None

        def on_train_begin(self, logs=None):
            wrappers = find_wrappers(self.model)
            if wrappers and all(w.attached == "finetune" for w in wrappers):
                self.accuracy = measure(self.model)

    return BeforeFinetune()


def score(model, analysis, criterion: str, data: Data, seed: int):
    """One score table of the trained baseline (the criteria's shared interface)."""
    from tfmot_easiedge import importance

    return importance.get(criterion)(model, data.calibration, analysis=analysis, batch_size=64, seed=seed,
                                     progress=False)


def cached_scores(cache: dict, key, model, analysis, criterion: str, data: Data, seed: int):
    """``(scores, seconds)`` of the baseline under ``criterion``, computed once per ``key`` and reused.

    A one-shot criterion scores the trained baseline the same way whatever the budget, so the four budgets
    share one scoring (tracing TBAA's step costs about a minute on ResNet-56 on 2 cores); ``seconds`` is the
    time that scoring took, which every run reports as part of its pruning time.
    """
    full_key = (*key, criterion, seed)
    if full_key not in cache:
        t0 = time.perf_counter()
        cache[full_key] = (score(model, analysis, criterion, data, seed), time.perf_counter() - t0)
    return cache[full_key]


def uniform_plan_for_macs(analysis, scores, budget):
    """The uniform plan with the smallest ratio whose predicted MACs meet ``budget`` (bisection on the ratio).

    Returns ``(plan, ratio)``. The removed count of every group, ``round(ratio * size)``, only grows with the
    ratio, so the predicted MACs (``MacsModel``, the counter ``select`` uses) only fall.

    Raises:
        ValueError: no uniform ratio reaches the MAC target.
    """
    from tfmot_easiedge.selection import FilterBudget, MacsModel, select

    mm = MacsModel(analysis)
    index = {g: i for i, g in enumerate(mm.group_ids)}
    sizes = np.array([analysis.groups[g].size for g in mm.group_ids], dtype=float)
    target = (1.0 - budget.ratio) * mm.macs(sizes)
    prunable = sum(g.size for g in analysis.prunable_groups.values())
    removable = sum(g.size - 1 for g in analysis.prunable_groups.values())

    def plan_at(ratio):
        return select(analysis, scores, FilterBudget(ratio), mode="uniform")

    def macs(plan):
        kept = sizes.copy()
        for g, idx in plan.kept.items():
            kept[index[g]] = len(idx)
        return mm.macs(kept)

    lo, hi = 0.0, min(removable / prunable, 1.0 - 1e-9)
    if macs(plan_at(hi)) > target:
        raise ValueError(f"uniform pruning cannot remove {budget.ratio:.0%} of MACs")
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if macs(plan_at(mid)) <= target else (mid, hi)
    return plan_at(hi), hi


def prune_one_shot(model, analysis, method: Method, budget, profile: Profile, data: Data, log,
                   scores: tuple[dict, float]) -> dict[str, Any]:
    """Selects under ``budget`` from the baseline's ``(scores, scoring seconds)``, then hard prune + masked
    fine-tune + strip; returns the run's pieces."""
    import keras

    import tfmot_easiedge as te
    from tfmot_easiedge.selection import MacsBudget

    keras.utils.set_random_seed(profile.seed)
    scores, score_seconds = scores
    t0 = time.perf_counter()
    selection: dict[str, Any] = {"mode": method.mode}
    if method.mode == "uniform" and isinstance(budget, MacsBudget):
        plan, ratio = uniform_plan_for_macs(analysis, scores, budget)
        selection.update(uniform_ratio=ratio, how="bisection on the uniform ratio to meet the MAC target")
    else:
        plan = te.select(analysis, scores, budget, mode=method.mode, min_fraction=profile.min_fraction)
    select_seconds = time.perf_counter() - t0

    wrapped = te.prune_filters(model, budget, importance=method.criterion, min_fraction=profile.min_fraction)
    wrapped.compile_from_config(model.get_compile_config())
    te.hard_prune(wrapped, plan)
    before = _before_finetune_callback(lambda m: accuracy(m, data))
    t0 = time.perf_counter()
    history = wrapped.fit(common.make_train_dataset(data.x_train, data.y_train, profile.batch_size, seed=profile.seed),
                          epochs=profile.finetune_epochs,
                          callbacks=[te.MaskedFineTune(plan, verbose=0), before, common._EpochLog.make(log)],
                          shuffle=False, verbose=0).history
    finetune_seconds = time.perf_counter() - t0
    small, plan = te.strip_pruning(wrapped)
    diff = _max_abs_diff(small, wrapped, data.x_test[:64])
    if profile.recalibrate_bn:  # as EasiEdge.run does: on the slim model, after the fine-tune
        te.recalibrate_batchnorm(small, common.make_train_dataset(data.x_train, data.y_train, profile.batch_size,
                                                                  seed=profile.seed),
                                 max_examples=profile.recalibrate_bn)
    return {"slim": small, "plan": plan, "accuracy_before_finetune": before.accuracy,
            "slim_max_abs_diff": diff, "selection": selection,
            "history": {"finetune": history},
            "seconds": {"prune": score_seconds + select_seconds, "score": score_seconds, "select": select_seconds,
                        "finetune": finetune_seconds}}


def prune_easiedge(model, method: Method, budget, profile: Profile, data: Data, log) -> dict[str, Any]:
    """``EasiEdge.run`` with ADMM for ``admm_epochs`` and the masked fine-tune for the remaining epochs."""
    import tfmot_easiedge as te

    before = _before_finetune_callback(lambda m: accuracy(m, data))
    rho = {} if profile.admm_rho is None else {"rho": profile.admm_rho}
    if profile.admm_rho_max is not None:
        rho["rho_max"] = profile.admm_rho_max
    engine = te.EasiEdge(budget, importance=method.criterion, calibration_size=profile.calibration_images,
                         zsteps_per_epoch=profile.zsteps_per_epoch, min_update_interval=profile.min_update_interval,
                         seed=profile.seed, verbose=0, recalibrate_bn=profile.recalibrate_bn,
                         min_fraction=profile.min_fraction, **rho)
    r = engine.run(model, common.make_train_dataset(data.x_train, data.y_train, profile.batch_size, seed=profile.seed),
                   calibration_data=data.calibration, admm_epochs=profile.admm_epochs,
                   finetune_epochs=profile.finetune_epochs - profile.admm_epochs,
                   callbacks=[before, common._EpochLog.make(log)])
    steps = math.ceil(len(data.x_train) / profile.batch_size)
    update_every, growth = engine.schedule(steps, profile.admm_epochs)
    return {"slim": r.model, "plan": r.plan, "accuracy_before_finetune": before.accuracy,
            "slim_max_abs_diff": r.slim_max_abs_diff,
            "selection": {"mode": "global", "admm": {"epochs": profile.admm_epochs, "update_every": update_every,
                                                     "rho": engine.rho,
                                                     "rho_growth": growth, "zsteps": r.timings["zsteps"],
                                                     "final": r.admm}},
            "history": r.history,
            "seconds": {"prune": r.timings["admm_fit"], "finetune": r.timings["finetune_fit"],
                        "zsteps": r.timings["zstep_total"]}}


def _max_abs_diff(a, b, x) -> float:
    """Max |a(x) - b(x)|, called eagerly (a few images: not worth tracing two models)."""
    x = x.astype("float32")
    return float(np.abs(np.asarray(a(x, training=False), np.float64) - np.asarray(b(x, training=False))).max())


def budget_met(analysis, plan, budget, base_macs: int, macs: int) -> dict[str, Any]:
    """What the slim model met: filters removed (of all prunable filters) and MACs removed, against the target."""
    total = sum(g.size for g in analysis.prunable_groups.values())
    removed = plan.removed_channels()
    out = {"kind": budget.describe()["kind"], "target": budget.ratio, "filters_removed": removed,
           "filters_total": total, "filter_ratio": removed / total, "macs_ratio": 1.0 - macs / base_macs}
    if out["kind"] == "filters":
        # the budget counts filters per producer, convolutions only (issue 14); channels are reported beside it
        cost = budget.cost_model(analysis)
        full, kept = cost.total(cost.full()), cost.total(cost.kept_counts(plan.kept))
        out.update(counted_filters_removed=int(round(full - kept)), counted_filters_total=int(round(full)),
                   target_filters_removed=int(math.floor(budget.ratio * full)))
        out["achieved"] = (full - kept) / full
    else:
        out["achieved"] = out["macs_ratio"]
    return out


def kept_filters(baseline, slim_model, plan, analysis, budget, criterion: str) -> dict[str, list[int]]:
    """``{layer: [filters before, after]}`` of the layers making prunable filters (from the report's layer rows)."""
    from tfmot_easiedge import report

    rows = report.build_report(baseline, slim_model, plan, analysis, budget=budget, importance=criterion,
                               stages=[])["layers"]
    return {r["name"]: [r["filters_before"], r["filters_after"]] for r in rows if r["prunable"]}


def run_pruning(profile: Profile, model_name: str, method_name: str, budget_text: str, baseline: dict,
                baseline_path: Path, data: Data, log=print, score_cache: dict | None = None
                ) -> tuple[dict[str, Any], Any]:
    """Prunes the baseline saved at ``baseline_path`` (measured in ``baseline``) with one method at one budget;
    returns ``(record, slim model)``. ``score_cache`` (a dict kept across calls) lets the one-shot runs of a
    baseline share its scoring.
    """
    import tfmot_easiedge as te
    from tfmot_easiedge.selection import parse_budget

    method, budget = METHODS[method_name], parse_budget(budget_text)
    model = load_model(baseline_path)
    analysis = te.analyze(model)
    compile_for_finetune(model, profile, math.ceil(len(data.x_train) / profile.batch_size))
    load_before = os.getloadavg()
    if method.admm:
        t0 = time.perf_counter()
        out = prune_easiedge(model, method, budget, profile, data, log)
    else:
        scores = cached_scores({} if score_cache is None else score_cache, (str(baseline_path),), model, analysis,
                               method.criterion, data, profile.seed)
        t0 = time.perf_counter()
        out = prune_one_shot(model, analysis, method, budget, profile, data, log, scores)
    # the scoring counts in full in every run, whether it ran now or for another budget of the same baseline
    total_seconds = time.perf_counter() - t0 + out["seconds"].get("score", 0.0)
    if out["accuracy_before_finetune"] is None:
        raise RuntimeError("the hard-pruned model was not measured: MaskedFineTune did not attach before the "
                           "measuring callback")
    small, plan = out["slim"], out["plan"]
    macs, params = int(te.count_macs(small)), int(te.count_params(small))
    after = accuracy(small, data)
    record = {
        "kind": "run", "profile": profile.name, "model": model_name, "method": method_name, "label": method.label,
        "criterion": method.criterion, "budget": budget.describe(), "budget_text": budget_text,
        "baseline": {**{k: baseline[k] for k in ("accuracy", "params", "macs")},
                     "latency_ms": baseline["latency"]["median_ms"]},
        "accuracy_before_finetune": out["accuracy_before_finetune"], "accuracy_after_finetune": after,
        "test_images": int(len(data.y_test)), "params": params, "macs": macs,
        "mac_reduction": baseline["macs"] / macs, "param_reduction": baseline["params"] / params,
        "budget_met": budget_met(analysis, plan, budget, baseline["macs"], macs),
        "latency": tflite_latency(small, data, profile),
        "kept_filters": kept_filters(model, small, plan, analysis, budget, method.criterion),
        "kept_per_group": {g: [len(k), plan.group_sizes[g]] for g, k in plan.kept.items()},
        "selection": out["selection"],
        "seconds": {**{k: round(v, 2) for k, v in out["seconds"].items()}, "total": round(total_seconds, 2)},
        "epochs_after_baseline": profile.finetune_epochs,
        "slim_max_abs_diff": out["slim_max_abs_diff"],
        "history": _rounded_history(out["history"]),
        "plan": plan.to_dict(),
        "profile_config": profile.as_dict(), "train_images": int(len(data.x_train)),
        "load_average": {"before": [round(v, 2) for v in load_before], "after": [round(v, 2) for v in os.getloadavg()]},
        "machine": common.machine_info(), "date": now(),
    }
    return record, small


def _rounded_history(history: dict[str, dict]) -> dict[str, dict]:
    return {stage: {k: [round(float(v), 4) for v in vals] for k, vals in h.items()} for stage, h in history.items()}
