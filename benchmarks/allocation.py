"""Joint allocation from damage curves against today's greedy and the uniform allocation, on a trained net.

Two measurements on a committed CIFAR-10 baseline, from one TBAA Fisher pass over calibration images
(the per-channel TBAA scores are its diagonal halves, so every allocation ranks the same information):

1. **Damage-curve fidelity**: for every prunable group and 8 widths, the channels the group's curve removes
   first are cut (gates at zero, BatchNorm statistics as trained) and the exact
   ``E_x KL(p(x) || p_cut(x))`` is measured on held-out training images; Spearman rank correlation over all
   (group, width) points of the exact damage against the curve's prediction (the joint quadratic form) and
   against the per-channel sum (what a global ranking of scores assumes), on the same removal sets.
2. **One-shot accuracy with no fine-tune**: at 2x and 4x fewer MACs, the plans of ``select`` (greedy,
   global), ``select(mode="uniform")``, ``select_joint`` on the Fisher damage curves, and ``select_joint`` on
   curves measured by ablation (``measure_curves``: the Fisher's removal order, the exact KL at 8 widths per
   group on the held-out images, interpolated; what ``importance="tbaa_curves"`` does), each slimmed, BatchNorm re-estimated on 2,048 training images, scored on all 10,000 test
   images; MACs and the narrowest layer.

From the repository root::

    nice .venv/bin/python -m benchmarks.allocation --net vgg16_bn_w0.35
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402

BUDGETS = ("macs:0.5", "macs:0.75")
WIDTH_FRACTIONS = (0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0)  # shares of a group removed


def _probs(out) -> np.ndarray:
    out = np.asarray(out, np.float64)
    if out.min() >= 0 and np.allclose(out.sum(-1), 1.0, atol=1e-3):
        return np.clip(out, 1e-12, 1.0)
    e = np.exp(out - out.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=-1)))


def fidelity(scorer, fisher: dict, x: np.ndarray) -> dict[str, Any]:
    """Exact joint-removal KL against the two predictions at every (group, width) point."""
    from scipy import stats

    from tfmot_easiedge.importance.damage import curve_from_fisher

    gm = scorer.gated
    full = np.ones(gm.width, np.float32)
    base = _probs(gm(x, full))
    points = []
    for gid, f in fisher.items():
        curve = curve_from_fisher(f)
        cols = gm.columns(gid)
        for share in WIDTH_FRACTIONS:
            m = max(1, int(round(share * curve.size)))
            removed = curve.order[:m]
            gates = full.copy()
            gates[cols.start + removed] = 0.0
            exact = _kl(base, _probs(gm(x, gates)))
            points.append({"group": gid, "size": curve.size, "removed": m, "exact": exact,
                           "joint": float(curve.damage[m]), "per_channel_sum": float(0.5 * np.diag(f)[removed].sum())})
    exact = [p["exact"] for p in points]
    within = {}
    for key in ("joint", "per_channel_sum"):
        rhos = [stats.spearmanr([p["exact"] for p in points if p["group"] == g],
                                [p[key] for p in points if p["group"] == g]).statistic for g in fisher]
        within[key] = float(np.nanmean(rhos))
    return {"points": points,
            "spearman_all_points": {k: float(stats.spearmanr(exact, [p[k] for p in points]).statistic)
                                    for k in ("joint", "per_channel_sum")},
            "spearman_within_groups_mean": within}


def one_shot(model, analysis, fisher: dict, data: dict, budget: str, min_fraction: float,
             measured: dict) -> list[dict[str, Any]]:
    import tfmot_easiedge as te
    from tfmot_easiedge.importance.damage import curve_from_fisher
    from tfmot_easiedge.selection.joint import select_joint

    scores = {g: 0.5 * np.diag(f) for g, f in fisher.items()}
    curves = {g: curve_from_fisher(f) for g, f in fisher.items()}
    plans = {"greedy (global ranking of TBAA scores)": te.select(analysis, scores, budget, min_fraction=min_fraction),
             "uniform (same share per group)": te.select(analysis, scores, budget, mode="uniform",
                                                         min_fraction=min_fraction),
             "joint (damage curves)": select_joint(analysis, curves, budget, min_fraction=min_fraction),
             "joint (curves measured at 8 widths per group)": select_joint(analysis, measured, budget,
                                                                           min_fraction=min_fraction)}
    rows = []
    base_macs = te.count_macs(model)
    for name, plan in plans.items():
        small = te.slim(model, plan, analysis=analysis)
        te.recalibrate_batchnorm(small, data["x_bn"], max_examples=len(data["x_bn"]), batch_size=256)
        pred = np.argmax(small.predict(data["x_test"], batch_size=500, verbose=0), -1)
        widths = {g: len(k) for g, k in plan.kept.items()}
        narrowest = min(widths, key=lambda g: widths[g] / analysis.groups[g].size)
        rows.append({"allocation": name, "budget": budget, "accuracy": float(np.mean(pred == data["y_test"])),
                     "macs": int(te.count_macs(small)), "mac_reduction": round(base_macs / te.count_macs(small), 3),
                     "predicted_damage": float(sum(curves[g].at_kept(len(k)) for g, k in plan.kept.items())),
                     "narrowest_group": [narrowest, widths[narrowest], analysis.groups[narrowest].size],
                     "kept_per_group": {g: [w, analysis.groups[g].size] for g, w in widths.items()}})
    return rows


def markdown(result: dict[str, Any]) -> str:
    f = result["fidelity"]
    lines = [f"# Allocation: joint (damage curves) vs greedy vs uniform, {result['net']}", "",
             f"Machine: {result['machine']['cpu_model']}; date {result['date']}; load before {result['load_before']}; "
             f"command `{result['command']}`. Baseline {100 * result['baseline_accuracy']:.2f}% on "
             f"{result['test_images']} test images; {result['calibration_images']} calibration images (TBAA top3 "
             f"Fisher), fidelity on {result['fidelity_images']} held-out training images; min_fraction "
             f"{result['min_fraction']}.", "",
             "## Damage-curve fidelity (exact joint-removal KL, BatchNorm as trained)", "",
             f"{len(f['points'])} (group, width) points. Spearman of the exact KL against:", "",
             "| prediction | all points | within a group (mean) |", "|---|---:|---:|"]
    for key, label in (("joint", "damage curve (joint quadratic form)"), ("per_channel_sum", "sum of per-channel scores")):
        lines.append(f"| {label} | {f['spearman_all_points'][key]:.3f} | {f['spearman_within_groups_mean'][key]:.3f} |")
    lines += ["", "## One-shot accuracy, no fine-tune (BatchNorm re-estimated on 2,048 training images)", "",
              "| budget | allocation | top-1 % | MACs | reduction | narrowest group (kept/size) |",
              "|---|---|---:|---:|---:|---|"]
    for r in result["one_shot"]:
        g, k, n = r["narrowest_group"]
        lines.append(f"| {r['budget']} | {r['allocation']} | {100 * r['accuracy']:.2f} | {r['macs']:,} | "
                     f"{r['mac_reduction']:.2f}x | {g} {k}/{n} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--net", default="vgg16_bn_w0.35")
    p.add_argument("--calibration-images", type=int, default=512)
    p.add_argument("--fidelity-images", type=int, default=512)
    p.add_argument("--min-fraction", type=float, default=0.05)
    p.add_argument("--budgets", default=",".join(BUDGETS))
    args = p.parse_args(argv)
    import keras

    import tfmot_easiedge as te
    from tfmot_easiedge.importance.tbaa import TBAAScorer

    load0, t0 = os.getloadavg()[0], time.perf_counter()
    model = keras.saving.load_model(common.BENCHMARKS_DIR / "baselines" / f"{args.net}.keras", compile=False,
                                    safe_mode=True)
    x_train, _ = common.load_split("train")
    x_test, y_test = common.load_split("test")
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(x_train))
    x_cal = x_train[idx[:args.calibration_images]].astype("float32")
    x_fid = x_train[idx[args.calibration_images:args.calibration_images + args.fidelity_images]].astype("float32")
    data = {"x_bn": x_train[idx[-2048:]].astype("float32"), "x_test": x_test.astype("float32"), "y_test": y_test}
    analysis = te.analyze(model)
    scorer = TBAAScorer(model, analysis=analysis)
    cache = common.CACHE_DIR / f"fisher_{args.net}_{args.calibration_images}.npz"
    if cache.exists():  # the Fisher of a committed baseline never changes; computing it took minutes
        with np.load(cache) as f:
            fisher = {g: f[g] for g in f.files}
    else:
        fisher = scorer.fisher(x_cal, progress=False)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **fisher)
    t_fisher = time.perf_counter() - t0
    fid = fidelity(scorer, fisher, x_fid)
    print(f"fidelity: {fid['spearman_all_points']} within {fid['spearman_within_groups_mean']}", flush=True)
    from tfmot_easiedge.importance.damage import curve_from_fisher, measure_curves

    # what importance="tbaa_curves" computes: the Fisher's removal order, damage measured at 8 widths per group
    measured = measure_curves(scorer, x_fid, {g: curve_from_fisher(f) for g, f in fisher.items()})
    rows = []
    for budget in args.budgets.split(","):
        for row in one_shot(model, analysis, fisher, data, budget, args.min_fraction, measured):
            print(f"{budget} {row['allocation']}: {row['accuracy']:.4f} at {row['mac_reduction']}x", flush=True)
            rows.append(row)
    base_pred = np.argmax(model.predict(data["x_test"], batch_size=500, verbose=0), -1)
    result = {"net": args.net, "baseline_accuracy": float(np.mean(base_pred == y_test)), "test_images": len(y_test),
              "calibration_images": args.calibration_images, "fidelity_images": args.fidelity_images,
              "min_fraction": args.min_fraction, "fisher_seconds": round(t_fisher, 1), "fidelity": fid,
              "one_shot": rows, "machine": common.machine_info(), "load_before": round(load0, 2),
              "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "command": "python -m benchmarks.allocation " + " ".join(sys.argv[1:] if argv is None else argv),
              "seconds": round(time.perf_counter() - t0, 1)}
    out = common.RESULTS_DIR / f"allocation_{args.net}.json"
    common.write_json_atomic(out, result)
    out.with_suffix(".md").write_text(markdown(result), encoding="utf-8")
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
