"""``write_report``: ``report.json``, ``report.md`` and ``report.png`` in a directory, each written atomically."""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Mapping

from tfmot_easiedge._files import atomic_output, write_json_atomic, write_text_atomic
from tfmot_easiedge._optional import MissingDependencyError
from tfmot_easiedge.report.markdown import render_markdown
from tfmot_easiedge.report.plot import plot_report
from tfmot_easiedge.report.schema import validate_report

FILES = ("report.json", "report.md", "report.png")


def write_report(report: Mapping, out_dir: str | os.PathLike, *, plot: bool = True) -> dict[str, Path]:
    """Validates ``report`` and writes ``report.json``, ``report.md`` and (with ``plot``) ``report.png`` to ``out_dir``.

    Each file goes to a temporary name next to its target and is moved into place when complete
    (:mod:`tfmot_easiedge._files`), so a reader never sees half a file; existing report files are replaced.
    Without matplotlib the plot is skipped with a warning.

    Returns:
        ``{file name: path}`` of the files written.

    Raises:
        ValueError: the report does not match :data:`REPORT_SCHEMA` (nothing is written).

    Example:
        >>> paths = write_report(report, "out/")  # doctest: +SKIP
        >>> sorted(paths)  # doctest: +SKIP
        ['report.json', 'report.md', 'report.png']
    """
    validate_report(report)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    written["report.json"] = write_json_atomic(out / "report.json", report, overwrite=True)
    written["report.md"] = write_text_atomic(out / "report.md", render_markdown(report), overwrite=True)
    if plot:
        try:
            fig = plot_report(report)
        except MissingDependencyError as e:
            warnings.warn(f"report.png not written: {e}", stacklevel=2)
        else:
            with atomic_output(out / "report.png", overwrite=True) as tmp:
                fig.savefig(tmp, format="png", dpi=110)
            written["report.png"] = out / "report.png"
    return written


def read_report(path: str | os.PathLike) -> dict:
    """Reads and validates a ``report.json``; a corrupt or invalid file raises ``ValueError``."""
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: corrupt report JSON ({e})") from None
    validate_report(report)
    return report
