"""The fast CPU training path for the study's CIFAR-10 baselines, resumable, and its speed benchmark.

What makes it faster than ``common.train`` (measured by ``--speed``, which times both paths in one run):
CIFAR-10 is decoded once into memory as uint8 and each batch is augmented (4-px pad + random crop, flip) in
one vectorised numpy step, instead of a per-image ``tf.data`` map; batches are larger (256). XLA and
bfloat16 mixed precision are options (``--jit-compile``, ``--precision``); the speed benchmark records whether
they pay on this machine, and the defaults are what measured fastest.

Training writes, atomically, after every epoch: ``benchmarks/cache/<name>.ckpt.keras`` (model and optimizer
state) and ``<name>.ckpt.json`` (epoch, history), so a killed run continues where it stopped when the same
command is run again. At the end: ``benchmarks/baselines/<name>.keras`` (committed), its sha256,
``benchmarks/results/baseline_<name>.json`` (accuracy on all 10,000 test images, per-epoch history, recipe,
command, machine, date) and the log ``benchmarks/baselines/<name>.log``.

Examples (from the repository root)::

    python -m benchmarks.fast_train --speed --out-speed train_speed
    nice python -m benchmarks.fast_train --model vgg16 --width 0.35 --epochs 30 --name vgg16_bn_w0.35
    python -m benchmarks.fast_train --model tiny_cnn --epochs 1 --train-limit 512 --name smoke --no-commit
    nice python -m benchmarks.fast_train --model vgg16 --width 0.35 --epochs 40 --lr 0.1 --warmup-epochs 1 \
        --init-from benchmarks/baselines/vgg16_bn_w0.35.keras --name vgg16_bn_w0.35_r2   # a warm restart
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402

BASELINES_DIR = common.BENCHMARKS_DIR / "baselines"
NUM_CLASSES = 10


def augment_batch(x: np.ndarray, rng: np.random.Generator, padding: int = common.CROP_PADDING) -> np.ndarray:
    """Zero-pads each image by ``padding``, crops it back at a random offset, flips half left-right.

    One vectorised gather for the whole batch (no per-image Python loop).

    Example:
        >>> x = np.arange(2 * 4 * 4 * 1, dtype="uint8").reshape(2, 4, 4, 1)
        >>> out = augment_batch(x, np.random.default_rng(0), padding=1)
        >>> out.shape, out.dtype
        ((2, 4, 4, 1), dtype('uint8'))
    """
    n, h, w, _ = x.shape
    padded = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    dy = rng.integers(0, 2 * padding + 1, n)
    dx = rng.integers(0, 2 * padding + 1, n)
    rows = dy[:, None] + np.arange(h)[None, :]
    cols = dx[:, None] + np.arange(w)[None, :]
    flip = rng.random(n) < 0.5
    cols = np.where(flip[:, None], cols[:, ::-1], cols)
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def make_batches(x: np.ndarray, y: np.ndarray, batch_size: int, *, seed: int, augment: bool = True,
                 start_epoch: int = 0, label_smoothing_classes: int = NUM_CLASSES):
    """A ``keras.utils.PyDataset`` of ``(float32 images in [0, 255], one-hot float32 labels)``.

    Epoch ``e`` uses the permutation and augmentation of ``numpy.random.default_rng((seed, e))``, so a run
    resumed at epoch ``e`` sees the same batches as an uninterrupted one. The last partial batch is dropped.
    """
    import keras

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=1, use_multiprocessing=False)
            self.epoch = start_epoch
            self._order_epoch, self._order, self._rng = None, None, None

        def __len__(self):
            return len(x) // batch_size

        def _ensure(self):
            if self._order_epoch != self.epoch:
                rng = np.random.default_rng((seed, self.epoch))
                self._order, self._rng, self._order_epoch = rng.permutation(len(x)), rng, self.epoch

        def __getitem__(self, i):
            self._ensure()
            idx = np.sort(self._order[i * batch_size:(i + 1) * batch_size])
            xb = x[idx]
            if augment:
                xb = augment_batch(xb, np.random.default_rng((seed, self.epoch, i)))
            yb = np.eye(label_smoothing_classes, dtype="float32")[y[idx]]
            return xb.astype("float32"), yb

        def on_epoch_end(self):
            self.epoch += 1

    return Batches()


@dataclasses.dataclass
class FastConfig:
    """One baseline's training recipe (every field is recorded in the result JSON)."""

    model: str = "vgg16"
    width: float = 0.35
    epochs: int = 30
    batch_size: int = 256
    lr: float = 0.15
    weight_decay: float = 5e-3  # decoupled (Keras): kernel *= 1 - lr * wd per step; ~ coupled L2 5e-4 at momentum 0.9
    warmup_epochs: float = 2.0
    label_smoothing: float = 0.1
    augment: bool = True
    seed: int = 0
    train_limit: int | None = None
    jit_compile: bool = False
    precision: str = "float32"  # or "mixed_bfloat16"
    eval_every: int = 5  # test accuracy in the log every N epochs (the last epoch is kept, never selected)
    init_from: str | None = None  # a trained .keras to start from: a warm restart (a new warmup + cosine cycle)


def _optimizer(cfg: FastConfig, steps_per_epoch: int, model):
    tc = common.TrainConfig(model=cfg.model, epochs=cfg.epochs, lr=cfg.lr, weight_decay=cfg.weight_decay,
                            warmup_epochs=cfg.warmup_epochs, batch_size=cfg.batch_size)
    return common.make_optimizer(tc, steps_per_epoch, model)


def _compile(model, cfg: FastConfig, steps_per_epoch: int):
    import keras

    model.compile(optimizer=_optimizer(cfg, steps_per_epoch, model),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
                  metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")], jit_compile=cfg.jit_compile)


def _build(cfg: FastConfig):
    import keras

    keras.mixed_precision.set_global_policy(cfg.precision)
    keras.utils.set_random_seed(cfg.seed)
    model = common.model_builders()[cfg.model](width=cfg.width, seed=cfg.seed)
    if cfg.init_from:
        trained = keras.saving.load_model(cfg.init_from, compile=False)
        model.set_weights(trained.get_weights())
    return model


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _Log:
    def __init__(self, path: Path | None):
        self.path = path

    def __call__(self, line: str) -> None:
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%H:%M:%S")
        print(f"[{stamp}] {line}", flush=True)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(f"[{stamp}] {line}\n")


def train(cfg: FastConfig, name: str, *, commit: bool = True, command: str | None = None,
          checkpoint_dir: str | Path | None = None) -> dict[str, Any]:
    """Trains (or resumes) ``cfg`` on all CIFAR-10 training images; returns the result dict it wrote.

    The checkpoint of the last finished epoch lives in ``checkpoint_dir`` (default ``benchmarks/cache/``);
    with ``commit`` the final model, log and checksum go to ``benchmarks/baselines/`` and the result to
    ``benchmarks/results/``.
    """
    import keras

    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else common.CACHE_DIR
    ckpt_model = ckpt_dir / f"{name}.ckpt.keras"
    ckpt_state = ckpt_dir / f"{name}.ckpt.json"
    out_dir = BASELINES_DIR if commit else common.CACHE_DIR
    log = _Log(out_dir / f"{name}.log")
    x_train, y_train = common.load_split("train", limit=cfg.train_limit)
    x_test, y_test = common.load_split("test")
    steps = len(x_train) // cfg.batch_size
    state: dict[str, Any] = {"epoch": 0, "history": [], "seconds": 0.0}
    if ckpt_state.exists() and ckpt_model.exists():
        state = json.loads(ckpt_state.read_text(encoding="utf-8"))
        if state.get("config") != dataclasses.asdict(cfg):
            raise SystemExit(f"{ckpt_state} was written by another config; delete it or use another --name")
        keras.mixed_precision.set_global_policy(cfg.precision)
        model = keras.saving.load_model(ckpt_model)
        log(f"resuming {name} after epoch {state['epoch']}/{cfg.epochs}")
    else:
        model = _build(cfg)
        _compile(model, cfg, steps)
        start = f" from {cfg.init_from} (sha256 {_sha256(Path(cfg.init_from))[:16]})" if cfg.init_from else ""
        log(f"training {name}{start}: {cfg.model} width {cfg.width} ({model.count_params():,} params) on "
            f"{len(x_train)} images, {cfg.epochs} epochs x {steps} steps; {dataclasses.asdict(cfg)}")
    batches = make_batches(x_train, y_train, cfg.batch_size, seed=cfg.seed, augment=cfg.augment,
                           start_epoch=state["epoch"])
    y_test_1h = np.eye(NUM_CLASSES, dtype="float32")[y_test]

    class Checkpoint(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds = time.perf_counter() - self.start
            row = {"epoch": epoch + 1, "seconds": round(seconds, 1),
                   "images_per_second": round(steps * cfg.batch_size / seconds, 1),
                   **{k: round(float(v), 4) for k, v in (logs or {}).items()}}
            if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
                loss, acc = self.model.evaluate(x_test.astype("float32"), y_test_1h, batch_size=500, verbose=0)
                row["test_accuracy"] = round(float(acc), 4)
            state["history"].append(row)
            state["epoch"] = epoch + 1
            state["seconds"] = round(state["seconds"] + seconds, 1)
            state["config"] = dataclasses.asdict(cfg)
            common.save_model_atomic(self.model, ckpt_model)
            common.write_json_atomic(ckpt_state, state)
            log(" ".join(f"{k}={v}" for k, v in row.items()))

    if state["epoch"] < cfg.epochs:
        model.fit(batches, epochs=cfg.epochs, initial_epoch=state["epoch"], callbacks=[Checkpoint()], verbose=0)
    keras.mixed_precision.set_global_policy("float32")
    final = common.model_builders()[cfg.model](width=cfg.width, seed=cfg.seed)  # float32 copy of the weights
    final.set_weights([np.asarray(w, dtype="float32") for w in model.get_weights()])
    test = common.evaluate(final, x_test, y_test)
    model_path = out_dir / f"{name}.keras"
    common.save_model_atomic(final, model_path)
    last = [r["test_accuracy"] for r in state["history"] if "test_accuracy" in r]
    result = {
        "name": name, "model": cfg.model, "width": cfg.width, "params": int(final.count_params()),
        "macs": common._count_macs(final),  # noqa: SLF001
        "test_accuracy": test["accuracy"], "test_loss": test["loss"], "test_images": test["n"],
        "train_images": int(len(x_train)), "epochs": cfg.epochs, "selected_on": "last epoch",
        "seconds": state["seconds"],
        "convergence": {"test_accuracy_every_eval": last,
                        "gain_over_last_eval_interval": round(last[-1] - last[-2], 4) if len(last) > 1 else None},
        "config": dataclasses.asdict(cfg),
        "init_from": ({"path": cfg.init_from, "sha256": _sha256(Path(cfg.init_from))} if cfg.init_from else None),
        "recipe": {"optimizer": "SGD momentum 0.9 Nesterov, batch %d" % cfg.batch_size,
                   "schedule": f"linear warmup {cfg.warmup_epochs:g} epochs from lr/10 to {cfg.lr:g}, cosine to 0",
                   "weight_decay": f"decoupled {cfg.weight_decay:g} x lr per step on kernels only",
                   "loss": f"categorical cross-entropy, label smoothing {cfg.label_smoothing:g}",
                   "augmentation": "4-px zero pad + random crop + horizontal flip" if cfg.augment else "none",
                   "data": "benchmarks.fast_train: uint8 in memory, vectorised numpy augmentation per batch"},
        "file": {"path": os.path.relpath(model_path, common.BENCHMARKS_DIR.parent), "bytes": model_path.stat().st_size,
                 "sha256": _sha256(model_path)},
        "history": state["history"],
        "command": command or " ".join(sys.argv),
        "machine": common.machine_info(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    result_path = common.result_path(name) if commit else common.CACHE_DIR / f"baseline_{name}.json"
    common.write_json_atomic(result_path, result)
    log(f"test accuracy {test['accuracy']:.4f} on {test['n']} images; wrote {model_path} and {result_path}")
    return result


# ----------------------------------------------------------------------------- speed benchmark
def _time_fit(model, data, steps: int, batch: int, warmup_steps: int) -> float:
    """Images per second of ``model.fit`` over ``steps`` batches, after ``warmup_steps`` untimed ones."""
    model.fit(data, epochs=1, steps_per_epoch=warmup_steps, verbose=0)
    start = time.perf_counter()
    model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)
    return steps * batch / (time.perf_counter() - start)


def speed(models: list[tuple[str, float]], *, steps: int, warmup_steps: int = 3) -> list[dict[str, Any]]:
    """Images/s of the old path (``common.make_train_dataset``, batch 128) and the new one's variants."""
    import keras
    import tensorflow as tf

    x, y = common.load_split("train", limit=6000)
    rows = []
    for model_name, width in models:
        variants = [("today: tf.data per-image augmentation, batch 128, float32", "old", 128, "float32", False),
                    ("new: in-memory uint8, numpy batch augmentation, batch 256, float32", "new", 256, "float32", False),
                    ("new + XLA", "new", 256, "float32", True),
                    ("new + bfloat16 mixed precision", "new", 256, "mixed_bfloat16", False),
                    ("new + XLA + bfloat16", "new", 256, "mixed_bfloat16", True)]
        for label, path, batch, precision, jit in variants:
            cfg = FastConfig(model=model_name, width=width, batch_size=batch, precision=precision, jit_compile=jit)
            model = _build(cfg)
            if path == "old":
                tc = common.TrainConfig(model=model_name, width=width, batch_size=batch)
                model.compile(optimizer=common.make_optimizer(tc, 100, model),
                              loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=jit)
                data = common.make_train_dataset(x, y, batch, augment=True, seed=0).repeat()
            else:
                _compile(model, cfg, 100)
                batches = make_batches(x, y, batch, seed=0)
                data = tf.data.Dataset.from_generator(
                    lambda b=batches: (b[i % len(b)] for i in range(10 ** 9)),
                    output_signature=(tf.TensorSpec((batch, 32, 32, 3), tf.float32),
                                      tf.TensorSpec((batch, NUM_CLASSES), tf.float32))).prefetch(2)
            ips = _time_fit(model, data, steps, batch, warmup_steps)
            row = {"model": model_name, "width": width, "variant": label, "batch_size": batch,
                   "precision": precision, "jit_compile": jit, "images_per_second": round(ips, 1),
                   "macs": common._count_macs(model)}  # noqa: SLF001
            print(json.dumps(row), flush=True)
            rows.append(row)
            keras.mixed_precision.set_global_policy("float32")
            keras.backend.clear_session()
    return rows


def _speed_markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = ["# Training speed on CIFAR-10: today's path vs the fast path", "",
             f"Machine: {meta['machine'].get('cpu_model', '?')}, {meta['machine'].get('cpu_count_usable', '?')} cores; date "
             f"{meta['date']}; load before {meta['load']}; command `{meta['command']}`.", "",
             "| model | MACs | variant | img/s | x today |", "|---|---:|---|---:|---:|"]
    base = {}
    for r in rows:
        key = (r["model"], r["width"])
        base.setdefault(key, r["images_per_second"])
        lines.append(f"| {r['model']} w{r['width']:g} | {r['macs'] / 1e6:.1f}M | {r['variant']} | "
                     f"{r['images_per_second']:.0f} | {r['images_per_second'] / base[key]:.2f} |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = FastConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--speed", action="store_true", help="time today's and the fast path; write results/train_speed.*")
    p.add_argument("--speed-models", default="vgg16:0.35,resnet20:1", help="MODEL:WIDTH,... for --speed")
    p.add_argument("--speed-steps", type=int, default=12)
    p.add_argument("--model", default=d.model, choices=sorted(common.MODEL_NAMES))
    p.add_argument("--name", help="run name (default MODEL_wWIDTH)")
    p.add_argument("--no-commit", action="store_true", help="write outputs to benchmarks/cache/ only")
    p.add_argument("--checkpoint-dir", help="where the per-epoch checkpoint lives (default benchmarks/cache/)")
    for f in dataclasses.fields(FastConfig):
        if f.name in ("model",):
            continue
        kind = type(f.default) if f.default is not None else (str if f.name == "init_from" else int)
        if kind is bool:
            continue
        p.add_argument("--" + f.name.replace("_", "-"), type=kind, default=f.default)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--jit-compile", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> Any:
    args = parse_args(argv)
    command = "python -m benchmarks.fast_train " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.speed:
        load = os.getloadavg()[0]
        models = [(m.split(":")[0], float(m.split(":")[1])) for m in args.speed_models.split(",")]
        rows = speed(models, steps=args.speed_steps)
        meta = {"machine": common.machine_info(), "date": _dt.datetime.now(_dt.timezone.utc).isoformat(
            timespec="seconds"), "load": round(load, 2), "command": command}
        common.write_json_atomic(common.RESULTS_DIR / "train_speed.json", {**meta, "rows": rows})
        md = common.RESULTS_DIR / "train_speed.md"
        md.write_text(_speed_markdown(rows, meta), encoding="utf-8")
        return rows
    fields = {f.name for f in dataclasses.fields(FastConfig)}
    cfg = FastConfig(**{k: v for k, v in vars(args).items() if k in fields and k not in ("augment", "jit_compile")},
                     augment=not args.no_augment, jit_compile=args.jit_compile)
    name = args.name or f"{cfg.model}_w{cfg.width:g}"
    return train(cfg, name, commit=not args.no_commit, command=command, checkpoint_dir=args.checkpoint_dir)


if __name__ == "__main__":
    main()
