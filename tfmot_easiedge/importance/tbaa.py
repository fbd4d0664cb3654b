"""TBAA: the Taylor-based approximation of each channel's information gain, one backward pass per batch.

IG of channel k is ``E_x KL(p(x) ‖ p(x without k))``. With a gate ``g_k`` on the channel (1 = kept),
``log p_c(g)`` expands around ``g = 1`` with the step ``Δg_k = -1``. The first-order term of the KL is
``-Σ_c p_c ∂log p_c/∂g_k = -∂(Σ_c p_c)/∂g_k = 0``, so the estimate is second order (the Fisher
information of the gate):

    IG_k ≈ ½ · mean_n Σ_c p_c(x_n) · t_{n,k,c}²,   t_{n,k,c} = ∂log p_c(x_n)/∂g_k = Σ_spatial a · ∂log p_c/∂a

with ``a`` the channel's activation where it is consumed. Scores are in nats at the output, so they
compare across layers without normalisation. Variants:

- ``"expected"``: the exact class expectation (one Jacobian per batch, cost grows with the class count);
- ``"top3"``: the expectation truncated to each example's 3 most probable classes (3 gradients);
- ``"sampled"``: ``c ~ p(x_n)``, an unbiased one-gradient estimate (the default for many classes);
- ``"argmax"``: ``c = argmax p(x_n)``, biased but deterministic, one gradient.
"""
from __future__ import annotations

import numpy as np

from tfmot_easiedge.importance._common import ScoreTable, calibration_batches, prepare
from tfmot_easiedge.importance._gating import log_probs

VARIANTS = ("expected", "top3", "sampled", "argmax")
#: Classes summed by the ``"top3"`` variant.
TOP_K = 3
#: The variant ``"auto"`` picks. Measured on the CIFAR-10 VGG (benchmarks/results/tbaa_speed.md): Spearman
#: correlation with exact IG 0.996 for top3 against 0.998 for the full expectation, at a third of its cost
#: (120x faster than exact IG against 37x); the one-gradient variants are faster still but noisier (0.983
#: sampled, 0.988 argmax) and lost 5-8 points of one-shot accuracy at 30% of filters in
#: benchmarks/results/importance_fidelity.md. With 3 classes or fewer top3 is the exact expectation.
DEFAULT_VARIANT = "top3"


def tbaa(model, data=None, *, analysis=None, variant: str = "auto", from_logits: bool | None = None,
         batch_size: int = 64, max_examples: int | None = None, seed: int = 0,
         progress: bool = True) -> ScoreTable:
    """Scores every channel of every prunable group by TBAA (second-order Taylor information gain).

    Args:
        model: a classifier (functional or Sequential) with outputs ``[batch, classes]``.
        data: calibration inputs: an array ``x``, a tuple ``(x, y)`` or a ``tf.data.Dataset``
            (labels are not used).
        analysis: the model's :class:`ModelAnalysis` (computed when None).
        variant: ``"expected"``, ``"top3"``, ``"sampled"``, ``"argmax"``, or ``"auto"``
            (``DEFAULT_VARIANT``, ``"top3"``: see its comment for the measurements behind the choice).
        from_logits: whether the output is logits; None detects it from the first batch.
        batch_size: batch size when ``data`` is arrays (and for an unbatched dataset).
        max_examples: stop after this many examples.
        seed: seed of the ``"sampled"`` variant.
        progress: show a progress bar.

    Returns:
        ``{group_id: np.ndarray}``, one score (nats) per channel of each prunable group.

    Example:
        >>> import keras, numpy as np
        >>> x = keras.Input((8, 8, 3))
        >>> h = keras.layers.Conv2D(4, 3, activation="relu", name="c1")(x)
        >>> m = keras.Model(x, keras.layers.Dense(3)(keras.layers.Flatten()(h)))
        >>> s = tbaa(m, np.random.rand(16, 8, 8, 3).astype("float32"), progress=False)
        >>> s["c1"].shape
        (4,)
    """
    return TBAAScorer(model, analysis=analysis, variant=variant)(
        data, from_logits=from_logits, batch_size=batch_size, max_examples=max_examples, seed=seed,
        progress=progress)


class TBAAScorer:
    """TBAA with its compiled per-batch step kept between calls (ADMM re-scores every Z-step).

    The step reads the model's variables, so scores follow weight updates without retracing.

    Example:
        >>> import keras, numpy as np
        >>> x = keras.Input((8, 8, 3))
        >>> h = keras.layers.Conv2D(4, 3, activation="relu", name="c1")(x)
        >>> scorer = TBAAScorer(keras.Model(x, keras.layers.Dense(3)(keras.layers.Flatten()(h))))
        >>> data = np.random.rand(16, 8, 8, 3).astype("float32")
        >>> bool(np.allclose(scorer(data, progress=False)["c1"], scorer(data, progress=False)["c1"]))
        True
    """

    def __init__(self, model, *, analysis=None, variant: str = "auto"):
        import tensorflow as tf

        self.model = model
        self.analysis, self.gated = prepare(model, analysis)
        self.num_classes = int(model.outputs[0].shape[-1])
        if variant == "auto":
            variant = DEFAULT_VARIANT
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS} or 'auto', got {variant!r}")
        self.variant = variant
        self._step = tf.function(self._grad_sq, reduce_retracing=True)

    def _grad_sq(self, x, logits_flag, seed):
        import tensorflow as tf

        gm, variant, num_classes = self.gated, self.variant, self.num_classes
        gates = tf.ones([tf.shape(x)[0], gm.width], tf.float32)
        with tf.GradientTape(persistent=variant in ("expected", "top3")) as tape:
            tape.watch(gates)
            logp = log_probs(gm(x, gates), logits_flag)
            if variant == "top3":
                k = min(TOP_K, num_classes)
                top = tf.math.top_k(tf.stop_gradient(logp), k=k).indices
                picked_k = [tf.reduce_sum(logp * tf.one_hot(top[:, j], num_classes), axis=-1) for j in range(k)]
                sums_k = [tf.reduce_sum(v) for v in picked_k]
            elif variant != "expected":
                if variant == "argmax":
                    cls = tf.argmax(logp, axis=-1)
                else:
                    cls = tf.random.stateless_categorical(tf.stop_gradient(logp), 1, seed)[:, 0]
                picked = tf.reduce_sum(logp * tf.one_hot(cls, num_classes), axis=-1)
            else:
                per_class = [tf.reduce_sum(logp[:, c]) for c in range(num_classes)]
        if variant == "top3":
            total = tf.zeros([gm.width], tf.float32)
            for picked, total_j in zip(picked_k, sums_k):
                t = tape.gradient(total_j, gates)
                total += tf.reduce_sum(tf.exp(tf.stop_gradient(picked))[:, None] * tf.square(t), axis=0)
            return total
        if variant != "expected":
            t = tape.gradient(picked, gates)
            return tf.reduce_sum(tf.square(t), axis=0)
        # One backward pass per class (faster to trace and run on CPU than a pfor batch_jacobian).
        p = tf.exp(tf.stop_gradient(logp))
        total = tf.zeros([gm.width], tf.float32)
        for c in range(num_classes):
            t = tape.gradient(per_class[c], gates)
            total += tf.reduce_sum(p[:, c:c + 1] * tf.square(t), axis=0)
        return total

    def __call__(self, data, *, from_logits: bool | None = None, batch_size: int = 64,
                 max_examples: int | None = None, seed: int = 0, progress: bool = True) -> ScoreTable:
        """Scores ``data`` (arguments as in :func:`tbaa`)."""
        import tensorflow as tf

        total = np.zeros(self.gated.width, dtype=np.float64)
        seen = 0
        for i, x, _, logits_flag in calibration_batches(self.model, data, batch_size=batch_size,
                                                        max_examples=max_examples, from_logits=from_logits,
                                                        progress=progress, label=f"TBAA ({self.variant}) scoring"):
            step_seed = tf.constant([seed, i], dtype=tf.int32)
            total += self._step(x, bool(logits_flag), step_seed).numpy()
            seen += int(x.shape[0])
        return self.gated.split(0.5 * total / seen)
