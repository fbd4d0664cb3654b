"""``ADMMUpdate``: the Z-step and U-step of ADMM filter pruning, as a Keras callback.

Every ``update_every`` (steps, or ``"epoch"``) the callback ranks all channels of the network globally
by the chosen importance (TBAA information gain on calibration data by default) of the current network
(``rank_on="w"``) or of ``W + U`` (``"w_plus_u"``, the textbook projection), smoothed across Z-steps by an
exponential moving average (``score_ema``), keeps the best under the budget, and sets ``Z`` to ``W + U`` with
the other channels' weights zeroed (the projection onto the budget) and ``U ← U + W − Z``. ``rho`` then grows
by ``rho_growth`` up to ``rho_max``, and ``U`` (the dual scaled by ``1/rho``) is rescaled by
``rho_old/rho_new`` to keep the dual unchanged. Entries whose channel changed side have their optimizer state
(momentum, Adam moments) reset. Once the support has been stable for ``freeze_after`` Z-steps it is frozen.

The W-step is ``model.fit`` itself with the wrappers' ``rho/2·||W − Z + U||²`` on the removed entries, applied
by default as a proximal step after every optimizer update with step ``p = rho·η`` (``η`` the learning rate,
divided by ``1 − momentum`` for SGD with momentum, the step the same penalty in the loss would take at steady
state), or added to the loss (``prune_filters(..., penalty="loss")``).

Logged into ``logs`` (History, progress bar, TensorBoard; put this callback before TensorBoard):
``admm_primal_residual`` = ``||W ⊙ (1 − mask)|| / ||W||`` over every weight the removed channels own (kernel
slices on both sides, biases, BatchNorm gamma/beta), i.e. what a hard prune now would cut;
``admm_dual_residual`` = ``rho·||Z − Z_prev|| / ||W||``, ``admm_channels_kept``, ``admm_mask_changes``
(channels that changed side at this Z-step), ``admm_support_jaccard`` (kept channels now vs at the previous
Z-step), ``admm_frozen`` (1 once the support is frozen), ``admm_rho`` and, at epoch end, ``admm_penalty``
(the penalty ``rho/2·||W − Z + U||²`` on the removed entries at the epoch's last weights; with
``penalty="loss"`` it is part of ``loss``, otherwise not).
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from tfmot_easiedge import _keras_compat as kc
from tfmot_easiedge.admm._common import attach, attached, detach, take_examples
from tfmot_easiedge.admm._state import PruningState
from tfmot_easiedge.admm.divergence import ADVICE, TrainingDivergedError
from tfmot_easiedge.data.batches import non_finite_kinds
from tfmot_easiedge.importance.criterion import as_criterion
from tfmot_easiedge.plan import PruningPlan
from tfmot_easiedge.rewrite.batchnorm import recalibrate_batchnorm
from tfmot_easiedge.selection.allocate import select
from tfmot_easiedge.selection.budgets import as_budget

if TYPE_CHECKING:
    from tfmot_easiedge.importance.criterion import CriterionSpec
    from tfmot_easiedge.selection.budgets import BudgetSpec

#: Default growth of rho per Z-step and its ceiling.
DEFAULT_RHO_GROWTH = 1.5
DEFAULT_RHO_MAX = 1.0
#: The support is frozen after this many successive Z-steps that together changed fewer than
#: ``DEFAULT_STABLE_FRACTION`` of all prunable channels.
DEFAULT_FREEZE_AFTER = 3
DEFAULT_STABLE_FRACTION = 0.01
#: Weight of the previous scores in the moving average across Z-steps.
DEFAULT_SCORE_EMA = 0.5


class ADMMUpdate(keras.callbacks.Callback):
    """Runs ADMM's Z- and U-steps while ``fit`` trains a model made by ``prune_filters``.

    Args:
        calibration_data: inputs for data-driven importance (arrays ``x``, ``(x, y)`` or a
            ``tf.data.Dataset``); the first ``calibration_size`` examples are kept.
        budget: overrides the budget given to ``prune_filters`` (anything ``as_budget`` accepts: a Budget
            object, ``"filters:0.8"``...); needed for a budget of an unregistered kind.
        importance: overrides the criterion given to ``prune_filters`` (anything ``as_criterion`` accepts: a
            name, a ``Criterion``, a function ``f(model, data, *, analysis)``).
        update_every: ``"epoch"`` or a number of training steps between Z-steps.
        rho_growth: rho is multiplied by this after every Z-step (1.0 keeps it constant).
        rho_max: ceiling of the grown rho.
        calibration_size: examples used for scoring.
        batch_size: scoring batch size.
        seed: seed of stochastic criteria (``random``, TBAA ``sampled``).
        verbose: 0 silent, 1 a line per Z-step, 2 also the scoring progress bar.
        rank_on: which network the importance ranks: ``"w"`` (the current weights, default) or
            ``"w_plus_u"`` (the point being projected, the textbook Z-step). Measured on ResNet-20 (87.40%) at
            2x fewer MACs with the proximal penalty, score averaging and the adaptive freeze
            (``benchmarks/results/admm_search_resnet20_w1_macs0.5.md``, 10 ADMM epochs, 10,000 test images, no
            fine-tune): ``"w_plus_u"`` searches (the support changed at 11 of 19 Z-steps, Jaccard 0.905 with
            one-shot TBAA at the end) but ends at 74.95% against 76.62% for ``"w"`` (changes at 6 of 19, Jaccard
            0.946) and 77.13% for the previous ADMM (penalty in the loss, freeze at rho 0.1): one seed each.
        freeze_rho: once rho reaches this value the selection is frozen: later Z-steps project onto the
            same channels without re-scoring, while the penalty drives their weights to zero (late
            changes of side bring back a full-size removed channel and undo the convergence). None (default)
            leaves freezing to ``freeze_after``.
        freeze_after: freeze the selection once this many successive Z-steps together changed fewer than
            ``stable_fraction`` of all prunable channels (an adaptive freeze). None never freezes this way.
        stable_fraction: see ``freeze_after``.
        score_ema: the scores ranked at a Z-step are ``score_ema·previous + (1 − score_ema)·new`` (per-channel
            scores; damage curves are not averaged); 0 ranks the new scores alone.
        initial_step: training steps already run before this fit (a resumed run: ``optimizer.iterations``), so
            that Z-steps every ``update_every`` steps keep their cadence.
        reset_momentum: zero the optimizer state (momentum, Adam moments) of the entries whose channel changed
            side at a Z-step, so that a returning channel is not pushed by the pull that was removing it.
        recalibrate_bn: before each scoring pass, re-estimate the BatchNorm moving statistics on the
            calibration inputs (:func:`~tfmot_easiedge.rewrite.recalibrate_batchnorm`): scoring runs in
            inference mode, and during ADMM the moving averages trail the weights the W-step keeps changing,
            so a criterion would score a network that does not exist. Training is unaffected (it uses batch
            statistics); the averages go on from the re-estimated values.

    Attributes:
        zstep_seconds: wall time of every Z-step this callback ran.
        last: the numbers logged at the last Z-step.
        plan: the plan chosen at the last Z-step.

    Example:
        >>> import numpy as np, tfmot_easiedge as te
        >>> from tfmot_easiedge.models import zoo
        >>> m = te.prune_filters(zoo.tiny_cnn(), "filters:0.5", importance="l1")
        >>> m.compile("sgd", "sparse_categorical_crossentropy")
        >>> x, y = np.random.rand(64, 32, 32, 3).astype("float32"), np.random.randint(0, 10, 64)
        >>> cb = te.ADMMUpdate(x, verbose=0)
        >>> h = m.fit(x, y, epochs=2, verbose=0, callbacks=[cb])
        >>> sorted(k for k in h.history if k.startswith("admm"))  # doctest: +NORMALIZE_WHITESPACE
        ['admm_channels_kept', 'admm_dual_residual', 'admm_frozen', 'admm_mask_changes', 'admm_penalty',
         'admm_primal_residual', 'admm_rho', 'admm_support_jaccard']
    """

    def __init__(self, calibration_data: Any = None, budget: BudgetSpec | None = None, *,
                 importance: CriterionSpec | None = None, update_every: int | str = "epoch",
                 rho_growth: float = DEFAULT_RHO_GROWTH, rho_max: float = DEFAULT_RHO_MAX,
                 calibration_size: int = 512, batch_size: int = 64, seed: int = 0, verbose: int = 1,
                 rank_on: str = "w", freeze_rho: float | None = None,
                 freeze_after: int | None = DEFAULT_FREEZE_AFTER, stable_fraction: float = DEFAULT_STABLE_FRACTION,
                 score_ema: float = DEFAULT_SCORE_EMA, reset_momentum: bool = True, recalibrate_bn: bool = True,
                 initial_step: int = 0):
        super().__init__()
        if freeze_after is not None and not (isinstance(freeze_after, int) and freeze_after > 0):
            raise ValueError(f"freeze_after must be a positive number of Z-steps or None, got {freeze_after!r}")
        if not 0.0 <= score_ema < 1.0:
            raise ValueError(f"score_ema must be in [0, 1), got {score_ema}")
        self.freeze_after, self.stable_fraction = freeze_after, float(stable_fraction)
        self.score_ema, self.reset_momentum = float(score_ema), bool(reset_momentum)
        self._ema: dict[str, np.ndarray] | None = None
        self._recent_changes: list[int] = []
        self._prox_value: float | None = None
        self.recalibrate_bn = bool(recalibrate_bn)
        self.freeze_rho = freeze_rho
        if rank_on not in ("w", "w_plus_u"):
            raise ValueError(f"rank_on must be 'w' or 'w_plus_u', got {rank_on!r}")
        self.rank_on = rank_on
        if update_every != "epoch" and not (isinstance(update_every, int) and update_every > 0):
            raise ValueError(f"update_every must be 'epoch' or a positive number of steps, got {update_every!r}")
        if rho_growth < 1.0:
            raise ValueError(f"rho_growth must be >= 1 (rho does not shrink), got {rho_growth}")
        self.calibration_data = calibration_data
        self.budget = as_budget(budget) if budget is not None else None
        self.importance = as_criterion(importance) if importance is not None else None
        self.update_every = update_every
        self.rho_growth, self.rho_max = float(rho_growth), float(rho_max)
        self.calibration_size, self.batch_size, self.seed = int(calibration_size), int(batch_size), int(seed)
        self.verbose = verbose
        self.zstep_seconds: list[float] = []
        self.last: dict[str, float] = {}
        self.plan: PruningPlan | None = None
        self._state: PruningState | None = None
        self._steps = int(initial_step)

    # ------------------------------------------------------------------ Keras hooks
    def on_train_begin(self, logs: dict | None = None) -> None:
        self._state = state = attach(self.model, "admm")
        try:
            s = state.settings
            self._budget = self.budget or as_budget(s["budget"])
            criterion = self.importance or as_criterion(s.get("importance", "tbaa"))
            self._criterion_name = criterion.name
            self._calib = None
            if self.calibration_data is not None:
                self._calib = take_examples(state.view, self.calibration_data, self.calibration_size)
            elif criterion.needs_data:
                raise ValueError(f"importance {criterion.name!r} needs calibration_data in ADMMUpdate")
            if criterion.needs_labels and (self._calib is None or self._calib[1] is None):
                raise ValueError(f"importance {criterion.name!r} needs labelled calibration data (x, y)")
            # made once: a criterion may keep compiled state across Z-steps (TBAA's scoring step)
            self._scorer = criterion.make_scorer(state.view, state.analysis)
            if state.zsteps() == 0:  # start from a projection, so the penalty pulls from step one
                self.z_step()
        except Exception:
            detach(self.model, state)
            raise

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._set_prox()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._steps += 1
        if isinstance(self.update_every, int) and self._steps % self.update_every == 0:  # else "epoch"
            self.z_step()
        if logs is not None and self.last:
            logs.update(self.last)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.update_every == "epoch":
            self.z_step()
        if logs is not None:
            logs.update(self.last)
            # ``loss`` includes the ADMM penalty; log the penalty on its own so the data loss can be read apart
            logs["admm_penalty"] = float(sum(float(w.penalty()) for w in attached(self._state, "ADMMUpdate").wrappers))

    def on_train_end(self, logs: dict | None = None) -> None:
        detach(self.model, self._state)

    # ------------------------------------------------------------------ ADMM
    def z_step(self) -> dict[str, float]:
        """One projection ``Z = Π(W + U)`` and dual update ``U += W − Z``; returns the logged numbers.

        Skipped (the last numbers returned) when a weight is NaN or inf and the fit is being stopped (by
        ``StopOnNonFiniteLoss`` or ``TerminateOnNaN``): there is nothing to project.

        Raises:
            TrainingDivergedError: a weight is NaN or inf and the fit is not being stopped.
        """
        t0 = time.perf_counter()
        st = attached(self._state, "ADMMUpdate")
        s = st.settings
        w_np = [w.weights_np() for w in st.wrappers]
        bad = _non_finite(st.wrappers, w_np)
        if bad is not None:
            if getattr(self.model, "stop_training", False):  # the fit is being stopped (a NaN loss): keep Z
                return self.last
            detach(self.model, st)  # fit does not run on_train_end after an error in a callback
            raise TrainingDivergedError(f"training diverged: {bad} before ADMM Z-step {st.zsteps() + 1}; {ADVICE}")
        u_np = [[np.asarray(u.numpy()) for u in w.u] for w in st.wrappers]
        z_prev = [[np.asarray(z.numpy()) for z in w.z] for w in st.wrappers]
        mask_prev = [[np.asarray(m.numpy()) for m in w.mask] for w in st.wrappers]
        rho = float(st.wrappers[0].rho.numpy())
        previous = st.current_plan()
        frozen = st.zsteps() > 0 and (self._frozen(st) or (self.freeze_rho is not None and rho >= self.freeze_rho))
        if frozen:  # the selection is settled: project onto the same channels, no re-scoring
            plan = previous
        else:
            if self.rank_on == "w_plus_u":
                scores = self._score([[a + b for a, b in zip(ws, us)] for ws, us in zip(w_np, u_np)], w_np)
            else:
                scores = self._score(None, w_np)
            scores = self._smoothed(scores)
            plan = select(st.analysis, scores, self._budget, min_channels=s.get("min_channels", 1),
                          round_to=s.get("round_to"), protect=s.get("protect", ()),
                          min_fraction=s.get("min_fraction", 0.0))
        plan.metadata.update({"importance": self._criterion_name, "zstep": st.zsteps() + 1})
        changed = sum(int(np.sum(plan.kept_mask(g) != previous.kept_mask(g))) for g in plan.kept if g in previous.kept)
        kept_now = {(g, int(i)) for g, idx in plan.kept.items() for i in idx}
        kept_before = {(g, int(i)) for g, idx in previous.kept.items() for i in idx}
        jaccard = len(kept_now & kept_before) / max(1, len(kept_now | kept_before))
        masks = st.masks(plan)
        primal = dual = norm_w = 0.0
        for w, ws, us, zp, wm in zip(st.wrappers, w_np, u_np, z_prev, masks):
            for zv, uv, W, U, Zp, m in zip(w.z, w.u, ws, us, zp, wm):
                Z = (W + U) * m
                U = U + W - Z
                zv.assign(Z)
                uv.assign(U)
                primal += float(np.sum(np.square(W * ~m)))
                dual += float(np.sum(np.square(Z - Zp)))
                norm_w += float(np.sum(np.square(W)))
        st.store_plan(plan, masks)
        if self.reset_momentum and st.zsteps() > 0:
            self._reset_optimizer_state(st, mask_prev, masks)
        total = sum(plan.group_sizes.values())
        if not frozen:
            self._note_changes(st, changed, total)
        new_rho = max(rho, min(rho * self.rho_growth, self.rho_max)) if st.zsteps() > 0 else rho
        for w in st.wrappers:
            if new_rho != rho:  # U is the dual scaled by 1/rho: rescale it with rho (Boyd et al. 2011, 3.4.1)
                for uv in w.u:
                    uv.assign(uv.numpy() * (rho / new_rho))
            w.rho.assign(new_rho)
            w.zsteps.assign(w.zsteps.numpy() + 1)
        self._prox_value = None  # rho changed: set the proximal step again before the next training step
        norm_w = max(np.sqrt(norm_w), 1e-12)
        kept = len(kept_now)
        self.plan = plan
        self.last = {"admm_primal_residual": float(np.sqrt(primal) / norm_w),
                     "admm_dual_residual": float(rho * np.sqrt(dual) / norm_w),
                     "admm_channels_kept": float(kept), "admm_mask_changes": float(changed),
                     "admm_support_jaccard": float(jaccard), "admm_frozen": float(frozen or self._frozen(st)),
                     "admm_rho": float(new_rho)}
        self.zstep_seconds.append(time.perf_counter() - t0)
        if self.verbose:
            print(f"\nADMM Z-step {st.zsteps()}: kept {kept}/{total} channels, primal residual "
                  f"{self.last['admm_primal_residual']:.2e}, dual {self.last['admm_dual_residual']:.2e}, "
                  f"{changed} changed{' (frozen)' if frozen else ''}, rho "
                  f"{new_rho:.3g} ({self.zstep_seconds[-1]:.1f}s)")
        return self.last

    # ------------------------------------------------------------------ parts of the Z-step
    def _smoothed(self, scores):
        """The moving average of per-channel scores across Z-steps (damage curves pass through)."""
        if not self.score_ema or not isinstance(scores, dict) or not all(
                isinstance(v, np.ndarray) for v in scores.values()):
            return scores
        new = {g: np.asarray(v, np.float64) for g, v in scores.items()}
        if self._ema is not None and self._ema.keys() == new.keys() and all(
                self._ema[g].shape == new[g].shape for g in new):
            new = {g: self.score_ema * self._ema[g] + (1.0 - self.score_ema) * new[g] for g in new}
        self._ema = new
        return dict(new)

    def _frozen(self, st: PruningState) -> bool:
        return self.freeze_after is not None and float(st.wrappers[0].stable_zsteps.numpy()) >= self.freeze_after

    def _note_changes(self, st: PruningState, changed: int, total: int) -> None:
        """Counts this Z-step towards the adaptive freeze (kept in the wrappers, so a reloaded model knows)."""
        if self.freeze_after is None or st.zsteps() == 0:  # the first projection changes everything by design
            return
        window = (self._recent_changes + [changed])[-self.freeze_after:]
        while window and sum(window) >= self.stable_fraction * total:  # the trailing run that is stable together
            window = window[1:]
        self._recent_changes = window
        stable = len(window)
        for w in st.wrappers:
            w.stable_zsteps.assign(float(stable))

    def _reset_optimizer_state(self, st: PruningState, before, after) -> None:
        """Zeroes the optimizer slots of the entries whose keep-mask changed."""
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            return
        for w, mb, ma in zip(st.wrappers, before, after):
            for target, b, a in zip(w.targets, mb, ma):
                flipped = (b > 0.5) != a
                if not flipped.any():
                    continue
                for slot in kc.optimizer_slots(optimizer, target):
                    slot.assign(np.asarray(slot.numpy()) * ~flipped)

    def _set_prox(self) -> None:
        """Sets the wrappers' proximal step ``rho·η`` for the coming training step."""
        st = self._state
        if st is None or not st.wrappers or not st.wrappers[0].proximal:
            return
        optimizer = getattr(self.model, "optimizer", None)
        lr = float(np.asarray(optimizer.learning_rate)) if optimizer is not None else 0.0
        momentum = float(getattr(optimizer, "momentum", 0.0) or 0.0)
        step = lr / (1.0 - momentum) if 0.0 <= momentum < 1.0 else lr
        value = float(st.wrappers[0].rho.numpy()) * step
        if self._prox_value is not None and abs(value - self._prox_value) <= 1e-9 * max(1.0, abs(value)):
            return
        for w in st.wrappers:
            w.prox.assign(value)
        self._prox_value = value

    def _score(self, w_plus_u, w_now):
        """Scores the network as it is, or with ``W + U`` in place of ``W`` when given."""
        st = attached(self._state, "ADMMUpdate")
        if w_plus_u is not None:
            _assign(st.wrappers, w_plus_u)
        try:
            data = None
            if self._calib is not None:
                x, y = self._calib
                data = x if y is None else (x, y)
                if self.recalibrate_bn:
                    recalibrate_batchnorm(st.view, x, max_examples=len(x), batch_size=self.batch_size)
            return self._scorer(data, seed=self.seed + st.zsteps(), batch_size=self.batch_size,
                                progress=self.verbose > 1)
        finally:
            if w_plus_u is not None:
                _assign(st.wrappers, w_now)


def _non_finite(wrappers, values) -> str | None:
    """Names the first wrapped weight in ``values`` (one list of arrays per wrapper) holding NaN or inf."""
    for w, arrays in zip(wrappers, values):
        for v, a in zip(w.targets, arrays):
            finite = np.isfinite(a)
            if not finite.all():
                return f"weight {v.path!r} of layer {w.layer.name!r} became {non_finite_kinds(a[~finite])}"
    return None


def _assign(wrappers, values) -> None:
    for w, vs in zip(wrappers, values):
        for target, v in zip(w.targets, vs):
            target.assign(v.astype(target.dtype))
