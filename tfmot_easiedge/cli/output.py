"""``--out`` directories: refused when they hold foreign files, reserved while a command runs, replaced at the end.

A command writes into a fresh temporary directory next to ``--out`` that is renamed onto it when the command
succeeds, so a failed or stopped run leaves nothing behind; what a killed run left is swept by the next one.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterable, Iterator

from tfmot_easiedge._files import atomic_output, sweep_leftovers
from tfmot_easiedge.cli._common import UserError, warn


def check_out(out: Path, overwrite: bool, ours: Iterable[str]) -> bool:
    """Refuses an ``--out`` that holds results (unless ``overwrite``) or other files; True when it exists."""
    if not out.exists():
        return False
    if not out.is_dir():
        raise UserError(f"--out {out} is a file; expected a directory")
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return True
    listed = ", ".join(entries[:4]) + (" ..." if len(entries) > 4 else "")
    foreign = [e for e in entries if e not in set(ours)]
    if foreign:
        raise UserError(f"--out {out} is not empty ({listed}) and holds files easiedge did not write; "
                        "choose a new directory")
    if not overwrite:
        raise UserError(f"--out {out} already has results ({listed}); pass --overwrite to replace them")
    return True


@contextlib.contextmanager
def output_dir(out: str, overwrite: bool, ours: Iterable[str]) -> Iterator[Path]:
    """Yields a fresh temporary directory next to ``out`` that replaces ``out`` when the block succeeds."""
    final = Path(out)
    for left in sweep_leftovers(final):
        # a run killed while saving into its reserved directory also left the save's own temporary beside it
        for inner in [left, *sweep_leftovers(left)]:
            warn(f"removed {inner}, left by an earlier run that was killed")
    exists = check_out(final, overwrite, ours)
    try:
        with atomic_output(final, overwrite=exists) as tmp:
            tmp.mkdir()
            yield tmp
    except FileExistsError:
        raise UserError(f"--out {out} was created by another process while this run was writing; nothing was "
                        "replaced: choose a new directory, or pass --overwrite to replace it") from None
