"""Lint and type checks, in the suite so a regression shows here and not only in ``make lint`` (CI runs both).

* ``ruff check tfmot_easiedge tests`` and ``mypy`` (configured in ``pyproject.toml``; both pinned in the ``test``
  extra), each skipped with a reason when it is not installed;
* every public signature of ``tfmot_easiedge/`` is annotated (public: a module-level function or a method of a
  class whose name has no leading underscore, plus ``__init__`` and ``__call__``; nested functions are not
  signatures anyone calls) -- an AST reading, no tool needed;
* the lazy package ``__init__``s import each lazily loaded name under ``TYPE_CHECKING`` too, so mypy and IDEs
  see the real objects instead of a module without the attribute.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tfmot_easiedge"
LAZY_PACKAGES = ["tfmot_easiedge", "tfmot_easiedge.export", "tfmot_easiedge.importance", "tfmot_easiedge.report",
                 "tfmot_easiedge.selection"]


def _run_tool(module: str, *args: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install -e '.[test]' installs the pinned version)")
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, f"{module} {' '.join(args)} found problems:\n{proc.stdout}{proc.stderr}"


def test_ruff():
    _run_tool("ruff", "check", "--no-cache", "tfmot_easiedge", "tests")


def test_mypy():
    _run_tool("mypy")  # files and settings: [tool.mypy] in pyproject.toml


def _public_functions(tree: ast.Module):
    def public(name: str) -> bool:
        return not name.startswith("_") or name in ("__init__", "__call__")

    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and public(node.name):
            yield node.name, node, False
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for sub in node.body:
                if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)) and public(sub.name):
                    static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in sub.decorator_list)
                    yield f"{node.name}.{sub.name}", sub, not static


def _missing_annotations(fn: ast.FunctionDef | ast.AsyncFunctionDef, is_method: bool) -> list[str]:
    a = fn.args
    params = [*a.posonlyargs, *a.args, *a.kwonlyargs]
    if is_method:
        params = params[1:]  # self / cls
    missing = [p.arg for p in params if p.annotation is None]
    missing += [f"*{v.arg}" for v in (a.vararg,) if v is not None and v.annotation is None]
    missing += [f"**{v.arg}" for v in (a.kwarg,) if v is not None and v.annotation is None]
    if fn.returns is None and fn.name != "__init__":
        missing.append("return")
    return missing


def test_public_signatures_are_annotated():
    gaps = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for name, fn, is_method in _public_functions(tree):
            missing = _missing_annotations(fn, is_method)
            if missing:
                gaps.append(f"{path.relative_to(ROOT)}:{fn.lineno} {name}: {', '.join(missing)}")
    assert not gaps, "public signatures without type hints:\n  " + "\n  ".join(gaps)


def _type_checking_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for sub in node.body:
                if isinstance(sub, (ast.Import, ast.ImportFrom)):
                    names.update((alias.asname or alias.name).split(".")[0] for alias in sub.names)
                elif isinstance(sub, ast.AnnAssign) and isinstance(sub.target, ast.Name):
                    names.add(sub.target.id)
    return names


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_lazy_names_are_visible_to_type_checkers(package):
    module = importlib.import_module(package)  # imports neither Keras nor TensorFlow
    path = Path(module.__file__)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bound = {alias.asname or alias.name for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
             for alias in node.names}
    bound |= {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
              if isinstance(t, ast.Name)}
    bound |= {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    lazy = {name for name in module.__all__ if name not in bound}
    unseen = sorted(lazy - _type_checking_names(path))
    assert not unseen, f"{package}: lazy names missing from its `if TYPE_CHECKING:` imports: {unseen}"
