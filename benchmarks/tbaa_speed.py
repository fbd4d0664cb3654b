"""TBAA's cost: time against calibration size (is it linear?) and against exact IG on the same images.

On the trained CIFAR-10 ``vgg_small``: each TBAA variant's compiled step is traced once on a warm-up
batch (``TBAAScorer`` keeps it, as ADMM does across Z-steps), then timed on 250 … 2000 images (best of
``--repeats``); a least-squares line ``t = a + b·n`` gives the per-image cost and its R². Exact IG is
timed on the first 250 images (its trace included, a few seconds against minutes), and the speed-up is
``exact / TBAA`` on those same 250 images (and each variant's Spearman correlation with exact IG there), with TBAA warm and, for reference, cold (a fresh ``tbaa()``
call that traces its step). On a shared machine the whole-run times are noisy, so each compiled step is
also timed over 2,000 images (16 batches): a steady per-batch time (second half / first half ≈ 1) and no
peak-RSS growth show time linear in data size and memory independent of it.

    .venv/bin/python -m benchmarks.tbaa_speed

Writes ``benchmarks/results/tbaa_speed.json`` and ``.md``.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from benchmarks import common
from benchmarks.coverage import write_atomic

SIZES = (250, 500, 1000, 2000)


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _per_batch_seconds(scorer, x, batch: int) -> dict:
    """Time of each compiled step over all of ``x`` and the process's peak RSS growth: a constant step
    time and no RSS growth mean time linear in data size and memory independent of it."""
    import resource

    import tensorflow as tf

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for i in range(0, len(x), batch):
        t = time.perf_counter()
        scorer._step(tf.constant(x[i:i + batch]), False, tf.constant([0, i // batch], tf.int32)).numpy()
        times.append(time.perf_counter() - t)
    half = len(times) // 2
    return {"batch_seconds": times, "batch_seconds_median": float(np.median(times)),
            "second_half_over_first_half": float(np.mean(times[half:]) / np.mean(times[:half])),
            "peak_rss_growth_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024}


def run(model_name: str, repeats: int, exact_n: int, batch: int) -> dict:
    import tfmot_easiedge as te
    from tfmot_easiedge import importance as imp

    load_before = os.getloadavg()
    model = common.load_or_train(model_name)
    x, _ = common.load_split("train", limit=max(SIZES))
    x = x.astype("float32")
    analysis = te.analyze(model)
    variants = {}
    tables = {}
    for variant in ("expected", "top3", "sampled", "argmax"):
        scorer = imp.TBAAScorer(model, analysis=analysis, variant=variant)
        scorer(x[:batch], batch_size=batch, progress=False)  # trace once
        secs = {n: _best(lambda n=n: scorer(x[:n], batch_size=batch, progress=False), repeats) for n in SIZES}
        n_arr, t_arr = np.array(SIZES, float), np.array([secs[n] for n in SIZES])
        b, a = np.polyfit(n_arr, t_arr, 1)
        pred = a + b * n_arr
        r2 = 1 - np.sum((t_arr - pred) ** 2) / np.sum((t_arr - t_arr.mean()) ** 2)
        tables[variant] = scorer(x[:exact_n], batch_size=batch, progress=False)
        per_batch = _per_batch_seconds(scorer, x, batch)
        cold = _best(lambda v=variant: imp.tbaa(model, x[:exact_n], analysis=analysis, variant=v, batch_size=batch,
                                                progress=False), 1)
        variants[variant] = {"seconds_by_examples": {str(n): secs[n] for n in SIZES},
                             "intercept_s": float(a), "ms_per_example": float(1000 * b), "r2": float(r2),
                             "ratio_2000_vs_250": secs[2000] / secs[250], "cold_seconds_exact_n": cold,
                             **per_batch}
        print(variant, variants[variant])
    t0 = time.perf_counter()
    exact = imp.exact_ig(model, x[:exact_n], analysis=analysis, batch_size=batch, chunk=8, progress=False)
    t_exact = time.perf_counter() - t0
    order = list(exact)
    flat_exact = np.concatenate([exact[g] for g in order])
    for name, v in variants.items():
        v["spearman_vs_exact"] = float(spearmanr(np.concatenate([tables[name][g] for g in order]), flat_exact).statistic)
        v["speedup_vs_exact_warm"] = t_exact / v["seconds_by_examples"][str(exact_n)]
        v["speedup_vs_exact_cold"] = t_exact / v["cold_seconds_exact_n"]
    return {"model": model_name, "prunable_channels": int(sum(g.size for g in analysis.prunable_groups.values())),
            "batch_size": batch, "repeats": repeats, "exact_ig_examples": exact_n, "exact_ig_seconds": t_exact,
            "variants": variants, "machine": common.machine_info(),
            "load_before": [round(v, 2) for v in load_before], "load_after": [round(v, 2) for v in os.getloadavg()],
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "command": f"python -m benchmarks.tbaa_speed --model {model_name} --repeats {repeats}"}


def to_markdown(r: dict) -> str:
    lines = [f"# TBAA speed on CIFAR-10 `{r['model']}` ({r['prunable_channels']} prunable channels)", "",
             f"Exact IG on {r['exact_ig_examples']} images: {r['exact_ig_seconds']:.1f} s. Batch {r['batch_size']}, "
             f"best of {r['repeats']}; load {r['load_before']} before, {r['load_after']} after; {r['date']}.", "",
             "| variant | " + " | ".join(f"{n} images (s)" for n in SIZES)
             + " | ms/image | intercept (s) | R² | t(2000)/t(250) | median s/batch | 2nd/1st half | peak RSS growth (MB) "
             "| speed-up vs exact, warm | cold | Spearman vs exact IG |",
             "|---|" + "---|" * (len(SIZES) + 10)]
    for name, v in r["variants"].items():
        secs = " | ".join(f"{v['seconds_by_examples'][str(n)]:.2f}" for n in SIZES)
        lines.append(f"| {name} | {secs} | {v['ms_per_example']:.2f} | {v['intercept_s']:.2f} | {v['r2']:.4f} | "
                     f"{v['ratio_2000_vs_250']:.2f} | {v['batch_seconds_median']:.2f} | "
                     f"{v['second_half_over_first_half']:.2f} | {v['peak_rss_growth_mb']:.0f} | "
                     f"{v['speedup_vs_exact_warm']:.0f}x | "
                     f"{v['speedup_vs_exact_cold']:.0f}x | {v['spearman_vs_exact']:+.3f} |")
    lines += ["", f"Machine: {r['machine'].get('cpu_model')} x{r['machine'].get('cpu_count')}, "
              f"TF {r['machine'].get('tensorflow')}.", "", f"Reproduce: `{r['command']}`", ""]
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="vgg_small", choices=common.MODEL_NAMES)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--exact", type=int, default=250, choices=SIZES)
    p.add_argument("--batch", type=int, default=125)
    args = p.parse_args(argv)
    r = run(args.model, args.repeats, args.exact, args.batch)
    out = common.RESULTS_DIR / "tbaa_speed"
    common.write_json_atomic(str(out) + ".json", r)
    md = to_markdown(r)
    write_atomic(Path(str(out) + ".md"), md)
    print(md)
    return r


if __name__ == "__main__":
    main()
