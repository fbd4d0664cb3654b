"""What QAT needs installed, checked without importing it: tf_keras matching TensorFlow, and tfmot.

``tf-keras`` declares a dependency on the ``tensorflow`` distribution, so ``pip install tf-keras`` beside
``tensorflow-cpu`` (or any other build) installs a second distribution into the same ``tensorflow/`` package
and breaks it. The ``[qat]`` extra therefore holds only tfmot's real dependencies, and tf_keras and tfmot are
installed with ``--no-deps`` (:func:`install_command`); this module checks that both are there and that the
tf_keras minor version is the installed TensorFlow's.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util

from tfmot_easiedge import _optional, _tf_check

__all__ = ["TFMOT_VERSION", "install_command", "no_deps_requirements", "require_qat"]

#: The tensorflow-model-optimization release QAT was checked with.
TFMOT_VERSION = "0.8.1"


def _tensorflow_minor() -> str | None:
    found = _tf_check.installed_tensorflow()
    if found is None:
        return None
    parts = found[1].split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 else None


def no_deps_requirements(tf_minor: str | None = None) -> list[str]:
    """The two requirements to install with ``pip install --no-deps`` for QAT, tf-keras matching TensorFlow.

    ``python -m tfmot_easiedge.quantize.requirements`` prints them (``make venv`` installs them so).

    Example:
        >>> no_deps_requirements("2.21")
        ['tf-keras==2.21.*', 'tensorflow-model-optimization==0.8.1']
    """
    minor = tf_minor or _tensorflow_minor() or "<your TensorFlow minor version>"
    return [f"tf-keras=={minor}.*", f"tensorflow-model-optimization=={TFMOT_VERSION}"]


def install_command(tf_minor: str | None = None) -> str:
    """The commands that install QAT's packages without a second TensorFlow distribution.

    Example:
        >>> for command in install_command("2.21").split(" && "):
        ...     print(command)
        pip install "tfmot-easiedge[qat]"
        pip install --no-deps "tf-keras==2.21.*" "tensorflow-model-optimization==0.8.1"
    """
    pins = " ".join(f'"{r}"' for r in no_deps_requirements(tf_minor))
    return f"{_optional.install_hint('qat')} && pip install --no-deps {pins}"


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def require_qat() -> str:
    """Raises :class:`MissingDependencyError` (one line, with the install command) unless QAT can run.

    Checks, without importing anything: ``tf_keras`` and ``tensorflow_model_optimization`` are importable and
    ``tree`` (dm-tree, tfmot's dependency) too, and tf_keras has the installed TensorFlow's minor version.

    Returns:
        ``"tf_keras X, tensorflow-model-optimization Y"``.

    Example:
        >>> require_qat()  # doctest: +SKIP
        'tf_keras 2.21.0, tensorflow-model-optimization 0.8.1'
    """
    missing = [m for m in ("tf_keras", "tensorflow_model_optimization", "tree") if _find(m) is None]
    if missing:
        raise _optional.MissingDependencyError(
            f"quantization-aware training needs {', '.join(missing)} (the [qat] extra), which could not be "
            f"imported. Install them with: {install_command()} (--no-deps: tf-keras would otherwise install a "
            "second TensorFlow distribution over yours)", name=missing[0])
    tf_keras = _version("tf_keras") or _version("tf-keras") or "?"
    minor = _tensorflow_minor()
    if minor is not None and not tf_keras.startswith(minor + "."):
        raise _optional.MissingDependencyError(
            f"quantization-aware training needs tf_keras {minor}.x to match TensorFlow {minor}; found tf_keras "
            f"{tf_keras}. Install the matching one with: {install_command(minor)}", name="tf_keras")
    tfmot = _version("tensorflow-model-optimization") or "?"
    return f"tf_keras {tf_keras}, tensorflow-model-optimization {tfmot}"


def _find(module: str):
    try:
        return importlib.util.find_spec(module)
    except (ImportError, ValueError):  # a parent that fails to import, or a module set to None in sys.modules
        return None


if __name__ == "__main__":  # for the Makefile: the --no-deps requirements of this environment's TensorFlow
    if _tensorflow_minor() is None:
        raise SystemExit("no TensorFlow distribution is installed: install one first (see README)")
    print(" ".join(no_deps_requirements()))
