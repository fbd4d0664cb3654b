"""Exact information gain by ablation: one forward pass per channel (the reference TBAA is checked against).

``IG_k = mean_n KL(p(x_n) ‖ p(x_n with channel k removed))``, removal = the channel's gate set to 0 at
every consumer (exactly what ``masked_copy`` and ``slim`` do). Batched over channels: ``chunk`` removals
of one batch run as one forward pass of ``chunk × batch`` examples.
"""
from __future__ import annotations

import math

import numpy as np

from tfmot_easiedge.importance._common import (ScoreTable, calibration_batches, num_batches, prepare,
                                               progress_bar)
from tfmot_easiedge.importance._gating import log_probs


def exact_ig(model, data=None, *, analysis=None, from_logits: bool | None = None, batch_size: int = 64,
             chunk: int = 8, max_examples: int | None = None, progress: bool = True) -> ScoreTable:
    """Exact IG of every channel of every prunable group (slow: one forward pass per channel).

    Args:
        model, data, analysis, from_logits, batch_size, max_examples, progress: as in :func:`tbaa`.
        chunk: channel removals evaluated per forward pass (memory grows with ``chunk × batch_size``).

    Returns:
        ``{group_id: np.ndarray}`` of information gains in nats.
    """
    import tensorflow as tf

    analysis, gm = prepare(model, analysis)
    width = gm.width

    def _kl_chunk(x, logp0, start, logits_flag):
        b = tf.shape(x)[0]
        cols = tf.minimum(start + tf.range(chunk), width - 1)
        k = tf.shape(cols)[0]
        gates = 1.0 - tf.repeat(tf.one_hot(cols, width), b, axis=0)
        reps = tf.concat([[k], tf.ones([tf.rank(x) - 1], tf.int32)], axis=0)
        logq = log_probs(gm(tf.tile(x, reps), gates), logits_flag)
        logq = tf.reshape(logq, [k, b, -1])
        p0 = tf.exp(logp0)
        return tf.reduce_sum(p0[None] * (logp0[None] - logq), axis=[1, 2])  # [k]

    def _logp(x, logits_flag):
        return log_probs(gm(x, tf.ones([tf.shape(x)[0], width])), logits_flag)

    kl_fn = tf.function(_kl_chunk, reduce_retracing=True)
    logp_fn = tf.function(_logp, reduce_retracing=True)
    total = np.zeros(width, dtype=np.float64)
    seen = 0
    n_chunks = math.ceil(width / chunk)
    nb = num_batches(data, batch_size, max_examples)
    bar = progress_bar(None if nb is None else nb * n_chunks, progress, "exact IG (ablation)")
    done = 0
    for _, x, _, logits_flag in calibration_batches(model, data, batch_size=batch_size, max_examples=max_examples,
                                                    from_logits=from_logits, progress=False, label=""):
        logp0 = logp_fn(x, logits_flag)
        for c in range(n_chunks):
            start = c * chunk
            kl = kl_fn(x, logp0, tf.constant(start, tf.int32), logits_flag).numpy()
            n = min(chunk, width - start)
            total[start:start + n] += kl[:n]
            done += 1
            if bar is not None:
                bar.update(done)
        seen += int(x.shape[0])
    return gm.split(np.maximum(total / seen, 0.0))
