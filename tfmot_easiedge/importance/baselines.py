"""Baseline criteria behind the same interface as TBAA: filter norms, BN scale, first-order Taylor, random."""
from __future__ import annotations

from typing import Any

import keras
import numpy as np

from tfmot_easiedge import _keras_compat as kc
from tfmot_easiedge.graph.analysis import ModelAnalysis, analyze
from tfmot_easiedge.importance._common import ScoreTable, calibration_batches, prepare
from tfmot_easiedge.importance._gating import log_probs


def _analysis(model, analysis) -> ModelAnalysis:
    analysis = analysis if analysis is not None else analyze(model)
    if not analysis.prunable_groups:
        raise ValueError(f"model {model.name!r} has no prunable channel group")
    return analysis


def _producer_kernel(layer) -> np.ndarray:
    """The producer's kernel with the output-filter axis last."""
    if isinstance(layer, (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)):
        return np.asarray(layer.pointwise_kernel.numpy())
    kernel = np.asarray(layer.kernel.numpy())
    if kc.is_conv_transpose(layer):
        kernel = np.moveaxis(kernel, -2, -1)
    return kernel


def _accumulate(analysis: ModelAnalysis, tensor_id: int, values: np.ndarray, table: dict) -> None:
    """Adds per-position ``values`` of a tensor into the channels of the prunable groups they belong to."""
    positions = analysis.positions(tensor_id)
    assert positions is not None  # the tensor of a prunable group has channels
    gids, chans = positions
    for pos, (gid, ch) in enumerate(zip(gids, chans.tolist())):
        if gid in table:
            table[gid][ch] += values[pos]


#: How ``l1_norm``/``l2_norm`` make scores comparable across groups by default.
NORM_NORMALIZATIONS = ("mean", None)


def _norm(model, analysis, order: int, normalize: str | None) -> ScoreTable:
    if normalize not in NORM_NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORM_NORMALIZATIONS}, got {normalize!r}")
    analysis = _analysis(model, analysis)
    table = {gid: np.zeros(g.size) for gid, g in analysis.prunable_groups.items()}
    for gid, g in analysis.prunable_groups.items():
        counts = np.zeros(g.size)
        for name in g.producers:
            node = analysis.graph.node(name)
            k = _producer_kernel(node.layer)
            k = k.reshape(-1, k.shape[-1])
            norms = np.abs(k).sum(0) if order == 1 else np.sqrt((k ** 2).sum(0))
            _accumulate(analysis, node.outputs[0], norms, {gid: table[gid]})
            _accumulate(analysis, node.outputs[0], np.ones_like(norms), {gid: counts})
        table[gid] /= np.maximum(counts, 1.0)
        if normalize == "mean":
            mean = float(table[gid].mean())
            table[gid] = table[gid] / mean if mean > 0 else table[gid]
    return table


def l1_norm(model: keras.Model, data: Any = None, *, analysis: ModelAnalysis | None = None,
            normalize: str | None = "mean", **_: Any) -> ScoreTable:
    """Each filter's L1 norm (Li et al., 2017), averaged over the producers coupled into its channel and, by
    default, divided by the group's mean.

    A residual group has one producer per block writing into the same channels; a sum would score such a
    channel ~N times an ordinary one and a global selection would never prune it, so the norms are averaged
    (Torch-Pruning's default group reduction is a mean, too). Raw norms are not comparable across layers (a
    filter's L1 grows with its fan-in, and under BatchNorm its scale means nothing): ranked globally, they
    empty the layers with few weights per filter (a first convolution cut to 1-3 of 64 channels on a
    third-party CIFAR-10 CNN, issue 14). So each group's scores are divided by their mean (Torch-Pruning's
    default group normalisation); ``normalize=None`` gives the raw norms. ``data`` is unused.

    Example:
        >>> from tfmot_easiedge.models import zoo
        >>> s = l1_norm(zoo.tiny_cnn())
        >>> all(abs(float(v.mean()) - 1.0) < 1e-9 for v in s.values())
        True
    """
    return _norm(model, analysis, 1, normalize)


def l2_norm(model: keras.Model, data: Any = None, *, analysis: ModelAnalysis | None = None,
            normalize: str | None = "mean", **_: Any) -> ScoreTable:
    """Each filter's L2 norm, averaged over the producers coupled into its channel and divided by the group's
    mean unless ``normalize=None`` (see ``l1_norm``). ``data`` is unused.
    """
    return _norm(model, analysis, 2, normalize)


def bn_scale(model: keras.Model, data: Any = None, *, analysis: ModelAnalysis | None = None, **_: Any) -> ScoreTable:
    """|gamma| of the BatchNormalization layers on the group's channels (Liu et al., 2017, network slimming).

    Groups without a BatchNormalization layer are left out of the table; ``select`` keeps them whole.
    """
    analysis = _analysis(model, analysis)
    table = {gid: np.zeros(g.size) for gid, g in analysis.prunable_groups.items()}
    has_bn: set[str] = set()
    for node in analysis.graph.nodes:
        if not isinstance(node.layer, keras.layers.BatchNormalization) or not node.layer.scale:
            continue
        gamma = np.abs(np.asarray(node.layer.gamma.numpy()))
        positions = analysis.positions(node.inputs[0])
        assert positions is not None  # a BatchNormalization input has channels
        has_bn.update(g for g in positions[0] if g in table)
        _accumulate(analysis, node.inputs[0], gamma, table)
    return {gid: s for gid, s in table.items() if gid in has_bn}


def random(model: keras.Model, data: Any = None, *, analysis: ModelAnalysis | None = None, seed: int = 0,
           **_: Any) -> ScoreTable:
    """Uniform random scores (a floor every criterion must beat)."""
    analysis = _analysis(model, analysis)
    rng = np.random.default_rng(seed)
    return {gid: rng.random(g.size) for gid, g in analysis.prunable_groups.items()}


def taylor_fo(model: keras.Model, data: Any = None, *, analysis: ModelAnalysis | None = None,
              from_logits: bool | None = None, batch_size: int = 64, max_examples: int | None = None,
              progress: bool = True, **_: Any) -> ScoreTable:
    """First-order Taylor (Molchanov et al., 2017): ``mean_n |∂L(x_n, y_n)/∂g_k|``, L the cross-entropy.

    ``∂L/∂g_k = Σ_spatial a·∂L/∂a`` is the first-order change of the loss when the channel is removed.
    Labels come from ``data`` when it has them, else from the model's own predictions. No per-layer
    normalisation is applied (the ranking is global, like the other criteria).
    """
    import tensorflow as tf

    analysis, gm = prepare(model, analysis)
    width = gm.width

    def _step(x, y, logits_flag):
        gates = tf.ones([tf.shape(x)[0], width])
        with tf.GradientTape() as tape:
            tape.watch(gates)
            logp = log_probs(gm(x, gates), logits_flag)
            if y is None:
                y = tf.argmax(logp, axis=-1)
            nll = -tf.reduce_sum(logp * tf.one_hot(tf.cast(tf.reshape(y, [-1]), tf.int32), tf.shape(logp)[-1]))
        return tf.reduce_sum(tf.abs(tape.gradient(nll, gates)), axis=0)

    step_fn = tf.function(_step, reduce_retracing=True)
    total = np.zeros(width)
    seen = 0
    for _batch, x, y, logits_flag in calibration_batches(model, data, batch_size=batch_size, max_examples=max_examples,
                                                         from_logits=from_logits, progress=progress,
                                                         label="first-order Taylor scoring"):
        total += step_fn(x, y, logits_flag).numpy()
        seen += int(x.shape[0])
    return gm.split(total / seen)
