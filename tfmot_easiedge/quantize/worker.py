"""The QAT child process: ``python -m tfmot_easiedge.quantize.worker JOB_DIR``.

It is started by :func:`tfmot_easiedge.quantize.qat` with ``TF_USE_LEGACY_KERAS=1`` in its own environment
(tfmot needs it, and it must never be set in the user's Keras 3 process). It reads ``job.json``,
``spec.json``, ``weights.npz`` and ``data.npz`` from ``JOB_DIR``; rebuilds the model in tf_keras and checks it
against the Keras 3 outputs; applies tfmot's default 8-bit QAT; fine-tunes; converts to a full-integer
.tflite (``model.tflite``) and runs the QAT model on the verification inputs (``reference.npy``). One line
per epoch goes to stdout, prefixed with :data:`PROGRESS_PREFIX`; ``result.json`` says what was done, or holds
the one-line ``error``.
"""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from tfmot_easiedge import _files

__all__ = ["PROGRESS_PREFIX", "main"]

PROGRESS_PREFIX = "EASIEDGE_QAT_EPOCH "


def _number(value: Any) -> float | None:
    """A float, or None for NaN/inf (JSON has neither; a diverged epoch must still be reported)."""
    value = float(value)
    return value if math.isfinite(value) else None


def _floats(logs: dict | None) -> dict[str, float | None]:
    return {str(k): _number(v) for k, v in (logs or {}).items()}


def _check_rebuild(model, probe_x, probe_y, tolerance: float) -> float:
    import numpy as np

    got = np.asarray(model(probe_x, training=False))
    if got.shape != probe_y.shape:
        raise ValueError(f"the tf_keras rebuild outputs shape {got.shape}; the Keras 3 model {probe_y.shape}")
    diff = float(np.max(np.abs(got.astype(np.float64) - probe_y)))
    scale = max(1.0, float(np.max(np.abs(probe_y))))
    if not diff <= tolerance * scale:
        raise ValueError(f"the tf_keras rebuild differs from the Keras 3 model by {diff:.3g} (max abs, on "
                         f"{len(probe_x)} samples); expected <= {tolerance * scale:.3g}")
    return diff


def _fit(qmodel, job: dict, arrays) -> dict:
    import tf_keras

    tf_keras.utils.set_random_seed(int(job["seed"]))
    loss_cls = (tf_keras.losses.SparseCategoricalCrossentropy if job["sparse_labels"]
                else tf_keras.losses.CategoricalCrossentropy)
    qmodel.compile(optimizer=tf_keras.optimizers.Adam(float(job["learning_rate"])),
                   loss=loss_cls(from_logits=bool(job["from_logits"])), metrics=["accuracy"])
    epochs = int(job["epochs"])

    def report(epoch: int, logs: dict | None) -> None:
        print(PROGRESS_PREFIX + json.dumps({"epoch": epoch + 1, "epochs": epochs, **_floats(logs)}), flush=True)

    validation = (arrays["val_x"], arrays["val_y"]) if "val_x" in arrays.files else None
    history = qmodel.fit(arrays["x"], arrays["y"], epochs=epochs, batch_size=int(job["batch_size"]),
                         validation_data=validation, verbose=0,
                         callbacks=[tf_keras.callbacks.LambdaCallback(on_epoch_end=report)], **job["fit_kwargs"])
    return {str(k): [_number(v) for v in vs] for k, vs in history.history.items()}


def _convert(qmodel, representative, int8_io: bool = False) -> bytes:
    import tensorflow as tf

    def gen():
        for i in range(representative.shape[0]):
            yield [representative[i:i + 1]]

    converter = tf.lite.TFLiteConverter.from_keras_model(qmodel)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = gen  # ranges of the layers QAT left out, and the input
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]  # int8 everywhere, or fail
    if int8_io:  # int8 input and output tensors (read their scale/zero point from the interpreter)
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def run(job_dir: Path) -> dict[str, Any]:
    """Does the job in ``job_dir`` (see the module docstring); returns what goes into ``result.json``."""
    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise RuntimeError("the QAT worker must run with TF_USE_LEGACY_KERAS=1 (start it through te.qat)")
    import numpy as np
    import tf_keras

    from tfmot_easiedge.quantize.annotate import quantize_with_skips
    from tfmot_easiedge.quantize.tfkeras_rebuild import rebuild_tf_keras

    job = json.loads((job_dir / "job.json").read_text(encoding="utf-8"))
    spec = json.loads((job_dir / "spec.json").read_text(encoding="utf-8"))
    with np.load(job_dir / "weights.npz") as w:
        weights = {k: w[k] for k in w.files}
    arrays = np.load(job_dir / "data.npz")
    model = rebuild_tf_keras(spec, weights)
    diff = _check_rebuild(model, arrays["probe_x"], arrays["probe_y"], float(job["tolerance"]))
    qmodel, skipped = quantize_with_skips(model)
    result: dict[str, Any] = {"rebuild_max_abs_diff": diff, "skipped": skipped,
                              "layers": [layer.name for layer in model.layers
                                         if not isinstance(layer, tf_keras.layers.InputLayer)],
                              "tf_keras_version": tf_keras.__version__}
    if job["mode"] == "check":
        return result
    result["history"] = _fit(qmodel, job, arrays)
    (job_dir / "model.tflite").write_bytes(_convert(qmodel, arrays["rep_x"], bool(job.get("int8_io", False))))
    np.save(job_dir / "reference.npy", np.asarray(qmodel.predict(arrays["verify_x"], batch_size=256, verbose=0)))
    return result


def main(argv: list[str] | None = None) -> int:
    """Runs the job; always writes ``result.json`` (the error in one line when it failed); returns 0."""
    job_dir = Path((argv if argv is not None else sys.argv[1:])[0])
    try:
        result = run(job_dir)
    except Exception as e:  # reported to the parent in one line; the traceback goes to the child's stderr
        import traceback

        traceback.print_exc()
        result = {"error": " ".join(f"{type(e).__name__}: {e}".split()), "kind": type(e).__name__}
    _files.write_json_atomic(job_dir / "result.json", result, overwrite=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
