"""Checks that a usable TensorFlow is installed, without importing it.

The package declares no TensorFlow distribution as a dependency (``tensorflow``, ``tensorflow-cpu``,
``tensorflow[and-cuda]``, ``tensorflow-macos``... all install the same ``tensorflow`` package, and two of them
in one environment overwrite each other's files), so this check is what tells a user with none, or one too
old, what to install.
"""
from __future__ import annotations

import importlib.machinery
import importlib.metadata
import importlib.util
import re

MIN_VERSION = (2, 16)

# Distributions that provide the ``tensorflow`` import package, most common first.
TF_DISTRIBUTIONS = (
    "tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-intel", "tensorflow-macos", "tensorflow-aarch64",
    "tensorflow-cpu-aws", "tensorflow-rocm", "intel-tensorflow", "intel-tensorflow-avx512", "tf-nightly",
    "tf-nightly-cpu", "tf-nightly-gpu", "tf-nightly-intel", "tf-nightly-macos",
)

INSTALL_HINT = ('pip install "tfmot-easiedge[tf]" (or "tfmot-easiedge[tf-cpu]" for the CPU-only build, or '
                '"tensorflow[and-cuda]" for NVIDIA GPUs)')


def find_spec(name: str) -> importlib.machinery.ModuleSpec | None:
    """``importlib.util.find_spec``, here so that tests can replace it."""
    return importlib.util.find_spec(name)


def installed_tensorflow() -> tuple[str, str] | None:
    """``(distribution, version)`` of the first installed distribution in :data:`TF_DISTRIBUTIONS`, or ``None``."""
    for dist in TF_DISTRIBUTIONS:
        try:
            return dist, importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _version_tuple(version: str) -> tuple[int, int] | None:
    match = re.match(r"(\d+)\.(\d+)", version)
    return (int(match.group(1)), int(match.group(2))) if match else None


def require_tensorflow() -> str | None:
    """Raises ``ImportError`` with one line saying what to install unless TensorFlow >= 2.16 is importable.

    To be called from the package import (``tfmot_easiedge/__init__.py``), before anything imports TensorFlow.
    It does not import TensorFlow itself: it looks for the ``tensorflow`` package with
    ``importlib.util.find_spec`` and reads its version from the installed distribution's metadata.

    Returns:
        The version found, or ``None`` when ``tensorflow`` is importable but no known distribution records its
        version (a source build, say): then it is not checked.

    Raises:
        ImportError: when ``tensorflow`` is missing, is only an empty directory (what uninstalling one of two
            TensorFlow distributions leaves behind), or is older than 2.16.

    Example:
        >>> require_tensorflow()  # doctest: +SKIP
        '2.21.0'
    """
    minimum = ".".join(map(str, MIN_VERSION))
    spec = find_spec("tensorflow")
    if spec is None:
        raise ImportError(f"tfmot-easiedge needs TensorFlow >= {minimum}, which is not installed: {INSTALL_HINT}")
    if spec.origin is None:  # a namespace package: a 'tensorflow' directory without TensorFlow in it
        raise ImportError(f"tfmot-easiedge needs TensorFlow >= {minimum}, but 'tensorflow' is an empty directory "
                          f"(a broken install; reinstall one build): {INSTALL_HINT}")
    found = installed_tensorflow()
    if found is None:
        return None
    dist, version = found
    parsed = _version_tuple(version)
    if parsed is not None and parsed < MIN_VERSION:
        raise ImportError(f"tfmot-easiedge needs TensorFlow >= {minimum}, found {dist} {version}: {INSTALL_HINT}")
    return version
