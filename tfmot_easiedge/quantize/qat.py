"""``qat``: quantization-aware training of a (slim) Keras 3 classifier with tfmot, to a verified int8 .tflite.

tfmot 0.8 works only on tf_keras, and tf_keras cannot share a process with Keras 3 (tfmot sets
``TF_USE_LEGACY_KERAS`` when imported). So this process writes the model as plain data (configs, calls,
weights: :mod:`~tfmot_easiedge.quantize.spec`) and the data as ``.npz`` into a temporary job directory, and
a child process (:mod:`~tfmot_easiedge.quantize.worker`) rebuilds it in tf_keras (checked against this
model's outputs), applies tfmot's default 8-bit QAT, fine-tunes and converts. The file is then verified here
with LiteRT against the QAT model's outputs and moved into place atomically.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from tfmot_easiedge import _files
from tfmot_easiedge.data import batches, checks
from tfmot_easiedge.quantize import runner
from tfmot_easiedge.quantize.requirements import require_qat
from tfmot_easiedge.quantize.result import QATResult, RebuildCheck, SkippedLayer
from tfmot_easiedge.quantize.spec import QATUnsupportedError, fold_dense_batchnorm, graph_spec

if TYPE_CHECKING:
    import keras

__all__ = ["REBUILD_TOLERANCE", "check_rebuild", "qat", "tflite_accuracy"]

#: Largest accepted ``|tf_keras - keras|`` of the rebuild, relative to ``max(1, max |keras|)``.
REBUILD_TOLERANCE = 1e-5
_CALIBRATION = 500
_VERIFY = 256
_PROBE = 32
# fit arguments qat sets itself
_RESERVED = {"x", "y", "epochs", "batch_size", "validation_data", "callbacks", "verbose", "validation_split"}


def _check_model(model) -> int:
    """The class count of a single-input classifier (output ``[None, K]``, K >= 2); else unsupported."""
    inputs, outputs = list(model.inputs or []), list(model.outputs or [])
    if len(inputs) != 1 or len(outputs) != 1:
        raise QATUnsupportedError(f"QAT takes a model with one input and one output; {model.name!r} has "
                                  f"{len(inputs)} and {len(outputs)}. Use post-training int8 instead: "
                                  "export.tflite(model, path, quantization='int8', representative_data=...)")
    shape = tuple(outputs[0].shape)
    if len(shape) != 2 or shape[-1] is None or shape[-1] < 2:
        raise QATUnsupportedError(f"QAT fine-tunes a classifier with a cross-entropy loss: the output must be "
                                  f"[batch, classes]; {model.name!r} outputs {shape}. Use post-training int8 "
                                  "instead: export.tflite(model, path, quantization='int8', ...)")
    return int(shape[-1])


def _labelled(data: Any, specs, classes: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` arrays from arrays, an ``(x, y)`` tuple, a ``LoadedData`` or a dataset of ``(x, y)``."""
    if hasattr(data, "x") and hasattr(data, "y"):
        data = (data.x, data.y)
    xs, ys = [], []
    for bx, by in batches.iterate_batches(data, batch_size=256, input_rank=len(specs[0].shape), what=what):
        if by is None:
            raise batches.DataError(f"{what} has no labels: QAT fine-tunes on (x, y) pairs")
        xs.append(batches.to_numpy(bx))
        ys.append(batches.to_numpy(by))
    x, y = np.concatenate(xs), np.concatenate(ys)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 1:
        if not np.issubdtype(y.dtype, np.integer) and not np.all(y == np.round(y)):
            raise batches.DataError(f"{what}: labels must be class indices or one-hot rows; got fractional values")
        y = y.astype(np.int64)
        if y.min() < 0 or y.max() >= classes:
            raise batches.DataError(f"{what}: labels run from {y.min()} to {y.max()}; the model has {classes} "
                                    "classes")
    elif y.ndim != 2 or y.shape[1] != classes:
        raise batches.DataError(f"{what}: labels of shape {y.shape}; expected [N] class indices or [N, {classes}] "
                                "one-hot rows")
    return x.astype(specs[0].dtype, copy=False), y


def _fit_kwargs(fit_kwargs: dict) -> dict:
    reserved = sorted(set(fit_kwargs) & _RESERVED)
    if reserved:
        raise ValueError(f"qat sets {', '.join(reserved)} itself; pass epochs=, batch_size=, validation_data= or "
                         "verbose= to qat, not as fit arguments")
    try:
        json.dumps(fit_kwargs)
    except TypeError as e:
        raise ValueError(f"fit arguments must be plain values (they go to a child process): {e}") from e
    return fit_kwargs


def _from_logits(model) -> bool:
    import keras

    from tfmot_easiedge.graph.model_graph import ModelGraph

    graph = ModelGraph.from_model(model)
    producer = graph.tensors[graph.output_ids[0]].producer
    layer = graph.nodes[producer].layer if producer is not None else None
    if isinstance(layer, keras.layers.Softmax):
        return False
    return getattr(getattr(layer, "activation", None), "__name__", "") != "softmax"


def _predict(model, x: np.ndarray, chunk: int = 256) -> np.ndarray:
    return np.concatenate([batches.to_numpy(model(x[i:i + chunk], training=False)) for i in range(0, len(x), chunk)])


def _accuracy(scores: np.ndarray, y: np.ndarray) -> float:
    labels = y if y.ndim == 1 else np.argmax(y, -1)
    return float(np.mean(np.argmax(scores, -1) == labels))


def _write_job(job_dir: Path, model, job: dict, arrays: dict[str, np.ndarray]) -> None:
    spec, weights, _ = fold_dense_batchnorm(*graph_spec(model))
    (job_dir / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
    savez: Any = np.savez  # NumPy's stub reads **arrays as its allow_pickle flag
    savez(job_dir / "weights.npz", **weights)
    savez(job_dir / "data.npz", **arrays)
    (job_dir / "job.json").write_text(json.dumps(job), encoding="utf-8")


def _rebuild_check(result: dict, n_samples: int) -> RebuildCheck:
    return RebuildCheck(max_abs_diff=float(result["rebuild_max_abs_diff"]), n_samples=n_samples,
                        layers=tuple(result["layers"]), skipped=tuple(SkippedLayer(**s) for s in result["skipped"]),
                        tf_keras_version=str(result["tf_keras_version"]))


def _run(job_dir: Path, on_epoch, timeout) -> dict:
    try:
        return runner.run_child(job_dir, on_epoch, timeout)
    except runner.QATError as e:
        if e.kind == "RebuildError":
            raise QATUnsupportedError(f"QAT cannot rebuild this model in tf_keras: {e.detail}; nothing was written. "
                                      "Use post-training int8 instead: export.tflite(model, path, "
                                      "quantization='int8', ...)") from None
        raise


def check_rebuild(model: keras.Model, sample_inputs: Any = None, *, timeout: float | None = None) -> RebuildCheck:
    """Rebuilds ``model`` in tf_keras in a child process, checks its outputs and lists what QAT would skip.

    Nothing is trained or written: this answers "can this model be QAT-trained, and which layers would be
    left to post-training int8?" in seconds.

    Args:
        model: a functional or Sequential Keras 3 model.
        sample_inputs: probe inputs (default 8 seeded random samples).
        timeout: seconds the child may run (None: no limit).

    Raises:
        MissingDependencyError: the ``[qat]`` packages are missing (the message has the install command).
        QATUnsupportedError: a layer tf_keras or this rebuild cannot reproduce.
        QATError: the rebuild differs from ``model`` by more than :data:`REBUILD_TOLERANCE`.

    Example:
        >>> from tfmot_easiedge import quantize
        >>> quantize.check_rebuild(model).max_abs_diff < 1e-5  # doctest: +SKIP
        True
    """
    require_qat()
    specs = batches.input_specs(model)
    probe = batches.as_input_arrays(sample_inputs, specs, limit=_PROBE) if sample_inputs is not None \
        else batches.random_inputs(specs)
    if len(specs) != 1:
        raise QATUnsupportedError(f"the tf_keras rebuild check takes a single-input model; got {len(specs)} inputs")
    with tempfile.TemporaryDirectory(prefix="easiedge-qat-") as tmp:
        job_dir = Path(tmp)
        _write_job(job_dir, model, {"mode": "check", "tolerance": REBUILD_TOLERANCE},
                   {"probe_x": probe[0], "probe_y": _predict(model, probe[0]).astype(np.float64)})
        return _rebuild_check(_run(job_dir, None, timeout), len(probe[0]))


def qat(model: keras.Model, data: Any, *, epochs: int, path: str | os.PathLike, representative_data: Any = None,
        validation_data: Any = None, batch_size: int = 64, learning_rate: float = 1e-4, seed: int = 0,
        int8_io: bool = False, overwrite: bool = False, min_top1_agreement: float | None = None, verbose: int = 1,
        on_epoch: Callable[[dict], None] | None = None, timeout: float | None = None, **fit_kwargs: Any) -> QATResult:
    """Quantization-aware trains ``model`` with tfmot and writes a full-integer .tflite verified with LiteRT.

    The Keras 3 model is rebuilt layer by layer in tf_keras in a child process (outputs checked equal to
    :data:`REBUILD_TOLERANCE`); tfmot's default 8-bit scheme is applied (pruned widths kept), the model is
    fine-tuned with Adam and cross-entropy (on logits unless the model ends in a softmax), and converted with
    every op int8. Layers tfmot cannot quantize are left out of QAT and listed (``result.skipped``): the
    converter quantizes them post-training from ``representative_data``, so the file is int8 end to end or
    the call fails; it is never a silent float model. A ``Dense`` read only by a ``BatchNormalization`` is
    folded into one ``Dense`` first (:func:`~tfmot_easiedge.quantize.spec.fold_dense_batchnorm`): tfmot's
    Dense + BatchNorm pattern converts to a file that does not match its QAT model.

    Args:
        model: a single-input classifier (output ``[batch, classes]``), e.g. ``te.slim``'s model.
        data: labelled training data: ``(x, y)`` arrays (``y`` class indices or one-hot), a ``LoadedData``,
            or a ``tf.data.Dataset`` of ``(x, y)``; read into memory. Augment it the way the model was
            trained (e.g. one augmented copy of the training set): BatchNorm statistics follow the images
            QAT trains on, and clean ones shift them (``benchmarks/results/qat_*_clean.md``: a float model
            trained one epoch on clean CIFAR-10 images lost 1.0 point).
        epochs: QAT epochs (>= 1).
        path: the .tflite file to write.
        representative_data: calibration samples for the layers QAT skips and the input (default: the first
            500 training samples); its first 256 samples also verify the file.
        validation_data: labelled data for ``result.accuracy`` (the int8 file's top-1) and per-epoch ``val_*``.
        batch_size: fine-tuning batch size.
        learning_rate: Adam's learning rate (small: the model is already trained).
        seed: tf_keras's seed in the child.
        int8_io: int8 input and output tensors instead of float32 (for runtimes and accelerators that take
            only integers, e.g. Edge TPU and microcontrollers); their scale and zero point are in the
            interpreter's tensor details. LiteRT verification quantizes and dequantizes with them.
        overwrite: replace an existing ``path``.
        min_top1_agreement: smallest accepted top-1 agreement of the file with the QAT model (None: not
            checked).
        verbose: 1 prints one line per epoch, 0 nothing.
        on_epoch: called with each epoch's metrics (a dict with ``epoch``, ``epochs``, ``loss``...).
        timeout: seconds the child may run (None: no limit).
        **fit_kwargs: further plain-valued arguments for tf_keras ``fit`` (e.g. ``shuffle=False``).

    Returns:
        A :class:`QATResult`.

    Raises:
        MissingDependencyError: the ``[qat]`` packages are missing (the message has the install command).
        QATUnsupportedError: (a ``ValueError``) not a single-input classifier, or a layer the tf_keras
            rebuild cannot reproduce; the message points to post-training int8.
        DataError: unlabelled data, or labels that do not fit the model.
        QATError: the child process failed (its error in one line).
        ExportVerificationError: LiteRT cannot run the file, or it agrees less than ``min_top1_agreement``.
        FileExistsError: ``path`` exists and ``overwrite`` is False.

    Example:
        >>> import tfmot_easiedge as te
        >>> r = te.qat(slim, (x_train, y_train), epochs=1, path="slim_qat.tflite",
        ...            validation_data=(x_test, y_test))  # doctest: +SKIP
        QAT epoch 1/1: loss 0.3012, accuracy 0.8953, val_loss 0.4011, val_accuracy 0.8712
        >>> r.accuracy  # doctest: +SKIP
        0.8705
    """
    from tfmot_easiedge.export import ExportResult
    from tfmot_easiedge.export.tflite import verify_file

    start = time.perf_counter()
    require_qat()
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1; got {epochs!r} (for no training use post-training "
                         "int8: export.tflite(..., quantization='int8'))")
    final = _files.check_target(path, overwrite)
    classes = _check_model(model)
    checks.check_finite_weights(model)
    specs = batches.input_specs(model)
    fit_kwargs = _fit_kwargs(fit_kwargs)
    x, y = _labelled(data, specs, classes, "training data")
    val = _labelled(validation_data, specs, classes, "validation data") if validation_data is not None else None
    rep = (batches.as_input_arrays(representative_data, specs)[0] if representative_data is not None
           else x[:_CALIBRATION])
    verify_x = rep[:_VERIFY]
    arrays = {"x": x, "y": y, "rep_x": rep, "verify_x": verify_x, "probe_x": verify_x[:_PROBE],
              "probe_y": _predict(model, verify_x[:_PROBE]).astype(np.float64)}
    if val is not None:
        arrays.update(val_x=val[0], val_y=val[1])
    job = {"mode": "qat", "tolerance": REBUILD_TOLERANCE, "epochs": epochs, "batch_size": int(batch_size),
           "learning_rate": float(learning_rate), "seed": int(seed), "sparse_labels": y.ndim == 1,
           "from_logits": _from_logits(model), "fit_kwargs": fit_kwargs, "int8_io": bool(int8_io)}

    def epoch_line(logs: dict) -> None:
        if verbose:
            print(runner.format_epoch(logs), flush=True)
        if on_epoch is not None:
            on_epoch(logs)

    with tempfile.TemporaryDirectory(prefix="easiedge-qat-") as tmp:
        job_dir = Path(tmp)
        _write_job(job_dir, model, job, arrays)
        result = _run(job_dir, epoch_line, timeout)
        flatbuffer = (job_dir / "model.tflite").read_bytes()
        reference = np.load(job_dir / "reference.npy")
    with _files.atomic_output(final, overwrite=overwrite) as out:
        with open(out, "xb") as f:
            f.write(flatbuffer)
        metrics, runtime = verify_file(out, [reference], [verify_x], specs, min_top1_agreement=min_top1_agreement)
        accuracy = _file_accuracy(out, specs, val) if val is not None else None
    history = result["history"]
    val_acc = history.get("val_accuracy")
    export = ExportResult(format="tflite", path=final, size_bytes=_files.size_on_disk(final), precision="int8",
                          max_abs_diff=metrics["max_abs_diff"], max_rel_diff=metrics["max_rel_diff"],
                          top1_agreement=metrics["top1_agreement"], n_samples=metrics["n_samples"],
                          runtime=runtime, seconds=time.perf_counter() - start)
    return QATResult(path=final, size_bytes=export.size_bytes, epochs=epochs, export=export, accuracy=accuracy,
                     keras_accuracy=val_acc[-1] if val_acc else None,
                     float_accuracy=_accuracy(_predict(model, val[0]), val[1]) if val is not None else None,
                     history=history, rebuild=_rebuild_check(result, len(arrays["probe_x"])),
                     seconds=time.perf_counter() - start)


def tflite_accuracy(path: str | os.PathLike, model: keras.Model, data: Any) -> float:
    """Top-1 of a (quantized) .tflite file made from ``model`` on labelled ``data``, run with LiteRT.

    Args:
        path: the .tflite file (float input and output, as :func:`qat` and ``export.tflite`` write them).
        model: the Keras model it was made from (for its input and class count).
        data: ``(x, y)`` arrays, a ``LoadedData`` or a dataset of ``(x, y)``.

    Example:
        >>> tflite_accuracy("model_int8.tflite", slim, (x_test, y_test))  # doctest: +SKIP
        0.9012
    """
    specs = batches.input_specs(model)
    return _file_accuracy(Path(path), specs, _labelled(data, specs, _check_model(model), "accuracy data"))


def _file_accuracy(path: Path, specs, val: tuple[np.ndarray, np.ndarray]) -> float:
    """Top-1 of the .tflite file on ``val`` with LiteRT."""
    from tfmot_easiedge.export.tflite import signature_runner

    run = signature_runner(path, specs)
    scores = np.concatenate([run([val[0][i:i + 64]])[0] for i in range(0, len(val[0]), 64)])
    return _accuracy(scores, val[1])
