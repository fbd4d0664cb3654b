"""``easiedge demo``: the whole EasiEdge pipeline on a small CNN, offline, in a few minutes on two CPU cores.

Steps: load real data (CIFAR-10 from local TFRecords, else the 8x8 handwritten digits that ship inside
scikit-learn), train a reduced-width ``zoo.vgg_small`` briefly, prune it with :class:`~tfmot_easiedge.EasiEdge`
(ADMM with TBAA ranking, hard prune, masked fine-tune, slim), export the slim model to TFLite (verified
against Keras), time the baseline and the slim model with LiteRT, and write the report.

Nothing is downloaded. The accuracy reached after a brief training on a subset is far from what the
same network reaches when trained fully; the demo shows the pipeline and what pruning costs and saves,
not a benchmark (see ``benchmarks/results/``).

Example:
    >>> from tfmot_easiedge import demo
    >>> train, test, note = demo.load_demo_data("auto", settings=demo.QUICK)  # doctest: +SKIP
    >>> result = demo.run_demo("out/", train, test, demo.QUICK, data_note=note)  # doctest: +SKIP
    >>> print("\\n".join(demo.summary_lines(result, "out/")))  # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from tfmot_easiedge._progress import keras_verbose
from tfmot_easiedge.data import DataError, LoadedData, cifar10_dir, load_cifar10_arrays, make_data
from tfmot_easiedge.data.cifar10 import CLASS_NAMES, ENV_VAR
from tfmot_easiedge.report import FILES as REPORT_FILES

if TYPE_CHECKING:
    from collections.abc import Sequence

    import keras

#: Where the demo's data may come from; ``auto`` takes CIFAR-10 when found locally, else the digits.
DATASETS = ("auto", "cifar10", "digits")
#: What the demo writes to its output directory.
FILES = ("baseline.keras", "model.keras", "plan.json", "model.tflite", *REPORT_FILES)
#: Largest accepted ``max |slim - masked|`` on the softmax outputs.
SLIM_TOLERANCE = 1e-4
_DIGITS_HINT = 'pip install "tfmot-easiedge[demo]"'


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """The sizes of a demo run.

    Attributes:
        train_examples, test_examples: examples used (a prefix of CIFAR-10's shuffled files; all digits
            fit in fewer than the defaults).
        width: width multiplier of ``zoo.vgg_small``.
        train_epochs: epochs of baseline training (Adam, learning rate decaying from 2e-3 on a cosine).
        admm_epochs, finetune_epochs: epochs of the EasiEdge stages (SGD 0.01, momentum 0.9). All three
            are multiplied by ``train_examples / len(train)`` (rounded) when the data set is smaller, so
            that the digits get as many steps as CIFAR-10.
        batch_size: training batch size.
        calibration_size: training examples TBAA scores channels on.
        min_update_interval: training steps between ADMM Z-steps at least (see :class:`EasiEdge`).
        latency_runs: timed LiteRT runs per model (batch 1, one thread).
        budget: what to remove, e.g. ``"macs:0.5"`` (half the MACs) or ``"filters:0.5"``.
        seed: seeds the weights, the data split and the pipeline.
    """

    train_examples: int
    test_examples: int
    width: float
    train_epochs: int
    admm_epochs: int
    finetune_epochs: int
    batch_size: int = 64
    calibration_size: int = 256
    min_update_interval: int = 50
    latency_runs: int = 50
    budget: str = "macs:0.5"
    seed: int = 0


#: ``easiedge demo``: a few minutes on two CPU cores.
FULL = DemoSettings(train_examples=5000, test_examples=1000, width=0.5, train_epochs=4, admm_epochs=2,
                    finetune_epochs=2)
#: ``easiedge demo --quick``: seconds, for tests; the accuracy it reaches means little.
QUICK = DemoSettings(train_examples=256, test_examples=128, width=0.25, train_epochs=1, admm_epochs=1,
                     finetune_epochs=1, calibration_size=64, min_update_interval=4, latency_runs=10)


@dataclasses.dataclass
class DemoResult:
    """What :func:`run_demo` did.

    Attributes:
        report: the report written (see :data:`tfmot_easiedge.report.REPORT_SCHEMA`).
        data_note: one line on the data used.
        slim_max_abs_diff: max ``|slim - masked|`` of the softmax outputs (the slim model's check).
        tflite_max_rel_diff: max relative difference of the TFLite file from Keras.
        seconds: wall time of the whole run.
    """

    report: dict
    data_note: str
    slim_max_abs_diff: float
    tflite_max_rel_diff: float | None
    seconds: float

    @property
    def passed(self) -> bool:
        """True when the slim model computes what the masked one does."""
        return self.slim_max_abs_diff <= SLIM_TOLERANCE


# --------------------------------------------------------------------------- data


def digits_data(*, train_examples: int | None = None, test_examples: int | None = None, seed: int = 0,
                upsample: int = 2) -> tuple[LoadedData, LoadedData]:
    """scikit-learn's bundled 8x8 digits as ``(train, test)``: 0..255 grey images upsampled ``upsample`` times.

    The 1,797 images (values 0..16) are scaled to 0..255 so that the zoo models' ``Rescaling(1/255)`` fits,
    repeated to ``8*upsample`` pixels a side, and split 80/20 by a seeded permutation.

    Raises:
        DataError: scikit-learn is not installed.

    Example:
        >>> train, test = digits_data()
        >>> train.image_shape, len(train), len(test), train.num_classes
        ((16, 16, 1), 1438, 359, 10)
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError(f"the digits data set needs scikit-learn: {_DIGITS_HINT}") from None
    digits = load_digits()
    x = np.asarray(digits.images, np.float32) * np.float32(255.0 / 16.0)
    x = np.repeat(np.repeat(x, upsample, axis=1), upsample, axis=2)[..., None]
    y = np.asarray(digits.target, np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_train = int(round(0.8 * len(y)))
    train, test = order[:n_train][:train_examples], order[n_train:][:test_examples]
    names = [str(i) for i in range(10)]
    source = f"sklearn digits (8x8, upsampled to {8 * upsample}x{8 * upsample})"
    return (make_data(x[train], y[train], f"{source}: train", class_names=names),
            make_data(x[test], y[test], f"{source}: test", class_names=names))


def cifar10_data(data_dir: str | os.PathLike | None = None, *, train_examples: int | None = None,
                 test_examples: int | None = None) -> tuple[LoadedData, LoadedData]:
    """CIFAR-10 ``(train, test)`` from local TFRecords only (``data_dir``, else ``$EASIEDGE_CIFAR10_DIR``...).

    Raises:
        DataError: no TFRecords found (nothing is downloaded).

    Example:
        >>> train, test = cifar10_data(train_examples=16, test_examples=8)  # doctest: +SKIP
        >>> train.x.shape, test.num_classes  # doctest: +SKIP
        ((16, 32, 32, 3), 10)
    """
    try:
        found = cifar10_dir(data_dir)
    except FileNotFoundError as e:
        raise DataError(str(e)) from None
    if data_dir is not None and found != Path(data_dir).resolve():  # cifar10_dir looks further than data_dir
        raise DataError(f"no CIFAR-10 TFRecords (train.tfrecord, test.tfrecord) in {data_dir}")
    if found is None:
        raise DataError(f"CIFAR-10 TFRecords not found: set {ENV_VAR} or pass --data-dir (a directory holding "
                        "train.tfrecord and test.tfrecord)")
    loaded = []
    for split, limit in (("train", train_examples), ("test", test_examples)):
        x, y = load_cifar10_arrays(split, dirpath=found, limit=limit, allow_download=False)
        loaded.append(make_data(x, y, f"cifar10:{split} ({found})", class_names=CLASS_NAMES))
    return loaded[0], loaded[1]


def load_demo_data(dataset: str = "auto", data_dir: str | os.PathLike | None = None, *,
                   settings: DemoSettings | None = None) -> tuple[LoadedData, LoadedData, str]:
    """``(train, test, note)`` for the demo: CIFAR-10 when found locally (``auto``), else the digits.

    Args:
        dataset: ``"auto"``, ``"cifar10"`` or ``"digits"``.
        data_dir: directory of the CIFAR-10 TFRecords (implies CIFAR-10 with ``auto``).
        settings: the example counts to use (default :data:`FULL`).

    Returns:
        The train and test data, and one line saying what they are.

    Raises:
        DataError: the requested data cannot be found, or with ``auto`` neither can.

    Example:
        >>> train, test, note = load_demo_data("digits", settings=QUICK)
        >>> note
        'sklearn digits (8x8, upsampled to 16x16): 256 training and 128 test images, 10 classes'
    """
    settings = settings or FULL
    if dataset not in DATASETS:
        raise DataError(f"unknown demo data {dataset!r}; expected one of {', '.join(DATASETS)}")
    counts = {"train_examples": settings.train_examples, "test_examples": settings.test_examples}
    if dataset == "cifar10" or (dataset == "auto" and (data_dir is not None or cifar10_dir() is not None)):
        train, test = cifar10_data(data_dir, **counts)
        what = f"CIFAR-10 from the local TFRecords in {cifar10_dir(data_dir)}"
    else:
        try:
            train, test = digits_data(**counts, seed=settings.seed)
        except DataError:
            if dataset == "digits":
                raise
            raise DataError(f"no data for the demo: CIFAR-10 TFRecords not found (set {ENV_VAR} or pass "
                            f"--data-dir) and scikit-learn, whose bundled digits are the fallback, is not "
                            f"installed ({_DIGITS_HINT})") from None
        what = train.source.rsplit(":", 1)[0]
    note = f"{what}: {len(train):,} training and {len(test):,} test images, {train.num_classes} classes"
    return train, test, note


# --------------------------------------------------------------------------- pipeline


def build_model(image_shape: Sequence[int], num_classes: int, settings: DemoSettings) -> keras.Model:
    """``zoo.vgg_small`` at ``settings.width`` (uncompiled)."""
    from tfmot_easiedge.models import zoo

    return zoo.vgg_small(tuple(image_shape), num_classes, width=settings.width, seed=settings.seed,
                         name="demo_vgg_small")


def _compile(model, optimizer) -> None:
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])


def _epochs(settings: DemoSettings, train: LoadedData) -> tuple[int, int, int]:
    """(train, ADMM, fine-tune) epochs, scaled up for a smaller dataset so that it gets as many steps."""
    scale = max(1, round(settings.train_examples / max(1, len(train))))
    return settings.train_epochs * scale, settings.admm_epochs * scale, settings.finetune_epochs * scale


def _latency(path: Path, image, runs: int):
    from tfmot_easiedge.latency.measure import measure_latency

    return measure_latency(path, runtime="tflite", threads=1, runs=runs, warmup=max(5, runs // 5),
                           input_data=image, progress=False)


def run_demo(out_dir: str | os.PathLike, train: LoadedData, test: LoadedData, settings: DemoSettings = FULL, *,
             data_note: str = "", verbose: int = 1, log: Callable[[str], None] = print,
             overwrite: bool = False) -> DemoResult:
    """Trains, prunes, slims, exports and times a small CNN on ``train``/``test``; writes :data:`FILES` to ``out_dir``.

    The files are written at the end by :meth:`EasiEdgeResult.save <tfmot_easiedge.admm.EasiEdgeResult.save>`,
    atomically: a run that fails or is stopped leaves ``out_dir`` as it was.

    Args:
        out_dir: the directory to create (an existing empty one, such as the CLI's reserved ``--out``, is
            replaced; one holding an earlier demo's files only with ``overwrite``).
        train, test: the data (see :func:`load_demo_data`).
        settings: sizes, budget and seed.
        data_note: what the data is, recorded in the report.
        verbose: 0 silent, 1 Keras progress bars and ADMM lines.
        log: where the step headings go.
        overwrite: replace an ``out_dir`` holding an earlier demo's results.

    Returns:
        A :class:`DemoResult`.

    Raises:
        tfmot_easiedge.export.ExportVerificationError: the TFLite file disagrees with Keras.
        FileExistsError: ``out_dir`` holds other files, or results and not ``overwrite``.
    """
    import keras

    import tfmot_easiedge as te

    t_start = time.perf_counter()
    train_epochs, admm_epochs, finetune_epochs = _epochs(settings, train)
    with tempfile.TemporaryDirectory(prefix="easiedge-demo-") as tmp:
        work = Path(tmp)
        model, history, t_train = _train_baseline(train, settings, train_epochs, verbose, log)
        model.save(work / "baseline.keras")  # as trained, with its optimizer state

        log(f"[2/5] EasiEdge: {settings.budget}, {admm_epochs} ADMM + {finetune_epochs} fine-tune epoch(s), TBAA "
            "ranking, SGD with momentum")
        # ADMM's W-step: with SGD momentum the removed weights settle within a few dozen steps.
        _compile(model, keras.optimizers.SGD(0.01, momentum=0.9))
        pipeline = te.EasiEdge(settings.budget, importance="tbaa", calibration_size=settings.calibration_size,
                               seed=settings.seed, verbose=verbose, min_update_interval=settings.min_update_interval)
        result = pipeline.run(model, (train.x, train.y), admm_epochs=admm_epochs, finetune_epochs=finetune_epochs,
                              batch_size=settings.batch_size, validation_data=(test.x, test.y))
        exported, latency, t_export, t_latency = _export_and_time(model, result.model, test, settings, work, log)

        log("[5/5] writing the model, the plan and the report")
        timings = {"train": t_train,
                   **{k: float(v) for k, v in result.timings.items() if k not in ("zsteps", "total")},
                   "prune": result.timings["total"], "export": t_export, "latency": t_latency,
                   "total": time.perf_counter() - t_start}
        saved = result.save(
            out_dir, baseline=model, overwrite=overwrite, budget=settings.budget, importance="tbaa",
            latency=latency, timings=timings, history={"train": history.history, **result.history},
            data={"note": data_note, "train": train.describe(), "validation": test.describe()},
            config={"command": "easiedge demo", **dataclasses.asdict(settings), "model": "zoo.vgg_small",
                    "epochs": {"train": train_epochs, "admm": admm_epochs, "finetune": finetune_epochs},
                    "optimizer": {"train": "adam, cosine decay from 2e-3", "prune": "sgd 0.01, momentum 0.9"}},
            extra_files={"baseline.keras": work / "baseline.keras", "model.tflite": exported.path})
    return DemoResult(saved.report, data_note, result.slim_max_abs_diff, exported.max_rel_diff,
                      time.perf_counter() - t_start)


def _train_baseline(train: LoadedData, settings: DemoSettings, epochs: int, verbose: int,
                    log: Callable[[str], None]):
    """``(model, history, seconds)``: the demo's CNN trained ``epochs`` epochs from ``settings.seed``."""
    import keras

    import tfmot_easiedge as te

    keras.utils.set_random_seed(settings.seed)
    model = build_model(train.image_shape, train.num_classes, settings)
    # Adam with a cosine decay: a short training that ends at a settled point, a fair baseline.
    steps = epochs * -(-len(train) // settings.batch_size)
    _compile(model, keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(2e-3, steps, alpha=0.05)))
    log(f"[1/5] training {model.name} (width {settings.width}, {te.count_params(model):,} params) for "
        f"{epochs} epoch(s)")
    t0 = time.perf_counter()
    history = model.fit(train.x, train.y, epochs=epochs, batch_size=settings.batch_size,
                        verbose=keras_verbose(verbose))
    return model, history, time.perf_counter() - t0


def _export_and_time(model, slim_model, test: LoadedData, settings: DemoSettings, work: Path,
                     log: Callable[[str], None]):
    """``(export result, latency, export seconds, latency seconds)``: the slim model exported to
    ``work/model.tflite`` (verified against Keras), then it and the baseline timed with LiteRT."""
    from tfmot_easiedge import export

    log("[3/5] exporting the slim model to TFLite (float32), verified against Keras")
    t0 = time.perf_counter()
    exported = export.tflite(slim_model, work / "model.tflite", sample_inputs=test.x[:64])
    t_export = time.perf_counter() - t0

    log(f"[4/5] timing baseline and slim model with LiteRT (batch 1, 1 thread, {settings.latency_runs} runs)")
    t0 = time.perf_counter()
    baseline_file = export.tflite(model, work / "baseline.tflite", sample_inputs=test.x[:64]).path
    latency = {"baseline": [_latency(baseline_file, test.x[:1], settings.latency_runs)],
               "slim": [_latency(exported.path, test.x[:1], settings.latency_runs)]}
    return exported, latency, t_export, time.perf_counter() - t0


# --------------------------------------------------------------------------- summary


def _ratio(before: float, after: float) -> str:
    return f"{before / after:.2f}x fewer" if after else "all removed"


def _rows(rep: dict) -> list[tuple[str, str, str, str]]:
    """(what, before, after, note) for the summary table."""
    s = rep["summary"]
    stages = {st["stage"]: st for st in rep["stages"]}
    acc0, acc1, acc_cut = (stages[k]["accuracy"] for k in ("baseline", "slim", "hard_prune"))
    lat0, lat1 = ({row["stage"]: row for row in rep["latency"]}[k]["median_ms"] for k in ("baseline", "slim"))
    return [("test accuracy", f"{100 * acc0:.1f}%", f"{100 * acc1:.1f}%",
             f"{100 * (acc1 - acc0):+.1f} points (right after the hard prune: {100 * acc_cut:.1f}%)"),
            ("MACs / image", f"{s['macs_before']:,}", f"{s['macs_after']:,}",
             _ratio(s["macs_before"], s["macs_after"])),
            ("parameters", f"{s['params_before']:,}", f"{s['params_after']:,}",
             _ratio(s["params_before"], s["params_after"])),
            ("filters (prunable)", f"{s['prunable_filters_before']:,}", f"{s['prunable_filters_after']:,}", ""),
            ("TFLite latency (ms)", f"{lat0:.3f}", f"{lat1:.3f}",
             f"speedup {lat0 / lat1:.2f}x (median, batch 1, 1 thread; varies on a busy machine)")]


def summary_lines(result: DemoResult, out: str | os.PathLike) -> list[str]:
    """The short table printed at the end: data, accuracy, MACs, params, latency, where the report is.

    Example:
        >>> print("\\n".join(summary_lines(result, "easiedge-demo")))  # doctest: +SKIP
    """
    rep = result.report
    rows = _rows(rep)
    width = max(len(r[0]) for r in rows)
    epochs = rep["config"]["epochs"]
    lines = ["", f"data: {result.data_note}",
             f"budget: {rep['budget']['kind']}:{rep['budget']['ratio']:g}, importance: {rep['importance']}; "
             f"{epochs['train']} training, {epochs['admm']} ADMM and {epochs['finetune']} fine-tune epoch(s); "
             f"run time {result.seconds:.0f}s", "",
             f"{'':{width}}  {'before':>12}  {'after':>12}"]
    lines += [f"{name:{width}}  {a:>12}  {b:>12}  {note}".rstrip() for name, a, b, note in rows]
    check = "ok" if result.passed else f"FAILED (tolerance {SLIM_TOLERANCE:g})"
    tflite = ("" if result.tflite_max_rel_diff is None
              else f"; TFLite vs Keras max rel diff {result.tflite_max_rel_diff:.1e}")
    lines += ["", f"slim vs masked max |diff| {result.slim_max_abs_diff:.1e}: {check}{tflite}",
              f"report: {Path(out) / 'report.md'} (and {', '.join(f for f in FILES if f != 'report.md')})"]
    return lines
