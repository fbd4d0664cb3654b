"""EasiEdge against one-shot pruning criteria on CIFAR-10: VGG-16 and ResNet-56, filter and MAC budgets.

For each baseline (trained with augmentation on the local CIFAR-10, or loaded from the cache) and each
budget (50% / 80% of filters, 2x / 4x fewer MACs) every method prunes the same trained weights and gets the
same number of training epochs after the baseline, with the same optimizer and learning-rate schedule:

- ``easiedge``: ``EasiEdge(budget, importance="tbaa")``: ADMM for ``admm_epochs``, hard prune, masked
  fine-tune for the rest;
- ``tbaa``, ``l1`` (Li et al., 2017), ``taylor_fo`` (Molchanov et al., 2017), ``random``: score the trained
  baseline once, ``select`` globally, ``prune_filters`` + ``hard_prune`` + masked fine-tune
  (``MaskedFineTune``), ``strip_pruning``;
- ``uniform_l1``: the same with ``select(..., mode="uniform")`` (every group loses the same fraction, ranked by
  L1 inside it). A MAC budget is met globally by ``select``; for this method the uniform ratio that meets the
  MAC target is found by bisection (the smallest ratio whose predicted MACs are at most the target).

Each run writes ``<results-dir>/<profile>/<model>_<method>_<budget>.json`` (top-1 before and after the
fine-tune, params, MACs of the slim model, TFLite float32 latency at 1 thread and batch 1, kept filters per
layer, the plan, the budget met, wall times); ``RESULTS.md`` (beside the results folder) and a plot per
profile are regenerated at the end. Runs whose JSON exists are skipped (``--force`` re-runs them), so a long
profile can run in pieces (``--models``, ``--methods``, ``--budgets``).

Run from the repository root::

    .venv/bin/python -m benchmarks.compare --profile tiny      # smoke scale; the 48 runs take ~40 min (fixed costs)
    .venv/bin/python -m benchmarks.compare --profile cpu       # about 90 minutes on 2 quiet cores
    .venv/bin/python -m benchmarks.compare --profile cpu --estimate   # time the pieces, print the projection
    .venv/bin/python -m benchmarks.compare --profile full      # paper scale, for a GPU machine

This module is the command line; the comparison is split by role (and the names callers use are
re-exported here): ``compare_spec`` (methods, models, budgets, profiles, file names), ``compare_data``
(data, baselines, accuracy and latency), ``compare_prune`` (the methods and one run's record),
``compare_run`` (the resumable runner), ``compare_estimate`` (``--estimate``) and ``compare_report``
(``RESULTS.md`` and the plots).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` and ``tfmot_easiedge`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# The comparison lives in small modules by role; the names tests and other scripts use are re-exported here.
from benchmarks import common, compare_report  # noqa: E402
from benchmarks.compare_data import (  # noqa: E402,F401
    Data,
    accuracy,
    baseline_record,
    load_model,
    load_or_train_baseline,
    tflite_latency,
)
from benchmarks.compare_estimate import estimate  # noqa: E402
from benchmarks.compare_prune import (  # noqa: E402,F401
    budget_met,
    cached_scores,
    compile_for_finetune,
    kept_filters,
    prune_easiedge,
    prune_one_shot,
    run_pruning,
    score,
    uniform_plan_for_macs,
)
from benchmarks.compare_run import command_line, is_current, run  # noqa: E402,F401
from benchmarks.compare_spec import (  # noqa: E402,F401
    BUDGETS,
    LOSS,
    METHODS,
    MODELS,
    PROFILES,
    TUNABLE,
    Method,
    Profile,
    budget_tag,
    cache_name,
    run_stem,
    tuning_tag,
)

_command, _is_current = command_line, is_current  # their names before the split (the tests use ``_command``)


# --------------------------------------------------------------------------- command line
def _names(text: str, known: Sequence[str], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown {what} {unknown or text!r}; choose from {', '.join(known)}")
    return names


def _budgets(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    try:
        [budget_tag(n) for n in names]
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return names


def _setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE, got {text!r}")
    return key.strip(), value.strip()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line's arguments, checked (``--set`` against the profile), with the report path filled in."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    p.add_argument("--models", type=lambda s: _names(s, MODELS, "model"), default=list(MODELS),
                   help=f"comma-separated, from {', '.join(MODELS)}")
    p.add_argument("--methods", type=lambda s: _names(s, list(METHODS), "method"), default=list(METHODS),
                   help=f"comma-separated, from {', '.join(METHODS)}")
    p.add_argument("--budgets", type=_budgets, default=list(BUDGETS),
                   help=f"comma-separated 'filters:R' / 'macs:R' (default {','.join(BUDGETS)})")
    p.add_argument("--force", action="store_true", help="re-run runs whose result file exists")
    p.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR,
                   help="results go to <results-dir>/<profile>/ (default benchmarks/results)")
    p.add_argument("--cache-dir", type=Path, default=common.CACHE_DIR,
                   help="trained baselines (default benchmarks/cache)")
    p.add_argument("--report", type=Path, default=None,
                   help="the generated Markdown (default RESULTS.md beside the results folder)")
    p.add_argument("--save-models", action="store_true", help="also save each slim model as <run>.keras")
    p.add_argument("--estimate", action="store_true", help="time the profile's pieces and print its projected "
                   "duration; trains and prunes nothing")
    p.add_argument("--report-only", action="store_true", help="only regenerate the report from the result files")
    p.add_argument("--set", type=_setting, action="append", metavar="FIELD=VALUE",
                   help="tune a pruning setting (repeatable): " + ", ".join(TUNABLE) + "; results go to "
                   "<results-dir>/<profile>-tuning/<settings>/")
    args = p.parse_args(argv)
    if args.set:
        args.set = dict(args.set)
        try:
            PROFILES[args.profile].with_overrides(args.set)
        except ValueError as err:
            p.error(str(err))
    if args.report is None:
        args.report = args.results_dir.parent / "RESULTS.md"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status (1 when a run failed)."""
    args = parse_args(argv)
    log = lambda line: print(line, flush=True)  # noqa: E731
    if args.estimate:
        estimate(PROFILES[args.profile], args.models, log=log)
        return 0
    if args.report_only:
        log(f"wrote {', '.join(str(p) for p in compare_report.write(args.results_dir, args.report))}")
        return 0
    failures = run(args, log=log)
    if failures:
        log(f"{len(failures)} run(s) failed: {', '.join(failures)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
