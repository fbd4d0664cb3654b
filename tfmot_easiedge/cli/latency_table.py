"""``--budget latency:... --latency-table FILE``: the latency budget of ``easiedge prune``, checked up front.

A latency table from another model, another format version or a file that is not a table, and a latency
budget without a table (or a table without a latency budget), are refused in one line before any data is
loaded (exit 2).
"""
from __future__ import annotations

import argparse
from typing import Any

from tfmot_easiedge.cli._common import UserError


def add_option(p: argparse.ArgumentParser) -> None:
    """Adds ``--latency-table FILE`` to a command's parser."""
    p.add_argument("--latency-table", metavar="FILE",
                   help="the model's latency table (easiedge profile; python -m tfmot_easiedge.device_profile) for "
                        "--budget latency:0.5 (share of predicted latency removed), latency:2x or latency:12ms")


def is_latency(text: str | None) -> bool:
    """Whether a ``--budget`` text is a latency budget."""
    return bool(text) and str(text).strip().lower().startswith("latency:")


def budget_from_args(args: argparse.Namespace) -> Any:
    """The budget of ``--budget`` (and ``--latency-table``); None without ``--budget``."""
    import tfmot_easiedge as te

    table = getattr(args, "latency_table", None)
    if not args.budget:
        if table:
            raise UserError("--latency-table needs --budget latency:RATIO (or latency:Nx, latency:MSms)")
        return None
    if not is_latency(args.budget):
        if table:
            raise UserError(f"--latency-table is for a latency budget (--budget latency:0.5), not "
                            f"--budget {args.budget}")
        return te.parse_budget(args.budget)
    if not table:
        raise UserError(f"--budget {args.budget} needs the model's latency table: --latency-table FILE "
                        "(write one with easiedge profile MODEL --measure, or on the device)")
    from tfmot_easiedge.latency.budget import LatencyBudget

    return LatencyBudget.parse(args.budget, table=table)


def check_budget(budget: Any, analysis: Any) -> None:
    """A latency budget's table must be the model's (checked before data is loaded)."""
    from tfmot_easiedge.latency.budget import LatencyBudget, check_table_for

    if isinstance(budget, LatencyBudget):
        check_table_for(budget.table, analysis)
