"""What every exporter shares: the result record, atomic writes, lazy imports, sample inputs, verification.

An exporter converts to a temporary path next to the target, runs the temporary file with its own
runtime on sample inputs, compares against Keras, and only then moves it into place. A failed
conversion or a failed check therefore leaves neither the target nor a temporary file behind.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from tfmot_easiedge.data.checks import check_finite, check_finite_weights

# Verification samples drawn from representative data, and random samples made when nothing is given.
MAX_VERIFY_FROM_REPRESENTATIVE = 256
N_RANDOM_SAMPLES = 8
RANDOM_SEED = 0
# A tf.data.Dataset or generator is read at most this far (an infinite ``.repeat()`` must not hang).
MAX_MATERIALIZED_SAMPLES = 10_000

RunFn = Callable[[list], list]


class MissingDependencyError(ImportError):
    """An optional package needed by an exporter or runtime is not installed; the message names the pip extra."""


class ExportVerificationError(RuntimeError):
    """The exported file disagrees with Keras beyond the tolerance; nothing was written."""


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What an export wrote and how well the written file agrees with the Keras model.

    Attributes:
        format: ``"saved_model"``, ``"tflite"``, ``"onnx"`` or ``"tensorrt"``.
        path: where the file (or SavedModel directory) now lies.
        size_bytes: its size on disk (the sum of all files for a directory).
        precision: ``"float32"``, ``"float16"``, ``"dynamic"`` (int8 weights, float activations) or ``"int8"``.
        max_abs_diff: largest ``|exported - keras|`` over all outputs and samples (None when not verified).
        max_rel_diff: ``max_abs_diff`` of each output divided by the largest ``|keras|`` of that output,
            maximised over outputs (None when not verified).
        top1_agreement: share of samples whose arg-max of the first output matches Keras, a tie among
            ``k`` maxima of the export counting ``1/k`` (see :func:`top1_agreement`); None when not
            verified or when that output has a single unit.
        n_samples: how many samples the verification ran (0 when not verified).
        runtime: the runtime that ran the file, with its version, e.g. ``"onnxruntime 1.18.0"``.
        seconds: wall time of conversion plus verification.

    Example:
        >>> r = ExportResult("onnx", Path("m.onnx"), 1024, "float32", 1e-7, 1e-8, 1.0, 8, "onnxruntime 1.18", 2.5)
        >>> r.verified
        True
    """

    format: str
    path: Path
    size_bytes: int
    precision: str
    max_abs_diff: float | None
    max_rel_diff: float | None
    top1_agreement: float | None
    n_samples: int
    runtime: str
    seconds: float

    @property
    def verified(self) -> bool:
        """True when the file was run and compared with Keras."""
        return self.n_samples > 0

    def summary(self) -> str:
        """One line for logs and reports."""
        parts = [f"{self.format} ({self.precision}) -> {self.path} [{self.size_bytes / 1024:.1f} KiB]"]
        if self.verified:
            parts.append(f"max abs diff {self.max_abs_diff:.3g}, max rel diff {self.max_rel_diff:.3g}")
            if self.top1_agreement is not None:
                parts.append(f"top-1 agreement {100 * self.top1_agreement:.2f}%")
            parts.append(f"on {self.n_samples} samples with {self.runtime}")
        else:
            parts.append("not verified")
        parts.append(f"{self.seconds:.1f}s")
        return "; ".join(parts)


# --------------------------------------------------------------------------- optional imports


def import_optional(module: str, extra: str, purpose: str):
    """Imports ``module`` or raises :class:`MissingDependencyError` with a pip hint naming ``extra``.

    Example:
        >>> import_optional("json", "onnx", "ONNX export").__name__
        'json'
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingDependencyError(
            f"{purpose} needs the optional package '{module}', which could not be imported ({err}). "
            f'Install it with: pip install "tfmot-easiedge[{extra}]"',
            name=module,
        ) from err


def package_version(module) -> str:
    """``"name version"`` of an imported module, for :attr:`ExportResult.runtime`."""
    name = module.__name__.split(".")[0]
    return f"{name} {getattr(module, '__version__', '?')}".strip()


# --------------------------------------------------------------------------- atomic writes


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def check_target(path: str | os.PathLike, overwrite: bool) -> Path:
    """Returns ``path`` as a Path, raising FileExistsError when it exists and ``overwrite`` is False."""
    final = Path(path)
    if (final.exists() or final.is_symlink()) and not overwrite:
        raise FileExistsError(f"{final} already exists; pass overwrite=True to replace it")
    return final


def _commit(tmp: Path, final: Path, overwrite: bool) -> None:
    exists = final.exists() or final.is_symlink()
    if exists and not overwrite:
        raise FileExistsError(f"{final} appeared during the export; pass overwrite=True to replace it")
    if not exists or (tmp.is_file() and final.is_file()):
        os.replace(tmp, final)  # atomic for a file, and for a directory onto a free name
        return
    # A directory cannot be replaced in one step: move the old one aside, move the new one in, drop the old.
    backup = final.with_name(f".{final.name}.old-{secrets.token_hex(4)}")
    os.rename(final, backup)
    try:
        os.rename(tmp, final)
    except BaseException:
        os.rename(backup, final)
        raise
    _remove(backup)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yields a free temporary path next to ``path``; moves it onto ``path`` when the block succeeds.

    The temporary path is not created: the writer makes a file or a directory there. If the block raises,
    whatever was written is removed and ``path`` is left untouched.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "model.bin"
        >>> with atomic_output(target) as tmp:
        ...     _ = tmp.write_bytes(b"ok")
        >>> target.read_bytes()
        b'ok'
    """
    final = check_target(path, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        yield tmp
        if not (tmp.exists() or tmp.is_symlink()):
            raise RuntimeError(f"the exporter wrote nothing to the temporary path {tmp}")
        _commit(tmp, final, overwrite)
    except BaseException:
        _remove(tmp)
        raise


def sweep_leftovers(path: str | os.PathLike) -> list[Path]:
    """Removes what a killed writer (SIGKILL, power loss) left next to ``path``; returns what it removed.

    :func:`atomic_output` names its temporary ``.NAME.tmp-PID-HEX``: one whose process is gone is removed, one
    whose process still runs (a concurrent writer) is kept. Backups ``.NAME.old-HEX`` of an interrupted
    directory replacement are removed only when ``path`` itself exists (else they are the only copy, and are
    kept for the user).

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> (d / ".out.tmp-999999999-abcd").mkdir()
        >>> [p.name for p in sweep_leftovers(d / "out")]
        ['.out.tmp-999999999-abcd']
    """
    final = Path(path)
    removed = []
    if not final.parent.is_dir():
        return removed
    for entry in sorted(final.parent.glob(f".{final.name}.tmp-*")):
        pid_text = entry.name[len(f".{final.name}.tmp-"):].split("-", 1)[0]
        if pid_text.isdigit() and _process_alive(int(pid_text)):
            continue
        _remove(entry)
        removed.append(entry)
    if final.exists():
        for entry in sorted(final.parent.glob(f".{final.name}.old-*")):
            _remove(entry)
            removed.append(entry)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # another user's process, or undeterminable: keep its files
    return True


def size_on_disk(path: Path) -> int:
    """Bytes of a file, or of all files below a directory."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


# --------------------------------------------------------------------------- model inputs and sample data


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """Name, shape (with ``None`` for unknown sizes, batch first) and NumPy dtype of one model input."""

    name: str
    shape: tuple
    dtype: np.dtype


def input_specs(model) -> list[InputSpec]:
    """The model's inputs, in ``model.inputs`` order.

    Raises:
        ValueError: the model has no symbolic inputs (a subclassed model, or a Sequential without Input).
    """
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise ValueError(
            f"cannot read the inputs of {type(model).__name__} {getattr(model, 'name', '')!r}: got no "
            "model.inputs; expected a functional or Sequential model built from keras.Input(...)"
        )
    return [InputSpec(t.name, tuple(t.shape), np.dtype(str(t.dtype))) for t in inputs]


def _to_numpy(value) -> np.ndarray:
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


def _is_nested(value) -> bool:
    return isinstance(value, (tuple, list, dict))


def _split_x(element, n_inputs: int):
    """The model-input part of an element that may be ``x``, ``(x,)``, ``(x, y)`` or ``(x, y, w)``."""
    if isinstance(element, dict):
        return element
    if isinstance(element, (tuple, list)):
        if n_inputs == 1 or _is_nested(element[0]):
            return element[0]
        return element
    return element


def _per_input(x, specs: Sequence[InputSpec]) -> list[np.ndarray]:
    """One array per model input, batch first, cast to the input dtype."""
    if isinstance(x, dict):
        missing = [s.name for s in specs if s.name not in x]
        if missing:
            raise ValueError(f"input dict has keys {sorted(x)}; expected the model input names "
                             f"{[s.name for s in specs]} (missing {missing})")
        values = [x[s.name] for s in specs]
    elif isinstance(x, (tuple, list)) and len(specs) > 1:
        values = list(x)
    else:
        values = [x]
    if len(values) != len(specs):
        raise ValueError(f"got {len(values)} input arrays; expected {len(specs)} (one per model input "
                         f"{[s.name for s in specs]})")
    arrays = []
    for spec, value in zip(specs, values):
        arr = _to_numpy(value)
        if arr.ndim == len(spec.shape) - 1:  # a single unbatched sample
            arr = arr[None]
        if arr.ndim != len(spec.shape):
            raise ValueError(f"input {spec.name!r}: got an array of shape {arr.shape}; expected shape "
                             f"{spec.shape} (batch first) or one sample of shape {spec.shape[1:]}")
        arrays.append(arr.astype(spec.dtype, copy=False))
    return arrays


def _is_dataset(data) -> bool:
    return type(data).__name__.endswith("Dataset") and hasattr(data, "as_numpy_iterator")


def as_input_arrays(data, specs: Sequence[InputSpec], *, limit: int | None = None) -> list[np.ndarray]:
    """Turns sample or representative data into one ``[N, ...]`` array per model input.

    ``data`` may be an array (single-input model), a list/tuple or dict of arrays (one per input), an
    ``(x, y)`` tuple (``y`` is ignored), a ``tf.data.Dataset`` of ``x`` or ``(x, y)`` (batched or not),
    or a callable / iterable yielding such elements (the ``representative_dataset`` convention of
    ``tf.lite``). Datasets and iterables are read up to ``MAX_MATERIALIZED_SAMPLES`` samples. Samples
    holding NaN or inf are refused (a ``ValueError`` naming the first one): they would calibrate int8
    ranges and verify an export on nothing.

    Example:
        >>> specs = [InputSpec("x", (None, 4), np.dtype("float32"))]
        >>> [a.shape for a in as_input_arrays((np.zeros((5, 4)), np.zeros(5)), specs)]
        [(5, 4)]
    """
    if isinstance(data, np.ndarray) or hasattr(data, "numpy") or isinstance(data, (tuple, list, dict)):
        arrays = _per_input(_split_x(data, len(specs)), specs)
    else:
        if _is_dataset(data):
            elements = iter(data)
        elif callable(data):
            elements = iter(data())
        elif hasattr(data, "__iter__"):
            elements = iter(data)
        else:
            raise TypeError(f"got sample data of type {type(data).__name__}; expected an array, a list/tuple/dict "
                            "of arrays, a tf.data.Dataset, or a callable/iterable yielding samples")
        cap = min(limit or MAX_MATERIALIZED_SAMPLES, MAX_MATERIALIZED_SAMPLES)
        chunks: list[list[np.ndarray]] = []
        count = 0
        for element in elements:
            chunk = _per_input(_split_x(element, len(specs)), specs)
            chunks.append(chunk)
            count += chunk[0].shape[0]
            if count >= cap:
                break
        if not chunks:
            raise ValueError("the sample data yielded no elements; expected at least one sample")
        arrays = [np.concatenate([c[i] for c in chunks]) for i in range(len(specs))]
    if len({a.shape[0] for a in arrays}) != 1:
        raise ValueError(f"input arrays have different sample counts {[a.shape[0] for a in arrays]}; "
                         "expected the same number of samples for every input")
    if limit is not None:
        arrays = [a[:limit] for a in arrays]
    if arrays[0].shape[0] == 0:
        raise ValueError("got 0 samples; expected at least one")
    for spec, arr in zip(specs, arrays):
        check_finite(arr, f"sample data for input {spec.name!r}")
    return arrays


def random_inputs(specs: Sequence[InputSpec], n: int = N_RANDOM_SAMPLES, *, seed: int = RANDOM_SEED,
                  batch_size: int | None = None) -> list[np.ndarray]:
    """Seeded random inputs: standard normal for floats, 0..255 for uint8, 0/1 for other integers.

    Example:
        >>> [a.shape for a in random_inputs([InputSpec("x", (None, 4), np.dtype("float32"))], 3)]
        [(3, 4)]
    """
    rng = np.random.default_rng(seed)
    arrays = []
    for spec in specs:
        inner = spec.shape[1:]
        if any(d is None for d in inner):
            raise ValueError(f"input {spec.name!r} has shape {spec.shape} with unknown sizes; pass sample "
                             "inputs (sample_inputs= / input_data=) so they can be run")
        shape = (batch_size or n, *inner)
        if np.issubdtype(spec.dtype, np.floating):
            arr = rng.standard_normal(shape)
        elif spec.dtype == np.uint8:
            arr = rng.integers(0, 256, shape)
        elif np.issubdtype(spec.dtype, np.integer):
            arr = rng.integers(0, 2, shape)
        elif spec.dtype == np.bool_:
            arr = rng.integers(0, 2, shape).astype(bool)
        else:
            raise ValueError(f"input {spec.name!r}: cannot make random data of dtype {spec.dtype}; pass sample inputs")
        arrays.append(arr.astype(spec.dtype))
    return arrays


def verification_inputs(specs, sample_inputs=None, representative_data=None) -> list[np.ndarray]:
    """The inputs a verification runs: the given samples, else representative data, else seeded random."""
    if sample_inputs is not None:
        return as_input_arrays(sample_inputs, specs)
    if representative_data is not None:
        return as_input_arrays(representative_data, specs, limit=MAX_VERIFY_FROM_REPRESENTATIVE)
    return random_inputs(specs)


# --------------------------------------------------------------------------- verification


def run_in_chunks(run: RunFn, inputs: list[np.ndarray], chunk: int) -> list[np.ndarray]:
    """Runs ``run`` on consecutive slices of ``inputs`` and concatenates the outputs."""
    n = inputs[0].shape[0]
    pieces = [run([a[i:i + chunk] for a in inputs]) for i in range(0, n, chunk)]
    return [np.concatenate([p[j] for p in pieces]) for j in range(len(pieces[0]))]


def keras_outputs(model, inputs: list[np.ndarray], chunk: int = 64) -> list[np.ndarray]:
    """The model's outputs in inference mode, flattened to a list of arrays."""
    from keras import tree

    def run(batch):
        out = model(batch[0] if len(batch) == 1 else batch, training=False)
        return [_to_numpy(o) for o in tree.flatten(out)]

    return run_in_chunks(run, inputs, chunk)


def top1_agreement(reference: np.ndarray, got: np.ndarray) -> float | None:
    """Share of samples whose arg-max over the last axis agrees, with ties in ``got`` splitting the credit.

    A quantized output can tie exactly (two int8 logits one step apart in float round to the same
    value); ``np.argmax`` would then pick the lower class index, an accident of class order. A sample
    whose reference top-1 is one of ``k`` tied maxima counts ``1/k``: the agreement expected when ties
    are broken at random. None when the output is not a score vector (a single unit or a scalar).

    Example:
        >>> top1_agreement(np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([[0.5, 0.5], [2.0, 1.0]]))
        0.75
    """
    if reference.ndim < 2 or reference.shape[-1] < 2:
        return None
    ref = reference.reshape(-1, reference.shape[-1])
    out = np.asarray(got).reshape(-1, reference.shape[-1])
    is_max = out == out.max(axis=-1, keepdims=True)
    credit = is_max[np.arange(len(ref)), np.argmax(ref, -1)] / is_max.sum(-1)
    return float(np.mean(credit))


def compare_outputs(reference: list[np.ndarray], got: list[np.ndarray]) -> dict[str, Any]:
    """Max abs diff, max diff relative to each output's max ``|reference|``, and top-1 agreement.

    Example:
        >>> m = compare_outputs([np.array([[1.0, 2.0]])], [np.array([[1.0, 2.5]])])
        >>> m["max_abs_diff"], m["max_rel_diff"], m["top1_agreement"]
        (0.5, 0.25, 1.0)
    """
    if len(reference) != len(got):
        raise ExportVerificationError(f"the exported model has {len(got)} outputs; Keras has {len(reference)}")
    max_abs, max_rel = 0.0, 0.0
    for i, (ref, out) in enumerate(zip(reference, got)):
        ref = np.asarray(ref, np.float64)
        out = np.asarray(out, np.float64)
        if ref.shape != out.shape:
            raise ExportVerificationError(f"output {i}: exported shape {out.shape}; Keras shape {ref.shape}")
        diff = float(np.max(np.abs(ref - out))) if ref.size else 0.0
        scale = float(np.max(np.abs(ref))) if ref.size else 0.0
        max_abs = max(max_abs, diff)
        max_rel = max(max_rel, diff / max(scale, np.finfo(np.float32).tiny))
    return {"max_abs_diff": max_abs, "max_rel_diff": max_rel,
            "top1_agreement": top1_agreement(reference[0], got[0]),
            "n_samples": int(reference[0].shape[0]) if reference[0].ndim else 1}


def verify(model, run: RunFn, inputs: list[np.ndarray], *, what: str,
           tolerance: float | None = None, min_top1_agreement: float | None = None) -> dict[str, Any]:
    """Runs the exported file through ``run`` and Keras on ``inputs``; raises when it disagrees.

    Args:
        model: the Keras model.
        run: runs the exported file on a list of input arrays and returns a list of output arrays.
        inputs: one ``[N, ...]`` array per model input.
        what: a description of the export for error messages, e.g. ``"TFLite float16"``.
        tolerance: largest accepted ``max_rel_diff`` (None: no check).
        min_top1_agreement: smallest accepted top-1 agreement (None: no check).

    Raises:
        ExportVerificationError: a check failed.
    """
    metrics = compare_outputs(keras_outputs(model, inputs), run(inputs))
    n = metrics["n_samples"]
    if tolerance is not None and not metrics["max_rel_diff"] <= tolerance:
        raise ExportVerificationError(
            f"{what} export differs from Keras: max relative diff {metrics['max_rel_diff']:.3g} "
            f"(max abs diff {metrics['max_abs_diff']:.3g}) on {n} samples; expected <= {tolerance:.3g}. "
            "Nothing was written; pass a larger tolerance (or verify=False) to keep it anyway")
    top1 = metrics["top1_agreement"]
    if min_top1_agreement is not None and (top1 is None or top1 < min_top1_agreement):
        got = "no class output" if top1 is None else f"{100 * top1:.2f}%"
        raise ExportVerificationError(
            f"{what} export: top-1 agreement with Keras is {got} on {n} samples; expected >= "
            f"{100 * min_top1_agreement:.2f}%. Nothing was written")
    return metrics


class Stopwatch:
    """Seconds since creation; ``Stopwatch().seconds``."""

    def __init__(self) -> None:
        self._start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self._start


def make_result(fmt: str, path: Path, precision: str, metrics: dict | None, runtime: str,
                watch: Stopwatch) -> ExportResult:
    """Builds the :class:`ExportResult` of a committed export."""
    metrics = metrics or {}
    return ExportResult(
        format=fmt, path=path, size_bytes=size_on_disk(path), precision=precision,
        max_abs_diff=metrics.get("max_abs_diff"), max_rel_diff=metrics.get("max_rel_diff"),
        top1_agreement=metrics.get("top1_agreement"), n_samples=metrics.get("n_samples", 0),
        runtime=runtime if metrics else "", seconds=watch.seconds)
