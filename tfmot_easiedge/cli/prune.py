"""``easiedge prune MODEL --data ... --budget ...``: EasiEdge to a budget, then the slim model, plan and report.

The run is :meth:`EasiEdge.run <tfmot_easiedge.EasiEdge.run>`; what is written is
:meth:`EasiEdgeResult.save <tfmot_easiedge.admm.EasiEdgeResult.save>`, into the ``--out`` directory this
command reserves while it trains.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from tfmot_easiedge.cli import latency_table
from tfmot_easiedge.cli._common import UserError, data_options, model_options, names, output_options, runtimes, say
from tfmot_easiedge.cli.bench import latency, set_threads
from tfmot_easiedge.cli.loading import analyze_model, compile_model, load_data, model_from_args
from tfmot_easiedge.cli.output import check_out, output_dir
from tfmot_easiedge.cli.plan_file import read_plan
from tfmot_easiedge.cli.resume import open_checkpoints
from tfmot_easiedge.report import FILES as REPORT_FILES

#: What ``prune`` writes; an ``--out`` directory holding only these may be replaced with --overwrite.
PRUNE_FILES = ("model.keras", "plan.json", *REPORT_FILES)


def _prune_latency(original, slim_model, args: argparse.Namespace) -> dict:
    results: dict[str, list] = {}
    with tempfile.TemporaryDirectory(prefix="easiedge-latency-") as workdir:
        for label, model in (("baseline", original), ("slim", slim_model)):
            for runtime in runtimes(args.latency):
                say(args, f"latency: {label} on {runtime}")
                results.setdefault(label, []).append(latency(model, runtime, args, Path(workdir), label))
    return results


def _run_pipeline(model, train, val, args: argparse.Namespace, budget, plan=None, checkpoints=None):
    import keras

    import tfmot_easiedge as te
    from tfmot_easiedge.admm import EasiEdge

    calibration = train.subset(args.calibration_size, seed=args.seed).x
    options = {k: getattr(args, k) for k in ("min_fraction", "round_to") if getattr(args, k) is not None}
    if plan is not None:  # the plan decides every group's width; the budget only sizes the wrapping
        options, budget = {"min_fraction": 0.0}, te.FilterBudget(float(budget["ratio"]))
    callbacks = [keras.callbacks.TensorBoard(args.log_dir)] if args.log_dir else []
    if args.remove_blocks:  # one-shot with whole residual branches competing for the budget
        oneshot = te.OneShot(budget, importance=args.importance, calibration_size=args.calibration_size,
                             seed=args.seed, verbose=0 if args.quiet else 1, protect=names(args.protect),
                             remove_blocks=True, **options)
        return oneshot.run(model, (train.x, train.y), None if val is None else (val.x, val.y),
                           calibration_data=calibration, finetune_epochs=args.finetune_epochs,
                           batch_size=args.batch_size, callbacks=callbacks)
    pipeline = EasiEdge(budget, importance=args.importance, calibration_size=args.calibration_size, seed=args.seed,
                        verbose=0 if args.quiet else 1, protect=names(args.protect), **options)
    return pipeline.run(model, (train.x, train.y), calibration_data=calibration, admm_epochs=args.admm_epochs,
                        finetune_epochs=args.finetune_epochs, batch_size=args.batch_size,
                        validation_data=None if val is None else (val.x, val.y), callbacks=callbacks, plan=plan,
                        checkpoints=checkpoints)


def _check_protect(args: argparse.Namespace, analysis) -> None:
    """Every ``--protect`` name must be a group id or a layer of the model (checked before loading data)."""
    from tfmot_easiedge.selection.protect import check_protect

    try:
        check_protect(analysis, names(args.protect))
    except ValueError as err:
        raise UserError("--protect " + str(err).removeprefix("protect: ")) from None


def _prune_config(args: argparse.Namespace, from_logits: bool) -> dict:
    keys = ("data", "val_data", "budget", "admm_epochs", "finetune_epochs", "importance", "calibration_size",
            "batch_size", "rescale", "optimizer", "lr", "seed", "limit", "latency", "protect", "min_fraction",
            "round_to", "plan", "resume", "remove_blocks")
    return {**{k: getattr(args, k) for k in keys}, "model": args.model, "from_logits": from_logits}


def cmd_prune(args: argparse.Namespace) -> int:
    """Loads, prunes, fine-tunes and slims the model; writes :data:`PRUNE_FILES` to ``--out``."""
    from tfmot_easiedge.data import check_finite_weights

    t_start = time.perf_counter()
    _check_plan_options(args)
    budget: Any = latency_table.budget_from_args(args)  # None for a --plan run: the plan's, a dict
    for flag in ("admm_epochs", "finetune_epochs"):
        if getattr(args, flag) < 0:
            raise UserError(f"--{flag.replace('_', '-')} must be >= 0, got {getattr(args, flag)}")
    if "keras" in runtimes(args.latency):
        set_threads(args.threads)
    check_out(Path(args.out), args.overwrite, PRUNE_FILES)  # refused before the long work, not after it
    checkpoints = open_checkpoints(args)
    model = model_from_args(args)
    check_finite_weights(model)
    analysis = analyze_model(model)
    _check_protect(args, analysis)
    latency_table.check_budget(budget, analysis)
    plan = read_plan(args.plan, analysis) if args.plan else None
    if plan is not None:
        budget = _plan_budget(plan)
    train = load_data(args.data, model, split="train", what="--data", args=args, limit=args.limit)
    val = (load_data(args.val_data, model, split="test", what="--val-data", args=args, limit=args.limit)
           if args.val_data else None)
    from_logits = compile_model(model, args)
    t_load = time.perf_counter() - t_start
    with output_dir(args.out, args.overwrite, PRUNE_FILES) as tmp:
        result = _run_pipeline(model, train, val, args, budget, plan, checkpoints)
        measured = _prune_latency(model, result.model, args) if args.latency else None
        timings = {"load": t_load, **{k: float(v) for k, v in result.timings.items() if k != "zsteps"},
                   "total": time.perf_counter() - t_start}
        data = {"train": train.describe(), "validation": None if val is None else val.describe(),
                "rescale": args.rescale}
        importance = f"plan from {args.plan}" if plan is not None else args.importance
        saved = result.save(tmp, baseline=model, analysis=analysis, budget=budget, importance=importance,
                            latency=measured, timings=timings, data=data, config=_prune_config(args, from_logits))
    checkpoints.remove()  # the run is complete: nothing left to resume
    _print_prune_summary(args, saved.report)
    return 0


def _check_plan_options(args: argparse.Namespace) -> None:
    """``--plan`` fixes what is removed: the options that choose it are refused beside it; ``--remove-blocks``
    is one-shot pruning."""
    if args.remove_blocks:
        if args.admm_epochs != 0:
            raise UserError("--remove-blocks chooses blocks in one-shot pruning: add --admm-epochs 0")
        for flag in ("plan", "resume"):
            if getattr(args, flag):
                raise UserError(f"--remove-blocks cannot be used with --{flag}")
    if not args.plan:
        return
    for flag in ("protect", "min_fraction", "round_to"):
        if getattr(args, flag) is not None:
            raise UserError(f"--{flag.replace('_', '-')} has no effect with --plan (the plan fixes every group's "
                            "channels); edit the plan instead")


def _plan_budget(plan) -> dict:
    """The budget the report states for a ``--plan`` run: the plan's own, marked as coming from the file."""
    removed = plan.removed_channels() / max(1, sum(plan.group_sizes.values()))
    return {**(plan.budget or {}), "kind": "plan", "ratio": float(removed),
            "note": "the channels of the --plan file (ratio: share of prunable filters removed)",
            "plan_budget": plan.budget}


def _print_prune_summary(args: argparse.Namespace, rep: dict) -> None:
    s = rep["summary"]
    say(args, f"\nparams {s['params_before']:,} -> {s['params_after']:,} ({s['params_ratio']:.1%})   "
              f"MACs {s['macs_before']:,} -> {s['macs_after']:,} ({s['macs_ratio']:.1%})")
    accuracies = [f"{st['stage']} {100 * st['accuracy']:.2f}%" for st in rep["stages"] if st["accuracy"] is not None]
    if accuracies:
        say(args, "accuracy: " + ", ".join(accuracies))
    say(args, f"wrote {args.out}: {', '.join(PRUNE_FILES)}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Adds ``prune`` to the subcommands ``sub``."""
    from tfmot_easiedge.importance import CRITERION_NAMES

    p = sub.add_parser("prune", help="prune a model to a budget, fine-tune it, write the slim model and a report")
    p.add_argument("model", help="a .keras/.h5 file or keras:NAME (keras.applications)")
    data_options(p, required=True, help_text="training data: cifar10[:SPLIT], a TFRecord file/folder, an image "
                                             "folder, or an .npz with x and y")
    p.add_argument("--val-data", metavar="SPEC", help="validation data (same forms; cifar10 reads the test split); "
                                                      "accuracy per stage is reported when given")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--budget", help="share removed: filters:0.8 (of filters), macs:0.75 or macs:4x "
                                       "(of MACs; 4x = 4 times fewer), params:0.5 (of parameters), latency:0.5 "
                                       "(of predicted latency, with --latency-table)")
    what.add_argument("--plan", metavar="FILE", help="apply this plan.json (e.g. an edited one from an earlier "
                                                     "run) instead of choosing one: no scoring, no ADMM, then the "
                                                     "fine-tune and the slim model")
    p.add_argument("--admm-epochs", type=int, default=10, metavar="N",
                   help="epochs of ADMM training (0: one-shot pruning of the trained weights; default 10)")
    p.add_argument("--finetune-epochs", type=int, default=5, metavar="M", help="masked fine-tune epochs (default 5)")
    p.add_argument("--importance", default="tbaa", choices=sorted(CRITERION_NAMES),
                   help="channel ranking (default tbaa)")
    p.add_argument("--calibration-size", type=int, default=512, metavar="K",
                   help="training examples used to score channels (default 512)")
    p.add_argument("--batch-size", type=int, default=64, metavar="B", help="training batch size (default 64)")
    p.add_argument("--optimizer", default="sgd", choices=("sgd", "adam"), help="sgd (momentum 0.9) or adam")
    p.add_argument("--lr", type=float, metavar="LR", help="learning rate (default 0.01 for sgd, 0.001 for adam)")
    p.add_argument("--limit", type=int, metavar="N", help="use only the first N examples of --data and --val-data")
    p.add_argument("--seed", type=int, default=0, help="seed of calibration sampling and training (default 0)")
    p.add_argument("--latency", metavar="RUNTIMES", help="also time the model before and after on these "
                                                         "runtimes (keras,tflite,onnxruntime), batch 1")
    p.add_argument("--threads", type=int, default=1, help="threads for --latency (default 1)")
    p.add_argument("--runs", type=int, default=50, help="timed runs for --latency (default 50)")
    p.add_argument("--protect", metavar="NAMES", help="comma-separated layer names or group ids never pruned")
    p.add_argument("--min-fraction", type=float, default=None, metavar="F",
                   help="every group keeps at least this fraction of its channels (default 0.1)")
    p.add_argument("--round-to", type=int, default=None, metavar="N",
                   help="round kept channel counts up to a multiple of N (e.g. 8 for fast kernels)")
    p.add_argument("--remove-blocks", action="store_true",
                   help="with --admm-epochs 0: whole residual branches compete with channels for the budget "
                        "(block TBAA); the slim model replaces the removed ones by their shortcut")
    p.add_argument("--log-dir", metavar="DIR", help="write TensorBoard logs of the ADMM and fine-tune fits here")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run of the same command from the "
                                                         "checkpoints it kept in OUT.resume (its last finished epoch)")
    latency_table.add_option(p)
    model_options(p)
    output_options(p)
    p.set_defaults(func=cmd_prune)
