"""``OneShot``: score the trained network once, prune to the budget, fine-tune with the mask, slim; or reach the
budget in a few rounds (iterative pruning) with fine-tuning and re-scoring between them.

The same stages as :class:`~tfmot_easiedge.admm.pipeline.EasiEdge` without ADMM, and the same result type,
so the two compare stage by stage. Iterative pruning (``iterations=R``) follows Molchanov et al. (2019):
after round k the model may cost ``full·(target/full)^(k/R)`` (a geometric schedule,
:class:`~tfmot_easiedge.selection.budgets.GeometricStep`), each round re-scoring the pruned, fine-tuned
network; channels removed in a round stay removed.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Iterable

import keras
import numpy as np

from tfmot_easiedge._progress import keras_verbose
from tfmot_easiedge.admm._state import PruningState
from tfmot_easiedge.admm.divergence import StopOnNonFiniteLoss
from tfmot_easiedge.admm.finetune import MaskedFineTune
from tfmot_easiedge.admm.pipeline import (
    EasiEdgeResult,
    _baseline_stage,
    _check_run,
    _fit_args,
    _pruned_stage,
    _slim_stage,
    _stage,
)
from tfmot_easiedge.admm.prune import DEFAULT_MIN_FRACTION, hard_prune, prune_filters, strip_pruning
from tfmot_easiedge.importance.blocks import block_tbaa
from tfmot_easiedge.importance.criterion import as_criterion
from tfmot_easiedge.metrics.counting import count_macs, count_params
from tfmot_easiedge.rewrite.batchnorm import recalibrate_batchnorm
from tfmot_easiedge.selection.allocate import select
from tfmot_easiedge.selection.budgets import GeometricStep, as_budget

if TYPE_CHECKING:
    from tfmot_easiedge.importance.criterion import CriterionSpec
    from tfmot_easiedge.selection.budgets import BudgetSpec


class OneShot:
    """One-shot (or iterative) global filter pruning: score, select, hard prune, masked fine-tune, slim.

    Args:
        budget: a Budget or anything :func:`~tfmot_easiedge.selection.as_budget` accepts (``"macs:4x"``).
        importance: the criterion (a name, a :class:`~tfmot_easiedge.importance.Criterion` or a function
            ``f(model, data, *, analysis)``); ``"tbaa"`` by default.
        iterations: rounds to reach the budget in (1: one-shot). Between rounds the network is fine-tuned
            with its mask for ``epochs_between`` epochs (an argument of :meth:`run`) and scored again.
        mode: the allocator (``select``'s ``mode``: ``"global"`` or ``"uniform"``).
        remove_blocks: let whole residual branches compete with channels for the budget: each removable
            block is scored by :func:`~tfmot_easiedge.importance.block_tbaa` on the calibration data and
            ``select(block_scores=...)`` may replace it by its shortcut, which lets residual nets go below the
            channel-pruning floor (``plan.removed_blocks``; the masked fine-tune holds the branch at zero and
            the slim model leaves it out). One-shot (``iterations=1``), ``mode="global"``, MAC, parameter
            or filter budgets.
        calibration_size: examples used for scoring.
        protect, min_channels, min_fraction, round_to: as in :func:`tfmot_easiedge.select` (``min_fraction``
            defaults to ADMM's 10% floor).
        recalibrate_bn: re-estimate the slim model's BatchNorm statistics on this many training examples
            (and a copy of the baseline's, as ``EasiEdge`` does); 0 keeps the moving averages.
        seed: seeds Python, NumPy and TensorFlow at the start of ``run`` and stochastic criteria; None leaves
            the global seeds alone (the criteria then get 0).
        verbose: 0 silent, 1 progress bars and a line per round, 2 also scoring bars.

    Example:
        >>> import numpy as np, keras, tfmot_easiedge as te
        >>> from tfmot_easiedge.models import zoo
        >>> m = zoo.tiny_cnn()
        >>> m.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
        >>> x, y = np.random.rand(64, 32, 32, 3).astype("float32"), np.random.randint(0, 10, 64)
        >>> r = te.OneShot("macs:0.5", importance="l1", verbose=0).run(m, (x, y), finetune_epochs=1)
        >>> r.stage("slim")["macs"] <= 0.5 * r.stage("baseline")["macs"]
        True
    """

    def __init__(self, budget: BudgetSpec, *, importance: CriterionSpec = "tbaa", iterations: int = 1,
                 mode: str = "global", remove_blocks: bool = False,
                 calibration_size: int = 512, protect: Iterable[str] = (), min_channels: int = 1,
                 min_fraction: float = DEFAULT_MIN_FRACTION, round_to: int | None = None, recalibrate_bn: int = 2048,
                 seed: int | None = 0, verbose: int = 1):
        if int(iterations) < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        if recalibrate_bn < 0:
            raise ValueError(f"recalibrate_bn must be >= 0 examples, got {recalibrate_bn}")
        self.budget = as_budget(budget)
        self.importance = as_criterion(importance)
        if int(iterations) > 1 and self.importance.returns_curves:
            raise ValueError(f"iterative pruning re-ranks per-channel scores; {self.importance.name!r} returns damage "
                             "curves: use iterations=1 or a per-channel criterion such as 'tbaa'")
        if remove_blocks and (int(iterations) > 1 or mode != "global"):
            raise ValueError("remove_blocks=True needs one-shot pruning (iterations=1) and mode='global'; got "
                             f"iterations={iterations}, mode={mode!r}")
        self.iterations, self.mode, self.remove_blocks = int(iterations), mode, bool(remove_blocks)
        self.calibration_size = int(calibration_size)
        self.protect, self.min_channels, self.round_to = list(protect), int(min_channels), round_to
        self.min_fraction = float(min_fraction)
        self.recalibrate_bn = int(recalibrate_bn)
        self.seed, self.verbose = seed, verbose

    def run(self, model: keras.Model, train_data: Any, validation_data: Any = None, *, calibration_data: Any = None,
            finetune_epochs: int = 5, epochs_between: int = 1, callbacks: Iterable[keras.callbacks.Callback] = (),
            batch_size: int | None = None,
            steps_per_epoch: int | None = None, recalibration_data: Any = None) -> EasiEdgeResult:
        """Prunes ``model`` (compiled: its optimizer, loss and metrics are reused); ``model`` is not modified.

        Args:
            model: the trained, compiled model.
            train_data: ``(x, y)`` arrays or a ``tf.data.Dataset`` for the fine-tunes (and calibration).
            validation_data: labelled data; each stage's accuracy is measured on it when given.
            calibration_data: scoring inputs (default: ``train_data``).
            finetune_epochs: masked fine-tune epochs after the last round.
            epochs_between: masked fine-tune epochs after each earlier round (iterative pruning).
            callbacks: more Keras callbacks for every fit.
            batch_size, steps_per_epoch: as in ``fit``.
            recalibration_data: what BatchNorm statistics are re-estimated on for every stage (default
                ``train_data``): images augmented like training when ``train_data`` is plain arrays (see
                ``EasiEdge.run``).

        Returns:
            An :class:`~tfmot_easiedge.admm.pipeline.EasiEdgeResult` with the stages ``baseline``, then
            ``prune_k``/``finetune_k`` for the rounds before the last, ``hard_prune``, ``finetune`` and ``slim``;
            ``history`` holds each fine-tune's ``History.history`` by stage name; ``admm`` is empty.

        Raises:
            ValueError: an uncompiled model, negative epochs, data that does not fit the model, NaN or inf
                inputs or weights, an impossible budget.
            TrainingDivergedError: (a ``ValueError``) the loss or the weights became NaN or inf.
        """
        if finetune_epochs < 0 or epochs_between < 0:
            raise ValueError(f"epochs must be >= 0, got finetune_epochs={finetune_epochs}, "
                             f"epochs_between={epochs_between}")
        t_start = time.perf_counter()
        calib = _check_run(model, train_data, validation_data, calibration_data, self.calibration_size, self.seed)
        calib_data = calib[0] if calib[1] is None else calib
        criterion = self.importance
        if criterion.needs_labels and calib[1] is None:
            raise ValueError(f"importance {criterion.name!r} needs labelled calibration data (x, y)")
        fit_args = _fit_args(train_data)
        recal_args = fit_args if recalibration_data is None else _fit_args(recalibration_data)
        fit_kwargs = {"validation_data": validation_data, "verbose": keras_verbose(self.verbose),
                      "batch_size": batch_size,
                      "steps_per_epoch": steps_per_epoch, "shuffle": isinstance(train_data, (tuple, list))}
        base_macs, base_params = count_macs(model), count_params(model)
        stages = [_baseline_stage(model, validation_data, recal_args, batch_size, base_macs, base_params,
                                  self.recalibrate_bn)]
        wrapped = prune_filters(model, self.budget, importance=criterion, protect=self.protect,
                                min_channels=self.min_channels, round_to=self.round_to, min_fraction=self.min_fraction)
        wrapped.compile_from_config(model.get_compile_config())
        state = PruningState(wrapped)
        scorer = criterion.make_scorer(state.view, state.analysis)
        history: dict[str, dict] = {}
        timings = {"score": 0.0, "select": 0.0, "finetune_fit": 0.0}
        epoch, plan = 0, None
        for step in range(1, self.iterations + 1):
            last = step == self.iterations
            t0 = time.perf_counter()
            if step > 1 and self.recalibrate_bn:  # score the fine-tuned network, not its trailing moving averages
                recalibrate_batchnorm(state.view, calib[0], max_examples=len(calib[0]), batch_size=batch_size or 128)
            scores = scorer(calib_data, seed=(self.seed or 0) + step - 1, batch_size=64, progress=self.verbose > 1)
            if plan is not None:
                scores = _removed_first(scores, plan)
            block_scores = None
            if self.remove_blocks:
                block_scores = block_tbaa(state.view, calib[0], analysis=state.analysis, batch_size=64,
                                          seed=self.seed or 0, progress=self.verbose > 1)
            t1 = time.perf_counter()
            budget = self.budget if self.iterations == 1 else GeometricStep(self.budget, step, self.iterations)
            plan = select(state.analysis, scores, budget, min_channels=self.min_channels, round_to=self.round_to,
                          protect=self.protect, mode=self.mode, min_fraction=self.min_fraction,
                          block_scores=block_scores)
            timings["score"] += t1 - t0
            timings["select"] += time.perf_counter() - t1
            hard_prune(wrapped, plan)
            small, _ = strip_pruning(wrapped)
            macs, params = count_macs(small), count_params(small)
            if self.verbose:
                blocks = f", removed {len(plan.removed_blocks)} residual blocks" if self.remove_blocks else ""
                print(f"{'one-shot' if self.iterations == 1 else f'round {step}/{self.iterations}'}: kept "
                      f"{sum(len(k) for k in plan.kept.values())}/{sum(plan.group_sizes.values())} channels{blocks}, "
                      f"MACs {macs / base_macs:.1%} of the baseline")
            name = "hard_prune" if last else f"prune_{step}"
            note = (f"round {step}/{self.iterations}: removed channels set to zero, before fine-tuning"
                    if self.iterations > 1 else "one-shot: removed channels set to zero, before fine-tuning")
            stages.append(_pruned_stage(name, wrapped, small, validation_data, recal_args, batch_size,
                                        self.recalibrate_bn, macs, params, note=note))
            epochs = finetune_epochs if last else epochs_between
            t0 = time.perf_counter()
            if epochs > 0:
                guard = StopOnNonFiniteLoss("fine-tune", verbose=self.verbose)
                h = wrapped.fit(*fit_args, initial_epoch=epoch, epochs=epoch + epochs,
                                callbacks=[guard, MaskedFineTune(plan, verbose=self.verbose), *callbacks], **fit_kwargs)
                guard.check()
                history["finetune" if last else f"finetune_{step}"] = dict(h.history)
                epoch += epochs
            timings["finetune_fit"] += time.perf_counter() - t0
            stages.append(_stage("finetune" if last else f"finetune_{step}", wrapped, validation_data, macs, params,
                                 note=f"after {epochs} masked fine-tune epochs"))
        small, final, diff, slim_timings = _slim_stage(wrapped, calib[0][:64], validation_data, recal_args,
                                                       batch_size, self.recalibrate_bn, stages)
        assert plan is not None  # iterations >= 1: the loop ran
        final.metadata.update({**plan.metadata, "importance": criterion.name, "iterations": self.iterations})
        timings.update(slim_timings, total=time.perf_counter() - t_start)
        return EasiEdgeResult(small, final, stages, history, timings, wrapped, diff, {})


def _removed_first(scores: dict[str, np.ndarray], plan) -> dict[str, np.ndarray]:
    """``scores`` with the channels ``plan`` removed put below every other one (and below zero), so a later
    round removes them first and they stay removed; live scores are shifted to be >= 0 when some are not."""
    live = [s[plan.kept_mask(g)] for g, s in scores.items() if g in plan.kept]
    low = min((float(v.min()) for v in live if v.size), default=0.0)
    shift = -low if low < 0 else 0.0
    out: dict[str, Any] = {}
    for g, s in scores.items():
        s = np.asarray(s, dtype=np.float64) + shift
        if g in plan.kept:
            s = np.where(plan.kept_mask(g), s, -1.0)
        out[g] = s
    return out
