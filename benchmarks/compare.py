"""EasiEdge against one-shot pruning criteria on CIFAR-10: VGG-16 and ResNet-56, filter and MAC budgets.

For each baseline (trained with augmentation on the local CIFAR-10, or loaded from the cache) and each
budget (50% / 80% of filters, 2x / 4x fewer MACs) every method prunes the same trained weights and gets the
same number of training epochs after the baseline, with the same optimizer and learning-rate schedule:

- ``easiedge``: ``EasiEdge(budget, importance="tbaa")``: ADMM for ``admm_epochs``, hard prune, masked
  fine-tune for the rest;
- ``tbaa``, ``l1`` (Li et al., 2017), ``taylor_fo`` (Molchanov et al., 2017), ``random``: score the trained
  baseline once, ``select`` globally, ``prune_filters`` + ``hard_prune`` + masked fine-tune
  (``MaskedFineTune``), ``strip_pruning``;
- ``uniform_l1``: the same with ``select(..., mode="uniform")`` (every group loses the same fraction, ranked by
  L1 inside it). A MAC budget is met globally by ``select``; for this method the uniform ratio that meets the
  MAC target is found by bisection (the smallest ratio whose predicted MACs are at most the target).

Each run writes ``<results-dir>/<profile>/<model>_<method>_<budget>.json`` (top-1 before and after the
fine-tune, params, MACs of the slim model, TFLite float32 latency at 1 thread and batch 1, kept filters per
layer, the plan, the budget met, wall times); ``RESULTS.md`` (beside the results folder) and a plot per
profile are regenerated at the end. Runs whose JSON exists are skipped (``--force`` re-runs them), so a long
profile can run in pieces (``--models``, ``--methods``, ``--budgets``).

Run from the repository root::

    .venv/bin/python -m benchmarks.compare --profile tiny      # smoke scale; the 48 runs take ~40 min (fixed costs)
    .venv/bin/python -m benchmarks.compare --profile cpu       # about 90 minutes on 2 quiet cores
    .venv/bin/python -m benchmarks.compare --profile cpu --estimate   # time the pieces, print the projection
    .venv/bin/python -m benchmarks.compare --profile full      # paper scale, for a GPU machine
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import gc
import json
import math
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` and ``tfmot_easiedge`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402
from benchmarks.compare_spec import METHODS, Method  # noqa: E402,F401  (re-exported for tests and callers)

MODELS = ("vgg16", "resnet56")
BUDGETS = ("filters:0.5", "filters:0.8", "macs:0.5", "macs:0.75")
LOSS = "sparse_categorical_crossentropy"


@dataclasses.dataclass(frozen=True)
class Profile:
    """The scale of a comparison: baselines, data, epochs after the baseline, measurement settings.

    Every method trains ``finetune_epochs`` epochs after the baseline; EasiEdge spends ``admm_epochs`` of them
    in ADMM and the rest in the masked fine-tune. The fine-tune optimizer is SGD (momentum 0.9, Nesterov)
    with a cosine decay from ``finetune_lr`` to 0 over all those epochs and Keras's decoupled weight decay.
    ``train_images`` (None: all 50,000) are the first images of the training set; the baseline holds out
    ``val_split`` of them to pick its epoch and log progress, and pruning fine-tunes on all of them.
    """

    name: str
    widths: dict[str, float]
    train_images: int | None
    val_split: float
    baseline_epochs: int
    batch_size: int
    baseline_lr: float
    finetune_epochs: int
    admm_epochs: int
    finetune_lr: float
    finetune_weight_decay: float
    test_images: int | None
    calibration_images: int
    zsteps_per_epoch: int
    min_update_interval: int
    latency_warmup: int
    latency_runs: int
    seed: int = 0
    admm_rho: float | None = None  # EasiEdge's initial rho; None: the library default
    admm_rho_max: float | None = None  # EasiEdge's final rho; None: the library default
    min_fraction: float = 0.0  # every method's selection keeps at least this fraction of each group
    # BatchNorm statistics re-estimated on this many training images: the baseline after training, every
    # method's slim model after its fine-tune (EasiEdge.run's ``recalibrate_bn``)
    recalibrate_bn: int = 2048

    def __post_init__(self):
        if not 0 < self.admm_epochs < self.finetune_epochs:
            raise ValueError(f"profile {self.name!r}: need 0 < admm_epochs < finetune_epochs (EasiEdge needs a "
                             f"fine-tune after ADMM), got {self.admm_epochs} and {self.finetune_epochs}")

    def train_config(self, model: str) -> common.TrainConfig:
        """The baseline's training recipe (``common.train`` defaults for the rest)."""
        return common.TrainConfig(model=model, width=self.widths[model], epochs=self.baseline_epochs,
                                  batch_size=self.batch_size, lr=self.baseline_lr, val_split=self.val_split,
                                  seed=self.seed, train_limit=self.train_images,
                                  recalibrate_bn=self.recalibrate_bn)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def matches(self, stored: dict[str, Any] | None) -> bool:
        """Whether a result's ``profile_config`` was made with these settings (``common.config_matches``)."""
        return common.config_matches(stored, self)

    def with_overrides(self, overrides: dict[str, str]) -> Profile:
        """This profile with the pruning settings in ``overrides`` (``{field: text}``) changed.

        Only what happens after the baseline may change (:data:`TUNABLE`): the baseline and the data stay
        those of the profile, so the tuned runs prune the same cached baselines.
        """
        changes = {}
        for key, text in overrides.items():
            if key not in TUNABLE:
                raise ValueError(f"--set {key}: not a tunable setting; choose from {', '.join(TUNABLE)}")
            current = getattr(self, key)
            kind = TUNABLE[key]
            try:
                changes[key] = None if text.lower() == "none" and current is None else kind(text)
            except ValueError:
                raise ValueError(f"--set {key}={text}: expected a {kind.__name__}") from None
        return dataclasses.replace(self, **changes)


#: The settings ``--set`` may change, with their types: the one-shot methods' knob (the fine-tune learning
#: rate, which EasiEdge's W-steps use too) and EasiEdge's own (rho, Z-step spacing, calibration size).
TUNABLE = {"finetune_lr": float, "finetune_weight_decay": float, "admm_rho": float, "admm_rho_max": float,
           "zsteps_per_epoch": int, "min_update_interval": int, "calibration_images": int, "admm_epochs": int,
           "min_fraction": float}


PROFILES = {
    # Smoke scale for CI (the test runs 7 of its 48 runs): a few hundred images, one baseline epoch, 2 after it.
    "tiny": Profile("tiny", widths={"vgg16": 0.125, "resnet56": 0.25}, train_images=320, val_split=0.2,
                    baseline_epochs=1, batch_size=64, baseline_lr=0.05, finetune_epochs=2, admm_epochs=1,
                    finetune_lr=0.01, finetune_weight_decay=5e-3, test_images=256, calibration_images=64,
                    zsteps_per_epoch=2, min_update_interval=2, latency_warmup=2, latency_runs=10),
    # About 90 minutes on 2 quiet cores (see benchmarks/README.md, "compare", for the estimate).
    "cpu": Profile("cpu", widths={"vgg16": 0.25, "resnet56": 0.25}, train_images=4000, val_split=0.1,
                   baseline_epochs=15, batch_size=128, baseline_lr=0.1, finetune_epochs=2, admm_epochs=1,
                   finetune_lr=0.01, finetune_weight_decay=5e-3, test_images=2000, calibration_images=256,
                   zsteps_per_epoch=4, min_update_interval=8, latency_warmup=10, latency_runs=100),
    # Paper scale for a GPU machine: full width, all data, 160 baseline epochs, 60 epochs after them.
    "full": Profile("full", widths={"vgg16": 1.0, "resnet56": 1.0}, train_images=None, val_split=0.0,
                    baseline_epochs=160, batch_size=128, baseline_lr=0.1, finetune_epochs=60, admm_epochs=30,
                    finetune_lr=0.01, finetune_weight_decay=5e-3, test_images=None, calibration_images=512,
                    zsteps_per_epoch=2, min_update_interval=50, latency_warmup=20, latency_runs=200),
}


# --------------------------------------------------------------------------- names and budgets
def budget_tag(text: str) -> str:
    """The file-name form of a budget: ``"filters:0.5"`` -> ``"filters50"``, ``"macs:0.75"`` -> ``"macs75"``.

    Example:
        >>> budget_tag("macs:0.75"), budget_tag("filters:0.8")
        ('macs75', 'filters80')
    """
    from tfmot_easiedge.selection import parse_budget

    budget = parse_budget(text)
    return f"{budget.describe()['kind']}{round(budget.ratio * 100):g}"


def run_stem(model: str, method: str, budget: str) -> str:
    """``<model>_<method>_<budget tag>``, the name of a run's JSON (and saved slim model)."""
    return f"{model}_{method}_{budget_tag(budget)}"


def cache_name(profile: Profile, model: str) -> str:
    """The baseline's cache name, e.g. ``vgg16_w0.25_cpu`` (the recorded config must also match)."""
    return f"{profile.train_config(model).default_name()}_{profile.name}"


# --------------------------------------------------------------------------- data and baselines
@dataclasses.dataclass
class Data:
    """The arrays of a profile: training subset, test subset, calibration images (float32, with labels)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    calibration: tuple[np.ndarray, np.ndarray]

    @classmethod
    def load(cls, profile: Profile) -> Data:
        x, y = common.load_split("train", profile.train_images)
        xt, yt = common.load_split("test", profile.test_images)
        n = profile.calibration_images
        return cls(x, y, xt, yt, (x[:n].astype("float32"), y[:n]))


def load_or_train_baseline(profile: Profile, model: str, cache_dir: Path, log: Callable[[str], None] = print):
    """The profile's trained baseline from ``cache_dir``, trained with ``common.train`` when missing or stale.

    Returns ``(keras model path, training result dict)``; the model is cached as ``<cache name>.keras`` with
    its training result beside it (``.json``), which must record the same ``TrainConfig``.
    """
    cfg = profile.train_config(model)
    name = cache_name(profile, model)
    path, record = cache_dir / f"{name}.keras", cache_dir / f"{name}.json"
    if path.exists() and record.exists():
        result = json.loads(record.read_text(encoding="utf-8"))
        if common.config_matches(result.get("config"), cfg):
            return path, result
        log(f"cached {path} was trained with another config; retraining")
    log(f"training the {profile.name} baseline {name}: {cfg}")
    trained, result = common.train(cfg, log=log)
    result = {"name": name, **result}
    common.save_model_atomic(trained, path)
    common.write_json_atomic(record, result)
    return path, result


def load_model(path: Path):
    import keras

    keras.backend.clear_session()
    gc.collect()
    return keras.saving.load_model(path)


def accuracy(model, data: Data) -> float:
    """Top-1 accuracy on the profile's test images (``common.evaluate``)."""
    return common.evaluate(model, data.x_test, data.y_test)["accuracy"]


def tflite_latency(model, data: Data, profile: Profile) -> dict[str, Any]:
    """Exports ``model`` to TFLite float32 (verified against Keras) and times it: 1 thread, batch 1."""
    from tfmot_easiedge import export, measure_latency

    with tempfile.TemporaryDirectory(prefix="compare_") as folder:
        exported = export.tflite(model, Path(folder) / "model.tflite", sample_inputs=data.x_test[:8].astype("float32"))
        load = os.getloadavg()
        r = measure_latency(exported.path, runtime="tflite", threads=1, batch_size=1, warmup=profile.latency_warmup,
                            runs=profile.latency_runs, input_data=data.x_test[:1].astype("float32"), progress=False)
    return {"runtime": "tflite float32 (XNNPACK)", "threads": 1, "batch_size": 1, "median_ms": r.median_ms,
            "p10_ms": r.p10_ms, "p90_ms": r.p90_ms, "runs": r.runs, "size_bytes": exported.size_bytes,
            "max_rel_diff_vs_keras": exported.max_rel_diff, "load_average": [round(v, 2) for v in load]}


def baseline_record(profile: Profile, model: str, cache_dir: Path, data: Data, log=print) -> dict[str, Any]:
    """Trains or loads the baseline and measures it like the pruned models (accuracy, MACs, latency)."""
    from tfmot_easiedge import count_macs, count_params

    path, trained = load_or_train_baseline(profile, model, cache_dir, log=log)
    net = load_model(path)
    return {"kind": "baseline", "profile": profile.name, "model": model, "width": profile.widths[model],
            "cache_name": path.stem, "accuracy": accuracy(net, data), "test_images": int(len(data.y_test)),
            "params": int(count_params(net)), "macs": int(count_macs(net)),
            "latency": tflite_latency(net, data, profile),
            "training": {k: trained.get(k) for k in ("test_accuracy", "test_accuracy_before_bn", "test_images", "train_images", "val_images",
                                                     "epochs", "selected_epoch", "selected_on", "seconds",
                                                     "seconds_per_epoch", "recipe", "config", "date")},
            "profile_config": profile.as_dict(), "machine": common.machine_info(), "date": _now()}


# --------------------------------------------------------------------------- pruning
def compile_for_finetune(model, profile: Profile, steps_per_epoch: int) -> None:
    """Compiles ``model`` with the fine-tune recipe every method shares (the pruned copies reuse its config)."""
    import keras

    schedule = keras.optimizers.schedules.CosineDecay(profile.finetune_lr, profile.finetune_epochs * steps_per_epoch,
                                                      alpha=0.0)
    optimizer = keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True,
                                     weight_decay=profile.finetune_weight_decay or None)
    model.compile(optimizer=optimizer, loss=LOSS, metrics=["accuracy"])


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
        "machine": common.machine_info(), "date": _now(),
    }
    return record, small


def _rounded_history(history: dict[str, dict]) -> dict[str, dict]:
    return {stage: {k: [round(float(v), 4) for v in vals] for k, vals in h.items()} for stage, h in history.items()}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- the runner
def _is_current(path: Path, profile: Profile) -> bool:
    """A result file exists and was made with this profile's settings."""
    if not path.exists():
        return False
    try:
        return profile.matches(json.loads(path.read_text(encoding="utf-8")).get("profile_config"))
    except (OSError, json.JSONDecodeError):
        return False


def tuning_tag(overrides: dict[str, str]) -> str:
    """The folder name of a tuning setting: ``{"finetune_lr": "0.03"}`` -> ``"finetune_lr=0.03"``."""
    return ",".join(f"{k}={v}" for k, v in sorted(overrides.items()))


def run(args: argparse.Namespace, log: Callable[[str], None] = print) -> list[str]:
    """Runs what ``args`` selects and regenerates the report; returns the failed runs' names.

    With ``--set`` overrides the runs prune the profile's baselines with the changed settings and go to
    ``<results-dir>/<profile>-tuning/<setting>/`` (the report lists them as the tuning table).
    """
    profile = PROFILES[args.profile]
    out_dir = args.results_dir / profile.name
    overrides = dict(args.set or {})
    run_profile = profile.with_overrides(overrides)
    run_dir = args.results_dir / f"{profile.name}-tuning" / tuning_tag(overrides) if overrides else out_dir
    data = Data.load(run_profile)
    failures, score_cache = [], {}
    for model_name in args.models:
        base_path = out_dir / f"baseline_{model_name}.json"
        baseline = json.loads(base_path.read_text(encoding="utf-8")) if _is_current(base_path, profile) else None
        if baseline is None or args.force or not (args.cache_dir / f"{baseline['cache_name']}.keras").exists():
            baseline = baseline_record(profile, model_name, args.cache_dir, data, log=log)
            common.write_json_atomic(base_path, baseline)
        baseline_path = args.cache_dir / f"{baseline['cache_name']}.keras"
        log(f"{model_name}: baseline accuracy {baseline['accuracy']:.4f}, {baseline['macs']:,} MACs")
        for method_name in args.methods:
            for budget_text in args.budgets:
                stem = run_stem(model_name, method_name, budget_text)
                path = run_dir / f"{stem}.json"
                if _is_current(path, run_profile) and not args.force:
                    log(f"{stem}: done, skipped (--force re-runs it)")
                    continue
                log(f"{stem}: pruning")
                try:
                    record, small = run_pruning(run_profile, model_name, method_name, budget_text, baseline,
                                                baseline_path, data, log, score_cache)
                except Exception:  # noqa: BLE001 - one failed run must not lose the others of a long profile
                    log(f"{stem}: FAILED\n{traceback.format_exc()}")
                    failures.append(stem)
                    continue
                record["command"] = _command(args)
                record["overrides"] = overrides
                if args.save_models:
                    common.save_model_atomic(small, run_dir / f"{stem}.keras")
                common.write_json_atomic(path, record)
                log(f"{stem}: accuracy {record['accuracy_before_finetune']:.4f} -> "
                    f"{record['accuracy_after_finetune']:.4f}, MACs /{record['mac_reduction']:.2f}, "
                    f"{record['latency']['median_ms']:.2f} ms, {record['seconds']['total']:.0f}s")
    from benchmarks import compare_report

    written = compare_report.write(args.results_dir, args.report)
    log(f"wrote {', '.join(str(p) for p in written)}")
    return failures


def _command(args: argparse.Namespace) -> str:
    sets = "".join(f" --set {k}={v}" for k, v in sorted((args.set or {}).items()))
    return f".venv/bin/python -m benchmarks.compare --profile {args.profile}{sets}"


# --------------------------------------------------------------------------- the estimate
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


# --------------------------------------------------------------------------- command line
def _names(text: str, known: Sequence[str], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown {what} {unknown or text!r}; choose from {', '.join(known)}")
    return names


def _budgets(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    try:
        [budget_tag(n) for n in names]
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return names


def _setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE, got {text!r}")
    return key.strip(), value.strip()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    p.add_argument("--models", type=lambda s: _names(s, MODELS, "model"), default=list(MODELS),
                   help=f"comma-separated, from {', '.join(MODELS)}")
    p.add_argument("--methods", type=lambda s: _names(s, list(METHODS), "method"), default=list(METHODS),
                   help=f"comma-separated, from {', '.join(METHODS)}")
    p.add_argument("--budgets", type=_budgets, default=list(BUDGETS),
                   help=f"comma-separated 'filters:R' / 'macs:R' (default {','.join(BUDGETS)})")
    p.add_argument("--force", action="store_true", help="re-run runs whose result file exists")
    p.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR,
                   help="results go to <results-dir>/<profile>/ (default benchmarks/results)")
    p.add_argument("--cache-dir", type=Path, default=common.CACHE_DIR,
                   help="trained baselines (default benchmarks/cache)")
    p.add_argument("--report", type=Path, default=None,
                   help="the generated Markdown (default RESULTS.md beside the results folder)")
    p.add_argument("--save-models", action="store_true", help="also save each slim model as <run>.keras")
    p.add_argument("--estimate", action="store_true", help="time the profile's pieces and print its projected "
                   "duration; trains and prunes nothing")
    p.add_argument("--report-only", action="store_true", help="only regenerate the report from the result files")
    p.add_argument("--set", type=_setting, action="append", metavar="FIELD=VALUE",
                   help="tune a pruning setting (repeatable): " + ", ".join(TUNABLE) + "; results go to "
                   "<results-dir>/<profile>-tuning/<settings>/")
    args = p.parse_args(argv)
    if args.set:
        args.set = dict(args.set)
        try:
            PROFILES[args.profile].with_overrides(args.set)
        except ValueError as err:
            p.error(str(err))
    if args.report is None:
        args.report = args.results_dir.parent / "RESULTS.md"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    log = lambda line: print(line, flush=True)  # noqa: E731
    if args.estimate:
        estimate(PROFILES[args.profile], args.models, log=log)
        return 0
    if args.report_only:
        from benchmarks import compare_report

        log(f"wrote {', '.join(str(p) for p in compare_report.write(args.results_dir, args.report))}")
        return 0
    failures = run(args, log=log)
    if failures:
        log(f"{len(failures)} run(s) failed: {', '.join(failures)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
