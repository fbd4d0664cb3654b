"""Which layers tfmot's default 8-bit scheme quantizes during training, and why the others are left out.

Runs in the QAT child only (imports tfmot). Every layer is annotated except those tfmot's registry does not
support (BatchNormalization is annotated anyway: tfmot folds it into the convolution before it); when
``quantize_apply`` still refuses a layer, its annotation is removed and the reason recorded, until it
accepts the model. A layer left out trains in float32 with fake-quantized inputs; the converter then
quantizes it to int8 from the representative data (post-training), so the .tflite file is int8 end to end.
"""
from __future__ import annotations

import re
from typing import Any

__all__ = ["NOT_IN_REGISTRY", "REFUSED_BY_QUANTIZE_APPLY", "quantize_with_skips"]

#: Reasons a layer is not quantization-aware trained (``SkippedLayer.reason``).
NOT_IN_REGISTRY = "not_in_tfmot_registry"
REFUSED_BY_QUANTIZE_APPLY = "refused_by_quantize_apply"

_REFUSED = re.compile(r"Layer (\S+?):<class")
_MAX_TRIES = 1000


def _annotated(model, skip: set[str]) -> Any:
    import tensorflow_model_optimization as tfmot
    import tf_keras

    annotate = tfmot.quantization.keras.quantize_annotate_layer

    def clone(layer):
        if isinstance(layer, tf_keras.layers.InputLayer) or layer.name in skip:
            return layer
        return annotate(layer)

    return tf_keras.models.clone_model(model, clone_function=clone)


def quantize_with_skips(model: Any) -> tuple[Any, list[dict]]:
    """tfmot's QAT model of the tf_keras ``model`` and the layers left out, ``{"name", "class_name", "reason",
    "detail"}`` each.

    Example:
        >>> qat_model, skipped = quantize_with_skips(tf_keras_model)  # doctest: +SKIP
    """
    import tensorflow_model_optimization as tfmot
    import tf_keras
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as registry_module,
    )

    registry = registry_module.Default8BitQuantizeRegistry()
    skipped = []
    for layer in model.layers:
        if isinstance(layer, (tf_keras.layers.InputLayer, tf_keras.layers.BatchNormalization)):
            continue
        if not registry.supports(layer):
            skipped.append({"name": layer.name, "class_name": type(layer).__name__, "reason": NOT_IN_REGISTRY,
                            "detail": "tfmot's default 8-bit scheme has no QuantizeConfig for this layer class"})
    for _ in range(_MAX_TRIES):
        annotated = _annotated(model, {s["name"] for s in skipped})
        try:
            with tfmot.quantization.keras.quantize_scope():
                return tfmot.quantization.keras.quantize_apply(annotated), skipped
        except (RuntimeError, ValueError) as e:
            match = _REFUSED.search(str(e))
            if not match or match.group(1) in {s["name"] for s in skipped}:
                raise
            layer = model.get_layer(match.group(1))
            skipped.append({"name": layer.name, "class_name": type(layer).__name__,
                            "reason": REFUSED_BY_QUANTIZE_APPLY, "detail": " ".join(str(e).split())[:300]})
    raise RuntimeError("tfmot's quantize_apply kept refusing layers")
