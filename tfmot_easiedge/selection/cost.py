"""Cost models: what a channel selection costs, predicted from the number of channels each group keeps.

A budget carries a cost model (:meth:`~tfmot_easiedge.selection.budgets.Budget.cost_model`) and the allocator
only talks to it through two methods, so a new cost (bytes, a measured latency table) is a new class here,
not a new branch in :func:`~tfmot_easiedge.selection.allocate.select`:

- ``total(kept)``: the cost with ``kept[i]`` channels kept in group ``group_ids[i]`` (every group of the
  analysis, prunable or not; groups that are not pruned stay at their size);
- ``saving(kept)``: the cost saved by removing one more channel of each group, at ``kept``.

``linear = True`` says that ``saving`` does not depend on ``kept`` (filters): the allocator then ranks all
channels in one sort instead of re-evaluating the savings after each removal.

Example:
    >>> import keras, numpy as np
    >>> from tfmot_easiedge import analyze
    >>> x = keras.Input((8, 8, 3))
    >>> h = keras.layers.Conv2D(4, 3, padding="same", name="c1")(x)
    >>> cost = MacsCost(analyze(keras.Model(x, keras.layers.Conv2D(2, 3, padding="same", name="c2")(h))))
    >>> cost.group_ids
    ['input', 'c1', 'c2']
    >>> cost.total(cost.full()), cost.total(np.array([3.0, 2.0, 2.0]))   # c1 keeps 2 of its 4 filters
    (11520.0, 5760.0)
"""
from __future__ import annotations

from collections.abc import Sized
from typing import Callable

import numpy as np

from tfmot_easiedge.graph.analysis import ModelAnalysis
from tfmot_easiedge.graph.model_graph import GraphNode
from tfmot_easiedge.metrics.counting import macs_coefficients


class CostModel:
    """Base class: a cost predicted from kept channel counts (see the module docstring).

    Attributes:
        name: what is counted (``"filters"``, ``"macs"``, ``"params"``...), as in reports.
        label: the same for messages (``"MACs"``).
        linear: ``saving`` is the same whatever ``kept`` is.
        group_ids: the order of the entries of ``kept``.
    """

    name = "cost"
    label = "cost"
    linear = False

    def __init__(self, analysis: ModelAnalysis):
        self.analysis = analysis
        self.group_ids = list(analysis.groups)
        self.sizes = np.array([analysis.groups[g].size for g in self.group_ids], dtype=float)

    def full(self) -> np.ndarray:
        """``kept`` of the unpruned model (every group at its size)."""
        return self.sizes.copy()

    def kept_counts(self, kept: dict[str, list[int]] | dict[str, int]) -> np.ndarray:
        """``kept`` from ``{group id: kept indices or count}`` (groups not named stay whole)."""
        out = self.full()
        for i, g in enumerate(self.group_ids):
            if g in kept:
                v = kept[g]
                out[i] = float(len(v)) if isinstance(v, Sized) else float(v)
        return out

    def total(self, kept: np.ndarray) -> float:
        raise NotImplementedError

    def saving(self, kept: np.ndarray) -> np.ndarray:
        raise NotImplementedError


#: What a :class:`FilterCost` counts: ``"conv"`` the convolution filters, per producer (default); ``"all"``
#: also Dense units; ``"channels"`` each channel of a prunable group once, whatever writes it.
FILTER_COUNTS = ("conv", "all", "channels")


def _is_dense(layer) -> bool:
    import keras

    return isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense))


class FilterCost(CostModel):
    """The number of filters kept, counted per producer: a channel of a group costs one per layer that writes it.

    A residual channel written by ten convolutions is ten filters, as the literature counts them, and by
    default only convolution filters count (``count="conv"``): Dense units cost nothing, so a filter budget
    removes convolution filters (on a CNN with two wide Dense layers, counting units made a 50% filter budget
    remove 1% of the MACs, all of it from the Dense layers; issue 14). ``count="all"`` counts Dense units too,
    ``"channels"`` each channel of a prunable group once.

    Raises:
        ValueError: an unknown ``count``; ``count="conv"`` on a model with no prunable convolution.
    """

    name = label = "filters"
    linear = True

    def __init__(self, analysis: ModelAnalysis, count: str = "conv"):
        super().__init__(analysis)
        if count not in FILTER_COUNTS:
            raise ValueError(f"filter count must be one of {FILTER_COUNTS}, got {count!r}")
        self.count = count

        def weight(g: str) -> float:
            group = analysis.prunable_groups.get(g)
            if group is None:
                return 0.0
            if count == "channels":
                return 1.0
            layers = [analysis.graph.node(name).layer for name in group.producers]
            return float(sum(1 for layer in layers if count == "all" or not _is_dense(layer)))

        self.weights = np.array([weight(g) for g in self.group_ids])
        if analysis.prunable_groups and not self.weights.any():
            raise ValueError("the model has no prunable convolution filter to count; count Dense units with "
                             "FilterBudget(ratio, count='all')")

    def total(self, kept: np.ndarray) -> float:
        return float(self.weights @ kept)

    def saving(self, kept: np.ndarray) -> np.ndarray:
        return self.weights.copy()


class BilinearCost(CostModel):
    """A sum over graph nodes of ``c0 + cI·I + cO·O + cIO·I·O``, ``I``/``O`` the node's input/output channels.

    ``I`` and ``O`` are linear in the groups' kept counts (a channel of a group can appear at several
    positions of a tensor, e.g. after ``Flatten``; positions no group tracks count as constants), so the
    total is a quadratic form of ``kept`` and removing one channel saves an exact, cheap difference.

    Args:
        analysis: the model's analysis.
        coefficients: ``(node) -> (c0, cI, cO, cIO)`` for one graph node, None for a node that costs nothing.
    """

    def __init__(self, analysis: ModelAnalysis, coefficients: Callable):
        super().__init__(analysis)
        gindex = {g: i for i, g in enumerate(self.group_ids)}
        rows = []
        for node in analysis.graph.nodes:
            if not node.inputs or not node.outputs:
                continue
            c = coefficients(node)
            if c is None or not any(c):
                continue
            rows.append((*(float(v) for v in c), *self._weights(node.inputs[0], gindex),
                         *self._weights(node.outputs[0], gindex)))
        n = len(self.group_ids)
        cols = list(zip(*rows)) if rows else [()] * 8
        self.c0, self.ci, self.co, self.cio = (np.array(cols[k], dtype=float) for k in range(4))
        # positions per kept channel of each group at each counted node's input / output, and the untracked ones
        self.w_in = np.array(cols[4], dtype=float).reshape(len(rows), n)
        self.u_in = np.array(cols[5], dtype=float)
        self.w_out = np.array(cols[6], dtype=float).reshape(len(rows), n)
        self.u_out = np.array(cols[7], dtype=float)

    def _weights(self, tid: int, gindex) -> tuple[np.ndarray, float]:
        w = np.zeros(len(gindex))
        pos = self.analysis.positions(tid)
        if pos is None:
            return w, float(self.analysis.graph.tensors[tid].shape[-1] or 0)
        untracked = 0.0
        for g in pos[0]:
            if g in gindex:
                w[gindex[g]] += 1.0
            else:
                untracked += 1.0
        return w / np.maximum(self.sizes, 1.0), untracked

    def _io(self, kept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.w_in @ kept + self.u_in, self.w_out @ kept + self.u_out

    def total(self, kept: np.ndarray) -> float:
        i, o = self._io(kept)
        return float((self.c0 + self.ci * i + self.co * o + self.cio * i * o).sum())

    def saving(self, kept: np.ndarray) -> np.ndarray:
        i, o = self._io(kept)
        d = (self.ci[:, None] * self.w_in + self.co[:, None] * self.w_out
             + self.cio[:, None] * (self.w_in * o[:, None] + i[:, None] * self.w_out - self.w_in * self.w_out))
        return d.sum(0)


class MacsCost(BilinearCost):
    """Multiply-accumulates, ``a·I + b·I·O`` per counted layer (:func:`~tfmot_easiedge.metrics.macs_coefficients`)."""

    name, label = "macs", "MACs"

    def __init__(self, analysis: ModelAnalysis):
        graph = analysis.graph

        def coefficients(node):
            a, b = macs_coefficients(node, graph)
            return (0.0, a, 0.0, b) if a or b else None

        super().__init__(analysis, coefficients)

    def macs(self, kept: np.ndarray) -> float:
        """Total MACs with ``kept[i]`` channels kept in group ``group_ids[i]`` (``total``, by its old name)."""
        return self.total(kept)


#: The name ``select``'s MAC counter had before cost models were objects (benchmarks and tests use it).
MacsModel = MacsCost


class ParamsCost(BilinearCost):
    """Parameters (trainable and not, as ``model.count_params()`` counts them), each layer counted once.

    Every layer's parameter count is bilinear in its input and output channels; the coefficients are read
    from the layer's own channel rule by slimming it to no input and/or no output channel (four cheap
    probes), so layers with user-registered rules are counted the way ``slim`` will cut them. A layer whose
    rule cannot be probed (or that has no rule) counts as a constant.
    """

    name, label = "params", "parameters"

    def __init__(self, analysis: ModelAnalysis):
        seen: set[int] = set()

        def coefficients(node):
            layer = node.layer
            if id(layer) in seen or not getattr(layer, "weights", None):
                return None
            seen.add(id(layer))
            return param_coefficients(analysis, node)

        super().__init__(analysis, coefficients)


def param_coefficients(analysis: ModelAnalysis, node: GraphNode) -> tuple[float, float, float, float]:
    """A layer's parameters as the bilinear form ``(const, per input channel, per output channel, per both)``
    of its kept input and output channels (the whole count as a constant when no rule moves its channels)."""
    layer = node.layer
    full = float(sum(int(np.prod(v.shape)) for v in layer.weights))
    rule = analysis.rules[node.index]
    if rule is None or len(node.inputs) != 1 or len(node.outputs) != 1:
        return full, 0.0, 0.0, 0.0
    n_in = int(analysis.graph.tensors[node.inputs[0]].shape[-1] or 0)
    n_out = int(analysis.graph.tensors[node.outputs[0]].shape[-1] or 0)

    def count(keep_in: bool, keep_out: bool) -> float:
        _, weights = rule.slim(layer, [np.full(n_in, keep_in)], [np.full(n_out, keep_out)])
        return float(sum(np.size(w) for w in weights))

    try:
        c00, c10, c01 = count(False, False), count(True, False), count(False, True)
    except Exception:  # a rule that cannot slim to nothing: its layer counts as it is
        return full, 0.0, 0.0, 0.0
    ci = (c10 - c00) / n_in if n_in else 0.0
    co = (c01 - c00) / n_out if n_out else 0.0
    cio = (full - c10 - c01 + c00) / (n_in * n_out) if n_in and n_out else 0.0
    return c00, ci, co, cio
