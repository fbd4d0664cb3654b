"""Quantization after pruning: quantization-aware training with tfmot, to a verified full-integer .tflite.

``qat(model, (x, y), epochs=..., path=...)`` rebuilds the Keras 3 model in tf_keras in a child process
(tfmot works only on tf_keras, which must not share a process with Keras 3), applies tfmot's default 8-bit
QAT, fine-tunes, converts and verifies the file with LiteRT. ``check_rebuild(model)`` only rebuilds and
checks, and lists the layers QAT would leave to post-training int8. Needs the ``[qat]`` packages
(:func:`~tfmot_easiedge.quantize.requirements.install_command`); nothing here imports them in this process.

Example:
    >>> from tfmot_easiedge import quantize
    >>> r = quantize.qat(slim, (x, y), epochs=1, path="slim_qat.tflite")  # doctest: +SKIP
    >>> print(r.summary())  # doctest: +SKIP
"""
from typing import TYPE_CHECKING

from tfmot_easiedge._lazy import install_lazy_attributes

if TYPE_CHECKING:  # the lazy names below, for type checkers and IDEs
    from tfmot_easiedge.quantize.qat import check_rebuild, qat, tflite_accuracy
    from tfmot_easiedge.quantize.requirements import install_command, require_qat
    from tfmot_easiedge.quantize.result import QATResult, RebuildCheck, SkippedLayer
    from tfmot_easiedge.quantize.runner import QATError
    from tfmot_easiedge.quantize.spec import QATUnsupportedError

install_lazy_attributes(__name__, {
    **dict.fromkeys(["check_rebuild", "qat", "tflite_accuracy"], "tfmot_easiedge.quantize.qat"),
    **dict.fromkeys(["install_command", "require_qat"], "tfmot_easiedge.quantize.requirements"),
    **dict.fromkeys(["QATResult", "RebuildCheck", "SkippedLayer"], "tfmot_easiedge.quantize.result"),
    "QATError": "tfmot_easiedge.quantize.runner",
    "QATUnsupportedError": "tfmot_easiedge.quantize.spec"}, [])

__all__ = ["QATError", "QATResult", "QATUnsupportedError", "RebuildCheck", "SkippedLayer", "check_rebuild",
           "install_command", "qat", "require_qat",
           "tflite_accuracy"]
