"""Saving a pruning run: the slim model, its plan and its report in one directory, written atomically.

:meth:`EasiEdgeResult.save <tfmot_easiedge.admm.EasiEdgeResult.save>` calls :func:`save_result`. Everything
is written into a temporary directory next to the target and renamed onto it at the end, so a failure (a
non-finite weight, a full disk, Ctrl-C) leaves neither a half-written directory nor a temporary one.

The report package is imported inside :func:`save_result` (the report sits above the pruning core; saving is
where a run meets it), so importing ``admm`` does not import the report writers.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Protocol

from tfmot_easiedge._files import atomic_output, sweep_leftovers
from tfmot_easiedge.data.checks import check_finite_weights

if TYPE_CHECKING:
    import keras

    from tfmot_easiedge.graph.analysis import ModelAnalysis
    from tfmot_easiedge.selection.budgets import BudgetSpec

#: The slim model and the plan; the report's files (``tfmot_easiedge.report.FILES``) come with them.
MODEL_FILE = "model.keras"
PLAN_FILE = "plan.json"


class _Result(Protocol):
    """What :func:`save_result` reads of a result (an :class:`EasiEdgeResult` or anything shaped like one)."""

    model: Any
    plan: Any
    stages: list
    history: dict
    timings: dict


@dataclasses.dataclass(frozen=True)
class SavedResult:
    """What :func:`save_result` wrote.

    Attributes:
        directory: the directory holding the files.
        files: the names of the files written, sorted.
        report: the report written to ``report.json`` (see :data:`tfmot_easiedge.report.REPORT_SCHEMA`).
    """

    directory: Path
    files: tuple[str, ...]
    report: dict


def save_result(result: _Result, directory: str | os.PathLike, *, baseline: keras.Model, overwrite: bool = False,
                analysis: ModelAnalysis | None = None, budget: BudgetSpec | None = None, importance: str | None = None,
                latency: Mapping[str, Any] | None = None, timings: Mapping[str, float] | None = None,
                history: Mapping[str, Mapping] | None = None, data: Mapping | None = None,
                config: Mapping | None = None, extra_files: Mapping[str, str | os.PathLike] | None = None,
                plot: bool = True) -> SavedResult:
    """Writes ``model.keras``, ``plan.json`` and the report of ``result`` to ``directory``, atomically.

    Args:
        result: the run's result (its ``model``, ``plan``, ``stages``, ``history`` and ``timings`` are used).
        directory: the directory to create. An existing empty directory is replaced; one holding an earlier
            result is replaced only with ``overwrite``; one holding other files is never replaced.
        baseline: the model before pruning (the report compares the two).
        overwrite: replace a directory that holds an earlier saved result.
        analysis: :func:`tfmot_easiedge.analyze` of ``baseline`` (computed when not given).
        budget: the budget met (default: the one recorded in the plan).
        importance: the criterion's name (default: the one recorded in the plan's metadata).
        latency: ``{stage: LatencyResult or [LatencyResult, ...]}`` for the report.
        timings: ``{step: seconds}`` for the report (default: the run's timings).
        history: ``{stage: History.history}`` (default: the run's history).
        data, config: free-form descriptions of the data and the run's settings, for the report.
        extra_files: ``{name: path}`` of further files (or directories) copied into ``directory``.
        plot: also write ``report.png`` (skipped with a warning when matplotlib is missing).

    Returns:
        A :class:`SavedResult`.

    Raises:
        ValueError: a weight of the slim model is NaN or inf, or an ``extra_files`` entry is bad; nothing
            was written.
        FileExistsError: ``directory`` is a file, holds other files, or holds a result and ``overwrite`` is
            False (or another process created it meanwhile); it is left as it was.

    Example:
        >>> saved = result.save("run/", baseline=model)  # doctest: +SKIP
        >>> saved.files  # doctest: +SKIP
        ('model.keras', 'plan.json', 'report.json', 'report.md', 'report.png')
    """
    from tfmot_easiedge import report as reporting

    check_finite_weights(result.model, "pruned model")  # never write a model with NaN/inf weights
    extras = _extra_files(extra_files, (MODEL_FILE, PLAN_FILE, *reporting.FILES))
    rep = reporting.build_report(
        baseline, result.model, result.plan, _analysis(baseline, analysis), budget=_budget(result, budget),
        importance=_importance(result, importance), stages=result.stages, latency=latency,
        timings=_timings(result) if timings is None else timings,
        history=result.history if history is None else history, data=data, config=config)
    reporting.validate_report(rep)  # a bad report is refused before anything is written
    final = Path(directory)
    for left in sweep_leftovers(final):
        warnings.warn(f"removed {left}, left by an earlier save that was killed", stacklevel=3)
    exists = _check_directory(final, overwrite, {MODEL_FILE, PLAN_FILE, *reporting.FILES, *extras})
    with atomic_output(final, overwrite=exists) as tmp:
        tmp.mkdir()
        result.model.save(tmp / MODEL_FILE)
        (tmp / PLAN_FILE).write_text(result.plan.to_json(indent=2) + "\n", encoding="utf-8")
        for name, source in extras.items():
            _copy(source, tmp / name)
        reporting.write_report(rep, tmp, plot=plot)
        files = tuple(sorted(p.name for p in tmp.iterdir()))
    return SavedResult(final, files, rep)


def _analysis(baseline, analysis):
    if analysis is not None:
        return analysis
    from tfmot_easiedge.graph import analyze

    return analyze(baseline)


def _budget(result: _Result, budget):
    budget = budget if budget is not None else getattr(result.plan, "budget", None)
    if budget is None:
        raise ValueError("the plan records no budget; pass budget= (e.g. 'filters:0.5') to save the report")
    return budget


def _importance(result: _Result, importance: str | None) -> str:
    if importance is not None:
        return importance
    return str((getattr(result.plan, "metadata", None) or {}).get("importance", "unknown"))


def _timings(result: _Result) -> dict[str, float]:
    """The run's timings in seconds (the Z-step count is a count, not a time)."""
    return {k: float(v) for k, v in result.timings.items() if k != "zsteps"}


def _extra_files(extra_files: Mapping[str, str | os.PathLike] | None, taken: tuple[str, ...]) -> dict[str, Path]:
    """``extra_files`` checked: plain names, none taken by the result's own files, every source present."""
    extras: dict[str, Path] = {}
    for name, source in (extra_files or {}).items():
        if not name or Path(name).name != name or name in (".", ".."):
            raise ValueError(f"extra_files: {name!r} is not a plain file name")
        if name in taken:
            raise ValueError(f"extra_files: {name!r} is one of the result's own files ({', '.join(taken)})")
        path = Path(source)
        if not path.exists():
            raise ValueError(f"extra_files: {name!r}: {path} does not exist")
        extras[name] = path
    return extras


def _check_directory(final: Path, overwrite: bool, ours: set[str]) -> bool:
    """Refuses a target that is a file, holds other files, or holds a result without ``overwrite``; returns
    True when it exists (and may be replaced)."""
    if not (final.exists() or final.is_symlink()):
        return False
    if not final.is_dir():
        raise FileExistsError(f"{final} is a file; expected a directory to save the result in")
    entries = sorted(p.name for p in final.iterdir())
    if not entries:
        return True
    listed = ", ".join(entries[:4]) + (" ..." if len(entries) > 4 else "")
    if any(e not in ours for e in entries):
        raise FileExistsError(f"{final} is not empty ({listed}) and holds files a saved result does not; "
                              "choose a new directory")
    if not overwrite:
        raise FileExistsError(f"{final} already holds a saved result ({listed}); pass overwrite=True to replace it")
    return True


def _copy(source: Path, target: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)
