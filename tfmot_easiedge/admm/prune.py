"""``prune_filters`` (wrap a model for ADMM), ``hard_prune`` and ``strip_pruning`` (back to a slim model)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import keras
import numpy as np

from tfmot_easiedge.admm._state import PRUNABLE_SUFFIX, PruningState, original_group_ids, weight_masks
from tfmot_easiedge.admm.wrapper import ADMMWrapper
from tfmot_easiedge.graph.analysis import analyze
from tfmot_easiedge.importance.criterion import as_criterion
from tfmot_easiedge.plan import PruningPlan
from tfmot_easiedge.rewrite.blocks import branch_zeroing
from tfmot_easiedge.rewrite.clone import copy_layer, rebuild
from tfmot_easiedge.rewrite.slim import slim
from tfmot_easiedge.selection.allocate import select
from tfmot_easiedge.selection.budgets import as_budget
from tfmot_easiedge.selection.protect import check_protect

if TYPE_CHECKING:
    from tfmot_easiedge.importance.criterion import CriterionSpec
    from tfmot_easiedge.selection.budgets import BudgetSpec

#: Default ADMM penalty weight (grown by ``ADMMUpdate``'s schedule).
#: Initial rho. With the proximal penalty step ``p = rho·lr/(1 − momentum)``: at lr 0.01, momentum 0.9 and rho 1,
#: a removed weight loses ~9% per step besides the dual's pull. Measured on ResNet-20 (87.40%) at 2x fewer MACs,
#: 10 ADMM epochs, rho 1e-3 -> 1: primal residual 2e-8, no accuracy lost at the hard prune
#: (``benchmarks/results/admm_search_resnet20_w1_macs0.5.md``).
DEFAULT_RHO = 1e-3
#: Default share of every group that ADMM pruning keeps (``select``'s ``min_fraction``): a global per-filter
#: ranking otherwise thins a layer to one channel (VGG-16 at 80% of filters, a depthwise net at 50%: measured
#: to end at chance accuracy); ``select`` itself defaults to no floor.
DEFAULT_MIN_FRACTION = 0.1


def prune_filters(model: keras.Model, budget: BudgetSpec, *, importance: CriterionSpec = "tbaa",
                  rho: float = DEFAULT_RHO, protect: Iterable[str] = (), min_channels: int = 1,
                  round_to: int | None = None, min_fraction: float = DEFAULT_MIN_FRACTION,
                  penalty: str = "proximal") -> keras.Model:
    """A copy of ``model`` whose prunable layers carry ADMM state, ready for ``fit`` with ``ADMMUpdate``.

    Every layer whose weights a prunable channel group cuts (convolution and Dense kernels on both
    sides of the channel, biases, BatchNorm gamma/beta, depthwise kernels) is wrapped in an
    :class:`ADMMWrapper`; the others are copied. ``model`` itself is not modified.

    Args:
        model: a functional or Sequential Keras model (nested models are inlined).
        budget: a Budget (``FilterBudget``, ``MacsBudget``, ``ParamsBudget``, a user's) or anything
            ``as_budget`` accepts, such as ``"filters:0.8"`` or ``"macs:4x"``.
        importance: the criterion ranking channels at each Z-step (anything ``as_criterion`` accepts: a
            registered name, a ``Criterion``, a function); TBAA needs calibration data in ``ADMMUpdate``.
            The wrappers' config stores its name; pass the object to ``ADMMUpdate`` too when it is not a
            registered one.
        rho: the initial ADMM penalty weight.
        protect: group ids or layer names never pruned.
        min_channels: every group keeps at least this many channels.
        round_to: round kept counts up to a multiple of this.
        min_fraction: every group keeps at least this fraction of its channels (see ``select``; 0 for none).
        penalty: how ADMM's ``rho/2·||W − Z + U||²`` on the removed entries acts during the W-step:
            ``"proximal"`` (a proximal step after every optimizer update, outside the momentum) or ``"loss"``
            (added to the training loss; its gradient goes through the optimizer, momentum included).

    Returns:
        The wrapped model (uncompiled).

    Raises:
        ValueError: an impossible budget, nothing prunable, an unknown criterion, a ``protect`` name that is
            not a group id or layer of ``model``.
        tfmot_easiedge.GraphError: a subclassed model.

    Example:
        >>> import keras
        >>> from tfmot_easiedge.models import zoo
        >>> wrapped = prune_filters(zoo.tiny_cnn(), "filters:0.5", importance="l1")
        >>> sorted(type(l).__name__ for l in wrapped.layers if "admm" in l.name)[:1]
        ['ADMMWrapper']
    """
    budget = as_budget(budget)
    criterion = as_criterion(importance)
    if not rho > 0:
        raise ValueError(f"rho must be > 0, got {rho}")
    if penalty not in ("proximal", "loss"):
        raise ValueError(f"penalty must be 'proximal' or 'loss', got {penalty!r}")
    analysis = analyze(model)
    protect = check_protect(analysis, protect)  # a misspelt name would protect nothing, silently
    # Fail now, not after an epoch of training, when the budget cannot be met.
    zero = {g: np.zeros(grp.size) for g, grp in analysis.prunable_groups.items()}
    select(analysis, zero, budget, min_channels=min_channels, round_to=round_to, protect=protect,
           min_fraction=min_fraction)

    protected = {g for g, grp in analysis.prunable_groups.items() if g in protect or set(protect) & set(grp.members)}
    none_kept = {g: np.zeros(0, np.int64) for g in analysis.prunable_groups if g not in protected}
    tracked = {}
    for node in analysis.graph.nodes:
        masks = weight_masks(analysis, node, none_kept) if isinstance(node.layer, keras.layers.Layer) else {}
        names = [n for n, m in masks.items() if not m.all()]
        if names:
            if len(node.inputs) != 1 or len(node.outputs) != 1:
                raise ValueError(f"layer {node.name!r} has several inputs or outputs; ADMM wraps single-tensor layers")
            tracked[node.index] = names
    # what silencing each removable residual block zeroes (its branch's last BatchNorm scale, say), so that a
    # plan's removed_blocks can be held at zero too; those entries carry no penalty while their mask is 1
    for index, names in _block_zeroing(analysis).items():
        node = analysis.graph.nodes[index]
        if len(node.inputs) == 1 and len(node.outputs) == 1:
            tracked[index] = list(dict.fromkeys([*tracked.get(index, []), *names]))
    settings = {"budget": budget.describe(), "importance": criterion.name, "rho": float(rho), "protect": protect,
                "min_channels": int(min_channels), "min_fraction": float(min_fraction), "round_to": round_to,
                "penalty": penalty}

    def wrap(node, layer):
        if node.index not in tracked:
            return None
        return ADMMWrapper(layer, tracked[node.index], settings, name=f"admm_{layer.name}")

    wrapped = rebuild(model, analysis, copy_layer, suffix=PRUNABLE_SUFFIX, wrap=wrap)
    state = PruningState(wrapped)
    # a nested model was inlined: its plans keep the original's group ids (``backbone/conv1``, not ``conv1``)
    ids = original_group_ids(analysis, state.analysis)
    for w in state.wrappers:
        if ids:
            w.settings["group_ids"] = ids
        for target, z in zip(w.targets, w.z):
            z.assign(np.asarray(target.numpy(), dtype="float32"))
        w.rho.assign(float(rho))
    return wrapped


def _block_zeroing(analysis) -> dict[int, list[str]]:
    """``{node index: trainable weight names}`` that silence the removable blocks whose branch can be zeroed
    by trainable weights alone (a branch ending in a BatchNormalization without a scale cannot)."""
    out: dict[int, list[str]] = {}
    for block in analysis.removable_blocks.values():
        try:
            zeroing = branch_zeroing(analysis, [block])
        except ValueError:
            continue
        trainable = {index: {v.path.split("/")[-1] for v in analysis.graph.nodes[index].layer.trainable_weights}
                     for index in zeroing}
        if all(set(names) <= trainable[index] for index, names in zeroing.items()):
            for index, names in zeroing.items():
                out[index] = list(dict.fromkeys([*out.get(index, []), *names]))
    return out


def hard_prune(model: keras.Model, plan: PruningPlan | None = None) -> PruningPlan:
    """Fixes the mask (``plan``, or the last Z-step's) in a wrapped model and zeroes the removed weights.

    The plan's ``removed_blocks`` are silenced: the weights of each branch's last layer that make it output
    zero are masked (:func:`~tfmot_easiedge.rewrite.blocks.branch_zeroing`), so the masked fine-tune keeps
    them at zero and ``strip_pruning`` leaves the branches out.

    Raises:
        ValueError: an unwrapped model, no plan given before any Z-step, or a removed block whose branch
            the wrappers cannot hold at zero.
    """
    state = PruningState(model)
    if plan is None:
        if state.zsteps() == 0:
            raise ValueError("no Z-step has run yet: fit with ADMMUpdate first, or pass the plan to apply")
        plan = state.current_plan()
    plan.validate(state.analysis)
    masks = state.masks(plan)
    state.store_plan(plan, masks)
    for w, wm in zip(state.wrappers, masks):
        for target, z, m in zip(w.targets, w.z, wm):
            value = np.asarray(target.numpy()) * m
            target.assign(value.astype(target.dtype))
            z.assign(value.astype("float32"))
    return plan


def strip_pruning(model: keras.Model) -> tuple[keras.Model, PruningPlan]:
    """Removes the wrappers and the pruned channels: returns ``(slim model, plan)``.

    The plan is the one stored in the wrappers (the last Z-step's, or the fine-tune mask). After
    ``MaskedFineTune`` the slim model computes what the masked model computes; mid-ADMM the removed
    channels still carry weight, so the slim model differs by what they contributed.

    Example:
        >>> from tfmot_easiedge.models import zoo
        >>> small, plan = strip_pruning(prune_filters(zoo.tiny_cnn(), "filters:0.5", importance="l1"))
        >>> plan.removed_channels()   # no Z-step has run: nothing removed yet
        0
    """
    state = PruningState(model)
    plan = state.current_plan()
    return slim(state.view, plan, analysis=state.analysis), plan
