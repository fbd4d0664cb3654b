"""Shared pieces of the benchmarks: CIFAR-10 pipelines, training, evaluation, machine info, atomic writes.

Benchmarks import this module as ``from benchmarks import common`` (run them from the repository root, e.g.
``python -m benchmarks.train_baseline``) or, when run as scripts, ``import common`` (their folder is then on
``sys.path``). Trained baselines are cached as ``benchmarks/cache/<name>.keras`` (git-ignored) and their
results written to ``benchmarks/results/`` (committed).

Example:
    >>> from benchmarks import common  # doctest: +SKIP
    >>> model = common.load_or_train("vgg_small")  # doctest: +SKIP
    >>> x, y = common.load_split("test")  # doctest: +SKIP
    >>> common.evaluate(model, x, y)["accuracy"] > 0.8  # doctest: +SKIP
    True
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Sequence

import numpy as np

BENCHMARKS_DIR = Path(__file__).resolve().parent
CACHE_DIR = BENCHMARKS_DIR / "cache"
RESULTS_DIR = BENCHMARKS_DIR / "results"

# Zero padding then a random 32x32 crop, as in He et al. (2016).
CROP_PADDING = 4
# Command-line names of the zoo builders (see ``model_builders``).
MODEL_NAMES = ("vgg_small", "vgg16", "resnet20", "resnet56", "tiny_cnn")


def model_builders() -> dict[str, Callable[..., Any]]:
    """Returns the zoo builders the benchmarks know, by their command-line name.

    Example:
        >>> sorted(model_builders())  # doctest: +SKIP
        ['resnet20', 'resnet56', 'tiny_cnn', 'vgg16', 'vgg_small']
    """
    from tfmot_easiedge.models import zoo

    return {"vgg_small": zoo.vgg_small, "vgg16": zoo.vgg16_cifar, "resnet20": zoo.resnet20,
            "resnet56": zoo.resnet56, "tiny_cnn": zoo.tiny_cnn}


def load_split(split: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Returns CIFAR-10 ``(x uint8 [N, 32, 32, 3], y int64 [N])`` from the shared TFRecords (no download).

    Example:
        >>> x, y = load_split("test", limit=4)
        >>> x.dtype, y.shape
        (dtype('uint8'), (4,))
    """
    from tfmot_easiedge.data import load_cifar10_arrays

    return load_cifar10_arrays(split, limit=limit, allow_download=False)


def _augment(image, seed):
    """Pads by ``CROP_PADDING`` zeros, crops back to the input size at random, flips left-right at random."""
    import tensorflow as tf

    size = tf.shape(image)
    padded = tf.pad(image, [[CROP_PADDING, CROP_PADDING], [CROP_PADDING, CROP_PADDING], [0, 0]])
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
    image = tf.image.stateless_random_crop(padded, size, seed=crop_seed)
    return tf.image.stateless_random_flip_left_right(image, seed=flip_seed)


def make_train_dataset(x: np.ndarray, y: np.ndarray, batch: int, augment: bool = True, seed: int = 0):
    """Returns a shuffled, batched, prefetched ``tf.data.Dataset`` of ``(float32 images, int64 labels)``.

    Images keep the uint8 value range ``[0, 255]`` (the zoo models rescale them). With ``augment``, each
    image gets a random crop after 4-pixel zero padding and a random horizontal flip. Shuffling and
    augmentation are seeded: the same ``seed`` gives the same sequence of batches, epoch after epoch, in
    every run; each epoch differs from the previous one.

    Args:
        x: images ``[N, H, W, C]`` (uint8 or float).
        y: integer labels ``[N]``.
        batch: batch size; the last, smaller batch is kept.
        augment: apply random crop + flip.
        seed: seed of the shuffling and the augmentation.

    Example:
        >>> import numpy as np
        >>> ds = make_train_dataset(np.zeros((10, 32, 32, 3), "uint8"), np.arange(10), batch=4, seed=0)
        >>> [tuple(xb.shape) for xb, _ in ds]
        [(4, 32, 32, 3), (4, 32, 32, 3), (2, 32, 32, 3)]
    """
    import tensorflow as tf

    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    ds = tf.data.Dataset.from_tensor_slices((x, np.asarray(y, dtype=np.int64)))
    ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    if augment:
        # One stateless seed pair per example, from a seeded stream that goes on across epochs.
        seeds = tf.data.Dataset.random(seed=seed).batch(2, drop_remainder=True)
        ds = tf.data.Dataset.zip((ds, seeds)).map(lambda xy, s: (_augment(xy[0], s), xy[1]),
                                                  num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch).map(lambda xb, yb: (tf.cast(xb, tf.float32), yb), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def make_eval_dataset(x: np.ndarray, y: np.ndarray, batch: int = 500):
    """Returns an unshuffled, batched ``tf.data.Dataset`` of ``(float32 images, int64 labels)``."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, np.asarray(y, dtype=np.int64))).batch(batch)
    return ds.map(lambda xb, yb: (tf.cast(xb, tf.float32), yb)).prefetch(tf.data.AUTOTUNE)


def evaluate(model, x: np.ndarray, y: np.ndarray, batch_size: int = 500) -> dict[str, float]:
    """Returns ``{"accuracy", "loss", "n"}`` of a probability-output classifier on ``(x, y)``.

    ``loss`` is the mean cross-entropy of the predicted probabilities (clipped at 1e-7).

    Example:
        >>> from tfmot_easiedge.models.zoo import tiny_cnn
        >>> import numpy as np
        >>> r = evaluate(tiny_cnn(seed=0), np.zeros((8, 32, 32, 3), "uint8"), np.zeros(8, "int64"))
        >>> sorted(r), r["n"]
        (['accuracy', 'loss', 'n'], 8)
    """
    y = np.asarray(y, dtype=np.int64).reshape(-1)
    probs = model.predict(make_eval_dataset(x, y, batch_size), verbose=0)
    picked = np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0)
    return {"accuracy": float(np.mean(np.argmax(probs, axis=1) == y)), "loss": float(-np.mean(np.log(picked))),
            "n": int(len(y))}


def machine_info() -> dict[str, Any]:
    """Returns where a benchmark ran: platform, CPU model and counts, GPUs, Python/TF/Keras versions.

    Example:
        >>> info = machine_info()
        >>> info["cpu_count"] >= 1
        True
    """
    import keras
    import tensorflow as tf

    cpu_model = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu_model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                             cpu_model)
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpu_count_usable": usable,
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "python": sys.version.split()[0],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
    }


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Writes ``obj`` as indented JSON to ``path`` atomically (the library's one writer,
    ``tfmot_easiedge._files``), replacing an earlier result; returns the path.

    Readers never see a half-written file. Parent directories are created. Unlike the library's strict
    writer, a NaN (e.g. a correlation over a constant column) is written as JSON's ``NaN`` rather than
    refused: a benchmark must not lose an hour of results at its last line.

    Example:
        >>> import tempfile, pathlib
        >>> p = write_json_atomic(pathlib.Path(tempfile.mkdtemp()) / "r.json", {"accuracy": 0.9})
        >>> json.loads(p.read_text())
        {'accuracy': 0.9}
    """
    from tfmot_easiedge._files import write_text_atomic

    return write_text_atomic(path, json.dumps(obj, indent=2) + "\n", overwrite=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Writes ``text`` to ``path`` atomically, replacing an earlier version (``tfmot_easiedge._files``)."""
    from tfmot_easiedge._files import write_text_atomic as write

    return write(path, text, overwrite=True)


def save_model_atomic(model, path: str | os.PathLike) -> Path:
    """Saves a Keras model to ``path`` (``.keras``) atomically, replacing an earlier file; returns the path.

    Keras wants the ``.keras`` suffix on the file it writes, so the model is saved inside a temporary directory
    and that file is moved onto ``path`` by the library's atomic writer.
    """
    from tfmot_easiedge._files import atomic_output

    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"model path must end in .keras, got {str(path)!r}")
    with tempfile.TemporaryDirectory(dir=path.parent if path.parent.exists() else None) as scratch:
        staged = Path(scratch) / path.name
        model.save(staged)
        with atomic_output(path, overwrite=True) as tmp:
            os.replace(staged, tmp)
    return path


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train a zoo model on CIFAR-10.

    ``weight_decay`` is Keras's decoupled decay: each step multiplies every conv/dense kernel by
    ``1 - lr * weight_decay`` (BatchNorm and bias vectors are not decayed). With SGD momentum 0.9, 5e-3
    here matches the usual coupled L2 of 5e-4. The learning rate warms up linearly from ``lr / 10`` over
    ``warmup_epochs`` epochs, then follows a cosine decay to zero at the end of training.
    """

    model: str = "vgg_small"
    width: float = 1.0
    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.1
    optimizer: str = "sgd"  # "sgd" (momentum 0.9, Nesterov) or "adam"
    weight_decay: float = 5e-3
    warmup_epochs: float = 1.0
    augment: bool = True
    val_split: float = 0.0
    seed: int = 0
    train_limit: int | None = None
    jit_compile: bool = False
    recalibrate_bn: int = 0  # re-estimate BatchNorm statistics on this many training images at the end

    def default_name(self) -> str:
        """``model`` plus ``_w{width}`` when the width is not 1, e.g. ``vgg_small`` or ``resnet20_w0.5``."""
        return self.model if self.width == 1.0 else f"{self.model}_w{self.width:g}"


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int, model):
    """``cfg``'s optimizer for ``model``: warmup then cosine to zero over ``cfg.epochs``, decay on kernels only.

    Example:
        >>> import keras
        >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> opt = make_optimizer(TrainConfig(epochs=2, lr=0.1, warmup_epochs=0), 10, m)
        >>> round(float(opt.learning_rate), 3)
        0.1
    """
    import keras

    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = min(total - 1, int(round(cfg.warmup_epochs * steps_per_epoch)))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=cfg.lr / 10 if warmup else cfg.lr, decay_steps=total - warmup, alpha=0.0,
        warmup_target=cfg.lr if warmup else None, warmup_steps=warmup)
    if cfg.optimizer == "sgd":
        opt = keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay or None)
    elif cfg.optimizer == "adam":
        opt = keras.optimizers.AdamW(schedule, weight_decay=cfg.weight_decay)
    else:
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {cfg.optimizer!r}")
    opt.exclude_from_weight_decay(var_list=[v for v in model.trainable_variables if len(v.shape) <= 1])
    return opt


class _EpochLog:
    """A Keras callback (made lazily so this module imports without TensorFlow) logging one line per epoch."""

    @staticmethod
    def make(log: Callable[[str], None]):
        import keras

        class EpochLog(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self._start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                logs = logs or {}
                seconds = time.perf_counter() - self._start
                logs["epoch_seconds"] = seconds
                parts = [f"{k}={v:.4f}" for k, v in sorted(logs.items()) if k != "epoch_seconds"]
                log(f"epoch {epoch + 1}/{self.params.get('epochs')} {seconds:.1f}s " + " ".join(parts))

        return EpochLog()


class _BestOnValidation:
    """A Keras callback keeping the weights of the epoch with the best ``val_accuracy`` (made lazily)."""

    @staticmethod
    def make():
        import keras

        class BestOnValidation(keras.callbacks.Callback):
            best_accuracy, best_epoch, best_weights = -math.inf, None, None

            def on_epoch_end(self, epoch, logs=None):
                acc = (logs or {}).get("val_accuracy")
                if acc is not None and acc > self.best_accuracy:
                    self.best_accuracy, self.best_epoch = float(acc), epoch + 1
                    self.best_weights = self.model.get_weights()

        return BestOnValidation()


def train(cfg: TrainConfig, log: Callable[[str], None] = print) -> tuple[Any, dict[str, Any]]:
    """Trains ``cfg.model`` on CIFAR-10 train and evaluates it on test; returns ``(model, result dict)``.

    With ``cfg.val_split > 0``, that fraction of the training set is held out and the epoch with the best
    held-out accuracy is kept. Without it, the test set is evaluated after each epoch for the log only and
    the last epoch is kept (the cosine schedule ends at a learning rate of zero; choosing an epoch on the
    test set would bias the reported accuracy).

    Example:
        >>> model, result = train(TrainConfig(model="tiny_cnn", epochs=1, train_limit=256))  # doctest: +SKIP
        >>> 0.0 <= result["test_accuracy"] <= 1.0  # doctest: +SKIP
        True
    """
    import keras

    builders = model_builders()
    if cfg.model not in builders:
        raise ValueError(f"model must be one of {sorted(builders)}, got {cfg.model!r}")
    x_train, y_train = load_split("train", limit=cfg.train_limit)
    x_test, y_test = load_split("test")
    x_val = y_val = None
    if cfg.val_split > 0:
        order = np.random.default_rng(cfg.seed).permutation(len(x_train))
        n_val = int(round(cfg.val_split * len(x_train)))
        val_idx, train_idx = order[:n_val], order[n_val:]
        x_val, y_val, x_train, y_train = x_train[val_idx], y_train[val_idx], x_train[train_idx], y_train[train_idx]

    keras.utils.set_random_seed(cfg.seed)
    model = builders[cfg.model](width=cfg.width, seed=cfg.seed)
    steps_per_epoch = math.ceil(len(x_train) / cfg.batch_size)
    model.compile(optimizer=make_optimizer(cfg, steps_per_epoch, model),
                  loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"],
                  jit_compile=cfg.jit_compile)
    monitor = (x_val, y_val) if x_val is not None else (x_test, y_test)
    best = _BestOnValidation.make()
    log(f"training {cfg.model} (width {cfg.width}, {model.count_params():,} params) on {len(x_train)} images, "
        f"{cfg.epochs} epochs x {steps_per_epoch} steps")
    start = time.perf_counter()
    history = model.fit(make_train_dataset(x_train, y_train, cfg.batch_size, cfg.augment, cfg.seed),
                        epochs=cfg.epochs, validation_data=make_eval_dataset(*monitor),
                        callbacks=[_EpochLog.make(log), best], shuffle=False, verbose=0)
    seconds = time.perf_counter() - start
    selected_epoch = cfg.epochs
    if x_val is not None and best.best_weights is not None:
        model.set_weights(best.best_weights)
        selected_epoch = best.best_epoch
    before = None
    if cfg.recalibrate_bn:
        from tfmot_easiedge import recalibrate_batchnorm

        before = evaluate(model, x_test, y_test)["accuracy"]
        recalibrate_batchnorm(model, x_train, max_examples=cfg.recalibrate_bn)
        log(f"BatchNorm statistics re-estimated on {min(cfg.recalibrate_bn, len(x_train))} training images "
            f"(test accuracy before: {before:.4f})")
    test = evaluate(model, x_test, y_test)
    log(f"test accuracy {test['accuracy']:.4f} (epoch {selected_epoch}), {seconds:.0f}s")
    epoch_seconds = [float(s) for s in history.history.get("epoch_seconds", [])]
    per_epoch = {k: [float(v) for v in vals] for k, vals in history.history.items() if k != "epoch_seconds"}
    if x_val is None:  # the monitored "validation" data was the test set
        per_epoch = {k.replace("val_", "test_"): v for k, v in per_epoch.items()}
    result = {
        "model": cfg.model,
        "width": cfg.width,
        "params": int(model.count_params()),
        "macs": _count_macs(model),
        "test_accuracy": test["accuracy"],
        "test_accuracy_before_bn": before,  # None: the statistics were not re-estimated
        "test_loss": test["loss"],
        "test_images": test["n"],
        "train_images": int(len(x_train)),
        "val_images": 0 if x_val is None else int(len(x_val)),
        "epochs": cfg.epochs,
        "selected_epoch": selected_epoch,
        "selected_on": "held-out validation split" if x_val is not None else "last epoch",
        "seconds": round(seconds, 1),
        "seconds_per_epoch": round(float(np.mean(epoch_seconds)), 1) if epoch_seconds else None,
        "config": dataclasses.asdict(cfg),
        "recipe": {"optimizer": "SGD momentum 0.9 Nesterov" if cfg.optimizer == "sgd" else "AdamW",
                   "schedule": f"linear warmup {cfg.warmup_epochs:g} epochs from lr/10, cosine decay to 0",
                   "weight_decay": f"decoupled {cfg.weight_decay:g} x lr per step on kernels only",
                   "augmentation": "4-px zero pad + random 32x32 crop + horizontal flip" if cfg.augment else "none",
                   "loss": "sparse categorical cross-entropy on softmax outputs"},
        "history": {"epoch_seconds": [round(s, 1) for s in epoch_seconds],
                    **{k: [round(v, 4) for v in vals] for k, vals in per_epoch.items()}},
        "machine": machine_info(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return model, result


def run_stamp(load_before: Sequence[float], start: float) -> dict[str, Any]:
    """What every benchmark result records about its run: the machine, the load averages before (as read at
    its start) and now, the date, and the seconds since ``start`` (a ``time.perf_counter()``)."""
    return {"machine": machine_info(), "loadavg_before": [round(v, 2) for v in load_before],
            "loadavg_after": [round(v, 2) for v in os.getloadavg()],
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - start, 1)}


def write_result(path: Path, result: dict[str, Any], markdown: Callable[[dict[str, Any]], str]) -> None:
    """Writes ``result`` to ``path`` (JSON) and ``markdown(result)`` beside it (``.md``), atomically."""
    write_json_atomic(path, result)
    write_text_atomic(path.with_suffix(".md"), markdown(result))
    print(f"wrote {path} and {path.with_suffix('.md')}")


def finetune(model, x: np.ndarray, y: np.ndarray, epochs: int, lr: float = 0.05, batch_size: int = 128,
             seed: int = 0, verbose: int = 2):
    """Fine-tunes a pruned model in place the way the benchmarks do: SGD Nesterov with a cosine schedule from
    ``lr`` to 0 (no warmup, decoupled weight decay 5e-3 on kernels), the baselines' pad-crop-flip
    augmentation, sparse cross-entropy; returns the ``History``."""
    import keras

    keras.utils.set_random_seed(seed)
    steps = -(-len(x) // batch_size)
    cfg = TrainConfig(epochs=epochs, lr=lr, warmup_epochs=0, batch_size=batch_size)
    model.compile(optimizer=make_optimizer(cfg, steps, model), loss="sparse_categorical_crossentropy")
    return model.fit(make_train_dataset(x, y, batch_size, seed=seed), epochs=epochs, verbose=verbose)


def _count_macs(model) -> int | None:
    """MACs per image from the package's counter, or None when it cannot count this model."""
    try:
        from tfmot_easiedge.metrics import count_macs

        return int(count_macs(model))
    except Exception:  # noqa: BLE001 - a missing count must not lose a finished training run
        return None


def cache_path(name: str) -> Path:
    """Returns ``benchmarks/cache/<name>.keras``."""
    return CACHE_DIR / f"{name}.keras"


def result_path(name: str) -> Path:
    """Returns ``benchmarks/results/baseline_<name>.json``."""
    return RESULTS_DIR / f"baseline_{name}.json"


def train_and_save(cfg: TrainConfig, name: str | None = None, log: Callable[[str], None] = print):
    """Trains per ``cfg``, saves the model to the cache and the result JSON; returns ``(model, result)``."""
    name = name or cfg.default_name()
    model, result = train(cfg, log=log)
    result = {"name": name, **result, "command": " ".join(sys.argv)}
    save_model_atomic(model, cache_path(name))
    write_json_atomic(result_path(name), result)
    log(f"saved {cache_path(name)} and {result_path(name)}")
    return model, result


def load_or_train(name: str, cfg: TrainConfig | None = None, *, retrain: bool = False,
                  log: Callable[[str], None] = print):
    """Returns the cached baseline ``benchmarks/cache/<name>.keras``, training (and caching) it when missing.

    Args:
        name: the cache name, e.g. ``"vgg_small"``.
        cfg: how to train it when missing. By default the ``config`` recorded in
            ``benchmarks/results/baseline_<name>.json`` (so the committed baseline is reproduced), else
            ``TrainConfig(model=name)`` when ``name`` is a model name.
        retrain: train even if a cached model exists.
        log: where progress lines go.

    Example:
        >>> model = load_or_train("vgg_small")  # doctest: +SKIP
    """
    import keras

    path = cache_path(name)
    if path.exists() and not retrain:
        return keras.saving.load_model(path)
    if cfg is None:
        cfg = recorded_config(name)
    if cfg is None:
        if name not in MODEL_NAMES:
            raise ValueError(f"no cached model {path}, no recorded config in {result_path(name)}, and "
                             f"{name!r} is not a model name ({', '.join(MODEL_NAMES)}); pass cfg")
        cfg = TrainConfig(model=name)
    log(f"no cached {path}; training it: {cfg}")
    model, _ = train_and_save(cfg, name=name, log=log)
    return model


def config_matches(stored: Any, config: Any) -> bool:
    """Whether ``stored`` (a dataclass recorded with ``dataclasses.asdict``) equals the dataclass ``config``;
    a field added since, absent from ``stored``, matches while it holds its default.

    Example:
        >>> config_matches({"model": "vgg16"}, TrainConfig(model="vgg16"))  # the rest at their defaults
        True
        >>> config_matches({"model": "vgg16"}, TrainConfig(model="vgg16", epochs=3))
        False
        >>> config_matches(dataclasses.asdict(TrainConfig(model="vgg16")), TrainConfig(model="vgg16"))
        True
    """
    if not isinstance(stored, dict):
        return False
    current = dataclasses.asdict(config)
    defaults = {f.name: f.default for f in dataclasses.fields(config) if f.default is not dataclasses.MISSING}
    missing = object()
    return set(stored) <= set(current) and all(
        stored[k] == v if k in stored else defaults.get(k, missing) == v for k, v in current.items())


def recorded_config(name: str) -> TrainConfig | None:
    """Returns the ``TrainConfig`` recorded in ``benchmarks/results/baseline_<name>.json``, or None."""
    path = result_path(name)
    if not path.exists():
        return None
    recorded = json.loads(path.read_text(encoding="utf-8")).get("config", {})
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in recorded.items() if k in known})
