"""Shared plumbing of the data-driven criteria: analysis, gated model, batches, progress."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from tfmot_easiedge.data.batches import check_batch, input_rank, is_dataset, iterate_batches, num_examples
from tfmot_easiedge.graph.analysis import ModelAnalysis, analyze
from tfmot_easiedge.importance._gating import GatedModel, detect_from_logits

if TYPE_CHECKING:
    from collections.abc import Iterator

ScoreTable = dict[str, np.ndarray]


def prepare(model: keras.Model, analysis: ModelAnalysis | None) -> tuple[ModelAnalysis, GatedModel]:
    analysis = analysis if analysis is not None else analyze(model)
    if not analysis.prunable_groups:
        raise ValueError(f"model {model.name!r} has no prunable channel group: {_why(analysis)}")
    return analysis, GatedModel(model, analysis)


def _why(analysis) -> str:
    reasons = [r for g in analysis.groups.values() for r in g.reasons]
    return "; ".join(dict.fromkeys(reasons)) or "no filters"


def num_batches(data: Any, batch_size: int, max_examples: int | None) -> int | None:
    """Number of batches for the progress bar (None when unknown); a clear error for missing data."""
    if data is None:
        raise ValueError("this importance criterion needs calibration data (arrays or a tf.data.Dataset)")
    if is_dataset(data):
        return None
    x = data[0] if isinstance(data, (tuple, list)) else data
    n = num_examples(x) if max_examples is None else min(num_examples(x), max_examples)
    return math.ceil(n / batch_size)


def resolve_from_logits(model: keras.Model, x: Any, from_logits: bool | None) -> bool | tuple[bool, ...]:
    return detect_from_logits(model, np.asarray(x)) if from_logits is None else bool(from_logits)


def calibration_batches(model: keras.Model, data: Any, *, batch_size: int, max_examples: int | None,
                        from_logits: bool | None, progress: bool, label: str
                        ) -> Iterator[tuple[int, Any, Any, bool | tuple[bool, ...]]]:
    """Yields ``(index, x, y, from_logits)`` per calibration batch, checked and cast to the model's input dtype.

    One place for what every data-driven criterion does per batch: shape check, logits detection on the
    first batch, dtype cast and a per-batch progress bar (``progress=False`` for callers with their own).
    """
    import tensorflow as tf

    target = num_batches(data, batch_size, max_examples)
    bar = progress_bar(target, progress, label)
    logits_flag = None
    for i, (x, y) in enumerate(iterate_batches(data, batch_size, max_examples, input_rank(model))):
        check_batch(model, x)
        if logits_flag is None:
            logits_flag = resolve_from_logits(model, x, from_logits)
        yield i, tf.cast(x, model.inputs[0].dtype), y, logits_flag
        if bar is not None:
            bar.update(i + 1)


def progress_bar(target: int | None, enabled: bool, label: str) -> keras.utils.Progbar | None:
    if not enabled:
        return None
    print(label)
    return keras.utils.Progbar(target, unit_name="batch")


__all__ = ["ScoreTable", "calibration_batches", "check_batch", "input_rank", "iterate_batches", "num_batches",
           "prepare", "progress_bar", "resolve_from_logits"]
