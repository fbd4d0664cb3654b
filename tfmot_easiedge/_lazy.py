"""PEP 562 lazy attributes for package ``__init__`` modules: ``import tfmot_easiedge`` stays cheap.

A package lists which public name lives in which module; the module (and so Keras and TensorFlow) is
imported the first time the name is read, and the value is cached in the package's namespace. Where a
function shares its name with the module that defines it (``export.tflite`` in ``export/tflite.py``), the
import system's ``setattr(package, "tflite", <module>)`` is ignored, so the name keeps meaning the function.

Example:
    >>> import sys, types
    >>> sys.modules["pkg"] = pkg = types.ModuleType("pkg")
    >>> install_lazy_attributes("pkg", {"sqrt": "math"}, [])
    >>> pkg.sqrt(4.0)
    2.0
"""
from __future__ import annotations

import importlib
import sys
import types
from typing import Callable, Iterable, Mapping


def install_lazy_attributes(package: str, names: Mapping[str, str], submodules: Iterable[str] = (),
                            before_import: Callable[[], object] | None = None) -> None:
    """Makes ``names`` (``{public name: absolute module that defines it}``) and ``submodules`` (names of
    subpackages exposed as ``package.<name>``) load on first access in the module ``package``.

    ``before_import`` runs once, before the first such import (e.g. a check that TensorFlow is installed).
    """
    names = dict(names)
    subs = frozenset(submodules)
    pending = [before_import] if before_import is not None else []

    class LazyModule(types.ModuleType):
        def __getattr__(self, name: str):
            if pending and (name in subs or name in names):
                pending[0]()  # raises until its condition holds
                pending.clear()
            if name in subs:
                value = importlib.import_module(f"{package}.{name}")
            elif name in names:
                value = getattr(importlib.import_module(names[name]), name)
            else:
                raise AttributeError(f"module {package!r} has no attribute {name!r}")
            types.ModuleType.__setattr__(self, name, value)
            return value

        def __setattr__(self, name: str, value) -> None:
            if (name in names and isinstance(value, types.ModuleType)
                    and value.__name__ == f"{package}.{name}"):
                return  # a submodule import would shadow the function of the same name
            types.ModuleType.__setattr__(self, name, value)

        def __dir__(self) -> list[str]:
            return sorted(set(vars(self)) | set(names) | subs)

    sys.modules[package].__class__ = LazyModule
