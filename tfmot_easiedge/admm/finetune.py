"""``MaskedFineTune``: the hard prune after ADMM, then fine-tuning with the removed channels held at zero."""
from __future__ import annotations

import keras

from tfmot_easiedge.admm._common import attach, detach
from tfmot_easiedge.admm._state import PruningState
from tfmot_easiedge.admm.prune import hard_prune
from tfmot_easiedge.plan import PruningPlan


class MaskedFineTune(keras.callbacks.Callback):
    """Fixes the final mask, zeroes the removed channels and keeps them at zero after every optimizer step.

    The wrappers switch to fine-tuning through their ``mode`` variable: the constraint each tracked weight
    carries since the wrapper was built then re-applies the mask after every optimizer step, and the ADMM
    penalty is off, in the same compiled train step (no retrace).

    Args:
        plan: the plan to enforce; None takes the last ADMM Z-step's.
        verbose: print what was fixed.

    Attributes:
        plan: the enforced plan (after ``on_train_begin``).
    """

    def __init__(self, plan: PruningPlan | None = None, verbose: int = 1):
        super().__init__()
        self.plan = plan
        self.verbose = verbose
        self._state: PruningState | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._state = state = attach(self.model, "finetune")
        try:
            self.plan = plan = hard_prune(self.model, self.plan)
        except Exception:
            detach(self.model, state)
            raise
        for w in state.wrappers:
            w.rho.assign(0.0)
        if self.verbose:
            total = sum(plan.group_sizes.values())
            print(f"Masked fine-tune: {total - plan.removed_channels()}/{total} channels kept, the rest held at 0")

    def on_train_end(self, logs: dict | None = None) -> None:
        detach(self.model, self._state)
