"""What every exporter shares: the result record, verification inputs and the comparison with Keras.

An exporter converts to a temporary path next to the target (:func:`tfmot_easiedge._files.atomic_output`),
runs the temporary file with its own runtime on sample inputs, compares against Keras, and only then moves it
into place. A failed conversion or a failed check therefore leaves neither the target nor a temporary file
behind. Optional runtimes are imported with :func:`tfmot_easiedge._optional.import_optional`, sample data is
adapted by :mod:`tfmot_easiedge.data.batches`.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from tfmot_easiedge._files import size_on_disk
from tfmot_easiedge.data.batches import as_input_arrays, random_inputs, to_numpy

if TYPE_CHECKING:
    from collections.abc import Sequence

    import keras

    from tfmot_easiedge.data.batches import InputSpec

# Verification samples drawn from representative data (random ones are made when nothing is given).
MAX_VERIFY_FROM_REPRESENTATIVE = 256

RunFn = Callable[[list], list]


class ExportVerificationError(RuntimeError):
    """The exported file disagrees with Keras beyond the tolerance; nothing was written."""


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What an export wrote and how well the written file agrees with the Keras model.

    Attributes:
        format: ``"saved_model"``, ``"tflite"``, ``"onnx"`` or ``"tensorrt"``.
        path: where the file (or SavedModel directory) now lies.
        size_bytes: its size on disk (the sum of all files for a directory).
        precision: ``"float32"``, ``"float16"``, ``"dynamic"`` (int8 weights, float activations) or ``"int8"``.
        max_abs_diff: largest ``|exported - keras|`` over all outputs and samples (None when not verified).
        max_rel_diff: ``max_abs_diff`` of each output divided by the largest ``|keras|`` of that output,
            maximised over outputs (None when not verified).
        top1_agreement: share of samples whose arg-max of the first output matches Keras, a tie among
            ``k`` maxima of the export counting ``1/k`` (see :func:`top1_agreement`); None when not
            verified or when that output has a single unit.
        n_samples: how many samples the verification ran (0 when not verified).
        runtime: the runtime that ran the file, with its version, e.g. ``"onnxruntime 1.18.0"``.
        seconds: wall time of conversion plus verification.

    Example:
        >>> r = ExportResult("onnx", Path("m.onnx"), 1024, "float32", 1e-7, 1e-8, 1.0, 8, "onnxruntime 1.18", 2.5)
        >>> r.verified
        True
    """

    format: str
    path: Path
    size_bytes: int
    precision: str
    max_abs_diff: float | None
    max_rel_diff: float | None
    top1_agreement: float | None
    n_samples: int
    runtime: str
    seconds: float

    @property
    def verified(self) -> bool:
        """True when the file was run and compared with Keras."""
        return self.n_samples > 0

    def summary(self) -> str:
        """One line for logs and reports."""
        parts = [f"{self.format} ({self.precision}) -> {self.path} [{self.size_bytes / 1024:.1f} KiB]"]
        if self.verified:
            parts.append(f"max abs diff {self.max_abs_diff:.3g}, max rel diff {self.max_rel_diff:.3g}")
            if self.top1_agreement is not None:
                parts.append(f"top-1 agreement {100 * self.top1_agreement:.2f}%")
            parts.append(f"on {self.n_samples} samples with {self.runtime}")
        else:
            parts.append("not verified")
        parts.append(f"{self.seconds:.1f}s")
        return "; ".join(parts)


# --------------------------------------------------------------------------- verification


def verification_inputs(specs: Sequence[InputSpec], sample_inputs: Any = None, representative_data: Any = None
                        ) -> list[np.ndarray]:
    """The inputs a verification runs: the given samples, else representative data, else seeded random."""
    if sample_inputs is not None:
        return as_input_arrays(sample_inputs, specs)
    if representative_data is not None:
        return as_input_arrays(representative_data, specs, limit=MAX_VERIFY_FROM_REPRESENTATIVE)
    return random_inputs(specs)


def run_in_chunks(run: RunFn, inputs: list[np.ndarray], chunk: int) -> list[np.ndarray]:
    """Runs ``run`` on consecutive slices of ``inputs`` and concatenates the outputs."""
    n = inputs[0].shape[0]
    pieces = [run([a[i:i + chunk] for a in inputs]) for i in range(0, n, chunk)]
    return [np.concatenate([p[j] for p in pieces]) for j in range(len(pieces[0]))]


def keras_outputs(model: keras.Model, inputs: list[np.ndarray], chunk: int = 64) -> list[np.ndarray]:
    """The model's outputs in inference mode, flattened to a list of arrays."""
    from keras import tree

    def run(batch):
        out = model(batch[0] if len(batch) == 1 else batch, training=False)
        return [to_numpy(o) for o in tree.flatten(out)]

    return run_in_chunks(run, inputs, chunk)


def top1_agreement(reference: np.ndarray, got: np.ndarray) -> float | None:
    """Share of samples whose arg-max over the last axis agrees, with ties in ``got`` splitting the credit.

    A quantized output can tie exactly (two int8 logits one step apart in float round to the same
    value); ``np.argmax`` would then pick the lower class index, an accident of class order. A sample
    whose reference top-1 is one of ``k`` tied maxima counts ``1/k``: the agreement expected when ties
    are broken at random. None when the output is not a score vector (a single unit or a scalar).

    Example:
        >>> top1_agreement(np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([[0.5, 0.5], [2.0, 1.0]]))
        0.75
    """
    if reference.ndim < 2 or reference.shape[-1] < 2:
        return None
    ref = reference.reshape(-1, reference.shape[-1])
    out = np.asarray(got).reshape(-1, reference.shape[-1])
    is_max = out == out.max(axis=-1, keepdims=True)
    credit = is_max[np.arange(len(ref)), np.argmax(ref, -1)] / is_max.sum(-1)
    return float(np.mean(credit))


def compare_outputs(reference: list[np.ndarray], got: list[np.ndarray]) -> dict[str, Any]:
    """Max abs diff, max diff relative to each output's max ``|reference|``, and top-1 agreement.

    Example:
        >>> m = compare_outputs([np.array([[1.0, 2.0]])], [np.array([[1.0, 2.5]])])
        >>> m["max_abs_diff"], m["max_rel_diff"], m["top1_agreement"]
        (0.5, 0.25, 1.0)
    """
    if len(reference) != len(got):
        raise ExportVerificationError(f"the exported model has {len(got)} outputs; Keras has {len(reference)}")
    max_abs, max_rel = 0.0, 0.0
    for i, (ref, out) in enumerate(zip(reference, got)):
        ref = np.asarray(ref, np.float64)
        out = np.asarray(out, np.float64)
        if ref.shape != out.shape:
            raise ExportVerificationError(f"output {i}: exported shape {out.shape}; Keras shape {ref.shape}")
        diff = float(np.max(np.abs(ref - out))) if ref.size else 0.0
        scale = float(np.max(np.abs(ref))) if ref.size else 0.0
        max_abs = max(max_abs, diff)
        max_rel = max(max_rel, diff / max(scale, np.finfo(np.float32).tiny))
    return {"max_abs_diff": max_abs, "max_rel_diff": max_rel,
            "top1_agreement": top1_agreement(reference[0], got[0]),
            "n_samples": int(reference[0].shape[0]) if reference[0].ndim else 1}


def verify(model: keras.Model | None, run: RunFn, inputs: list[np.ndarray], *, what: str,
           tolerance: float | None = None, min_top1_agreement: float | None = None,
           reference: list[np.ndarray] | None = None) -> dict[str, Any]:
    """Runs the exported file through ``run`` and Keras on ``inputs``; raises when it disagrees.

    Args:
        model: the Keras model (None when ``reference`` is given).
        run: runs the exported file on a list of input arrays and returns a list of output arrays.
        inputs: one ``[N, ...]`` array per model input.
        what: a description of the export for error messages, e.g. ``"TFLite float16"``.
        tolerance: largest accepted ``max_rel_diff`` (None: no check).
        min_top1_agreement: smallest accepted top-1 agreement (None: no check).
        reference: the expected outputs on ``inputs``, for a file made from a model this process cannot run
            (QAT's tf_keras model); None: ``model``'s outputs.

    Raises:
        ExportVerificationError: a check failed.
    """
    if reference is None:
        assert model is not None, "verify needs a model or reference outputs"
        reference = keras_outputs(model, inputs)
    metrics = compare_outputs(reference, run(inputs))
    n = metrics["n_samples"]
    if tolerance is not None and not metrics["max_rel_diff"] <= tolerance:
        raise ExportVerificationError(
            f"{what} export differs from Keras: max relative diff {metrics['max_rel_diff']:.3g} "
            f"(max abs diff {metrics['max_abs_diff']:.3g}) on {n} samples; expected <= {tolerance:.3g}. "
            "Nothing was written; pass a larger tolerance (or verify=False) to keep it anyway")
    top1 = metrics["top1_agreement"]
    if min_top1_agreement is not None and (top1 is None or top1 < min_top1_agreement):
        got = "no class output" if top1 is None else f"{100 * top1:.2f}%"
        raise ExportVerificationError(
            f"{what} export: top-1 agreement with Keras is {got} on {n} samples; expected >= "
            f"{100 * min_top1_agreement:.2f}%. Nothing was written")
    return metrics


class Stopwatch:
    """Seconds since creation; ``Stopwatch().seconds``."""

    def __init__(self) -> None:
        self._start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self._start


def make_result(fmt: str, path: Path, precision: str, metrics: dict | None, runtime: str,
                watch: Stopwatch) -> ExportResult:
    """Builds the :class:`ExportResult` of a committed export."""
    metrics = metrics or {}
    return ExportResult(
        format=fmt, path=path, size_bytes=size_on_disk(path), precision=precision,
        max_abs_diff=metrics.get("max_abs_diff"), max_rel_diff=metrics.get("max_rel_diff"),
        top1_agreement=metrics.get("top1_agreement"), n_samples=metrics.get("n_samples", 0),
        runtime=runtime if metrics else "", seconds=watch.seconds)
