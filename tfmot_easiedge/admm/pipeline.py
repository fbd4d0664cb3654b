"""``EasiEdge``: the whole method in one call: ADMM in ``fit``, hard prune, masked fine-tune, slim."""
from __future__ import annotations

import dataclasses
import os
import time
from typing import TYPE_CHECKING, Any, Iterable

import keras
import numpy as np

from tfmot_easiedge._progress import keras_verbose
from tfmot_easiedge.admm._common import take_examples
from tfmot_easiedge.admm.checkpoint import Checkpoints, merge_history
from tfmot_easiedge.admm.divergence import StopOnNonFiniteLoss, TrainingDivergedError
from tfmot_easiedge.admm.finetune import MaskedFineTune
from tfmot_easiedge.admm.prune import DEFAULT_MIN_FRACTION, DEFAULT_RHO, hard_prune, prune_filters, strip_pruning
from tfmot_easiedge.admm.update import DEFAULT_RHO_MAX, ADMMUpdate
from tfmot_easiedge.data.batches import input_rank, iterate_batches
from tfmot_easiedge.data.checks import check_finite, check_finite_weights, non_finite_weight
from tfmot_easiedge.graph.analysis import analyze
from tfmot_easiedge.importance.criterion import as_criterion
from tfmot_easiedge.metrics.counting import count_macs, count_params
from tfmot_easiedge.plan import PruningPlan
from tfmot_easiedge.rewrite.batchnorm import recalibrate_batchnorm
from tfmot_easiedge.selection.budgets import as_budget

if TYPE_CHECKING:
    from tfmot_easiedge.admm.saving import SavedResult
    from tfmot_easiedge.importance.criterion import CriterionSpec
    from tfmot_easiedge.selection.budgets import BudgetSpec


@dataclasses.dataclass
class EasiEdgeResult:
    """What :meth:`EasiEdge.run` produced.

    Attributes:
        model: the slim model (removed channels physically gone).
        plan: the applied :class:`PruningPlan`.
        stages: one dict per stage (``baseline``, ``admm``, ``hard_prune``, ``finetune``, ``slim``) with
            ``accuracy`` (None without validation data), ``macs`` and ``params`` of the model as deployed
            at that stage (the removed channels count as gone from ``hard_prune`` on), ``note`` (what the
            stage did) and ``batchnorm`` (``"as trained"`` or ``"re-estimated on N training examples"``).
            With ``recalibrate_bn``, ``slim`` is measured after its BatchNorm statistics were re-estimated and
            ``baseline`` the same way (on a copy; the input model is untouched); both then also carry
            ``accuracy_before_bn``, the accuracy with the statistics as they were.
        history: ``{"admm": History.history, "finetune": History.history}``.
        timings: seconds: ``admm_fit``, ``zstep_total``, ``zstep_mean``, ``finetune_fit``, ``recalibrate``,
            ``strip``, ``total``.
        masked_model: the wrapped, fine-tuned model (same architecture as the input, channels at zero;
            its BatchNorm statistics are those before ``recalibrate_bn``).
        slim_max_abs_diff: max |slim − masked| output difference on calibration examples, measured
            before the slim model's BatchNorm statistics were re-estimated.
        admm: the last ADMM numbers (primal/dual residual, channels kept, rho).
    """

    model: keras.Model
    plan: PruningPlan
    stages: list[dict[str, Any]]
    history: dict[str, dict]
    timings: dict[str, float]
    masked_model: keras.Model
    slim_max_abs_diff: float
    admm: dict[str, float]

    def stage(self, name: str) -> dict[str, Any]:
        """The stage called ``name``."""
        for s in self.stages:
            if s["stage"] == name:
                return s
        raise KeyError(name)

    def save(self, directory: str | os.PathLike, *, baseline: keras.Model, overwrite: bool = False,
             **report_options: Any) -> SavedResult:
        """Writes ``model.keras`` (the slim model), ``plan.json`` and the report (``report.json``,
        ``report.md``, ``report.png`` when matplotlib is installed) to ``directory``, atomically.

        Everything goes to a temporary directory next to ``directory`` that is renamed onto it at the end: a
        failure leaves ``directory`` as it was and no temporary directory behind. A slim model with a NaN or
        inf weight is refused before anything is written.

        Args:
            directory: the directory to create (an existing empty one is replaced).
            baseline: the model before pruning, which the report compares the slim model with.
            overwrite: replace a directory holding an earlier saved result (never one holding other files).
            **report_options: ``analysis``, ``budget``, ``importance``, ``latency``, ``timings``, ``history``,
                ``data``, ``config``, ``extra_files`` (``{name: path}`` copied in) and ``plot``; see
                :func:`tfmot_easiedge.admm.saving.save_result`.

        Returns:
            A :class:`~tfmot_easiedge.admm.saving.SavedResult` (the directory, the file names, the report).

        Raises:
            ValueError: non-finite weights in the slim model; nothing was written.
            FileExistsError: ``directory`` exists and may not be replaced.

        Example:
            >>> result = te.EasiEdge("filters:0.5").run(model, (x, y))  # doctest: +SKIP
            >>> result.save("pruned/", baseline=model).files  # doctest: +SKIP
            ('model.keras', 'plan.json', 'report.json', 'report.md', 'report.png')
        """
        from tfmot_easiedge.admm.saving import save_result

        return save_result(self, directory, baseline=baseline, overwrite=overwrite, **report_options)


class EasiEdge:
    """Global filter pruning by ADMM with information-gain ranking, as one call.

    Args:
        budget: a Budget (``FilterBudget``, ``MacsBudget``, ``ParamsBudget`` or a user's subclass) or anything
            :func:`~tfmot_easiedge.selection.as_budget` accepts: ``"filters:0.8"``, ``"macs:0.5"``, ``"macs:4x"``.
        importance: the criterion ranking channels at every Z-step (``"tbaa"`` by default): a name, a
            :class:`~tfmot_easiedge.importance.Criterion` or a function ``f(model, data, *, analysis)``.
        rho, rho_growth, rho_max, update_every: the ADMM schedule (see :class:`ADMMUpdate`). By default
            (``update_every="auto"``, ``rho_growth=None``) there are ``zsteps_per_epoch`` Z-steps per epoch
            and rho grows geometrically from ``rho`` to ``rho_max`` over the first two thirds of the ADMM
            epochs and stays there, so that the removed weights are driven to zero whatever the number
            of epochs.
        zsteps_per_epoch: Z-steps per epoch with ``update_every="auto"`` (when the epoch length is known).
        admm_options: ``penalty`` (``"proximal"`` or ``"loss"``, see :func:`prune_filters`) and keyword arguments
            of :class:`ADMMUpdate` for the Z-step's search: ``rank_on``, ``score_ema``, ``freeze_after``,
            ``stable_fraction``, ``freeze_rho``, ``reset_momentum``.
        min_update_interval: with ``update_every="auto"``, at least this many steps between Z-steps. The
            W-step must nearly converge between Z-steps: with SGD momentum 0.9 the removed weights settle
            in a few dozen steps, and shorter W-steps made the primal residual oscillate around 0.1-0.3
            instead of converging (measured on the CIFAR-10 VGG; 40 steps reached 2e-4).
        calibration_size: examples used for scoring.
        protect, min_channels, min_fraction, round_to: as in :func:`tfmot_easiedge.select`.
        recalibrate_bn: after the fine-tune, re-estimate the BatchNorm moving statistics on this many
            training examples (:func:`tfmot_easiedge.recalibrate_batchnorm`); 0 keeps the moving averages.
            Measured on the CPU comparison profile (VGG-16 at width 0.25, 29 steps per epoch): the moving
            averages trail the weights after a short ADMM + fine-tune and inference accuracy fell to 9-13%
            while training-mode accuracy was 33-43%; re-estimating lifted even the unpruned baseline from
            40.3% to 47.3% (10,000 test images; ``test_accuracy_before_bn`` in the baseline records).
        seed: seeds Python, NumPy and TensorFlow (``keras.utils.set_random_seed``) at the start of
            ``run`` so that the same model, data and seed give the same plan; None leaves them alone.
        verbose: 0 silent, 1 progress bars and a line per step, 2 also scoring bars.

    Example:
        >>> import numpy as np, keras, tfmot_easiedge as te
        >>> from tfmot_easiedge.models import zoo
        >>> m = zoo.tiny_cnn()
        >>> m.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
        >>> x, y = np.random.rand(64, 32, 32, 3).astype("float32"), np.random.randint(0, 10, 64)
        >>> r = te.EasiEdge("filters:0.5", importance="l1", verbose=0).run(m, (x, y), admm_epochs=1,
        ...                                                                finetune_epochs=1)
        >>> r.plan.removed_channels(), r.slim_max_abs_diff < 1e-4
        (28, True)
    """

    def __init__(self, budget: BudgetSpec, *, importance: CriterionSpec = "tbaa", rho: float = DEFAULT_RHO,
                 rho_growth: float | None = None, rho_max: float = DEFAULT_RHO_MAX,
                 update_every: int | str = "auto", calibration_size: int = 512, protect: Iterable[str] = (),
                 min_channels: int = 1, min_fraction: float = DEFAULT_MIN_FRACTION, round_to: int | None = None,
                 seed: int | None = 0, verbose: int = 1,
                 zsteps_per_epoch: int = 2, min_update_interval: int = 50, recalibrate_bn: int = 2048,
                 admm_options: dict[str, Any] | None = None):
        self.budget = as_budget(budget)
        # the Z-step's search (rank_on, score_ema, freeze_after, reset_momentum...) and the penalty's form
        self.admm_options = dict(admm_options or {})
        self.penalty = self.admm_options.pop("penalty", "proximal")
        self.importance = as_criterion(importance)
        self.rho, self.rho_growth, self.rho_max = rho, rho_growth, rho_max
        self.update_every = update_every
        self.calibration_size = calibration_size
        self.protect, self.min_channels, self.round_to = list(protect), min_channels, round_to
        self.min_fraction = float(min_fraction)
        self.seed, self.verbose = seed, verbose
        self.zsteps_per_epoch = int(zsteps_per_epoch)
        self.min_update_interval = int(min_update_interval)
        if recalibrate_bn < 0:
            raise ValueError(f"recalibrate_bn must be >= 0 examples, got {recalibrate_bn}")
        self.recalibrate_bn = int(recalibrate_bn)

    def schedule(self, steps_per_epoch: int | None, admm_epochs: int) -> tuple[Any, float]:
        """``(update_every, rho_growth)`` for a run of ``admm_epochs`` epochs of ``steps_per_epoch`` steps."""
        update_every = self.update_every
        if update_every == "auto":
            update_every = (max(self.min_update_interval, steps_per_epoch // self.zsteps_per_epoch)
                            if steps_per_epoch else "epoch")
        growth = self.rho_growth
        if growth is None:
            if update_every == "epoch":
                n = admm_epochs
            else:
                n = (steps_per_epoch * admm_epochs) // int(update_every) if steps_per_epoch else admm_epochs
            # reach rho_max two thirds of the way, then hold it while the removed weights go to zero
            growth = (self.rho_max / self.rho) ** (1.0 / max(1, (2 * n) // 3)) if self.rho_max > self.rho else 1.0
        return update_every, float(growth)

    def run(self, model: keras.Model, train_data: Any, *, calibration_data: Any = None, admm_epochs: int = 10,
            finetune_epochs: int = 5, validation_data: Any = None, callbacks: Iterable[keras.callbacks.Callback] = (),
            batch_size: int | None = None,
            steps_per_epoch: int | None = None, plan: PruningPlan | None = None,
            checkpoints: Checkpoints | None = None, recalibration_data: Any = None) -> EasiEdgeResult:
        """Prunes ``model`` (compiled: its optimizer, loss and metrics are reused) and returns the result.

        ``admm_epochs=0`` skips ADMM: one projection of the trained weights (one-shot pruning), then
        the masked fine-tune. ``model`` is not modified. ADMM and the fine-tune each get a fresh optimizer
        from ``model``'s compile config, so a learning-rate schedule starts again for the fine-tune.

        A fit whose loss becomes NaN or inf is stopped at that step (:class:`StopOnNonFiniteLoss`) and the
        run raises :class:`TrainingDivergedError`; a slim model with a non-finite weight is never returned.

        Args:
            plan: apply this plan instead of choosing one: no scoring and no ADMM (``admm_epochs`` is not
                used); the removed channels are set to zero, then the masked fine-tune and the slim model.
            checkpoints: a :class:`~tfmot_easiedge.admm.checkpoint.Checkpoints` directory: a checkpoint is
                saved after every epoch, and when the directory already holds one the run continues from it
                (from the last finished epoch, its ADMM state, optimizer state and stage rows) instead of
                starting over. The directory is left in place; remove it once the result is saved.
            recalibration_data: what BatchNorm statistics are re-estimated on (``recalibrate_bn`` examples of
                it; arrays, ``(x, y)`` or a dataset); default ``train_data``. Give it images augmented the way
                the model was trained when ``train_data`` is plain arrays: re-estimating on clean images cost
                the committed CIFAR-10 baselines 1.7 (VGG) and 3.7 (ResNet-20) points, on augmented ones
                nothing (``benchmarks/results/bn_recalibration.md``).

        Raises:
            ValueError: an uncompiled model, negative epochs, data that does not fit the model, inputs or
                model weights holding NaN or inf, an impossible budget, a ``plan`` for another model.
            TrainingDivergedError: (a ``ValueError``) the loss or the weights became NaN or inf.
        """
        if admm_epochs < 0 or finetune_epochs < 0:
            raise ValueError(f"epochs must be >= 0, got admm_epochs={admm_epochs}, finetune_epochs={finetune_epochs}")
        t_start = time.perf_counter()
        calib = _check_run(model, train_data, validation_data, calibration_data, self.calibration_size, self.seed)
        calib_data = calib[0] if calib[1] is None else calib
        fit_kwargs = {"validation_data": validation_data, "verbose": keras_verbose(self.verbose),
                      "batch_size": batch_size, "steps_per_epoch": steps_per_epoch,
                      "shuffle": isinstance(train_data, (tuple, list))}  # a dataset shuffles itself
        fit_args = _fit_args(train_data)
        recal_args = fit_args if recalibration_data is None else _fit_args(recalibration_data)
        from_plan = plan is not None
        if plan is not None:
            plan.validate(analyze(model))
            admm_epochs = 0
        resumed = checkpoints.latest() if checkpoints is not None else None
        done = resumed.epoch if resumed is not None else 0  # epochs finished before this call
        base_macs, base_params = count_macs(model), count_params(model)
        if resumed is not None:
            stages, history, wrapped = list(resumed.stages), dict(resumed.history), resumed.model
        else:
            stages = [self._baseline_stage(model, validation_data, recal_args, batch_size, base_macs, base_params)]
            history = {}
            wrapped = prune_filters(model, self.budget, importance=self.importance, rho=self.rho,
                                    protect=self.protect, min_channels=self.min_channels, round_to=self.round_to,
                                    min_fraction=self.min_fraction, penalty=self.penalty)
            wrapped.compile_from_config(model.get_compile_config())
        update_every, growth = self.schedule(steps_per_epoch or _steps_per_epoch(train_data, batch_size), admm_epochs)
        update = ADMMUpdate(calib_data, self.budget, importance=self.importance, update_every=update_every,
                            rho_growth=growth, rho_max=self.rho_max,
                            calibration_size=self.calibration_size, seed=self.seed or 0, verbose=self.verbose,
                            initial_step=int(wrapped.optimizer.iterations.numpy()),  # a resumed run keeps its cadence
                            **self.admm_options)
        in_finetune = resumed is not None and resumed.stage == "finetune"
        t0 = time.perf_counter()
        if plan is None and not in_finetune:
            if admm_epochs > done:
                guard = StopOnNonFiniteLoss("ADMM fit", verbose=self.verbose)
                saving = [checkpoints.callback("admm", stages, history)] if checkpoints is not None else []
                h = wrapped.fit(*fit_args, initial_epoch=done, epochs=admm_epochs,
                                callbacks=[guard, update, *saving, *callbacks], **fit_kwargs)
                guard.check()
                history["admm"] = merge_history(history.get("admm"), h.history)
            elif admm_epochs == 0:  # one-shot: a single projection of the trained weights
                update.set_model(wrapped)
                update.on_train_begin()
                update.on_train_end()
            stages.append(_stage("admm", wrapped, validation_data, base_macs, base_params,
                                 note=f"after {admm_epochs} ADMM epochs; removed channels pulled towards zero, "
                                      "still present" if admm_epochs else "one-shot: no ADMM training"))
        t_admm = time.perf_counter() - t0

        if in_finetune:
            assert resumed is not None
            plan = resumed.plan
            small, _ = strip_pruning(wrapped)
            slim_macs, slim_params = count_macs(small), count_params(small)
        else:
            plan = hard_prune(wrapped, plan)
            small, _ = strip_pruning(wrapped)
            slim_macs, slim_params = count_macs(small), count_params(small)
            stages.append(_pruned_stage("hard_prune", wrapped, small, validation_data, recal_args, batch_size,
                                        self.recalibrate_bn, slim_macs, slim_params,
                                        note="the given plan applied (no scoring, no ADMM): removed channels set to "
                                             "zero, before fine-tuning" if from_plan else
                                             "removed channels set to zero, before fine-tuning"))
        t0 = time.perf_counter()
        first = admm_epochs  # fine-tune epochs are numbered after the ADMM ones
        if finetune_epochs > 0 and first + finetune_epochs > done:
            if done <= first and admm_epochs > 0:
                # a fresh optimizer (the model's compile config again): the fine-tune starts its own learning-rate
                # schedule and momentum instead of inheriting ADMM's end of schedule and its penalty's pull
                wrapped.compile_from_config(model.get_compile_config())
            guard = StopOnNonFiniteLoss("fine-tune", verbose=self.verbose)
            saving = [checkpoints.callback("finetune", stages, history, plan)] if checkpoints is not None else []
            h = wrapped.fit(*fit_args, initial_epoch=max(first, done), epochs=first + finetune_epochs,
                            callbacks=[guard, MaskedFineTune(plan, verbose=self.verbose), *saving, *callbacks],
                            **fit_kwargs)
            guard.check()
            history["finetune"] = merge_history(history.get("finetune"), h.history)
        t_ft = time.perf_counter() - t0
        stages.append(_stage("finetune", wrapped, validation_data, slim_macs, slim_params,
                             note=f"after {finetune_epochs} masked fine-tune epochs"))

        small, final, diff, slim_timings = _slim_stage(wrapped, calib[0][:64], validation_data, recal_args,
                                                       batch_size, self.recalibrate_bn, stages)
        if from_plan and plan is not None:  # the plan as given: its budget and notes, not the wrapping's
            final.budget = plan.budget if plan.budget is not None else final.budget
            final.metadata = {**plan.metadata, "source": "given plan"}
        zs = update.zstep_seconds
        timings = {"admm_fit": t_admm, "zstep_total": float(sum(zs)), "zstep_mean": float(np.mean(zs)) if zs else 0.0,
                   "zsteps": len(zs), "finetune_fit": t_ft, **slim_timings, "total": time.perf_counter() - t_start}
        return EasiEdgeResult(small, final, stages, history, timings, wrapped, diff, dict(update.last))

    def _baseline_stage(self, model, data, recal_args, batch_size, macs: int, params: int) -> dict[str, Any]:
        return _baseline_stage(model, data, recal_args, batch_size, macs, params, self.recalibrate_bn)


def _check_run(model, train_data, validation_data, calibration_data, calibration_size: int,
               seed: int | None) -> tuple:
    """The checks every pipeline run starts with (compiled model, finite weights and inputs), the seed, and
    the calibration examples ``(x, y or None)`` taken from ``calibration_data`` or else ``train_data``."""
    if getattr(model, "optimizer", None) is None or not getattr(model, "compiled", False):
        raise ValueError("compile the model first (its optimizer, loss and metrics are used for pruning)")
    if seed is not None:
        keras.utils.set_random_seed(seed)
    check_finite_weights(model)
    for what, given in (("train_data", train_data), ("validation_data", validation_data)):
        if isinstance(given, (tuple, list)) and given:  # arrays, checked whole; datasets batch by batch
            check_finite(given[0], what)
    calibration_data = train_data if calibration_data is None else calibration_data
    return take_examples(model, calibration_data, calibration_size)


def _slim_stage(wrapped, x, validation_data, fit_args, batch_size, recalibrate_bn: int, stages: list
                ) -> tuple[keras.Model, PruningPlan, float, dict[str, float]]:
    """Strips the fine-tuned wrapped model, measures it against the masked one on ``x``, re-estimates its
    BatchNorm statistics and appends the ``slim`` stage: ``(slim model, plan, max |diff|, timings)``."""
    t0 = time.perf_counter()
    small, plan = strip_pruning(wrapped)
    t_strip = time.perf_counter() - t0
    diff = float(np.abs(np.asarray(small.predict(x, verbose=0), np.float64)
                        - np.asarray(wrapped.predict(x, verbose=0), np.float64)).max())
    t0 = time.perf_counter()
    before_bn = top1_accuracy(small, validation_data) if validation_data is not None else None
    n_bn = _recalibrate(small, fit_args, batch_size, recalibrate_bn)
    t_recal = time.perf_counter() - t0
    problem = non_finite_weight(small)
    if problem is not None:
        raise TrainingDivergedError(f"training diverged: the pruned model's {problem}; lower the learning rate")
    stages.append(_stage("slim", small, validation_data, count_macs(small), count_params(small),
                         note="the slim model (channels physically removed)", batchnorm=n_bn,
                         accuracy_before_bn=before_bn if n_bn else None))
    return small, plan, diff, {"recalibrate": t_recal, "strip": t_strip}


def _recalibrate(model, fit_args, batch_size, max_examples: int) -> int:
    """Re-estimates ``model``'s BatchNorm statistics on the training data; returns the examples used
    (0 when ``max_examples`` is 0 or the model has no BatchNorm layer)."""
    if not max_examples:
        return 0
    layers = recalibrate_batchnorm(model, fit_args[0] if len(fit_args) == 1 else fit_args,
                                   max_examples=max_examples, batch_size=batch_size or 128)
    if not layers:
        return 0
    n = _num_examples(fit_args)
    return min(max_examples, n) if n is not None else max_examples


def _baseline_stage(model, data, fit_args, batch_size, macs: int, params: int, recalibrate_bn: int) -> dict[str, Any]:
    """The input model measured the way the slim model is: when the slim model's BatchNorm statistics are
    re-estimated, so are a copy's of the baseline (the accuracy as given is kept beside it)."""
    stage = _stage("baseline", model, data, macs, params, note="the model as given")
    if data is None or not recalibrate_bn:
        return stage
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    n_bn = _recalibrate(copy, fit_args, batch_size, recalibrate_bn)
    if n_bn:
        stage.update(accuracy=top1_accuracy(copy, data), accuracy_before_bn=stage["accuracy"],
                     batchnorm=_bn_text(n_bn),
                     note="the model as given, measured like the slim model (BatchNorm re-estimated on a copy)")
    return stage


def _pruned_stage(name: str, wrapped, small, data, fit_args, batch_size, recalibrate_bn: int, macs: int,
                  params: int, *, note: str) -> dict[str, Any]:
    """A stage right after a hard prune, before fine-tuning, measured like the slim model: on ``small`` (the
    slim copy, not the model being trained) with its BatchNorm statistics re-estimated, so that "before
    fine-tune" says what the pruned network can do rather than how stale its moving averages are; the
    accuracy with the statistics as trained is kept beside it."""
    stage = _stage(name, wrapped, data, macs, params, note=note)
    if data is None or not recalibrate_bn:
        return stage
    n_bn = _recalibrate(small, fit_args, batch_size, recalibrate_bn)
    if n_bn:
        stage.update(accuracy=top1_accuracy(small, data), accuracy_before_bn=stage["accuracy"],
                     batchnorm=_bn_text(n_bn), note=f"{note}; measured on the slim copy, BatchNorm re-estimated")
    return stage


def _bn_text(n: int) -> str:
    return f"re-estimated on {n} training examples" if n else "as trained"


def _num_examples(fit_args) -> int | None:
    try:
        return int(len(fit_args[0]))
    except TypeError:
        return None


def _steps_per_epoch(train_data, batch_size: int | None) -> int | None:
    """Training steps per epoch, None when the dataset's length is unknown."""
    if isinstance(train_data, (tuple, list)):
        return int(np.ceil(len(train_data[0]) / (batch_size or 32)))
    try:
        n = int(train_data.cardinality())
    except (AttributeError, TypeError):
        return None
    return n if n > 0 else None


def _fit_args(train_data) -> tuple:
    """``fit``'s positional arguments for arrays ``(x, y)`` or a dataset."""
    if isinstance(train_data, (tuple, list)):
        if len(train_data) != 2:
            raise ValueError("train_data must be (x, y) arrays or a tf.data.Dataset")
        return tuple(train_data)
    return (train_data,)


def _stage(name: str, model, data, macs: int, params: int, *, note: str, batchnorm: int = 0,
           accuracy_before_bn: float | None = None) -> dict[str, Any]:
    """One row of ``EasiEdgeResult.stages``; ``batchnorm`` is how many examples its BatchNorm statistics were
    re-estimated on (0: as trained)."""
    row = {"stage": name, "accuracy": None if data is None else top1_accuracy(model, data), "macs": int(macs),
           "params": int(params), "note": note,
           "batchnorm": _bn_text(batchnorm)}
    if accuracy_before_bn is not None:
        row["accuracy_before_bn"] = float(accuracy_before_bn)
    return row


def top1_accuracy(model: keras.Model, data: Any, batch_size: int = 256, *, what: str = "evaluation data") -> float:
    """Top-1 accuracy of ``model`` on labelled ``data`` (``(x, y)`` arrays or a dataset of ``(x, y)``);
    labels may be class indices or one-hot rows. Inputs holding NaN or inf raise a ``ValueError`` naming
    ``what`` and the first such example."""
    correct = total = 0
    for x, y in iterate_batches(data, batch_size, None, input_rank(model), what=what):
        if y is None:
            raise ValueError("accuracy needs labelled data (x, y)")
        pred = np.argmax(np.asarray(model(x, training=False)), axis=-1)
        y = np.asarray(y)
        y = np.argmax(y, axis=-1) if y.ndim > 1 and y.shape[-1] > 1 else y.reshape(-1)
        correct += int((pred == y).sum())
        total += int(len(y))
    return correct / total
