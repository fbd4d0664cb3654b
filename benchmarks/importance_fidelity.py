"""Fidelity of the importance criteria against exact information gain, on a CIFAR-10 VGG-style net.

Measures, on one trained model and one calibration set:
- Spearman rank correlation of every criterion with exact IG, over all channels (global) and within each
  group (mean over groups);
- top-1 test accuracy after one-shot global pruning of 30/50/70% of filters with each criterion (no
  fine-tune);
- wall time of TBAA vs exact IG on the same data, and TBAA's time at 1/4, 1/2 and all of the data.

Run from the repository root (trains and caches ``benchmarks/cache/vgg_small.keras`` when missing):

    .venv/bin/python -m benchmarks.importance_fidelity --calibration 1000

Writes ``benchmarks/results/importance_fidelity.json`` and ``.md``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.stats import spearmanr

from benchmarks import common

RATIOS = (0.3, 0.5, 0.7)


def _flat(table, order):
    return np.concatenate([table[g] for g in order])


def _timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def run(model_name: str, n_calib: int, n_test: int | None) -> dict:
    import keras

    import tfmot_easiedge as te
    from tfmot_easiedge import importance as imp

    model = common.load_or_train(model_name)
    xc, yc = common.load_split("train", limit=n_calib)
    xt, yt = common.load_split("test", limit=n_test)
    xc = xc.astype("float32")
    base_acc = common.evaluate(model, xt, yt)["accuracy"]
    analysis = te.analyze(model)
    order = list(analysis.prunable_groups)

    scores, seconds = {}, {}
    scores["exact_ig"], seconds["exact_ig"] = _timed(imp.exact_ig, model, xc, analysis=analysis, batch_size=100,
                                                     chunk=8)
    for variant in ("expected", "sampled", "argmax"):
        name = f"tbaa_{variant}"
        scores[name], seconds[name] = _timed(imp.tbaa, model, xc, analysis=analysis, variant=variant,
                                             batch_size=100, progress=False)
    for name in ("taylor_fo", "l1", "l2", "bn_scale", "random"):
        scores[name], seconds[name] = _timed(imp.get(name), model, (xc, yc), analysis=analysis,
                                             batch_size=100, progress=False)

    exact = _flat(scores["exact_ig"], order)
    rows = {}
    for name, table in scores.items():
        groups = [g for g in order if g in table]
        glob = spearmanr(_flat(table, groups), _flat(scores["exact_ig"], groups)).statistic
        within = [spearmanr(table[g], scores["exact_ig"][g]).statistic for g in groups if len(table[g]) > 2]
        within = [w for w in within if np.isfinite(w)]
        acc = {}
        for ratio in RATIOS:
            plan = te.select(analysis, table, te.FilterBudget(ratio))
            slim = te.slim(model, plan, analysis=analysis)
            acc[str(ratio)] = common.evaluate(slim, xt, yt)["accuracy"]
        rows[name] = {"spearman_global": float(glob), "spearman_within_mean": float(np.mean(within)),
                      "seconds": seconds[name], "accuracy_after_pruning": acc,
                      "groups_scored": len(groups)}
        print(f"{name:16s} rho={glob:+.3f} within={np.mean(within):+.3f} t={seconds[name]:.1f}s acc={acc}")

    # TBAA time linear in data size (expected variant, same batches)
    linear = {}
    for frac in (0.25, 0.5, 1.0):
        n = int(n_calib * frac)
        _, linear[str(n)] = _timed(imp.tbaa, model, xc[:n], analysis=analysis, variant="expected",
                                   batch_size=100, progress=False)
    return {"model": model_name, "params": int(model.count_params()), "macs": te.count_macs(model),
            "baseline_test_accuracy": base_acc, "calibration_examples": n_calib,
            "test_examples": int(len(yt)), "prunable_channels": int(len(exact)), "criteria": rows,
            "speedup_tbaa_expected_vs_exact": seconds["exact_ig"] / seconds["tbaa_expected"],
            "speedup_tbaa_argmax_vs_exact": seconds["exact_ig"] / seconds["tbaa_argmax"],
            "tbaa_seconds_by_examples": linear, "machine": common.machine_info(),
            "command": f"python -m benchmarks.importance_fidelity --model {model_name} --calibration {n_calib}",
            "keras": keras.__version__}


def to_markdown(r: dict) -> str:
    lines = [f"# Importance fidelity on CIFAR-10 `{r['model']}`", "",
             f"Baseline test accuracy {r['baseline_test_accuracy']:.4f} ({r['test_examples']} test images), "
             f"{r['prunable_channels']} prunable channels, {r['calibration_examples']} calibration images.", "",
             "| criterion | Spearman vs exact IG (global) | within groups (mean) | seconds | "
             + " | ".join(f"acc @ {int(float(k) * 100)}% filters" for k in map(str, RATIOS)) + " |",
             "|---|---|---|---|" + "---|" * len(RATIOS)]
    for name, row in r["criteria"].items():
        accs = " | ".join(f"{row['accuracy_after_pruning'][str(k)]:.4f}" for k in RATIOS)
        lines.append(f"| {name} | {row['spearman_global']:+.3f} | {row['spearman_within_mean']:+.3f} | "
                     f"{row['seconds']:.1f} | {accs} |")
    lines += ["", f"TBAA (expected) is {r['speedup_tbaa_expected_vs_exact']:.0f}x faster than exact IG; "
                  f"TBAA (argmax) {r['speedup_tbaa_argmax_vs_exact']:.0f}x.",
              "TBAA seconds by calibration size: "
              + ", ".join(f"{k}: {v:.2f}s" for k, v in r["tbaa_seconds_by_examples"].items()), "",
              f"Machine: {r['machine']}", "", f"Reproduce: `{r['command']}`", ""]
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="vgg_small", choices=common.MODEL_NAMES)
    p.add_argument("--calibration", type=int, default=1000)
    p.add_argument("--test", type=int, default=None, help="test images for accuracy (default all 10,000)")
    p.add_argument("--out", default=str(common.RESULTS_DIR / "importance_fidelity"))
    args = p.parse_args(argv)
    r = run(args.model, args.calibration, args.test)
    common.write_json_atomic(args.out + ".json", r)
    md = to_markdown(r)
    common.write_text_atomic(args.out + ".md", md)
    print(md)
    return r


if __name__ == "__main__":
    main()
