"""Runs the study run by run; every finished run is one JSON file, so a stopped campaign loses nothing.

Order, per (net, budget): the tuning runs (seed 0, every learning rate of the grid, scored on the held-out
training images), then the final runs of each arm at its chosen learning rate (seeds of the profile, scored
once on the test set). Seed 0's final run scores the slim model its tuning run saved, so it is not trained
twice. A budget after a net's first one reuses the learning rates chosen at the first (``lr_chosen_at`` in the
JSON), unless ``--tune-every-budget``.

From the repository root::

    nice .venv/bin/python -m benchmarks.study.run --profile cifar --nets vgg16_bn_w0.35 --budgets macs:0.75
    .venv/bin/python -m benchmarks.study.run --profile cifar --estimate
    .venv/bin/python -m benchmarks.study.run --profile smoke            # CI: about a minute
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks import common  # noqa: E402
from benchmarks.study import spec  # noqa: E402
from benchmarks.study.spec import Arm, Net, Profile, RunKey  # noqa: E402

RESULTS_DIR = common.RESULTS_DIR / "study"
MODELS_DIR = common.CACHE_DIR / "study"  # slim models of tuning runs (not committed)


# --------------------------------------------------------------------------- data and baselines
class Data:
    """The profile's images: fine-tune split, held-out split (the last training images) and test split."""

    def __init__(self, profile: Profile):
        x, y = common.load_split("train", limit=None if profile.train_images is None
                                 else profile.train_images + profile.heldout_images)
        n = len(x) - profile.heldout_images
        self.x_train, self.y_train = x[:n], y[:n]
        self.x_heldout, self.y_heldout = x[n:], y[n:]
        self.x_test, self.y_test = common.load_split("test", limit=profile.test_images)

    def calibration(self, profile: Profile, seed: int) -> np.ndarray:
        """The seed's calibration subset of the fine-tune split (the same for every arm: paired seeds)."""
        idx = np.random.default_rng((seed, 7)).choice(len(self.x_train), profile.calibration_images, replace=False)
        return self.x_train[np.sort(idx)].astype("float32")


def load_baseline(net: Net, profile: Profile, data: Data, log: Callable[[str], None]):
    """The committed baseline (safe mode), or for the smoke profile a tiny net trained here once and cached."""
    import keras

    if net.baseline is not None:
        if not net.baseline.exists():
            raise SystemExit(f"{net.baseline} is missing: train it with benchmarks.fast_train (see its README)")
        return keras.saving.load_model(net.baseline, compile=False, safe_mode=True)
    path = MODELS_DIR / f"{profile.name}_{net.name}_baseline.keras"
    if path.exists():
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    from benchmarks import fast_train

    log(f"training the {profile.name} baseline {net.name} (2 epochs on {len(data.x_train)} images)")
    keras.utils.set_random_seed(0)
    model = common.model_builders()[net.model](width=net.width, seed=0)
    compile_for_finetune(model, profile, 0.05, len(data.x_train) // profile.batch_size, epochs=2)
    model.fit(fast_train.make_batches(data.x_train, data.y_train, profile.batch_size, seed=0), epochs=2, verbose=0)
    common.save_model_atomic(model, path)
    return keras.saving.load_model(path, compile=False, safe_mode=True)


def compile_for_finetune(model, profile: Profile, lr: float, steps_per_epoch: int, *, epochs: int) -> None:
    """SGD (momentum 0.9, Nesterov), cosine decay from ``lr`` to 0 over all the epochs after the baseline,
    decoupled weight decay on kernels only, label-smoothed cross-entropy on one-hot labels (the recipe the
    baselines were trained with)."""
    import keras

    schedule = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, epochs * steps_per_epoch))
    optimizer = keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True, weight_decay=profile.weight_decay)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    model.compile(optimizer=optimizer,
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=profile.label_smoothing),
                  metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])


# --------------------------------------------------------------------------- one run
def _prune(arm: Arm, key: RunKey, profile: Profile, model, batches, calibration):
    """Runs the arm; returns the library's result (``EasiEdgeResult``)."""
    import tfmot_easiedge as te

    common_options = {"calibration_size": profile.calibration_images, "min_fraction": profile.min_fraction,
                      "recalibrate_bn": profile.recalibrate_bn, "seed": key.seed, "verbose": 0}
    epochs = profile.epochs_after_baseline
    if arm.kind == "admm":
        pipeline = te.EasiEdge(key.budget, importance=_criterion(arm.criterion), **common_options)
        return pipeline.run(model, batches, calibration_data=calibration, admm_epochs=profile.admm_epochs,
                            finetune_epochs=epochs - profile.admm_epochs, steps_per_epoch=len(batches))
    pipeline = te.OneShot(key.budget, importance=_criterion(arm.criterion), mode=arm.mode,
                          iterations=arm.iterations, **common_options)
    # Iterative rounds count as epochs: R rounds spend (R - 1) x between, the rest is the final fine-tune.
    between = max(1, epochs // (2 * arm.iterations)) if arm.iterations > 1 else 0
    return pipeline.run(model, batches, calibration_data=calibration, epochs_between=max(between, 1),
                        finetune_epochs=epochs - between * (arm.iterations - 1), steps_per_epoch=len(batches))


def _criterion(name: str):
    if name == "group_l2":
        from tfmot_easiedge.importance.group_norm import group_l2

        return group_l2
    return name


def _predictions(model, x: np.ndarray) -> np.ndarray:
    return np.argmax(model.predict(x.astype("float32"), batch_size=500, verbose=0), axis=-1).astype(np.int8)


def _latency(model, x: np.ndarray, runs: int) -> float | None:
    if runs <= 0:
        return None
    import tempfile

    import tfmot_easiedge as te

    with tempfile.TemporaryDirectory() as tmp:
        exported = te.export.tflite(model, Path(tmp) / "m.tflite", sample_inputs=x[:8].astype("float32"))
        result = te.measure_latency(exported.path, runtime="tflite", threads=1, batch_size=1, warmup=10,
                                    runs=runs, input_data=x[:1].astype("float32"), progress=False)
    return round(float(result.median_ms), 4)


def _kept_per_group(plan) -> dict[str, list[int]]:
    """``{group_id: [kept, size]}``: the per-layer filters of the report, small enough for every run's JSON."""
    return {gid: [len(kept), int(plan.group_sizes[gid])] for gid, kept in plan.kept.items()}


def run_one(profile: Profile, key: RunKey, data: Data, log: Callable[[str], None], command: str) -> dict[str, Any]:
    """Trains and scores one run; writes and returns its JSON record."""
    import keras

    import tfmot_easiedge as te
    from benchmarks import fast_train

    net, arm = profile.net(key.net), profile.arm(key.arm)
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    tune_model = MODELS_DIR / profile.name / key.relpath().replace("final_", "tune_").replace(".json", ".keras")
    baseline = load_baseline(net, profile, data, log)
    if key.phase == "final" and key.seed == 0 and tune_model.exists():
        slim = keras.saving.load_model(tune_model, compile=False, safe_mode=True)
        record = {"reused": f"the slim model of the tuning run {tune_model.name} (not trained twice)"}
        tune = json.loads((RESULTS_DIR / profile.name / key.relpath().replace("final_", "tune_")).read_text())
        record.update({k: tune[k] for k in ("plan_groups", "timings", "macs", "params", "epochs_after_baseline")})
    else:
        keras.utils.set_random_seed(key.seed)
        model = keras.models.clone_model(baseline)
        model.set_weights(baseline.get_weights())
        batches = fast_train.make_batches(data.x_train, data.y_train, profile.batch_size, seed=key.seed)
        compile_for_finetune(model, profile, key.lr, len(batches), epochs=profile.epochs_after_baseline)
        result = _prune(arm, key, profile, model, batches, data.calibration(profile, key.seed))
        slim = result.model
        record = {"plan_groups": _kept_per_group(result.plan), "timings": {k: round(float(v), 2) for k, v in
                                                                           result.timings.items()},
                  "macs": int(te.count_macs(slim)), "params": int(te.count_params(slim)),
                  "epochs_after_baseline": profile.epochs_after_baseline}
        if key.phase == "tune":
            common.save_model_atomic(slim, tune_model)
    base_macs = int(te.count_macs(baseline))
    record.update({"net": key.net, "budget": key.budget, "arm": key.arm, "arm_label": arm.label, "seed": key.seed,
                   "lr": key.lr, "phase": key.phase, "profile": profile.name,
                   "baseline_macs": base_macs, "mac_reduction": round(base_macs / record["macs"], 4)})
    if key.phase == "tune":
        pred = _predictions(slim, data.x_heldout)
        record.update(heldout_images=int(len(pred)), heldout_accuracy=float(np.mean(pred == data.y_heldout)))
    else:
        pred = _predictions(slim, data.x_test)
        record.update(test_images=int(len(pred)), test_accuracy=float(np.mean(pred == data.y_test)),
                      test_predictions="".join(map(str, pred.tolist())),
                      tflite_ms=_latency(slim, data.x_test, profile.latency_runs))
    record.update(command=command, machine=common.machine_info(), load_before=round(load0, 2),
                  date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                  wall_seconds=round(time.perf_counter() - t0, 1))
    common.write_json_atomic(RESULTS_DIR / profile.name / key.relpath(), record)
    return record


# --------------------------------------------------------------------------- the campaign
def read(profile: Profile, key: RunKey) -> dict[str, Any] | None:
    path = RESULTS_DIR / profile.name / key.relpath()
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def chosen_lr(profile: Profile, net: str, budget: str, arm: str) -> float | None:
    """The grid's learning rate with the best held-out accuracy (ties: the smaller), None until all ran."""
    scores = []
    for lr in profile.lr_grid:
        record = read(profile, RunKey(net, budget, arm, 0, lr, "tune"))
        if record is None:
            return None
        scores.append((-record["heldout_accuracy"], lr))
    return min(scores)[1]


def planned(profile: Profile, nets: Sequence[str], budgets: Sequence[str], arms: Sequence[str],
            tune_every_budget: bool = False) -> Iterator[RunKey]:
    """The runs in campaign order; a final run appears once its learning rate can be chosen."""
    for net in nets:
        for i, budget in enumerate(budgets):
            tune_budget = budget if tune_every_budget or i == 0 else budgets[0]
            for arm in arms:
                if tune_budget == budget:
                    for lr in profile.lr_grid:
                        yield RunKey(net, budget, arm, 0, lr, "tune")
            for arm in arms:
                lr = chosen_lr(profile, net, tune_budget, arm)
                if lr is None:
                    continue
                for seed in profile.seeds:
                    yield RunKey(net, budget, arm, seed, lr, "final")


def estimate(profile: Profile, nets: Sequence[str], budgets: Sequence[str], arms: Sequence[str],
             data: Data, log: Callable[[str], None], steps: int = 10) -> dict[str, Any]:
    """Times training steps of each baseline and projects the campaign's CPU hours."""
    from benchmarks import fast_train

    out = {}
    for name in nets:
        net = profile.net(name)
        model = load_baseline(net, profile, data, log)
        batches = fast_train.make_batches(data.x_train, data.y_train, profile.batch_size, seed=0)
        compile_for_finetune(model, profile, 0.01, len(batches), epochs=1)
        model.fit(batches, epochs=1, steps_per_epoch=2, verbose=0)  # trace
        t0 = time.perf_counter()
        model.fit(batches, epochs=1, steps_per_epoch=steps, verbose=0)
        step = (time.perf_counter() - t0) / steps
        epoch = step * len(batches)
        # ~1.2 epochs of extra work per run: scoring, BN re-estimation, evaluation, export and latency
        run_s = epoch * (profile.epochs_after_baseline + 1.2)
        tune_runs = len(arms) * len(profile.lr_grid)
        final_runs = len(arms) * len(budgets) * (len(profile.seeds) - 1) + len(arms) * (len(budgets) - 1)
        runs = tune_runs + final_runs
        out[name] = {"seconds_per_step": round(step, 4), "seconds_per_epoch": round(epoch, 1),
                     "runs": runs, "hours": round(runs * run_s / 3600, 1)}
        log(f"{name}: {epoch:.0f} s/epoch, {runs} runs x {run_s / 60:.0f} min = {runs * run_s / 3600:.1f} CPU hours")
    log(f"total: {sum(v['hours'] for v in out.values()):.1f} CPU hours on this machine")
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--profile", default="cifar", choices=sorted(spec.PROFILES))
    p.add_argument("--nets", help="comma-separated (default: all of the profile)")
    p.add_argument("--budgets", help="comma-separated, e.g. macs:0.75 (default: all)")
    p.add_argument("--arms", help="comma-separated (default: all)")
    p.add_argument("--max-runs", type=int, help="stop after this many runs (the campaign continues next time)")
    p.add_argument("--tune-every-budget", action="store_true")
    p.add_argument("--estimate", action="store_true", help="time the baselines' steps and print the CPU hours")
    return p.parse_args(argv)


def _pick(text: str | None, known: Sequence[str], what: str) -> list[str]:
    if not text:
        return list(known)
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown {what} {unknown}; choose from {list(known)}")
    return names


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    profile = spec.PROFILES[args.profile]
    nets = _pick(args.nets, [n.name for n in profile.nets], "nets")
    budgets = _pick(args.budgets, profile.budgets, "budgets")
    arms = _pick(args.arms, [a.name for a in profile.arms], "arms")
    command = "python -m benchmarks.study.run " + " ".join(sys.argv[1:] if argv is None else argv)

    def log(line: str) -> None:
        print(f"[{_dt.datetime.now(_dt.timezone.utc):%H:%M:%S}] {line}", flush=True)

    data = Data(profile)
    if args.estimate:
        estimate(profile, nets, budgets, arms, data, log)
        return 0
    done = 0
    while True:  # re-plan after each run: finished tuning unlocks final runs
        todo = [k for k in planned(profile, nets, budgets, arms, args.tune_every_budget) if read(profile, k) is None]
        if not todo or (args.max_runs is not None and done >= args.max_runs):
            break
        key = todo[0]
        log(f"run {done + 1} ({len(todo)} planned now): {key.relpath()}")
        record = run_one(profile, key, data, log, command)
        score = record.get("test_accuracy", record.get("heldout_accuracy"))
        log(f"  {key.phase} accuracy {score:.4f}, {record['mac_reduction']:.2f}x fewer MACs, "
            f"{record['wall_seconds']:.0f} s")
        done += 1
    log(f"{done} runs done; {len(todo)} left")
    return 0


if __name__ == "__main__":
    sys.exit(main())
