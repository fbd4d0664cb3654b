"""Optional imports that say which pip extra to install when the package is missing.

Only the standard library is imported here, so the hint costs nothing to whoever asks for it.
"""
from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["MissingDependencyError", "import_optional", "install_hint", "package_version"]

DISTRIBUTION = "tfmot-easiedge"


class MissingDependencyError(ImportError):
    """An optional package needed by an exporter or runtime is not installed; the message names the pip extra."""


def install_hint(extra: str) -> str:
    """The pip command that installs ``extra``.

    Example:
        >>> install_hint("onnx")
        'pip install "tfmot-easiedge[onnx]"'
    """
    return f'pip install "{DISTRIBUTION}[{extra}]"'


def import_optional(module: str, extra: str, purpose: str) -> ModuleType:
    """Imports ``module`` or raises :class:`MissingDependencyError` with a pip hint naming ``extra``.

    Args:
        module: the dotted module name, e.g. ``"tf2onnx"``.
        extra: the pip extra of ``tfmot-easiedge`` that installs it, e.g. ``"onnx"``.
        purpose: what needs it, for the message, e.g. ``"ONNX export"``.

    Raises:
        MissingDependencyError: the import failed; ``err.name`` is ``module``.

    Example:
        >>> import_optional("json", "onnx", "ONNX export").__name__
        'json'
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingDependencyError(
            f"{purpose} needs the optional package '{module}', which could not be imported ({err}). "
            f"Install it with: {install_hint(extra)}",
            name=module,
        ) from err


def package_version(module: ModuleType) -> str:
    """``"name version"`` of an imported module, e.g. ``"onnxruntime 1.18.0"``.

    Example:
        >>> import json
        >>> package_version(json).startswith("json ")
        True
    """
    name = module.__name__.split(".")[0]
    return f"{name} {getattr(module, '__version__', '?')}".strip()
