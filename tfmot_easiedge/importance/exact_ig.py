"""Exact information gain by ablation: one forward pass per channel (the reference TBAA is checked against).

``IG_k = mean_n KL(p(x_n) ‖ p(x_n with channel k removed))``, removal = the channel's gate set to 0 at
every consumer (exactly what ``masked_copy`` and ``slim`` do). Batched over channels: ``chunk`` removals
of one batch run as one forward pass of ``chunk × batch`` examples.

With several outputs the KLs of the outputs are summed; for a dense output ``[batch, *positions,
classes]`` the KL is taken per position and averaged over positions (nats per position), as in
:mod:`~tfmot_easiedge.importance.tbaa`, whose module docstring states the output rules.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from tfmot_easiedge._progress import progress_bar
from tfmot_easiedge.importance._common import ScoreTable, calibration_batches, input_rank, num_batches, prepare
from tfmot_easiedge.importance._gating import FromLogits, log_probs, resolve_flags

if TYPE_CHECKING:
    import keras

    from tfmot_easiedge.graph.analysis import ModelAnalysis


def exact_ig(model: keras.Model, data: Any = None, *, analysis: ModelAnalysis | None = None,
             from_logits: FromLogits = None, batch_size: int = 64,
             chunk: int = 8, max_examples: int | None = None, progress: bool = True) -> ScoreTable:
    """Exact IG of every channel of every prunable group (slow: one forward pass per channel).

    Args:
        model, data, analysis, from_logits, batch_size, max_examples, progress: as in :func:`tbaa`.
        chunk: channel removals evaluated per forward pass (memory grows with ``chunk × batch_size``).

    Returns:
        ``{group_id: np.ndarray}`` of information gains in nats (summed over outputs; per position for a
        dense output).

    Raises:
        ValueError: as :func:`~tfmot_easiedge.importance.tbaa.tbaa` (outputs that are not class distributions).

    Example:
        >>> import keras, numpy as np
        >>> x = keras.Input((8, 8, 3))
        >>> h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(x)
        >>> seg = keras.layers.Conv2D(3, 1, activation="softmax", name="mask")(h)  # a class per pixel
        >>> cls = keras.layers.Dense(5, name="label")(keras.layers.GlobalAveragePooling2D()(h))
        >>> s = exact_ig(keras.Model(x, [seg, cls]), np.random.rand(16, 8, 8, 3).astype("float32"), progress=False)
        >>> s["c1"].shape, bool((s["c1"] >= 0).all())
        ((4,), True)
    """
    import tensorflow as tf

    analysis, gm = prepare(model, analysis)
    specs = gm.output_specs()
    width = gm.width

    def _kl_chunk(x, logp0, start, logits_flags):
        b = tf.shape(x)[0]
        cols = tf.minimum(start + tf.range(chunk), width - 1)
        k = tf.shape(cols)[0]
        gates = 1.0 - tf.repeat(tf.one_hot(cols, width), b, axis=0)
        reps = tf.concat([[k], tf.ones([tf.rank(x) - 1], tf.int32)], axis=0)
        total = None
        for spec, out, lp0, flag in zip(specs, gm.outputs(tf.tile(x, reps), gates), logp0, logits_flags):
            logq = log_probs(out, flag)
            logq = tf.reshape(logq, [k, b, -1])
            if spec.dense:
                lp0 = tf.reshape(lp0, [b, -1])
            p0 = tf.exp(lp0)
            kl = tf.reduce_sum(p0[None] * (lp0[None] - logq), axis=[1, 2])  # [k]
            if spec.dense:  # the mean over positions
                kl = kl / tf.cast(tf.shape(lp0)[1] // spec.classes, kl.dtype)
            total = kl if total is None else total + kl
        return total

    def _logp(x, logits_flags):
        return log_probs(gm.outputs(x, tf.ones([tf.shape(x)[0], width])), logits_flags)

    kl_fn = tf.function(_kl_chunk, reduce_retracing=True)
    logp_fn = tf.function(_logp, reduce_retracing=True)
    total = np.zeros(width, dtype=np.float64)
    seen = 0
    n_chunks = math.ceil(width / chunk)
    nb = num_batches(data, batch_size, max_examples, input_rank(model))
    bar = progress_bar(None if nb is None else nb * n_chunks, progress, "exact IG (ablation)")
    done = 0
    flags = None
    # Detection always runs (one 8-example forward pass): it checks a from_logits=False against the values.
    for _, x, _, detected in calibration_batches(model, data, batch_size=batch_size, max_examples=max_examples,
                                                 from_logits=None, progress=False, label=""):
        if flags is None:
            flags = resolve_flags(specs, detected, from_logits)
        logp0 = logp_fn(x, flags)
        for c in range(n_chunks):
            start = c * chunk
            kl = kl_fn(x, logp0, tf.constant(start, tf.int32), flags).numpy()
            n = min(chunk, width - start)
            total[start:start + n] += kl[:n]
            done += 1
            if bar is not None:
                bar.update(done)
        seen += int(x.shape[0])
    if bar is not None and nb is None:
        bar.update(done, finalize=True)  # an unknown total: one line at the end, not "N/Unknown" per step
    return gm.split(np.maximum(total / seen, 0.0))
