"""Shared plumbing of the data-driven criteria: analysis, gated model, batches, progress."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from tfmot_easiedge._progress import progress_bar
from tfmot_easiedge.data.batches import (
    check_batch,
    input_rank,
    is_batch_sequence,
    is_dataset,
    iterate_batches,
    num_examples,
)
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


def num_batches(data: Any, batch_size: int, max_examples: int | None, input_rank: int | None = None) -> int | None:
    """Number of batches a scoring pass reads, for its progress bar; a clear error for missing data.

    Known for arrays, a ``PyDataset`` (its ``len()``, when every batch is read) and a ``tf.data.Dataset`` of
    known cardinality (its elements are batches when their rank is ``input_rank``, else examples batched
    here); None when it cannot be known without reading the data.
    """
    if data is None:
        raise ValueError("this importance criterion needs calibration data (arrays or a tf.data.Dataset)")
    if is_dataset(data):
        return _dataset_batches(data, batch_size, max_examples, input_rank)
    if is_batch_sequence(data):
        return len(data) if max_examples is None else None  # the batch size is the sequence's own
    x = data[0] if isinstance(data, (tuple, list)) else data
    n = num_examples(x) if max_examples is None else min(num_examples(x), max_examples)
    return math.ceil(n / batch_size)


def _dataset_batches(data: Any, batch_size: int, max_examples: int | None, input_rank: int | None) -> int | None:
    n = int(data.cardinality())
    if n < 0:  # INFINITE or UNKNOWN
        return None
    spec = data.element_spec[0] if isinstance(data.element_spec, (tuple, list)) else data.element_spec
    if isinstance(spec, dict):
        spec = next(iter(spec.values()))
    batched = input_rank is None or spec.shape.rank == input_rank
    if batched:  # elements are batches of a size of their own: the cut at max_examples is not known ahead
        return n if max_examples is None else None
    n = n if max_examples is None else min(n, max_examples)
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

    target = num_batches(data, batch_size, max_examples, input_rank(model))
    bar = progress_bar(target, progress, label)
    logits_flag, done = None, 0
    for i, (x, y) in enumerate(iterate_batches(data, batch_size, max_examples, input_rank(model))):
        check_batch(model, x)
        if logits_flag is None:
            logits_flag = resolve_from_logits(model, x, from_logits)
        yield i, tf.cast(x, model.inputs[0].dtype), y, logits_flag
        if bar is not None:
            bar.update(i + 1)
            done = i + 1
    if bar is not None and target is None:
        bar.update(done, finalize=True)  # an unknown total: the bar ends (one line in a log) when the data does


__all__ = ["ScoreTable", "calibration_batches", "check_batch", "input_rank", "iterate_batches", "num_batches",
           "prepare", "progress_bar", "resolve_from_logits"]
