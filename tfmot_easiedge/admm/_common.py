"""What both ADMM callbacks do: find the wrapped model's state, attach to it and detach from it."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from tfmot_easiedge.admm._state import PruningState
from tfmot_easiedge.admm.wrapper import renew_refused_train_step
from tfmot_easiedge.data.batches import check_batch, input_rank, iterate_batches

if TYPE_CHECKING:
    import keras


def attach(model: keras.Model, mode: str) -> PruningState:
    """Marks every wrapper of ``model`` as trained under ``mode``; errors when it is already attached."""
    state = PruningState(model)
    busy = {w.attached for w in state.wrappers if w.attached is not None}
    if busy:
        raise RuntimeError(f"model {model.name!r} is already being trained under {sorted(busy)[0]!r}: use one "
                           "of ADMMUpdate / MaskedFineTune per fit")
    for w in state.wrappers:
        w.attached = mode  # a variable the traced train step reads: no retrace
    renew_refused_train_step(model, state.wrappers)
    return state


def attached(state: PruningState | None, callback: str) -> PruningState:
    """``state`` once ``callback``'s ``on_train_begin`` has attached it; a RuntimeError before that."""
    if state is None:
        raise RuntimeError(f"{callback} is not attached to a model: it runs inside fit (on_train_begin first)")
    return state


def detach(model: keras.Model, state: PruningState | None) -> None:
    """Undoes ``attach`` (the traced train step stays valid: it reads the mode from the wrappers' variable)."""
    if state is not None:
        for w in state.wrappers:
            w.attached = None


def take_examples(model: keras.Model, data: Any, n: int, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray | None]:
    """The first ``n`` examples of ``data`` as arrays ``(x, y or None)``, shape-checked against ``model``."""
    xs: list[np.ndarray] = []
    ys: list[np.ndarray | None] = []
    for x, y in iterate_batches(data, batch_size, n, input_rank(model)):
        check_batch(model, x)
        xs.append(np.asarray(x))
        ys.append(None if y is None else np.asarray(y))
    labels = [v for v in ys if v is not None]
    return np.concatenate(xs), (np.concatenate(labels) if len(labels) == len(ys) else None)
