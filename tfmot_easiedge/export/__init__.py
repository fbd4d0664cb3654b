"""Verified exports of a Keras model: SavedModel, TFLite, ONNX, TensorRT.

Each exporter writes atomically (a temporary path next to the target, renamed when done), runs the
written file with its own runtime, compares it with Keras, and returns an :class:`ExportResult`.
Optional runtimes are imported only when used; a missing one raises :class:`MissingDependencyError`
(an ``ImportError``) naming the pip extra to install.

Example:
    >>> from tfmot_easiedge import export
    >>> result = export.tflite(model, "model.tflite", quantization="float16")  # doctest: +SKIP
    >>> print(result.summary())  # doctest: +SKIP

The functions shadow their submodules (``export.onnx`` is the function); reach a submodule's helpers
with ``importlib.import_module("tfmot_easiedge.export.onnx")``.
"""
from typing import TYPE_CHECKING

from tfmot_easiedge._lazy import install_lazy_attributes

if TYPE_CHECKING:  # the lazy names below, for type checkers and IDEs (tests/test_lint.py checks the two agree)
    from tfmot_easiedge._optional import MissingDependencyError
    from tfmot_easiedge.export._common import ExportResult, ExportVerificationError
    from tfmot_easiedge.export.onnx import onnx
    from tfmot_easiedge.export.saved_model import saved_model
    from tfmot_easiedge.export.tensorrt import TensorRTUnavailableError, tensorrt
    from tfmot_easiedge.export.tflite import tflite

# Loaded on first use (PEP 562): the exporters import Keras and TensorFlow, the names below do not need them.
install_lazy_attributes(__name__, {
    **dict.fromkeys(["ExportResult", "ExportVerificationError"], "tfmot_easiedge.export._common"),
    "MissingDependencyError": "tfmot_easiedge._optional",
    "onnx": "tfmot_easiedge.export.onnx", "saved_model": "tfmot_easiedge.export.saved_model",
    **dict.fromkeys(["TensorRTUnavailableError", "tensorrt"], "tfmot_easiedge.export.tensorrt"),
    "tflite": "tfmot_easiedge.export.tflite"}, [])

__all__ = [
    "ExportResult",
    "ExportVerificationError",
    "MissingDependencyError",
    "TensorRTUnavailableError",
    "onnx",
    "saved_model",
    "tensorrt",
    "tflite",
]
