"""``prune --plan FILE``: an edited ``plan.json`` read and checked against the model before any work."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tfmot_easiedge.cli._common import UserError, warn

if TYPE_CHECKING:
    from tfmot_easiedge.graph.analysis import ModelAnalysis
    from tfmot_easiedge.plan import PruningPlan


def read_plan(path: str, analysis: ModelAnalysis) -> PruningPlan:
    """The plan in ``path`` (a ``PruningPlan`` JSON, such as a ``prune`` run's ``plan.json``), validated
    against ``analysis``: every prunable group listed once, sizes and indices those of this model.

    Raises:
        UserError: a missing or unreadable file, corrupt JSON, a plan for another model, a missing or an
            unknown group, an index out of range (one line naming the file and the group).
    """
    from tfmot_easiedge.plan import PruningPlan

    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"--plan {path}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
    try:
        plan = PruningPlan.from_json(text)
        plan.validate(analysis)
    except ValueError as e:
        raise UserError(f"--plan {path}: {e}") from None
    missing = sorted(set(analysis.prunable_groups) - set(plan.kept))
    if missing:
        raise UserError(f"--plan {path}: no entry for group(s) {', '.join(map(repr, missing[:5]))} of model "
                        f"{analysis.graph.model_name!r} (a plan made for another model? list a group with all its "
                        "channels to keep it whole)")
    if plan.model_name and plan.model_name != analysis.graph.model_name:
        warn(f"--plan {path} was made for model {plan.model_name!r}; applying it to {analysis.graph.model_name!r}, "
             "whose groups it fits")
    return plan
