"""The ``easiedge`` command: ``analyze`` a model, or run the offline ``demo``.

Errors in user input (missing file, not a model, bad budget) end with a one-line message and exit code 2.
"""
from __future__ import annotations

import argparse
import sys
import time


class UserError(Exception):
    """Bad input from the user: printed as one line, no traceback."""


def _load_model(spec: str, *, unsafe: bool = False):
    import os

    import keras

    if spec.startswith("keras:"):
        name = spec.split(":", 1)[1]
        builder = getattr(keras.applications, name, None)
        if builder is None or not callable(builder):
            raise UserError(f"keras.applications has no model {name!r}")
        return builder(weights=None)
    if not os.path.exists(spec):
        raise UserError(f"model file not found: {spec}")
    try:
        return keras.saving.load_model(spec, safe_mode=not unsafe)
    except ValueError as e:
        if "safe_mode" in str(e) or "Lambda" in str(e):
            raise UserError(f"{spec} contains code (a Lambda layer); pass --unsafe if you trust it") from None
        raise UserError(f"{spec} is not a loadable Keras model: {str(e).splitlines()[0]}") from None
    except Exception as e:  # noqa: BLE001 - any loader failure is a user-facing one-liner
        raise UserError(f"{spec} is not a loadable Keras model: {str(e).splitlines()[0]}") from None


def cmd_analyze(args) -> int:
    import tfmot_easiedge as te

    model = _load_model(args.model, unsafe=args.unsafe)
    try:
        analysis = te.analyze(model)
    except te.GraphError as e:
        raise UserError(str(e)) from None
    print(analysis.summary())
    print(f"MACs per example: {te.count_macs(model, graph=analysis.graph):,}   params: {te.count_params(model):,}")
    return 0


def cmd_demo(args) -> int:
    """Analyse and slim the built-in ResNet-20 (no download): the foundation of the pipeline, end to end."""
    import numpy as np

    import tfmot_easiedge as te
    from tfmot_easiedge import importance
    from tfmot_easiedge.models import zoo

    budget = te.parse_budget(args.budget)
    model = zoo.resnet20(seed=0)
    t0 = time.perf_counter()
    analysis = te.analyze(model)
    print(analysis.summary())
    scores = importance.l1_norm(model, analysis=analysis)
    plan = te.select(analysis, scores, budget)
    small = te.slim(model, plan, analysis=analysis)
    seconds = time.perf_counter() - t0
    x = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    ref = np.asarray(te.masked_copy(model, plan, analysis=analysis)(x))
    err = float(np.abs(np.asarray(small(x)) - ref).max())
    print(f"\nPlan ({budget.describe()}, L1-norm ranking, untrained weights): kept filters per group")
    print(f"{'group':28s} {'before':>7s} {'after':>6s}")
    for gid, kept in plan.kept.items():
        print(f"{gid:28s} {plan.group_sizes[gid]:7d} {len(kept):6d}")
    macs0, macs1 = te.count_macs(model), te.count_macs(small)
    p0, p1 = te.count_params(model), te.count_params(small)
    print(f"\nparams {p0:,} -> {p1:,} ({p1 / p0:.1%})   MACs {macs0:,} -> {macs1:,} ({macs1 / macs0:.1%})")
    print(f"slim vs masked max |diff| = {err:.2e}   analysis+selection+slim: {seconds:.1f}s")
    return 0 if err <= 1e-4 * max(1.0, float(np.abs(ref).max())) else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="easiedge", description="Global filter pruning for Keras 3 CNNs.")
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("analyze", help="channel groups, prunable share, MACs and skipped layers of a model")
    a.add_argument("model", help="a .keras/.h5 file or keras:NAME (keras.applications)")
    a.add_argument("--unsafe", action="store_true", help="allow models with Lambda layers (runs their code)")
    a.set_defaults(func=cmd_analyze)
    d = sub.add_parser("demo", help="analyse and slim the built-in ResNet-20, offline")
    d.add_argument("--budget", default="filters:0.5", help="filters:RATIO or macs:RATIO")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UserError, ValueError) as e:
        print(f"easiedge: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
