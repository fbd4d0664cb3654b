"""Which images BatchNorm statistics should be re-estimated on: clean or augmented like the training images.

For each committed CIFAR-10 baseline: top-1 on all 10,000 test images with the moving averages as trained, and
after ``recalibrate_batchnorm`` on 4,096 training images, unaugmented and with the training augmentation (4-px
zero pad + random crop + flip, ``fast_train.augment_batch``).

From the repository root::

    nice .venv/bin/python -m benchmarks.bn_recalibration

Writes ``benchmarks/results/bn_recalibration.{json,md}``.
"""
from __future__ import annotations

import datetime as _dt
import os
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common, fast_train  # noqa: E402

NETS = ("vgg16_bn_w0.35", "resnet20_w1")


def main() -> int:
    import keras

    import tfmot_easiedge as te

    load = round(os.getloadavg()[0], 2)
    x, _ = common.load_split("train", 4096)
    xt, yt = common.load_split("test")
    images = {"clean": x.astype("float32"),
              "augmented": fast_train.augment_batch(x, np.random.default_rng(0)).astype("float32")}
    rows = []
    for net in NETS:
        model = keras.saving.load_model(common.BENCHMARKS_DIR / "baselines" / f"{net}.keras")
        row = {"net": net, "as_trained": common.evaluate(model, xt, yt)["accuracy"]}
        for kind, xs in images.items():
            copy = keras.models.clone_model(model)
            copy.set_weights(model.get_weights())
            te.recalibrate_batchnorm(copy, xs, max_examples=len(xs), batch_size=128)
            row[kind] = common.evaluate(copy, xt, yt)["accuracy"]
        print(row, flush=True)
        rows.append(row)
    meta = {"machine": common.machine_info(), "load": load, "command": "python -m benchmarks.bn_recalibration",
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "calibration_images": 4096,
            "test_images": int(len(xt))}
    common.write_json_atomic(common.RESULTS_DIR / "bn_recalibration.json", {**meta, "rows": rows})
    lines = ["# BatchNorm re-estimation: clean or augmented calibration images", "",
             f"Top-1 on {meta['test_images']:,} CIFAR-10 test images; statistics re-estimated on 4,096 training "
             f"images. {meta['machine'].get('cpu_model')}, load {load}, {meta['date']}, `{meta['command']}`.", "",
             "| net | as trained | re-estimated, clean images | re-estimated, augmented images |",
             "|---|---:|---:|---:|"]
    lines += [f"| {r['net']} | {r['as_trained']:.4f} | {r['clean']:.4f} | {r['augmented']:.4f} |" for r in rows]
    lines += ["", "The networks were trained on augmented images (4-px zero pad + crop + flip), so their layers expect "
              "activations normalised with the statistics of such images; re-estimating on clean images shifts "
              "them. Re-estimate on data that looks like the training data.", ""]
    common.write_text_atomic(common.RESULTS_DIR / "bn_recalibration.md", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
