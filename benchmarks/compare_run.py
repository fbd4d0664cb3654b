"""The runner of ``benchmarks.compare``: the selected runs of a profile, resumable, then the report.

For each model the baseline is measured (or its current record reused), then every selected method prunes
it at every selected budget (``compare_prune.run_pruning``); a run whose JSON is current is skipped, a
failed run is logged and the others go on. The report (``compare_report``) is regenerated at the end.
"""
from __future__ import annotations

import argparse
import json
import traceback
from collections.abc import Callable
from pathlib import Path

from benchmarks import common, compare_report
from benchmarks.compare_data import Data, baseline_record
from benchmarks.compare_prune import run_pruning
from benchmarks.compare_spec import PROFILES, Profile, run_stem, tuning_tag


def is_current(path: Path, profile: Profile) -> bool:
    """A result file exists and was made with this profile's settings."""
    if not path.exists():
        return False
    try:
        return profile.matches(json.loads(path.read_text(encoding="utf-8")).get("profile_config"))
    except (OSError, json.JSONDecodeError):
        return False


def run(args: argparse.Namespace, log: Callable[[str], None] = print) -> list[str]:
    """Runs what ``args`` selects and regenerates the report; returns the failed runs' names.

    With ``--set`` overrides the runs prune the profile's baselines with the changed settings and go to
    ``<results-dir>/<profile>-tuning/<setting>/`` (the report lists them as the tuning table).
    """
    profile = PROFILES[args.profile]
    out_dir = args.results_dir / profile.name
    overrides = dict(args.set or {})
    run_profile = profile.with_overrides(overrides)
    run_dir = args.results_dir / f"{profile.name}-tuning" / tuning_tag(overrides) if overrides else out_dir
    data = Data.load(run_profile)
    failures, score_cache = [], {}
    for model_name in args.models:
        base_path = out_dir / f"baseline_{model_name}.json"
        baseline = json.loads(base_path.read_text(encoding="utf-8")) if is_current(base_path, profile) else None
        if baseline is None or args.force or not (args.cache_dir / f"{baseline['cache_name']}.keras").exists():
            baseline = baseline_record(profile, model_name, args.cache_dir, data, log=log)
            common.write_json_atomic(base_path, baseline)
        baseline_path = args.cache_dir / f"{baseline['cache_name']}.keras"
        log(f"{model_name}: baseline accuracy {baseline['accuracy']:.4f}, {baseline['macs']:,} MACs")
        for method_name in args.methods:
            for budget_text in args.budgets:
                stem = run_stem(model_name, method_name, budget_text)
                path = run_dir / f"{stem}.json"
                if is_current(path, run_profile) and not args.force:
                    log(f"{stem}: done, skipped (--force re-runs it)")
                    continue
                log(f"{stem}: pruning")
                try:
                    record, small = run_pruning(run_profile, model_name, method_name, budget_text, baseline,
                                                baseline_path, data, log, score_cache)
                except Exception:  # noqa: BLE001 - one failed run must not lose the others of a long profile
                    log(f"{stem}: FAILED\n{traceback.format_exc()}")
                    failures.append(stem)
                    continue
                record["command"] = command_line(args)
                record["overrides"] = overrides
                if args.save_models:
                    common.save_model_atomic(small, run_dir / f"{stem}.keras")
                common.write_json_atomic(path, record)
                log(f"{stem}: accuracy {record['accuracy_before_finetune']:.4f} -> "
                    f"{record['accuracy_after_finetune']:.4f}, MACs /{record['mac_reduction']:.2f}, "
                    f"{record['latency']['median_ms']:.2f} ms, {record['seconds']['total']:.0f}s")
    written = compare_report.write(args.results_dir, args.report)
    log(f"wrote {', '.join(str(p) for p in written)}")
    return failures


def command_line(args: argparse.Namespace) -> str:
    """The command line that reproduces a run of ``args`` (recorded in its JSON): profile and ``--set``s."""
    sets = "".join(f" --set {k}={v}" for k, v in sorted((args.set or {}).items()))
    return f".venv/bin/python -m benchmarks.compare --profile {args.profile}{sets}"
