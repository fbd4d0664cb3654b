"""Does ADMM search? The Z-step's variants on a trained CIFAR-10 baseline, Z-step by Z-step.

For each arm, ``prune_filters`` + ``fit`` under ``ADMMUpdate`` for ``--epochs`` ADMM epochs (SGD momentum 0.9 at
a constant ``--lr``, 4-px crop + flip augmentation, ``--train`` training images), with a Z-step every
``--update-every`` steps and rho growing geometrically from ``rho`` to ``rho_max`` over the first two thirds of
the Z-steps (what ``EasiEdge`` does). Recorded at every Z-step: the channels that changed side, the Jaccard of
the support with the previous one and with the first projection (= one-shot TBAA on the trained weights, BN
re-estimated), the primal residual (the relative weight a hard prune would cut now), rho. At the end, on all
10,000 test images with BatchNorm re-estimated on 2,048 training images: the accuracy of the network just
before the hard prune (removed channels still there), of the hard-pruned slim network, and of one-shot TBAA
(the first projection, slimmed, no training).

Arms (``--arms``):

- ``loss_w`` (the ADMM before issue 14): penalty in the loss (through momentum), rank the current W, freeze the
  support at rho >= 0.1, no score averaging, no momentum reset; rho 1e-2 -> 10.
- ``prox_w``: proximal penalty step, rank W, EMA of scores (0.5), adaptive freeze (3 Z-steps with < 1% of channels
  changed together), momentum reset of entries that change side; rho 1e-3 -> 1.
- ``prox_wu``: as ``prox_w`` but ranking W + U (the textbook Z-step).

From the repository root (about 15 quiet minutes per arm on ResNet-20 at the defaults)::

    nice .venv/bin/python -m benchmarks.admm_search --net resnet20_w1 --budget macs:0.5

Writes ``benchmarks/results/admm_search_<net>_<budget>.json`` and ``.md`` after every arm (an arm already in
the JSON is skipped: the run resumes).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402

ARMS: dict[str, dict[str, Any]] = {
    "loss_w": {"penalty": "loss", "rho": 1e-2, "rho_max": 10.0,
               "update": {"rank_on": "w", "freeze_rho": 0.1, "freeze_after": None, "score_ema": 0.0,
                          "reset_momentum": False}},
    "prox_w": {"penalty": "proximal", "rho": 1e-3, "rho_max": 1.0,
               "update": {"rank_on": "w", "freeze_after": 3, "score_ema": 0.5, "reset_momentum": True}},
    "prox_wu": {"penalty": "proximal", "rho": 1e-3, "rho_max": 1.0,
                "update": {"rank_on": "w_plus_u", "freeze_after": 3, "score_ema": 0.5, "reset_momentum": True}},
}


def _support(plan) -> set[tuple[str, int]]:
    return {(g, int(i)) for g, idx in plan.kept.items() for i in idx}


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / max(1, len(a | b))


def _accuracy_bn(model, x_bn, x_test, y_test) -> float:
    """Test accuracy of a copy of ``model`` with its BatchNorm statistics re-estimated on ``x_bn``."""
    import keras

    import tfmot_easiedge as te

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    te.recalibrate_batchnorm(copy, x_bn, max_examples=len(x_bn), batch_size=128)
    return float(common.evaluate(copy, x_test, y_test)["accuracy"])


def run_arm(name: str, net: str, budget: str, *, epochs: int, lr: float, batch: int, update_every: int,
            data: dict[str, np.ndarray]) -> dict[str, Any]:
    import keras

    import tfmot_easiedge as te

    arm = ARMS[name]
    keras.utils.set_random_seed(0)
    model = keras.saving.load_model(common.BENCHMARKS_DIR / "baselines" / f"{net}.keras")
    wrapped = te.prune_filters(model, budget, rho=arm["rho"], penalty=arm["penalty"])
    wrapped.compile(keras.optimizers.SGD(lr, momentum=0.9, nesterov=True),
                    keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    steps = len(data["x"]) // batch
    n_z = (steps * epochs) // update_every
    growth = (arm["rho_max"] / arm["rho"]) ** (1.0 / max(1, (2 * n_z) // 3))
    update = te.ADMMUpdate((data["calib"], data["calib_y"]), update_every=update_every, rho_growth=growth,
                           rho_max=arm["rho_max"], calibration_size=len(data["calib"]), seed=0, verbose=0,
                           **arm["update"])
    rows: list[dict[str, Any]] = []
    first: dict[str, Any] = {}

    class Recorder(keras.callbacks.Callback):
        def _note(self):
            if len(update.zstep_seconds) > len(rows):
                kept = _support(update.plan)
                first.setdefault("support", kept)
                first.setdefault("plan", update.plan)
                prev = rows[-1]["support"] if rows else kept
                rows.append({"zstep": len(update.zstep_seconds), **{k: float(v) for k, v in update.last.items()},
                             "jaccard_previous": _jaccard(kept, prev), "jaccard_one_shot": _jaccard(kept,
                                                                                                  first["support"]),
                             "seconds": float(update.zstep_seconds[-1]), "support": kept})

        def on_train_begin(self, logs=None):
            self._note()

        def on_train_batch_end(self, batch, logs=None):
            self._note()

    train = common.make_train_dataset(data["x"], data["y"], batch, augment=True, seed=0)
    t0 = time.perf_counter()
    h = wrapped.fit(train, epochs=epochs, callbacks=[update, Recorder()], verbose=2)
    fit_seconds = time.perf_counter() - t0
    # the network as ADMM left it (removed channels still there), its BatchNorm statistics re-estimated in place
    te.recalibrate_batchnorm(wrapped, data["bn"], max_examples=len(data["bn"]), batch_size=128)
    before = float(common.evaluate(wrapped, data["x_test"], data["y_test"])["accuracy"])
    slim, plan = te.strip_pruning(wrapped)
    after = _accuracy_bn(slim, data["bn"], data["x_test"], data["y_test"])
    one_shot = te.slim(model, first["plan"])
    one_shot_acc = _accuracy_bn(one_shot, data["bn"], data["x_test"], data["y_test"])
    return {"arm": name, "settings": dict(arm), "rho_growth": growth,
            "zsteps": [{k: v for k, v in r.items() if k != "support"} for r in rows],
            "history": {k: [float(x) for x in v] for k, v in h.history.items()},
            "accuracy_before_hard_prune": before, "accuracy_hard_prune": after,
            "hard_prune_drop": before - after, "accuracy_one_shot_no_ft": one_shot_acc,
            "jaccard_final_vs_one_shot": _jaccard(_support(plan), first["support"]),
            "final_primal_residual": rows[-1]["admm_primal_residual"], "macs": int(te.count_macs(slim)),
            "macs_baseline": int(te.count_macs(model)), "min_width": min(len(k) for k in plan.kept.values()),
            "fit_seconds": fit_seconds, "zstep_seconds_total": float(sum(update.zstep_seconds))}


def markdown(res: dict[str, Any]) -> str:
    lines = [f"# Does ADMM search? `{res['net']}` at `{res['budget']}`", "",
             f"{res['epochs']} ADMM epochs on {res['train_images']} training images (SGD lr {res['lr']} momentum 0.9, "
             f"batch {res['batch']}), a Z-step every {res['update_every']} steps, TBAA on {res['calibration']} "
             f"calibration images; accuracies on {res['test_images']} test images with BatchNorm re-estimated on "
             f"2,048 training images. Machine: {res['machine'].get('cpu_model')}, load {res['load']}; {res['date']}; "
             f"`{res['command']}`. Baseline {res['baseline_accuracy']:.4f}.", "",
             "| arm | before hard prune | hard prune | drop | one-shot, no FT | final primal residual | "
             "Jaccard final vs one-shot | Z-steps with changes | min width |", "|---|---|---|---|---|---|---|---|---|"]
    for a in res["arms"].values():
        moving = sum(1 for r in a["zsteps"][1:] if r["admm_mask_changes"] > 0)
        lines.append(f"| {a['arm']} | {a['accuracy_before_hard_prune']:.4f} | {a['accuracy_hard_prune']:.4f} | "
                     f"{a['hard_prune_drop']:+.4f} | {a['accuracy_one_shot_no_ft']:.4f} | "
                     f"{a['final_primal_residual']:.2e} | {a['jaccard_final_vs_one_shot']:.3f} | "
                     f"{moving}/{len(a['zsteps']) - 1} | {a['min_width']} |")
    for a in res["arms"].values():
        lines += ["", f"## {a['arm']}", "", "| Z-step | changed | Jaccard prev | Jaccard one-shot | primal | rho | "
                  "frozen |", "|---|---|---|---|---|---|---|"]
        for r in a["zsteps"]:
            lines.append(f"| {r['zstep']} | {r['admm_mask_changes']:.0f} | {r['jaccard_previous']:.3f} | "
                         f"{r['jaccard_one_shot']:.3f} | {r['admm_primal_residual']:.2e} | {r['admm_rho']:.3g} | "
                         f"{r.get('admm_frozen', 0):.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--net", default="resnet20_w1")
    p.add_argument("--budget", default="macs:0.5")
    p.add_argument("--arms", default="loss_w,prox_w,prox_wu")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--train", type=int, default=10000)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--update-every", type=int, default=40)
    p.add_argument("--calibration", type=int, default=512)
    p.add_argument("--out", default=None, help="result stem (default results/admm_search_<net>_<budget>)")
    args = p.parse_args(argv)
    import keras

    x, y = common.load_split("train", args.train + 2048)
    xt, yt = common.load_split("test")
    data = {"x": x[:args.train], "y": y[:args.train], "calib": x[:args.calibration].astype("float32"),
            "calib_y": y[:args.calibration], "bn": x[args.train:args.train + 2048].astype("float32"),
            "x_test": xt, "y_test": yt}
    stem = args.out or str(common.RESULTS_DIR / f"admm_search_{args.net}_{args.budget.replace(':', '')}")
    path = Path(stem + ".json")
    res = json.loads(path.read_text()) if path.exists() else {"arms": {}}
    baseline = keras.saving.load_model(common.BENCHMARKS_DIR / "baselines" / f"{args.net}.keras")
    res.update({"net": args.net, "budget": args.budget, "epochs": args.epochs, "train_images": args.train,
                "lr": args.lr, "batch": args.batch, "update_every": args.update_every,
                "calibration": args.calibration, "test_images": int(len(xt)),
                "baseline_accuracy": _accuracy_bn(baseline, data["bn"], xt, yt),
                "command": "python -m benchmarks.admm_search " + " ".join(sys.argv[1:] if argv is None else argv)})
    for name in args.arms.split(","):
        if name in res["arms"]:
            print(f"{name}: done already", flush=True)
            continue
        load = os.getloadavg()[0]
        print(f"arm {name} ...", flush=True)
        res["arms"][name] = run_arm(name, args.net, args.budget, epochs=args.epochs, lr=args.lr, batch=args.batch,
                                    update_every=args.update_every, data=data)
        res.update({"machine": common.machine_info(), "load": round(load, 2),
                    "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
        common.write_json_atomic(path, res)
        common.write_text_atomic(Path(stem + ".md"), markdown(res))
        a = res["arms"][name]
        print(f"{name}: before {a['accuracy_before_hard_prune']:.4f} hard prune {a['accuracy_hard_prune']:.4f} "
              f"one-shot {a['accuracy_one_shot_no_ft']:.4f} primal {a['final_primal_residual']:.2e} "
              f"jaccard vs one-shot {a['jaccard_final_vs_one_shot']:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
