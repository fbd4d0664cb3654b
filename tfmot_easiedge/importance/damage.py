"""Damage curves: the information a group loses when it keeps only k channels, for every k.

Per-channel scores price each removal alone, so a global ranking of them treats removals as independent:
a layer whose work is spread over n channels prices each at ~1/n of what emptying it costs and gets
emptied. A damage curve prices joint removals. From the gate Fisher of a group (one TBAA pass,
:meth:`TBAAScorer.fisher`), removing a set S loses about

    D(S) = ½ · 1_Sᵀ F_SS 1_S   nats

(diagonal terms: the TBAA scores; off-diagonal: channels whose effects on the output add up, positive,
or cancel, negative). The curve
removes channels greedily, each time the one whose removal adds the least to D, so ``damage[m]`` is the
estimated loss after the group's m cheapest removals and ``order[:m]`` are those channels. An allocator
then trades the curves of all groups against a cost (:mod:`tfmot_easiedge.selection.joint`).

Example:
    >>> import numpy as np
    >>> f = np.array([[1.0, 0.9, 0.0], [0.9, 1.0, 0.0], [0.0, 0.0, 1.2]])   # channels 0 and 1 share work
    >>> c = curve_from_fisher(f)   # alone, 0 and 1 are the cheapest; together they cost 2.8, not 1.0
    >>> c.order.tolist(), np.round(c.damage, 2).tolist()
    ([0, 2, 1], [0.0, 0.5, 1.1, 2.5])
    >>> c.kept(1).tolist()
    [1]
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import keras

    from tfmot_easiedge.graph.analysis import ModelAnalysis
    from tfmot_easiedge.importance._gating import FromLogits
    from tfmot_easiedge.importance.tbaa import TBAAScorer

__all__ = ["DamageCurve", "MEASURED_WIDTHS", "curve_from_fisher", "curves_from_scores", "damage_curves",
           "measure_curves"]

#: Points per group where :func:`measure_curves` ablates: removing 1/8, 2/8, ... 8/8 of the group.
MEASURED_WIDTHS = 8


@dataclasses.dataclass(frozen=True)
class DamageCurve:
    """One group's removal order and estimated damage.

    Attributes:
        order: channel indices in the order they are removed (``order[0]`` first).
        damage: ``damage[m]``, m = 0..size: the estimated loss (nats) after removing ``order[:m]``;
            non-decreasing in m.
    """

    order: np.ndarray
    damage: np.ndarray

    def __post_init__(self):
        if len(self.damage) != len(self.order) + 1:
            raise ValueError(f"damage needs size + 1 = {len(self.order) + 1} entries, got {len(self.damage)}")
        if not np.isfinite(self.damage).all():
            raise ValueError("damage curve contains NaN or inf")
        if np.any(np.diff(self.damage) < 0):
            raise ValueError("damage must not decrease as channels are removed")

    @property
    def size(self) -> int:
        return len(self.order)

    def at_kept(self, k: int) -> float:
        """The damage when the group keeps ``k`` channels."""
        return float(self.damage[self.size - k])

    def kept(self, k: int) -> np.ndarray:
        """The ``k`` channels kept (sorted): those removed last."""
        return np.sort(self.order[self.size - k:])


def curve_from_fisher(fisher: np.ndarray) -> DamageCurve:
    """The greedy damage curve of one group from its ``[size, size]`` gate Fisher (module docstring).

    Each step removes the channel with the smallest increase ``½ F_cc + Σ_{j removed} F_cj``; O(size²).
    """
    f = np.asarray(fisher, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] != f.shape[1]:
        raise ValueError(f"a group's Fisher must be square, got shape {f.shape}")
    if not np.isfinite(f).all():
        raise ValueError("the Fisher matrix contains NaN or inf")
    f = 0.5 * (f + f.T)
    n = len(f)
    coupling = np.zeros(n)  # Σ_{j removed} F_cj
    removed = np.zeros(n, bool)
    order = np.empty(n, np.int64)
    damage = np.zeros(n + 1)
    raw = 0.0
    half_diag = 0.5 * np.diag(f)
    for m in range(n):
        increase = np.where(removed, np.inf, half_diag + coupling)
        c = int(np.argmin(increase))
        order[m] = c
        raw = raw + increase[c]
        # A negative increase (channels whose effects cancel) would say that cutting more loses less: an
        # artefact of the quadratic model that would make an allocator prefer narrower groups. The curve
        # keeps the running maximum instead, so keeping a channel never costs damage.
        damage[m + 1] = max(damage[m], raw)
        removed[c] = True
        coupling += f[:, c]
    return DamageCurve(order, damage)


def curves_from_scores(scores: Mapping[str, np.ndarray]) -> dict[str, DamageCurve]:
    """The independent-removal curves of per-channel scores: remove the lowest first, damage = running sum.

    What today's global ranking assumes; kept for comparison (the damage-fidelity benchmark) and for
    criteria that have no joint form.
    """
    out = {}
    for gid, s in scores.items():
        s = np.asarray(s, dtype=np.float64)
        order = np.argsort(s, kind="stable")
        out[gid] = DamageCurve(order, np.maximum.accumulate(np.concatenate([[0.0], np.cumsum(s[order])])))
    return out


def damage_curves(model: keras.Model, data: Any, *, analysis: ModelAnalysis | None = None, variant: str = "auto",
                  from_logits: FromLogits = None, batch_size: int = 64, max_examples: int | None = None,
                  seed: int = 0, progress: bool = True, scorer: TBAAScorer | None = None,
                  measure: int = 0) -> dict[str, DamageCurve]:
    """Damage curves of every prunable group from one TBAA Fisher pass over ``data``.

    Args:
        model: a model TBAA can score (its outputs class distributions).
        data: calibration inputs, as for :func:`~tfmot_easiedge.importance.tbaa`.
        analysis, variant, from_logits, batch_size, max_examples, seed, progress: as for TBAA.
        scorer: a :class:`~tfmot_easiedge.importance.tbaa.TBAAScorer` to reuse (ADMM's Z-steps).
        measure: 0 keeps the Fisher's quadratic damage; ``n > 0`` measures the damage by ablation at ``n``
            widths per group (:func:`measure_curves`, same ``data``), keeping the Fisher's removal order.

    Returns:
        ``{group_id: DamageCurve}``.

    Example:
        >>> import keras, numpy as np
        >>> x = keras.Input((8, 8, 3))
        >>> h = keras.layers.Conv2D(4, 3, activation="relu", name="c1")(x)
        >>> m = keras.Model(x, keras.layers.Dense(3)(keras.layers.Flatten()(h)))
        >>> curves = damage_curves(m, np.random.rand(16, 8, 8, 3).astype("float32"), progress=False)
        >>> curves["c1"].size, float(curves["c1"].damage[0])
        (4, 0.0)
    """
    from tfmot_easiedge.importance.tbaa import TBAAScorer

    scorer = scorer if scorer is not None else TBAAScorer(model, analysis=analysis, variant=variant)
    fisher = scorer.fisher(data, from_logits=from_logits, batch_size=batch_size, max_examples=max_examples,
                           seed=seed, progress=progress)
    curves = {gid: curve_from_fisher(f) for gid, f in fisher.items()}
    if measure:
        curves = measure_curves(scorer, data, curves, widths=measure, from_logits=from_logits,
                                batch_size=batch_size, max_examples=max_examples)
    return curves


def measure_curves(scorer: TBAAScorer, data: Any, curves: Mapping[str, DamageCurve], *,
                   widths: int = MEASURED_WIDTHS, from_logits: FromLogits = None, batch_size: int = 64,
                   max_examples: int | None = None) -> dict[str, DamageCurve]:
    """The curves' removal orders with their damage measured: the exact ``E_x KL(p ‖ p_cut)`` (nats, summed
    over outputs) when each group's first ``j/widths`` removals are cut, ``j = 1..widths``, interpolated
    linearly in between (and kept non-decreasing).

    Why: the quadratic form is a second-order expansion around the full network and underestimates what
    cutting half a layer does. Each group is cut alone, so the curves do not see interactions between
    groups: measured one-shot (``benchmarks/results/allocation_*.md``), allocating on measured curves beat the
    quadratic ones and the greedy ranking on the CIFAR-10 VGG-16-BN, but lost to the greedy ranking on
    ResNet-20 at 4x fewer MACs. Cost: ``widths`` forward passes per group over ``data``, with BatchNorm
    statistics as they are (cut channels feed zeros downstream, as a slim model would).

    Args:
        scorer: the :class:`~tfmot_easiedge.importance.tbaa.TBAAScorer` of the model (its gated model runs
            the cuts).
        data: the inputs to measure on (as for TBAA; labels unused).
        curves: ``{group id: DamageCurve}`` giving each group's removal order.
        widths: ablation points per group.
        from_logits, batch_size, max_examples: as for TBAA.

    Example:
        >>> import keras, numpy as np
        >>> from tfmot_easiedge.importance.tbaa import TBAAScorer
        >>> x = keras.Input((8, 8, 3))
        >>> h = keras.layers.Conv2D(4, 3, activation="relu", name="c1")(x)
        >>> scorer = TBAAScorer(keras.Model(x, keras.layers.Dense(3)(keras.layers.Flatten()(h))))
        >>> data = np.random.rand(16, 8, 8, 3).astype("float32")
        >>> curves = damage_curves(scorer.model, data, scorer=scorer, progress=False)
        >>> measured = measure_curves(scorer, data, curves, widths=2)
        >>> measured["c1"].order.tolist() == curves["c1"].order.tolist(), float(measured["c1"].damage[0])
        (True, 0.0)
    """
    import tensorflow as tf

    from tfmot_easiedge.importance._common import calibration_batches
    from tfmot_easiedge.importance._gating import log_probs, resolve_flags

    if widths < 1:
        raise ValueError(f"widths must be >= 1, got {widths}")
    gm, specs = scorer.gated, scorer.specs
    masks: list[np.ndarray] = []
    points: list[tuple[str, int]] = []
    for gid, curve in curves.items():
        cols = gm.columns(gid)
        for j in range(1, widths + 1):
            m = max(1, int(round(j * curve.size / widths)))
            if points and points[-1][:2] == (gid, m):
                continue
            gates = np.ones(gm.width, np.float32)
            gates[cols.start + curve.order[:m]] = 0.0
            masks.append(gates)
            points.append((gid, m))

    def _kl(x, gates, logp0, flags):
        total = 0.0
        for spec, out, lp0, flag in zip(specs, gm.outputs(x, gates), logp0, flags):
            logq = tf.reshape(log_probs(out, flag), [tf.shape(x)[0], -1])
            lp0 = tf.reshape(lp0, [tf.shape(x)[0], -1])
            kl = tf.reduce_sum(tf.exp(lp0) * (lp0 - logq))
            if spec.dense:
                kl = kl / tf.cast(tf.shape(lp0)[1] // spec.classes, kl.dtype)
            total += kl
        return total

    kl_fn = tf.function(_kl, reduce_retracing=True)
    logp_fn = tf.function(lambda x, flags: log_probs(gm.outputs(x, tf.ones([gm.width])), flags),
                          reduce_retracing=True)
    totals = np.zeros(len(masks))
    seen, flags = 0, None
    for _, x, _, detected in calibration_batches(scorer.model, data, batch_size=batch_size,
                                                 max_examples=max_examples, from_logits=None, progress=False,
                                                 label=""):
        if flags is None:
            flags = resolve_flags(specs, detected, from_logits)
        logp0 = logp_fn(x, flags)
        for i, gates in enumerate(masks):
            totals[i] += float(kl_fn(x, tf.constant(gates), logp0, flags))
        seen += int(x.shape[0])
    measured: dict[str, list[tuple[int, float]]] = {gid: [(0, 0.0)] for gid in curves}
    for (gid, m), total in zip(points, totals):
        measured[gid].append((m, max(0.0, total / seen)))
    out = {}
    for gid, curve in curves.items():
        ms, ds = zip(*measured[gid])
        damage = np.maximum.accumulate(np.interp(np.arange(curve.size + 1), ms, ds))
        out[gid] = DamageCurve(curve.order, damage)
    return out
