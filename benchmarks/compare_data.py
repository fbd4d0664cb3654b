"""The data, baselines and measurements of ``benchmarks.compare``: what every method is measured with.

A profile's arrays (:class:`Data`), its trained baselines (cached, trained with ``common.train`` when missing),
and the measurements every model gets alike: top-1 on the test subset and TFLite float32 latency.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common
from benchmarks.compare_spec import Profile, cache_name


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
        """The profile's first ``train_images`` / ``test_images`` and its calibration images."""
        x, y = common.load_split("train", profile.train_images)
        xt, yt = common.load_split("test", profile.test_images)
        n = profile.calibration_images
        return cls(x, y, xt, yt, (x[:n].astype("float32"), y[:n]))


def now() -> str:
    """The current UTC time, ISO 8601 to the second (the ``date`` of every record)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


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
    """Loads a saved model into a fresh Keras session (the previous runs' graphs are freed first)."""
    import keras

    keras.backend.clear_session()  # free_memory=True: it runs gc.collect() itself
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
            "training": {k: trained.get(k) for k in ("test_accuracy", "test_accuracy_before_bn", "test_images",
                                                     "train_images", "val_images", "epochs", "selected_epoch",
                                                     "selected_on", "seconds", "seconds_per_epoch", "recipe",
                                                     "config", "date")},
            "profile_config": profile.as_dict(), "machine": common.machine_info(), "date": now()}
