"""Residual-block importance: the information lost when a block's whole branch is removed.

The same idea as TBAA (:mod:`~tfmot_easiedge.importance.tbaa`) one level up: a gate ``g_b`` multiplies the
branch output of block ``b`` where its ``Add`` reads it, ``Add(x, g_b·f(x))``; ``g_b = 0`` is exactly the
removed block (what ``slim`` builds). The information gain is ``IG_b = E_x KL(p(x) ‖ p(x without b))`` and,
the first-order term vanishing as for channels, its second-order estimate is the Fisher information of the
gate:

    IG_b ≈ ½ · mean_n Σ_c p_c(x_n) · (∂log p_c(x_n)/∂g_b)²,   ∂log p_c/∂g_b = Σ_positions f(x)·∂log p_c/∂(Add input)

in nats at the output, from one backward pass per batch with per-example gates (the TBAA variants,
dense and multiple outputs apply unchanged: :class:`BlockTBAAScorer` is a :class:`TBAAScorer` whose gates
are the blocks'). :func:`block_exact_ig` measures the KL of each removal exactly, one forward pass per
block, for validation.

A removed block changes much more than a channel does, so the quadratic estimate is coarser; on the
small ResNet of ``tests/test_blocks.py`` it ranks blocks like the exact IG (Spearman recorded there).

Example:
    >>> import numpy as np
    >>> from tfmot_easiedge.models import zoo
    >>> net = zoo.resnet20(width=0.25, seed=0)
    >>> x = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    >>> scores = block_tbaa(net, x, progress=False)
    >>> len(scores), all(v >= 0 for v in scores.values())
    (7, True)
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from tfmot_easiedge.graph.analysis import ModelAnalysis, analyze
from tfmot_easiedge.importance._common import calibration_batches
from tfmot_easiedge.importance._gating import FromLogits, log_probs, output_specs, resolve_flags
from tfmot_easiedge.importance.tbaa import TBAAScorer

if TYPE_CHECKING:
    import keras

    from tfmot_easiedge.importance._gating import OutputSpec

__all__ = ["BlockGates", "BlockTBAAScorer", "block_exact_ig", "block_tbaa"]

#: ``{block id: score}`` in nats.
BlockScores = dict[str, float]


class BlockGates:
    """Callable ``(x, gates) -> model output`` with one gate per residual block on its branch output.

    It has the interface of the channel-gated model TBAA scores (``width``, ``outputs``, ``split``,
    ``output_specs``), so :class:`~tfmot_easiedge.importance.tbaa.TBAAScorer` runs on it as it is.

    Attributes:
        block_ids: the gated blocks, one gate column each, in this order.
        width: the number of gates.

    Raises:
        ValueError: an unknown or unremovable block, or no removable block at all.
    """

    group_ids: list[str] = []  # no channel gates (what TBAA's Fisher blocks iterate over)

    def __init__(self, model: keras.Model, analysis: ModelAnalysis, block_ids: Iterable[str] | None = None):
        self.model = model
        self.analysis = analysis
        self.block_ids = list(block_ids if block_ids is not None else analysis.removable_blocks)
        for bid in self.block_ids:
            block = analysis.blocks.get(bid)
            if block is None:
                raise ValueError(f"no residual block {bid!r} in model {analysis.graph.model_name!r}")
            if not block.removable:
                raise ValueError(f"residual block {bid!r} is not removable: {block.reason}")
        if not self.block_ids:
            raise ValueError(f"model {analysis.graph.model_name!r} has no removable residual block to score")
        self.width = len(self.block_ids)
        blocks = [analysis.blocks[b] for b in self.block_ids]
        self._edges = {(b.add_node, b.branch_position): j for j, b in enumerate(blocks)}

    def outputs(self, x: Any, gates: Any) -> list:
        """Every model output, in inference mode; ``gates`` is ``[batch, width]`` (or ``[width]``)."""
        import tensorflow as tf

        gates = tf.convert_to_tensor(gates)
        if gates.shape.rank == 1:
            gates = gates[None]

        def input_fn(node, pos, value):
            j = self._edges.get((node.index, pos))
            if j is None:
                return value
            g = tf.reshape(gates[:, j], [-1] + [1] * (len(value.shape) - 1))
            return value * tf.cast(g, value.dtype)

        return self.analysis.graph.run([x], input_fn=input_fn, call_kwargs={"training": False})

    def split(self, row: np.ndarray) -> dict[str, np.ndarray]:
        """``{block id: value}`` from a vector over the gates."""
        return {bid: np.asarray(row[j]) for j, bid in enumerate(self.block_ids)}

    def output_specs(self) -> tuple[OutputSpec, ...]:
        """The model outputs as class distributions (see :func:`~tfmot_easiedge.importance._gating.output_specs`)."""
        return output_specs(self.model, self.analysis.graph)


class BlockTBAAScorer(TBAAScorer):
    """TBAA over residual-block gates: ``scorer(data) -> {block id: nats}``, compiled once.

    Args:
        model: a functional or Sequential model whose outputs are class distributions.
        analysis: its analysis (computed when None).
        blocks: the block ids to score (default: every removable block).
        variant: as for :func:`~tfmot_easiedge.importance.tbaa.tbaa`.
    """

    def __init__(self, model: keras.Model, *, analysis: ModelAnalysis | None = None,
                 blocks: Iterable[str] | None = None, variant: str = "auto"):
        self._block_ids = None if blocks is None else list(blocks)
        super().__init__(model, analysis=analysis, variant=variant)

    def _make_gates(self, model: keras.Model, analysis: ModelAnalysis | None) -> tuple[ModelAnalysis, Any]:
        analysis = analysis if analysis is not None else analyze(model)
        return analysis, BlockGates(model, analysis, self._block_ids)

    def __call__(self, data: Any, *, from_logits: FromLogits = None, batch_size: int = 64,  # type: ignore[override]
                 max_examples: int | None = None, seed: int = 0, progress: bool = True) -> BlockScores:
        table = super().__call__(data, from_logits=from_logits, batch_size=batch_size, max_examples=max_examples,
                                 seed=seed, progress=progress)
        return {bid: float(v) for bid, v in table.items()}

    def fisher(self, *args: Any, **kwargs: Any) -> dict[str, np.ndarray]:
        raise NotImplementedError("the Fisher matrix of block gates is not computed; score with the scorer itself")


def block_tbaa(model: keras.Model, data: Any = None, *, analysis: ModelAnalysis | None = None,
               blocks: Iterable[str] | None = None, variant: str = "auto", from_logits: FromLogits = None,
               batch_size: int = 64, max_examples: int | None = None, seed: int = 0,
               progress: bool = True) -> BlockScores:
    """Scores every removable residual block by the second-order (Fisher) estimate of its information gain.

    Args:
        model, data, analysis, variant, from_logits, batch_size, max_examples, seed, progress: as in
            :func:`~tfmot_easiedge.importance.tbaa.tbaa`.
        blocks: the block ids to score (default: every removable block of the analysis).

    Returns:
        ``{block id: nats}``, higher = more important; pass it to ``select(..., block_scores=...)``.

    Raises:
        ValueError: no removable block, an unknown or unremovable block id, or outputs that are not class
            distributions.
    """
    return BlockTBAAScorer(model, analysis=analysis, blocks=blocks, variant=variant)(
        data, from_logits=from_logits, batch_size=batch_size, max_examples=max_examples, seed=seed,
        progress=progress)


def block_exact_ig(model: keras.Model, data: Any = None, *, analysis: ModelAnalysis | None = None,
                   blocks: Iterable[str] | None = None, from_logits: FromLogits = None, batch_size: int = 64,
                   max_examples: int | None = None, progress: bool = True) -> BlockScores:
    """The exact information gain of removing each block: ``mean_x KL(p(x) ‖ p(x without the branch))``.

    One forward pass per block and batch (the branch gated to zero, which is what ``slim`` removes); the
    KL is summed over outputs and averaged over positions for a dense output, as in
    :func:`~tfmot_easiedge.importance.exact_ig.exact_ig`. Arguments as :func:`block_tbaa`.

    Example:
        >>> import numpy as np
        >>> from tfmot_easiedge.models import zoo
        >>> net = zoo.resnet20(width=0.25, seed=0)
        >>> x = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
        >>> ig = block_exact_ig(net, x, blocks=["stage1_block2_add"], progress=False)
        >>> list(ig), ig["stage1_block2_add"] >= 0
        (['stage1_block2_add'], True)
    """
    import tensorflow as tf

    analysis = analysis if analysis is not None else analyze(model)
    gm = BlockGates(model, analysis, blocks)
    specs = gm.output_specs()

    def _kl(x, logp0, gates, flags):
        total = tf.zeros([], tf.float32)
        for out, lp0, flag in zip(gm.outputs(x, gates), logp0, flags):
            logq = log_probs(out, flag)
            kl = tf.reduce_sum(tf.exp(lp0) * (lp0 - logq), axis=-1)  # per example (and position)
            kl = tf.reshape(kl, [tf.shape(x)[0], -1])
            total += tf.reduce_sum(tf.reduce_mean(kl, axis=1))  # mean over positions, sum over examples
        return total

    kl_fn = tf.function(_kl, reduce_retracing=True)
    logp_fn = tf.function(lambda x, flags: log_probs(gm.outputs(x, tf.ones([gm.width])), flags),
                          reduce_retracing=True)
    total = np.zeros(gm.width)
    seen, flags = 0, None
    for _, x, _, detected in calibration_batches(model, data, batch_size=batch_size, max_examples=max_examples,
                                                 from_logits=None, progress=progress, label="block exact IG"):
        if flags is None:
            flags = resolve_flags(specs, detected, from_logits)
        logp0 = logp_fn(x, flags)
        for j in range(gm.width):
            gates = tf.constant(1.0 - np.eye(gm.width, dtype="float32")[j])
            total[j] += float(kl_fn(x, logp0, gates, flags))
        seen += int(x.shape[0])
    return {bid: max(float(v) / max(seen, 1), 0.0) for bid, v in zip(gm.block_ids, total)}
