"""``easiedge analyze MODEL``: channel groups, prunable share, MACs and skipped layers of a model."""
from __future__ import annotations

import argparse

from tfmot_easiedge.cli._common import model_options
from tfmot_easiedge.cli.loading import analyze_model, model_from_args


def cmd_analyze(args: argparse.Namespace) -> int:
    """Prints the analysis summary and the MACs and parameters of the model."""
    import tfmot_easiedge as te

    model = model_from_args(args)
    analysis = analyze_model(model)
    print(analysis.summary())
    print(f"MACs per example: {te.count_macs(model, graph=analysis.graph):,}   params: {te.count_params(model):,}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Adds ``analyze`` to the subcommands ``sub``."""
    a = sub.add_parser("analyze", help="channel groups, prunable share, MACs and skipped layers of a model")
    a.add_argument("model", help="a .keras/.h5 file or keras:NAME (keras.applications)")
    model_options(a)
    a.set_defaults(func=cmd_analyze)
