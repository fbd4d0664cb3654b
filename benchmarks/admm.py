"""ADMM pruning on CIFAR-10: convergence of the method and the cost of its training step.

Two measurements on one trained baseline (``benchmarks/cache/<model>.keras``, trained when missing):

- **cost**: median time of a training step of plain ``fit`` and of ``fit`` on the ``prune_filters``
  model under ``ADMMUpdate`` (no Z-step inside the timed steps), same batches, same optimizer,
  alternated in one run; and the time of a Z-step (TBAA scoring + projection) on its own.
- **convergence**: ``EasiEdge(budget).run`` for ``--admm-epochs`` + ``--finetune-epochs`` on a
  training subset: the primal/dual residuals and channel changes at every epoch, top-1 test accuracy
  at every stage (baseline, end of ADMM, hard prune, fine-tune, slim), and max |slim − masked|.

Run from the repository root:

    .venv/bin/python -m benchmarks.admm --budget filters:0.5 --train 10000 --admm-epochs 6 --finetune-epochs 2

Writes ``benchmarks/results/admm_<model>.json`` and ``.md``.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from benchmarks import common
from benchmarks.coverage import write_atomic


class _StepTimer:
    """Wall time of every training step (batch begin -> batch end)."""

    def __new__(cls):
        import keras

        class Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.times = []

            def on_train_batch_begin(self, batch, logs=None):
                self._t = time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                self.times.append(time.perf_counter() - self._t)

        return Timer()


def measure_cost(model, x, y, *, batch: int, steps: int, rounds: int, calib, lr: float) -> dict:
    import keras

    import tfmot_easiedge as te

    xs, ys = x[:batch * steps].astype("float32"), y[:batch * steps]
    plain = keras.models.clone_model(model)
    plain.set_weights(model.get_weights())
    plain.compile(keras.optimizers.SGD(lr, momentum=0.9), "sparse_categorical_crossentropy")
    wrapped = te.prune_filters(model, "filters:0.5")
    wrapped.compile(keras.optimizers.SGD(lr, momentum=0.9), "sparse_categorical_crossentropy")
    admm = te.ADMMUpdate(calib, update_every=10 ** 9, verbose=0)
    times = {"plain": [], "admm": []}
    for r in range(rounds + 1):  # round 0 traces both steps and is discarded
        for name, m, cbs in (("plain", plain, []), ("admm", wrapped, [admm])):
            timer = _StepTimer()
            m.fit(xs, ys, batch_size=batch, epochs=1, shuffle=False, verbose=0, callbacks=[*cbs, timer])
            if r > 0:
                times[name].extend(timer.times[1:])
    # Z-steps on their own (the scorer is warm after the first)
    for _ in range(3):
        admm.z_step()
    plain_ms, admm_ms = (1000 * float(np.median(times[k])) for k in ("plain", "admm"))
    return {"batch_size": batch, "steps_timed": {k: len(v) for k, v in times.items()},
            "plain_step_ms": plain_ms, "admm_step_ms": admm_ms, "ratio": admm_ms / plain_ms,
            "plain_p10_p90_ms": [1000 * float(np.percentile(times["plain"], q)) for q in (10, 90)],
            "admm_p10_p90_ms": [1000 * float(np.percentile(times["admm"], q)) for q in (10, 90)],
            "zstep_seconds": [float(s) for s in admm.zstep_seconds],
            "zstep_calibration_examples": int(len(calib[0]))}


def measure_convergence(model, x, y, xt, yt, *, budget: str, batch: int, admm_epochs: int, finetune_epochs: int,
                        lr: float, calib) -> dict:
    import keras

    import tfmot_easiedge as te

    model.compile(keras.optimizers.SGD(lr, momentum=0.9), "sparse_categorical_crossentropy", metrics=["accuracy"])
    train = common.make_train_dataset(x, y, batch, seed=0)
    r = te.EasiEdge(budget, seed=0).run(model, train, calibration_data=calib, admm_epochs=admm_epochs,
                                        finetune_epochs=finetune_epochs, validation_data=(xt, yt))
    acc = {s["stage"]: s["accuracy"] for s in r.stages}
    return {"budget": budget, "admm_epochs": admm_epochs, "finetune_epochs": finetune_epochs, "lr": lr,
            "stages": r.stages, "final_admm": r.admm, "history": r.history, "timings": r.timings,
            "slim_max_abs_diff": r.slim_max_abs_diff,
            "hard_prune_accuracy_drop": acc["admm"] - acc["hard_prune"],
            "accuracy_drop_vs_baseline": acc["baseline"] - acc["slim"],
            "kept_filters": {g: len(k) for g, k in r.plan.kept.items()},
            "group_sizes": dict(r.plan.group_sizes)}


def to_markdown(res: dict) -> str:
    c, v = res["cost"], res["convergence"]
    lines = [f"# ADMM on CIFAR-10 `{res['model']}`", "",
             f"Machine: {res['machine'].get('cpu_model')} x{res['machine'].get('cpu_count')}, load "
             f"{res['load_before']} before / {res['load_after']} after; {res['date']}.", "",
             "## Cost of a training step", "",
             f"Median step (batch {c['batch_size']}): plain `fit` {c['plain_step_ms']:.1f} ms, ADMM "
             f"{c['admm_step_ms']:.1f} ms: **{c['ratio']:.3f}x** (target <= 1.10x). Z-step with TBAA on "
             f"{c['zstep_calibration_examples']} images: " + ", ".join(f"{s:.2f}s" for s in c["zstep_seconds"]) + ".",
             "", f"## Convergence ({v['budget']}, {v['admm_epochs']} ADMM + {v['finetune_epochs']} fine-tune epochs "
             f"on {res['train_images']} training images, SGD lr {v['lr']} momentum 0.9)", "",
             "| stage | test accuracy | MACs | params |", "|---|---|---|---|"]
    for s in v["stages"]:
        lines.append(f"| {s['stage']} | {s['accuracy']:.4f} | {s['macs']:,} | {s['params']:,} |")
    h = v["history"].get("admm", {})
    lines += ["", "| ADMM epoch | primal residual | dual residual | mask changes | rho | val accuracy |",
              "|---|---|---|---|---|---|"]
    for i in range(len(h.get("admm_rho", []))):
        lines.append(f"| {i + 1} | {h['admm_primal_residual'][i]:.2e} | {h['admm_dual_residual'][i]:.2e} | "
                     f"{h['admm_mask_changes'][i]:.0f} | {h['admm_rho'][i]:.3g} | {h['val_accuracy'][i]:.4f} |")
    lines += ["", f"Final primal residual {v['final_admm']['admm_primal_residual']:.2e} (target < 1e-2); "
              f"accuracy lost at the hard prune {v['hard_prune_accuracy_drop']:+.4f}; slim vs masked max |diff| "
              f"{v['slim_max_abs_diff']:.2e}; Z-steps {v['timings']['zsteps']}, "
              f"{v['timings']['zstep_total']:.0f}s of {v['timings']['admm_fit']:.0f}s ADMM fit.", "",
              f"Reproduce: `{res['command']}`", ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="vgg_small")
    p.add_argument("--budget", default="filters:0.5")
    p.add_argument("--train", type=int, default=10000, help="training images used")
    p.add_argument("--test", type=int, default=5000)
    p.add_argument("--admm-epochs", type=int, default=6)
    p.add_argument("--finetune-epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--calibration", type=int, default=512)
    p.add_argument("--cost-steps", type=int, default=20)
    p.add_argument("--cost-rounds", type=int, default=3)
    p.add_argument("--skip-convergence", action="store_true")
    args = p.parse_args(argv)
    load_before = os.getloadavg()
    model = common.load_or_train(args.model)
    x, y = common.load_split("train", args.train)
    xt, yt = common.load_split("test", args.test)
    calib = (x[:args.calibration].astype("float32"), y[:args.calibration])
    res = {"model": args.model, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "machine": common.machine_info(), "train_images": len(x), "test_images": len(xt),
           "command": "python -m benchmarks.admm " + " ".join(argv if argv is not None else os.sys.argv[1:])}
    res["cost"] = measure_cost(model, x, y, batch=args.batch, steps=args.cost_steps, rounds=args.cost_rounds,
                               calib=calib, lr=args.lr)
    print(f"step cost: plain {res['cost']['plain_step_ms']:.1f} ms, ADMM {res['cost']['admm_step_ms']:.1f} ms "
          f"({res['cost']['ratio']:.3f}x)")
    if not args.skip_convergence:
        res["convergence"] = measure_convergence(common.load_or_train(args.model), x, y, xt, yt, budget=args.budget,
                                                 batch=args.batch, admm_epochs=args.admm_epochs,
                                                 finetune_epochs=args.finetune_epochs, lr=args.lr, calib=calib)
    res["load_before"] = [round(v, 2) for v in load_before]
    res["load_after"] = [round(v, 2) for v in os.getloadavg()]
    stem = f"admm_{args.model}"
    common.write_json_atomic(common.RESULTS_DIR / f"{stem}.json", res)
    if "convergence" in res:
        md = to_markdown(res)
        write_atomic(common.RESULTS_DIR / f"{stem}.md", md)
        print(md)


if __name__ == "__main__":
    main()
