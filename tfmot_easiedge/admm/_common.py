"""What both ADMM callbacks do: find the wrapped model's state, attach to it, detach and force a retrace."""
from __future__ import annotations

import numpy as np

from tfmot_easiedge.admm._state import PruningState
from tfmot_easiedge.importance._common import check_batch, input_rank
from tfmot_easiedge.importance._data import iterate_batches
from tfmot_easiedge.selection import parse_budget


def attach(model, mode: str) -> PruningState:
    """Marks every wrapper of ``model`` as trained under ``mode``; errors when it is already attached."""
    state = PruningState(model)
    busy = {w.attached for w in state.wrappers} - {None}
    if busy:
        raise RuntimeError(f"model {model.name!r} is already being trained under {sorted(busy)[0]!r}: use one "
                           "of ADMMUpdate / MaskedFineTune per fit")
    for w in state.wrappers:
        w.attached = mode
    # A fresh train step, traced under this mode (fit reads model.train_function at every step).
    model.make_train_function(force=True)
    return state


def detach(model, state: PruningState | None) -> None:
    """Undoes ``attach`` and drops the traced train step, so the next ``fit`` sees the new mode."""
    if state is not None:
        for w in state.wrappers:
            w.attached = None
    model.train_function = None


def budget_from(spec):
    """A budget object from an object, a string or a ``describe()`` dict."""
    if isinstance(spec, dict):
        return parse_budget(f"{spec['kind']}:{spec['ratio']}")
    if isinstance(spec, str):
        return parse_budget(spec)
    return spec


def take_examples(model, data, n: int, batch_size: int = 256):
    """The first ``n`` examples of ``data`` as arrays ``(x, y or None)``, shape-checked against ``model``."""
    xs, ys = [], []
    for x, y in iterate_batches(data, batch_size, n, input_rank(model)):
        check_batch(model, x)
        xs.append(np.asarray(x))
        ys.append(None if y is None else np.asarray(y))
    x = np.concatenate(xs)
    y = None if any(v is None for v in ys) else np.concatenate(ys)
    return x, y
