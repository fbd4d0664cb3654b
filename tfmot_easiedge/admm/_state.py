"""The wrapped model seen through its wrappers: channel analysis, plan <-> masks, the plan read back."""
from __future__ import annotations

import keras
import numpy as np

from tfmot_easiedge.admm.wrapper import ADMMWrapper, find_wrappers
from tfmot_easiedge.graph.analysis import ModelAnalysis, analyze
from tfmot_easiedge.graph.model_graph import GraphNode, ModelGraph
from tfmot_easiedge.plan import PruningPlan
from tfmot_easiedge.rewrite.blocks import branch_zeroing, plan_blocks
from tfmot_easiedge.rewrite.clone import model_from_graph

#: Appended to a model's name by ``prune_filters`` (and taken off again by the unwrapped view).
PRUNABLE_SUFFIX = "_prunable"


def unwrapped_view(model: keras.Model) -> keras.Model:
    """A functional model calling the wrapped layers directly (weights shared with ``model``, no copy).

    It is rebuilt by the same graph clone as ``slim`` (:mod:`tfmot_easiedge.rewrite.clone`), so it has
    the wrapped model's input and output structure (which ``prune_filters`` took from the original).
    """
    graph = ModelGraph.from_model(model)

    def layer_fn(node):
        return node.layer.layer if isinstance(node.layer, ADMMWrapper) else node.layer

    name = model.name[:-len(PRUNABLE_SUFFIX)] if model.name.endswith(PRUNABLE_SUFFIX) else model.name
    return model_from_graph(model, graph, layer_fn, name=name)


def weight_masks(analysis: ModelAnalysis, node: GraphNode, kept: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``{weight name: boolean mask of the weight's full shape}`` of one node under ``kept``."""
    rule = analysis.rules[node.index]
    if rule is None or not getattr(node.layer, "trainable_weights", None):
        return {}
    in_keep = [analysis.keep_mask(t, kept) for t in node.inputs]
    out_keep = [analysis.keep_mask(t, kept) for t in node.outputs]
    shapes = {v.path.split("/")[-1]: tuple(v.shape) for v in node.layer.trainable_weights}
    return {name: np.broadcast_to(m, shapes[name]).copy() for name, m in
            rule.weight_masks(node.layer, in_keep, out_keep).items() if name in shapes}


class PruningState:
    """Everything the callbacks need about a model made by ``prune_filters``.

    Attributes:
        wrappers: the model's :class:`ADMMWrapper` layers.
        view: the same model without wrappers (shared weights), which importance criteria score.
        analysis: the view's channel analysis, its group ids the original model's (a nested original's
            ``backbone/conv1``, not the inlined ``conv1``), so plans read from and given to the wrappers
            apply to the original model as well.
        nodes: the view's graph node of each wrapper's layer.
    """

    def __init__(self, model: keras.Model):
        self.wrappers = find_wrappers(model)
        if not self.wrappers:
            raise ValueError(f"model {model.name!r} has no ADMM wrappers: make it with "
                             "tfmot_easiedge.prune_filters(model, budget) first")
        self.view = unwrapped_view(model)
        self.settings = dict(self.wrappers[0].settings)
        # a nested original was inlined: its group ids (``backbone/conv1``) are kept in the settings
        self.analysis = analyze(self.view).with_group_ids(dict(self.settings.get("group_ids") or {}))
        by_layer = {id(n.layer): n for n in self.analysis.graph.nodes}
        self.nodes = [by_layer[id(w.layer)] for w in self.wrappers]

    # ------------------------------------------------------------------ plan <-> wrapper state
    def masks(self, plan: PruningPlan) -> list[list[np.ndarray]]:
        """Per wrapper, the full-shape masks of its tracked weights under ``plan`` (a removed block's branch
        zeroing weights all False).

        Raises:
            ValueError: a removed block whose zeroing weights no wrapper tracks.
        """
        kept = {g: np.asarray(idx, dtype=np.int64) for g, idx in plan.kept.items()}
        zeroed = branch_zeroing(self.analysis, plan_blocks(self.analysis, plan))
        position = {node.index: i for i, node in enumerate(self.nodes)}
        for index, names in zeroed.items():
            i = position.get(index)
            if i is None or not set(names) <= set(self.wrappers[i].tracked):
                layer = self.analysis.graph.nodes[index].name
                raise ValueError(f"the wrapped model cannot hold layer {layer!r} at zero ({', '.join(names)}) to "
                                 f"remove a residual block of {list(plan.removed_blocks)}; apply the plan to the "
                                 "unwrapped model with te.slim(model, plan) instead")
        out = []
        for w, node in zip(self.wrappers, self.nodes):
            m = weight_masks(self.analysis, node, kept)
            off = set(zeroed.get(node.index, ()))
            out.append([np.zeros(tuple(v.shape), bool) if name in off else m.get(name, np.ones(tuple(v.shape), bool))
                        for name, v in zip(w.tracked, w.targets)])
        return out

    def store_plan(self, plan: PruningPlan, masks: list[list[np.ndarray]] | None = None) -> None:
        """Writes ``plan`` into the wrappers' mask and keep variables."""
        masks = masks if masks is not None else self.masks(plan)
        kept = {g: np.asarray(idx, dtype=np.int64) for g, idx in plan.kept.items()}
        for w, node, wm in zip(self.wrappers, self.nodes, masks):
            w.settings["removed_blocks"] = list(plan.removed_blocks)  # saved with the wrappers' config
            for var, m in zip(w.mask, wm):
                var.assign(m.astype("float32"))
            w.in_keep.assign(_keep_vector(self.analysis, node.inputs[0], kept, w.in_keep.shape[0]))
            w.out_keep.assign(_keep_vector(self.analysis, node.outputs[0], kept, w.out_keep.shape[0]))

    def current_plan(self) -> PruningPlan:
        """The plan stored in the wrappers (every channel kept before the first Z-step)."""
        keep = {gid: np.ones(g.size, bool) for gid, g in self.analysis.prunable_groups.items()}
        for w, node in zip(self.wrappers, self.nodes):
            for tid, var in ((node.inputs[0], w.in_keep), (node.outputs[0], w.out_keep)):
                pos = self.analysis.positions(tid)
                if pos is None:
                    continue
                values = np.asarray(var.numpy()) > 0.5
                for (gid, ch), k in zip(zip(*pos), values):
                    if gid in keep and not k:
                        keep[gid][ch] = False
        sizes = {g: self.analysis.groups[g].size for g in keep}
        blocks = tuple(self.wrappers[0].settings.get("removed_blocks") or ())
        return PruningPlan({g: np.flatnonzero(m).tolist() for g, m in keep.items()}, sizes,
                           self.analysis.graph.model_name, self.settings.get("budget"),
                           {"importance": self.settings.get("importance")}, removed_blocks=blocks)

    def zsteps(self) -> int:
        return int(self.wrappers[0].zsteps.numpy())


def _keep_vector(analysis, tid, kept, size) -> np.ndarray:
    m = analysis.keep_mask(tid, kept)
    return np.ones(size, "float32") if m is None else m.astype("float32")


def original_group_ids(original: ModelAnalysis, inlined: ModelAnalysis) -> dict[str, str]:
    """``{inlined group id: original group id}`` where they differ (a nested original's ``backbone/conv1``).

    Both analyses come from the same graph (the wrapping copies the original's inlined graph node by node),
    so their groups come in the same order with the same sizes.

    Raises:
        RuntimeError: the two analyses do not have the same groups (a bug in the wrapping).
    """
    a, b = list(original.groups.values()), list(inlined.groups.values())
    if len(a) != len(b) or any(x.size != y.size for x, y in zip(a, b)):
        raise RuntimeError(f"the wrapped copy of {original.graph.model_name!r} has other channel groups than the "
                           "model: please report this")
    return {y.id: x.id for x, y in zip(a, b) if x.id != y.id}
