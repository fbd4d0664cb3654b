"""Progress output that suits where stdout goes: live bars on a terminal, one line per pass in a log file.

Keras draws its bars with carriage returns whenever it runs on POSIX, terminal or not, so a redirected log
filled with ``\\r`` updates (issue 13: 103 KB of bars in one prune log). Every loop of this package that shows
progress asks here instead: :func:`keras_verbose` for ``fit``/``predict`` and :func:`progress_bar` for the
scoring and timing passes. This module imports Keras only when a bar is made.
"""
from __future__ import annotations

import sys
from typing import Any

__all__ = ["interactive", "keras_verbose", "progress_bar"]


def interactive() -> bool:
    """Whether stdout is a terminal (a live bar can redraw itself there).

    Example:
        >>> isinstance(interactive(), bool)
        True
    """
    isatty = getattr(sys.stdout, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def keras_verbose(verbose: int) -> int:
    """Keras's ``verbose`` for a fit or predict run at our ``verbose`` level: 0 silent; otherwise 1 (a live
    bar) on a terminal and 2 (one line per epoch) when stdout is a file or a pipe.

    Example:
        >>> keras_verbose(0)
        0
        >>> keras_verbose(1) in (1, 2)
        True
    """
    if not verbose:
        return 0
    return 1 if interactive() else 2


def progress_bar(target: int | None, enabled: bool, label: str = "", *, unit_name: str = "batch") -> Any:
    """A ``keras.utils.Progbar`` over ``target`` steps (None when unknown), or None when not ``enabled`` or
    Keras is not installed (the on-device profiler runs without it).

    On a terminal the bar redraws itself; elsewhere it prints one line when it is finished (call
    ``bar.update(n, finalize=True)`` at the end when ``target`` is unknown). ``label`` is printed first.

    Example:
        >>> progress_bar(10, False) is None
        True
    """
    if not enabled:
        return None
    try:
        import keras
    except ImportError:
        return None
    if label:
        print(label, flush=True)
    return keras.utils.Progbar(target, unit_name=unit_name, verbose=keras_verbose(1))
