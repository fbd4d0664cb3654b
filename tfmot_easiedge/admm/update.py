"""``ADMMUpdate``: the Z-step and U-step of ADMM filter pruning, as a Keras callback.

Every ``update_every`` (steps, or ``"epoch"``) the callback ranks all channels of the network globally
by the chosen importance of ``W + U`` (TBAA information gain on calibration data by default), keeps the
best under the budget, and sets ``Z`` to ``W + U`` with the other channels' weights zeroed (the
projection onto the budget) and ``U ← U + W − Z``. ``rho`` then grows by ``rho_growth`` up to ``rho_max``,
and ``U`` (the dual scaled by ``1/rho``) is rescaled by ``rho_old/rho_new`` to keep the dual unchanged.
The W-step is ``model.fit`` itself, on the loss plus the wrappers' ``rho/2·||W − Z + U||²``.

Logged into ``logs`` (History, progress bar, TensorBoard; put this callback before TensorBoard):
``admm_primal_residual`` = ``||W − Z|| / ||W||``, ``admm_dual_residual`` = ``rho·||Z − Z_prev|| / ||W||``,
``admm_channels_kept``, ``admm_mask_changes`` (channels that changed side at this Z-step), ``admm_rho`` and, at
epoch end, ``admm_penalty`` (the penalty term that ``loss`` includes, at the epoch's last weights).
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

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
DEFAULT_RHO_MAX = 10.0
#: rho from which the selection is frozen.
DEFAULT_FREEZE_RHO = 0.1


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
            ``"w_plus_u"`` (the point being projected, the textbook Z-step). Ranking ``W + U`` is unstable
            when the W-step is short: ``U`` accumulates the removed channels' weights, their ``W + U``
            grows, and the selection flips back and forth (measured: most channels changed side at every
            Z-step on a CIFAR-10 VGG); the current network's information gain falls as its removed
            channels shrink, so the selection settles.
        freeze_rho: once rho reaches this value the selection is frozen: later Z-steps project onto the
            same channels without re-scoring, while the penalty drives their weights to zero (late
            changes of side bring back a full-size removed channel and undo the convergence). None
            re-ranks at every Z-step.
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
        ['admm_channels_kept', 'admm_dual_residual', 'admm_mask_changes', 'admm_penalty', 'admm_primal_residual',
         'admm_rho']
    """

    def __init__(self, calibration_data: Any = None, budget: BudgetSpec | None = None, *,
                 importance: CriterionSpec | None = None, update_every: int | str = "epoch",
                 rho_growth: float = DEFAULT_RHO_GROWTH, rho_max: float = DEFAULT_RHO_MAX,
                 calibration_size: int = 512, batch_size: int = 64, seed: int = 0, verbose: int = 1,
                 rank_on: str = "w", freeze_rho: float | None = DEFAULT_FREEZE_RHO, recalibrate_bn: bool = True):
        super().__init__()
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
        self._steps = 0

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
        rho = float(st.wrappers[0].rho.numpy())
        previous = st.current_plan()
        frozen = self.freeze_rho is not None and rho >= self.freeze_rho and st.zsteps() > 0
        if frozen:  # the selection is settled: project onto the same channels, no re-scoring
            plan = previous
        else:
            if self.rank_on == "w_plus_u":
                scores = self._score([[a + b for a, b in zip(ws, us)] for ws, us in zip(w_np, u_np)], w_np)
            else:
                scores = self._score(None, w_np)
            plan = select(st.analysis, scores, self._budget, min_channels=s.get("min_channels", 1),
                          round_to=s.get("round_to"), protect=s.get("protect", ()),
                          min_fraction=s.get("min_fraction", 0.0))
        plan.metadata.update({"importance": self._criterion_name, "zstep": st.zsteps() + 1})
        changed = sum(int(np.sum(plan.kept_mask(g) != previous.kept_mask(g))) for g in plan.kept if g in previous.kept)
        masks = st.masks(plan)
        primal = dual = norm_w = 0.0
        for w, ws, us, zp, wm in zip(st.wrappers, w_np, u_np, z_prev, masks):
            for zv, uv, W, U, Zp, m in zip(w.z, w.u, ws, us, zp, wm):
                Z = (W + U) * m
                U = U + W - Z
                zv.assign(Z)
                uv.assign(U)
                primal += float(np.sum(np.square(W - Z)))
                dual += float(np.sum(np.square(Z - Zp)))
                norm_w += float(np.sum(np.square(W)))
        st.store_plan(plan, masks)
        new_rho = max(rho, min(rho * self.rho_growth, self.rho_max)) if st.zsteps() > 0 else rho
        for w in st.wrappers:
            if new_rho != rho:  # U is the dual scaled by 1/rho: rescale it with rho (Boyd et al. 2011, 3.4.1)
                for uv in w.u:
                    uv.assign(uv.numpy() * (rho / new_rho))
            w.rho.assign(new_rho)
            w.zsteps.assign(w.zsteps.numpy() + 1)
        norm_w = max(np.sqrt(norm_w), 1e-12)
        kept = sum(len(k) for k in plan.kept.values())
        self.plan = plan
        self.last = {"admm_primal_residual": float(np.sqrt(primal) / norm_w),
                     "admm_dual_residual": float(rho * np.sqrt(dual) / norm_w),
                     "admm_channels_kept": float(kept), "admm_mask_changes": float(changed),
                     "admm_rho": float(new_rho)}
        self.zstep_seconds.append(time.perf_counter() - t0)
        if self.verbose:
            total = sum(plan.group_sizes.values())
            print(f"\nADMM Z-step {st.zsteps()}: kept {kept}/{total} channels, primal residual "
                  f"{self.last['admm_primal_residual']:.2e}, dual {self.last['admm_dual_residual']:.2e}, "
                  f"{changed} changed{' (frozen)' if frozen else ''}, rho "
                  f"{new_rho:.3g} ({self.zstep_seconds[-1]:.1f}s)")
        return self.last

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
