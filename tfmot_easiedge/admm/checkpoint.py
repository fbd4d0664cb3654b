"""Checkpoints of a pipeline run, one per finished epoch, so that an interrupted run can be resumed.

A :class:`Checkpoints` directory holds ``epoch-NNNN/`` subdirectories, each written atomically (through
:mod:`tfmot_easiedge._files`) with the wrapped model (its ADMM state ``Z``, ``U``, mask and ``rho`` are
variables, and its optimizer state comes with it) and ``state.json``: the stage (``"admm"`` or
``"finetune"``), the epochs finished, the stage rows and history so far, the plan being fine-tuned and the
caller's ``arguments``. Only the newest checkpoint is kept. :meth:`EasiEdge.run
<tfmot_easiedge.EasiEdge.run>` takes one (``checkpoints=``), saves after every epoch and, when the directory
already holds a checkpoint, continues from it instead of starting over.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Mapping

import keras

from tfmot_easiedge._files import atomic_output, sweep_leftovers, write_json_atomic
from tfmot_easiedge.plan import PruningPlan

#: ``state.json``'s format tag and version.
CHECKPOINT_FORMAT = "tfmot_easiedge.Checkpoint"
CHECKPOINT_VERSION = 1
_MODEL, _STATE = "model.keras", "state.json"
_NAME = re.compile(r"^epoch-(\d{4,})$")


@dataclasses.dataclass
class Checkpoint:
    """One saved point of a run.

    Attributes:
        model: the wrapped model, compiled, with its optimizer state.
        stage: ``"admm"`` or ``"finetune"``: the stage whose epoch was the last to finish.
        epoch: epochs finished, counted over the whole run (fine-tune epochs follow the ADMM ones).
        stages: the stage rows measured before the checkpoint (see ``EasiEdgeResult.stages``).
        history: ``{stage: {metric: [value per epoch]}}`` up to the checkpoint.
        plan: the plan being fine-tuned (None during ADMM).
        arguments: what the caller recorded with the checkpoints (for the CLI: the command's arguments).
    """

    model: keras.Model
    stage: str
    epoch: int
    stages: list[dict[str, Any]]
    history: dict[str, dict[str, list]]
    plan: PruningPlan | None
    arguments: dict[str, Any]


class Checkpoints:
    """A resume directory: the newest checkpoint of a run and the arguments it was started with.

    Args:
        directory: where the checkpoints go (created at the first save).
        arguments: JSON-able data saved with every checkpoint (e.g. a command's arguments), read back as
            :attr:`Checkpoint.arguments`.

    Example:
        >>> import tempfile
        >>> ckpt = Checkpoints(Path(tempfile.mkdtemp()) / "run.resume", arguments={"budget": "filters:0.5"})
        >>> ckpt.latest() is None, ckpt.exists()
        (True, False)
    """

    def __init__(self, directory: str | os.PathLike, *, arguments: Mapping[str, Any] | None = None):
        self.directory = Path(directory)
        self.arguments = dict(arguments or {})

    def exists(self) -> bool:
        """Whether the directory holds a checkpoint."""
        return self._newest() is not None

    def _newest(self) -> Path | None:
        if not self.directory.is_dir():
            return None
        found = [(int(m.group(1)), p) for p in self.directory.iterdir()
                 if (m := _NAME.match(p.name)) and (p / _STATE).is_file() and (p / _MODEL).is_file()]
        return max(found)[1] if found else None

    def read_state(self) -> dict[str, Any] | None:
        """The newest checkpoint's ``state.json`` (no model loaded), None without a checkpoint.

        Raises:
            ValueError: the state file is not one this library wrote.
        """
        newest = self._newest()
        if newest is None:
            return None
        try:
            state = json.loads((newest / _STATE).read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"corrupt checkpoint {newest / _STATE}: {e}") from None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT \
                or state.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"{newest / _STATE} is not a checkpoint of this library (format "
                             f"{CHECKPOINT_FORMAT!r} version {CHECKPOINT_VERSION})")
        return state

    def latest(self) -> Checkpoint | None:
        """The newest checkpoint, its model loaded (safe mode), or None when there is none."""
        state = self.read_state()
        if state is None:
            return None
        newest = self._newest()
        assert newest is not None
        model = keras.saving.load_model(newest / _MODEL)
        plan = None if state.get("plan") is None else PruningPlan.from_dict(state["plan"])
        return Checkpoint(model, str(state["stage"]), int(state["epoch"]), list(state["stages"]),
                          dict(state["history"]), plan, dict(state.get("arguments") or {}))

    def save(self, model: keras.Model, *, stage: str, epoch: int, stages: list[dict[str, Any]],
             history: Mapping[str, Mapping[str, list]], plan: PruningPlan | None = None) -> Path:
        """Writes a checkpoint after ``epoch`` finished epochs, then removes the older ones.

        The new checkpoint is complete on disk before the previous one is removed, so a run killed at any
        moment leaves at least one whole checkpoint (or none, before the first).
        """
        if stage not in ("admm", "finetune"):
            raise ValueError(f"stage must be 'admm' or 'finetune', got {stage!r}")
        self.directory.mkdir(parents=True, exist_ok=True)
        for left in sweep_leftovers(self.directory / f"epoch-{epoch:04d}"):
            shutil.rmtree(left, ignore_errors=True)
        state = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "stage": stage, "epoch": int(epoch),
                 "stages": stages, "history": {k: dict(v) for k, v in history.items()},
                 "plan": None if plan is None else plan.to_dict(), "arguments": self.arguments}
        target = self.directory / f"epoch-{epoch:04d}"
        with atomic_output(target, overwrite=True) as tmp:
            tmp.mkdir()
            model.save(tmp / _MODEL)
            write_json_atomic(tmp / _STATE, _plain(state))
        for p in self.directory.iterdir():
            if p != target and _NAME.match(p.name):
                shutil.rmtree(p, ignore_errors=True)
        return target

    def remove(self) -> None:
        """Deletes the resume directory (a finished run no longer needs it)."""
        shutil.rmtree(self.directory, ignore_errors=True)

    def callback(self, stage: str, stages: list[dict[str, Any]], history: Mapping[str, Mapping[str, list]],
                 plan: PruningPlan | None = None) -> keras.callbacks.Callback:
        """A Keras callback saving a checkpoint at the end of every epoch of a fit of ``stage``.

        ``history`` holds the epochs finished before this fit; the callback appends this fit's logs to
        ``history[stage]`` in what it saves. Put it after the ADMM callbacks, so that an epoch's Z-step is in.
        """
        return _EpochCheckpoint(self, stage, stages, history, plan)


class _EpochCheckpoint(keras.callbacks.Callback):
    def __init__(self, checkpoints: Checkpoints, stage: str, stages, history, plan):
        super().__init__()
        self.checkpoints, self.stage, self.stages, self.plan = checkpoints, stage, list(stages), plan
        self.history = {k: {m: list(v) for m, v in h.items()} for k, h in history.items()}

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if getattr(self.model, "stop_training", False):  # a NaN loss: nothing worth resuming from
            return
        mine = self.history.setdefault(self.stage, {})
        for k, v in (logs or {}).items():
            mine.setdefault(k, []).append(float(v))
        self.checkpoints.save(self.model, stage=self.stage, epoch=epoch + 1, stages=self.stages,
                              history=self.history, plan=self.plan)


def merge_history(before: Mapping[str, list] | None, after: Mapping[str, list]) -> dict[str, list]:
    """One stage's history from the epochs before a resume and those after it."""
    merged = {k: list(v) for k, v in (before or {}).items()}
    for k, v in after.items():
        merged[k] = merged.get(k, []) + [float(x) for x in v]
    return merged


def _plain(value: Any) -> Any:
    """``value`` with NumPy scalars and tuples made JSON data."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value
