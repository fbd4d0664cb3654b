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

Outputs. Every model output must be a class distribution along its last axis, softmax probabilities or
logits (detected per output; rule and errors in :func:`~tfmot_easiedge.importance._gating.output_specs`).
With several outputs the IG is the sum of the outputs' IGs (their KLs add), each scored as above: the
cost is that of one output times their number, from the same forward pass.

Dense prediction (``[batch, *positions, classes]``, e.g. segmentation): the KL is taken per position and
averaged over positions, so scores are in nats per position:

    IG_k ≈ ½ · mean_n mean_pos Σ_c p_{pos,c} · t_{n,k,pos,c}²

The squares are per position, but the per-example gates only give the derivative of a sum over
positions, and one backward pass per position (and class) would cost hundreds of passes per batch.
Instead each class term of a variant (each class for ``"expected"``, each of the top 3 for ``"top3"``,
the sampled or argmax class, chosen per position) backpropagates ``Σ_pos ε_pos √w_pos log p_{pos,c}``
with independent random signs ``ε = ±1`` (Hutchinson's estimator) and ``w`` the class probability (1 for
the one-class variants): the cross terms between positions vanish in expectation, so
``E_ε (Σ_pos ε_pos √w_pos t_pos)² = Σ_pos w_pos t_pos²`` exactly, and the estimate is unbiased. Cost and
memory are those of the classifier variant (no factor of the number of positions); the price is noise,
which averages out over examples and batches (about 11% relative standard deviation per channel with
128 calibration images on the 16x16 segmentation net of ``tests/test_importance_outputs.py``, where the
ranking matched a 16-seed average, Spearman 0.97 against exact IG for both). ``seed`` draws the signs, so
dense scores are deterministic for a seed whatever the variant.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from tfmot_easiedge.importance._common import ScoreTable, calibration_batches, prepare
from tfmot_easiedge.importance._gating import FromLogits, log_probs, resolve_flags

if TYPE_CHECKING:
    import keras

    from tfmot_easiedge.graph.analysis import ModelAnalysis

VARIANTS = ("expected", "top3", "sampled", "argmax")
#: Classes summed by the ``"top3"`` variant.
TOP_K = 3
#: The variant ``"auto"`` picks. Measured on the CIFAR-10 VGG (benchmarks/results/tbaa_speed.md): Spearman
#: correlation with exact IG 0.996 for top3 against 0.998 for the full expectation, at a third of its cost
#: (120x faster than exact IG against 37x); the one-gradient variants are faster still but noisier (0.983
#: sampled, 0.988 argmax) and lost 5-8 points of one-shot accuracy at 30% of filters in
#: benchmarks/results/importance_fidelity.md. With 3 classes or fewer top3 is the exact expectation.
DEFAULT_VARIANT = "top3"


def tbaa(model: keras.Model, data: Any = None, *, analysis: ModelAnalysis | None = None, variant: str = "auto",
         from_logits: FromLogits = None,
         batch_size: int = 64, max_examples: int | None = None, seed: int = 0,
         progress: bool = True) -> ScoreTable:
    """Scores every channel of every prunable group by TBAA (second-order Taylor information gain).

    Args:
        model: a functional or Sequential model whose outputs are all class distributions: classifiers
            ``[batch, classes]`` and/or dense predictions ``[batch, *positions, classes]`` (module docstring).
        data: calibration inputs: an array ``x``, a tuple ``(x, y)`` or a ``tf.data.Dataset``
            (labels are not used).
        analysis: the model's :class:`ModelAnalysis` (computed when None).
        variant: ``"expected"``, ``"top3"``, ``"sampled"``, ``"argmax"``, or ``"auto"``
            (``DEFAULT_VARIANT``, ``"top3"``: see its comment for the measurements behind the choice).
        from_logits: whether the outputs are logits: a bool for all of them, one per output, or None to
            detect it per output from the first batch. ``False`` for an output whose values are not
            probabilities is an error.
        batch_size: batch size when ``data`` is arrays (and for an unbatched dataset).
        max_examples: stop after this many examples.
        seed: seed of the ``"sampled"`` variant and of the random signs for dense outputs.
        progress: show a progress bar.

    Returns:
        ``{group_id: np.ndarray}``, one score (nats, summed over outputs; per position for a dense output)
        per channel of each prunable group.

    Raises:
        ValueError: an output that is not a class distribution (a single unit, no class axis, a sigmoid),
            or ``from_logits=False`` for an output that is not probabilities.

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

    def __init__(self, model: keras.Model, *, analysis: ModelAnalysis | None = None, variant: str = "auto"):
        import tensorflow as tf

        self.model = model
        self.analysis, self.gated = self._make_gates(model, analysis)
        self.specs = self.gated.output_specs()
        self.num_classes = self.specs[0].classes
        if variant == "auto":
            variant = DEFAULT_VARIANT
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS} or 'auto', got {variant!r}")
        self.variant = variant
        self._step = tf.function(self._grad_sq, reduce_retracing=True)

    def _make_gates(self, model: keras.Model, analysis: ModelAnalysis | None) -> tuple[ModelAnalysis, Any]:
        """The analysis and the gated model whose gates are scored (the channels; residual blocks in a subclass)."""
        return prepare(model, analysis)

    def _weighted_gradients(self, x, logits_flags, seed) -> list:
        """``[(G, weight, positions)]``, one per backward pass: ``G[n, j] = ∂target/∂gate_{n,j}``.

        The Fisher of the gates is ``Σ_passes Σ_n weight_n G_n G_nᵀ / positions`` (weight None = 1, positions
        None = 1): its diagonal is TBAA's sum of squares, its group blocks the joint-removal damage.
        """
        import tensorflow as tf

        gm = self.gated
        gates = tf.ones([tf.shape(x)[0], gm.width], tf.float32)
        persistent = len(self.specs) > 1 or self.variant in ("expected", "top3")
        with tf.GradientTape(persistent=persistent) as tape:
            tape.watch(gates)
            terms = []
            for o, (spec, out, flag) in enumerate(zip(self.specs, gm.outputs(x, gates), logits_flags)):
                seed_o = seed if o == 0 else tf.random.experimental.stateless_fold_in(seed, o)
                logp = log_probs(out, flag)
                terms.append(self._dense_terms(logp, spec, seed_o) if spec.dense
                             else self._classifier_terms(logp, spec, seed_o))
        return [(tape.gradient(target, gates), weight, positions)
                for targets, positions in terms for target, weight in targets]

    def _grad_sq(self, x, logits_flags, seed):
        import tensorflow as tf

        total = tf.zeros([self.gated.width], tf.float32)
        for grad, weight, positions in self._weighted_gradients(x, logits_flags, seed):
            sq = tf.square(grad)
            if weight is not None:
                sq = weight[:, None] * sq
            sq = tf.reduce_sum(sq, axis=0)
            total += sq if positions is None else sq / positions
        return total

    def _grad_outer(self, x, logits_flags, seed):
        """The per-group blocks of the gate Fisher for one batch (see :meth:`_weighted_gradients`)."""
        import tensorflow as tf

        blocks = [tf.zeros([self.analysis.groups[g].size] * 2, tf.float32) for g in self.gated.group_ids]
        for grad, weight, positions in self._weighted_gradients(x, logits_flags, seed):
            if weight is not None:
                grad = grad * tf.sqrt(weight)[:, None]
            scale = 1.0 if positions is None else 1.0 / positions
            for i, gid in enumerate(self.gated.group_ids):
                cols = self.gated.columns(gid)
                g = grad[:, cols.start:cols.stop]
                blocks[i] += scale * tf.matmul(g, g, transpose_a=True)
        return blocks

    def _classifier_terms(self, logp, spec, seed):
        """``([(target, weight)], None)``: ``Σ_n weight_n (∂target/∂g_n)²`` over the pairs is the Fisher sum.

        Per-example gates make ``∂target/∂g_n`` the derivative of example n's own term, so each pair is one
        backward pass; ``weight`` (None = 1) is the class probability for the expectation variants.
        """
        import tensorflow as tf

        variant, num_classes = self.variant, spec.classes
        if variant == "top3":
            k = min(TOP_K, num_classes)
            top = tf.math.top_k(tf.stop_gradient(logp), k=k).indices
            picked_k = [tf.reduce_sum(logp * tf.one_hot(top[:, j], num_classes), axis=-1) for j in range(k)]
            return [(tf.reduce_sum(v), tf.exp(tf.stop_gradient(v))) for v in picked_k], None
        if variant == "expected":
            # One backward pass per class (faster to trace and run on CPU than a pfor batch_jacobian).
            p = tf.exp(tf.stop_gradient(logp))
            return [(tf.reduce_sum(logp[:, c]), p[:, c]) for c in range(num_classes)], None
        if variant == "argmax":
            cls = tf.argmax(logp, axis=-1)
        else:
            cls = tf.random.stateless_categorical(tf.stop_gradient(logp), 1, seed)[:, 0]
        return [(tf.reduce_sum(logp * tf.one_hot(cls, num_classes), axis=-1), None)], None

    def _dense_terms(self, logp, spec, seed):
        """The per-position form of :meth:`_classifier_terms`: ``([(target, None)], number of positions)``.

        Each target is ``Σ_n Σ_pos ε_{n,pos} w_{n,pos} log p_{pos,c}(x_n)`` with random signs ε = ±1 and ``w``
        the square root of the class weight, so ``E_ε (∂target/∂g_n)² = Σ_pos w² t_pos²``: the per-position
        terms without a gradient per position (module docstring).
        """
        import tensorflow as tf

        variant, num_classes = self.variant, spec.classes
        b = tf.shape(logp)[0]
        logp = tf.reshape(logp, [b, -1, num_classes])  # [batch, positions, classes]
        positions = tf.shape(logp)[1]
        signs = tf.where(tf.random.stateless_uniform([b, positions], seed) < 0.5, -1.0, 1.0)
        fixed = tf.stop_gradient(logp)
        if variant == "top3":
            k = min(TOP_K, num_classes)
            top = tf.math.top_k(fixed, k=k).indices
            picked = [tf.reduce_sum(logp * tf.one_hot(top[..., j], num_classes), axis=-1) for j in range(k)]
            weights = [tf.exp(0.5 * tf.stop_gradient(v)) for v in picked]
        elif variant == "expected":
            picked = [logp[..., c] for c in range(num_classes)]
            weights = [tf.exp(0.5 * fixed[..., c]) for c in range(num_classes)]
        else:
            if variant == "argmax":
                cls = tf.argmax(fixed, axis=-1)
            else:
                draw_seed = tf.random.experimental.stateless_fold_in(seed, 1)
                cls = tf.reshape(tf.random.stateless_categorical(tf.reshape(fixed, [-1, num_classes]), 1, draw_seed),
                                 [b, positions])
            picked = [tf.reduce_sum(logp * tf.one_hot(cls, num_classes), axis=-1)]
            weights = [None]
        targets = [(tf.reduce_sum(signs * (v if w is None else w * v)), None) for v, w in zip(picked, weights)]
        return targets, tf.cast(positions, tf.float32)

    def __call__(self, data: Any, *, from_logits: FromLogits = None, batch_size: int = 64,
                 max_examples: int | None = None, seed: int = 0, progress: bool = True) -> ScoreTable:
        """Scores ``data`` (arguments as in :func:`tbaa`)."""
        import tensorflow as tf

        total = np.zeros(self.gated.width, dtype=np.float64)
        seen = 0
        flags = None
        # Detection always runs (one 8-example forward pass): it checks a from_logits=False against the values.
        for i, x, _, detected in calibration_batches(self.model, data, batch_size=batch_size,
                                                     max_examples=max_examples, from_logits=None,
                                                     progress=progress, label=f"TBAA ({self.variant}) scoring"):
            if flags is None:
                flags = resolve_flags(self.specs, detected, from_logits)
            step_seed = tf.constant([seed, i], dtype=tf.int32)
            total += self._step(x, flags, step_seed).numpy()
            seen += int(x.shape[0])
        return self.gated.split(0.5 * total / seen)

    def fisher(self, data: Any, *, from_logits: FromLogits = None, batch_size: int = 64,
               max_examples: int | None = None, seed: int = 0, progress: bool = True) -> dict[str, np.ndarray]:
        """The Fisher information of each group's channel gates, ``{group_id: [size, size] matrix}``.

        Removing a set S of a group's channels loses about ``½ · 1_Sᵀ F_SS 1_S`` nats (the second-order
        expansion TBAA uses, for all of S at once): the diagonal halves are the TBAA scores, and the
        off-diagonal terms are what a per-channel sum misses (redundant channels, positive; channels that
        cancel, negative). Same pass and arguments as :meth:`__call__`; one ``[size, size]`` product per
        group and backward pass on top.

        Example:
            >>> import keras, numpy as np
            >>> x = keras.Input((8, 8, 3))
            >>> h = keras.layers.Conv2D(4, 3, activation="relu", name="c1")(x)
            >>> scorer = TBAAScorer(keras.Model(x, keras.layers.Dense(3)(keras.layers.Flatten()(h))))
            >>> data = np.random.rand(16, 8, 8, 3).astype("float32")
            >>> f = scorer.fisher(data, progress=False)["c1"]
            >>> bool(np.allclose(0.5 * np.diag(f), scorer(data, progress=False)["c1"], rtol=1e-4))
            True
        """
        import tensorflow as tf

        if not hasattr(self, "_outer_step"):
            self._outer_step = tf.function(self._grad_outer, reduce_retracing=True)
        totals = [np.zeros([self.analysis.groups[g].size] * 2) for g in self.gated.group_ids]
        seen, flags = 0, None
        for i, x, _, detected in calibration_batches(self.model, data, batch_size=batch_size,
                                                     max_examples=max_examples, from_logits=None,
                                                     progress=progress, label=f"TBAA ({self.variant}) Fisher"):
            if flags is None:
                flags = resolve_flags(self.specs, detected, from_logits)
            for total, block in zip(totals, self._outer_step(x, flags, tf.constant([seed, i], dtype=tf.int32))):
                total += block.numpy()
            seen += int(x.shape[0])
        return {gid: total / seen for gid, total in zip(self.gated.group_ids, totals)}
