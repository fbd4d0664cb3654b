"""``prune --resume``: the resume directory ``OUT.resume/`` next to ``--out``, and the arguments it must match.

While ``prune`` trains it keeps a checkpoint of every finished epoch in ``OUT.resume/``
(:class:`~tfmot_easiedge.admm.checkpoint.Checkpoints`); a stopped or crashed run leaves it there and says so,
``--resume`` continues from it, and a completed run removes it. The arguments that decide the result are
saved with it, and a ``--resume`` whose arguments differ is refused in one line before any work.
"""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfmot_easiedge.cli._common import UserError, warn

if TYPE_CHECKING:
    from tfmot_easiedge.admm.checkpoint import Checkpoints

#: The ``prune`` arguments a resumed run must repeat (they decide the plan and the weights).
RESUME_KEYS = ("model", "data", "val_data", "budget", "plan", "admm_epochs", "finetune_epochs", "importance",
               "calibration_size", "batch_size", "rescale", "optimizer", "lr", "seed", "limit", "protect",
               "min_fraction", "round_to", "input_shape", "classes", "weights")


def resume_dir(out: str | Path) -> Path:
    """Where ``prune --out OUT`` keeps its checkpoints: ``OUT.resume`` beside ``OUT``.

    Example:
        >>> resume_dir("runs/vgg/").as_posix()
        'runs/vgg.resume'
    """
    out = Path(out)
    return out.with_name(out.name + ".resume")


def _sha256(path: str | None) -> str | None:
    if not path or not Path(path).is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The arguments saved with the checkpoints: :data:`RESUME_KEYS` and the model and plan files' sha256."""
    found = {k: getattr(args, k, None) for k in RESUME_KEYS}
    found["model_sha256"] = _sha256(args.model)
    found["plan_sha256"] = _sha256(getattr(args, "plan", None))
    return found


def open_checkpoints(args: argparse.Namespace) -> Checkpoints:
    """The run's :class:`~tfmot_easiedge.admm.checkpoint.Checkpoints`, checked against ``--resume``.

    Raises:
        UserError: ``--resume`` without a checkpoint or with other arguments than the checkpoint's; a
            checkpoint left by an interrupted run without ``--resume`` (unless ``--overwrite``, which removes it).
    """
    from tfmot_easiedge.admm.checkpoint import Checkpoints

    where = resume_dir(args.out)
    checkpoints = Checkpoints(where, arguments=run_arguments(args))
    try:
        state = checkpoints.read_state()
    except ValueError as e:
        raise UserError(f"{e}; remove {where} to start over") from None
    if state is None:
        if args.resume:
            raise UserError(f"--resume: no checkpoint in {where} (no interrupted run of --out {args.out} to "
                            "continue); run without --resume")
        if where.exists():
            checkpoints.remove()  # a run stopped before its first epoch finished: nothing to keep
        return checkpoints
    if not args.resume:
        if not args.overwrite:
            raise UserError(f"an interrupted run left its checkpoints in {where} (epoch {state.get('epoch')}); "
                            "add --resume to continue it, or --overwrite to discard them and start over")
        warn(f"removed {where}, the checkpoints of an interrupted run (--overwrite)")
        checkpoints.remove()
        return checkpoints
    _check_same(state.get("arguments") or {}, checkpoints.arguments, where)
    return checkpoints


def _check_same(saved: dict[str, Any], now: dict[str, Any], where: Path) -> None:
    for key in (*RESUME_KEYS, "model_sha256", "plan_sha256"):
        before, after = saved.get(key), now.get(key)
        if before == after:
            continue
        if key.endswith("_sha256"):
            what = "the model file" if key == "model_sha256" else "the --plan file"
            raise UserError(f"--resume: {what} changed since the interrupted run in {where}; resume with the "
                            "same file, or start over with --overwrite")
        flag = "MODEL" if key == "model" else "--" + key.replace("_", "-")
        raise UserError(f"--resume: {flag} is {after!r} but the interrupted run in {where} was started with "
                        f"{before!r}; repeat its arguments, or start over with --overwrite instead of --resume")


def resume_note(args: argparse.Namespace | None) -> str:
    """What an interrupted ``prune`` prints about its checkpoints ('' when it kept none)."""
    if args is None or getattr(args, "command", None) != "prune" or not getattr(args, "out", None):
        return ""
    where = resume_dir(args.out)
    if not any(p.name.startswith("epoch-") for p in (where.iterdir() if where.is_dir() else ())):
        return ""
    return f"; checkpoints of the finished epochs are in {where}: rerun the same command with --resume to continue"
