"""Stopping a diverged fit: ``StopOnNonFiniteLoss`` (a ``TerminateOnNaN`` that remembers where) and its error.

A learning rate too high for the model makes the weights grow until the loss is inf or NaN; from then on
every step writes NaN into the weights. Keras's own ``TerminateOnNaN`` stops the fit but the caller still
gets a model (and, from :class:`~tfmot_easiedge.EasiEdge`, a pruned result) whose weights are all NaN.
``StopOnNonFiniteLoss`` stops at the first non-finite loss, records the epoch and step, and
:meth:`~StopOnNonFiniteLoss.check` turns that into a :class:`TrainingDivergedError` after ``fit`` returns.
"""
from __future__ import annotations

import math

import keras

#: What the messages advise: the usual cause first, then bad inputs (a dataset is not checked up front).
ADVICE = "lower the learning rate (or check the training data for NaN/inf)"


class TrainingDivergedError(ValueError):
    """Training produced a non-finite loss or non-finite weights (NaN/inf); nothing usable was made.

    A ``ValueError`` (the command line reports it in one line): its usual cause is a learning rate too
    high for the model and data.
    """


class StopOnNonFiniteLoss(keras.callbacks.TerminateOnNaN):
    """Stops ``fit`` at the first batch whose loss is NaN or inf and remembers where.

    Put it first in the callback list, so that the callbacks after it see ``model.stop_training`` set on
    that batch. After ``fit`` returns, :meth:`check` raises when the fit was stopped.

    Args:
        stage: what the fit is, for the message (``"ADMM fit"``, ``"fine-tune"``).
        verbose: print a line when the fit is stopped.

    Attributes:
        epoch: the 1-based epoch (as Keras's progress bar counts) of the non-finite loss, None if none.
        step: the 1-based step within that epoch, None if none.
        loss: the non-finite loss value, None if none.

    Example:
        >>> import keras, numpy as np
        >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> m.compile(keras.optimizers.SGD(1e30), "mse")
        >>> guard = StopOnNonFiniteLoss(verbose=0)
        >>> _ = m.fit(np.ones((64, 2)), np.ones(64), batch_size=8, epochs=3, verbose=0, callbacks=[guard])
        >>> guard.diverged, guard.epoch
        (True, 1)
    """

    def __init__(self, stage: str = "training", verbose: int = 1):
        super().__init__()
        self.stage = stage
        self.verbose = verbose
        self.epoch: int | None = None
        self.step: int | None = None
        self.loss: float | None = None
        self._current_epoch = 0

    @property
    def diverged(self) -> bool:
        """Whether the fit was stopped on a non-finite loss."""
        return self.loss is not None

    @property
    def message(self) -> str:
        """The one-line error message (empty when the fit did not diverge)."""
        if not self.diverged:
            return ""
        return (f"training diverged: the loss became {self.loss} at epoch {self.epoch}, step {self.step} of the "
                f"{self.stage}; {ADVICE}")

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.epoch = self.step = self.loss = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._current_epoch = int(epoch)

    # TerminateOnNaN's hook; replaced by on_train_batch_end
    def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
        pass

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is None or self.diverged:
            return
        try:
            value = float(loss)
        except (TypeError, ValueError):
            return
        if math.isfinite(value):
            return
        self.epoch, self.step, self.loss = self._current_epoch + 1, int(batch) + 1, value
        self.model.stop_training = True
        if self.verbose:
            print(f"\n{self.message}; stopping the {self.stage}")

    def check(self) -> None:
        """Raises :class:`TrainingDivergedError` when the last fit was stopped on a non-finite loss."""
        if self.diverged:
            raise TrainingDivergedError(self.message)
