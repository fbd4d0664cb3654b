"""What QAT did: :class:`QATResult`, :class:`SkippedLayer` and :class:`RebuildCheck`."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

__all__ = ["QATResult", "RebuildCheck", "SkippedLayer"]


@dataclasses.dataclass(frozen=True)
class SkippedLayer:
    """A layer QAT did not quantize during training, and why (it is still int8 in the file: see below).

    Attributes:
        name: the layer's name.
        class_name: its class, e.g. ``"Multiply"``.
        reason: ``"not_in_tfmot_registry"`` (tfmot's default 8-bit scheme has no config for the class) or
            ``"refused_by_quantize_apply"`` (tfmot refused it in this position).
        detail: tfmot's words.

    The converter quantizes a skipped layer post-training, from the representative data: the file stays
    full-integer (the conversion fails rather than keep a float op).

    Example:
        >>> SkippedLayer("se_scale", "Multiply", "not_in_tfmot_registry", "").reason
        'not_in_tfmot_registry'
    """

    name: str
    class_name: str
    reason: str
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class RebuildCheck:
    """How the tf_keras rebuild of a Keras 3 model compares, and what tfmot would quantize in it.

    Attributes:
        max_abs_diff: largest ``|tf_keras - keras|`` output difference on the probe samples.
        n_samples: how many probe samples.
        layers: the rebuilt model's layer names.
        skipped: the layers QAT leaves to post-training quantization.
        tf_keras_version: the tf_keras that rebuilt it.

    Example:
        >>> RebuildCheck(1e-7, 8, ("c", "head"), (), "2.21.0").quantized_layers
        2
    """

    max_abs_diff: float
    n_samples: int
    layers: tuple[str, ...]
    skipped: tuple[SkippedLayer, ...]
    tf_keras_version: str

    @property
    def quantized_layers(self) -> int:
        """How many layers QAT trains quantized."""
        return len(self.layers) - len(self.skipped)


@dataclasses.dataclass(frozen=True)
class QATResult:
    """A quantization-aware trained, full-integer .tflite file, verified with LiteRT.

    Attributes:
        path: the .tflite file.
        size_bytes: its size.
        epochs: QAT epochs run.
        export: the verification of the file against the QAT model (max abs/relative difference and top-1
            agreement, on ``export.n_samples`` samples, with ``export.runtime``).
        accuracy: top-1 of the int8 file (LiteRT) on ``validation_data``; None without it.
        keras_accuracy: top-1 of the QAT (fake-quantized) tf_keras model on ``validation_data`` after the
            last epoch; None without it.
        float_accuracy: top-1 of the given Keras model on ``validation_data``; None without it.
        history: the fine-tuning's per-epoch metrics (``loss``, ``accuracy``, ``val_*``).
        rebuild: the tf_keras rebuild's check and the layers QAT skipped.
        seconds: wall time.

    Example:
        >>> r = te.qat(slim, (x, y), epochs=1, path="slim_qat.tflite")  # doctest: +SKIP
        >>> print(r.summary())  # doctest: +SKIP
    """

    path: Path
    size_bytes: int
    epochs: int
    export: Any
    accuracy: float | None
    keras_accuracy: float | None
    float_accuracy: float | None
    history: dict[str, list]
    rebuild: RebuildCheck
    seconds: float

    @property
    def skipped(self) -> tuple[SkippedLayer, ...]:
        """The layers QAT left to post-training quantization."""
        return self.rebuild.skipped

    def summary(self) -> str:
        """One line for logs and reports."""
        parts = [f"QAT int8 ({self.epochs} epoch{'s' if self.epochs != 1 else ''}) -> {self.path} "
                 f"[{self.size_bytes / 1024:.1f} KiB]"]
        if self.accuracy is not None:
            parts.append(f"int8 top-1 {100 * self.accuracy:.2f}%")
        if self.float_accuracy is not None:
            parts.append(f"float top-1 {100 * self.float_accuracy:.2f}%")
        if self.export.top1_agreement is not None:
            parts.append(f"top-1 agreement with the QAT model {100 * self.export.top1_agreement:.2f}% on "
                         f"{self.export.n_samples} samples with {self.export.runtime}")
        parts.append(f"{self.rebuild.quantized_layers} layers trained quantized, {len(self.skipped)} left to "
                     "post-training int8" + (f" ({', '.join(s.name for s in self.skipped)})" if self.skipped else ""))
        parts.append(f"{self.seconds:.1f}s")
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able dict (for exports.json and reports)."""
        return {"method": "qat", "path": str(self.path), "size_bytes": self.size_bytes, "epochs": self.epochs,
                "accuracy": self.accuracy, "keras_accuracy": self.keras_accuracy,
                "float_accuracy": self.float_accuracy, "top1_agreement": self.export.top1_agreement,
                "max_abs_diff": self.export.max_abs_diff, "n_samples": self.export.n_samples,
                "runtime": self.export.runtime, "rebuild_max_abs_diff": self.rebuild.max_abs_diff,
                "skipped": [dataclasses.asdict(s) for s in self.skipped], "history": self.history,
                "seconds": self.seconds}
