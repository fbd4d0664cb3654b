"""The layout rules of ``../shared/GUIDE.md``, checked on the source so they cannot regress.

* no import of another package's ``_private`` module (a package's own private modules are fine, and the
  ground-floor modules ``tfmot_easiedge/_*.py`` are there to be shared);
* no import cycle between modules of ``tfmot_easiedge/`` or ``benchmarks/``, counting imports deferred into
  functions and those under ``TYPE_CHECKING`` (a cycle hidden in a function is still a cycle in the design);
* no module of ``tfmot_easiedge/`` over 500 lines.

Pure AST reading: no module is imported, so this runs in well under a second.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP_PACKAGES = ("tfmot_easiedge", "benchmarks")
MAX_LINES = 500


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for top in TOP_PACKAGES:
        for path in sorted((ROOT / top).rglob("*.py")):
            if "cache" in path.relative_to(ROOT).parts:
                continue
            found[_module_name(path)] = path
    return found


MODULES = _modules()


def _resolve(name: str, level: int, current: str, is_package: bool) -> str:
    if level == 0:
        return name
    base = current.split(".") if is_package else current.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def imports_of(module: str) -> set[str]:
    """Every module of ours that ``module`` imports, anywhere in its body (deferred and TYPE_CHECKING ones too).

    ``from pkg import name`` counts as an import of ``pkg.name`` when that is a module, else of ``pkg``.
    """
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module or "", node.level, module, is_package)
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for name in names:
            # `import a.b.c` names a.b.c; keep the longest prefix that is one of our modules.
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
    return targets


GRAPH = {module: imports_of(module) for module in MODULES}


def _private_part(module: str) -> str | None:
    """The private package a module lives under (``a._b`` for ``a._b`` or ``a._b.c``), or None when public."""
    parts = module.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[: i + 1])
    return None


def cross_package_private_imports() -> list[str]:
    bad = []
    for module, targets in GRAPH.items():
        for target in targets:
            private = _private_part(target)
            if private is None:
                continue
            owner = private.rpartition(".")[0]  # the package whose private module it is
            if owner in TOP_PACKAGES:
                continue  # tfmot_easiedge/_files.py and friends: the ground floor, for everyone
            if module == owner or module.startswith(owner + "."):
                continue  # a package's own private modules
            bad.append(f"{module} imports {target}")
    return sorted(bad)


def private_names_from_other_packages() -> list[str]:
    """``from pkg.mod import _name`` where ``pkg`` is another package: a private helper used across a border."""
    bad = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        own = module if is_package else module.rpartition(".")[0]
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            source = _resolve(node.module or "", node.level, module, is_package)
            if source not in MODULES:
                continue
            owner = source if MODULES[source].name == "__init__.py" else source.rpartition(".")[0]
            if owner == own or own.startswith(owner + ".") or owner in TOP_PACKAGES:
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    bad.append(f"{module} imports {source}.{alias.name}")
    return sorted(bad)


def import_cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    counter = 0
    for root in sorted(GRAPH):
        if root in index:
            continue
        work = [(root, iter(sorted(GRAPH[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(GRAPH[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def _package_inits_only(cycle: list[str]) -> bool:
    """A package ``__init__`` importing its own submodule, which imports the package back for a name.

    ``a/__init__.py`` re-exporting ``a.b`` while ``a.b`` does ``from a import x`` is a cycle too; we do not
    exempt it, but name it so the message says what to fix.
    """
    return all(MODULES[m].name == "__init__.py" for m in cycle)


def test_the_reader_sees_our_modules():
    # Guards the checks below against passing because they read nothing.
    assert "tfmot_easiedge.selection" in MODULES or "tfmot_easiedge.selection.__init__" in MODULES
    assert any(t.startswith("tfmot_easiedge.graph") for t in GRAPH["tfmot_easiedge.rewrite.slim"])
    # the benchmark scripts too (the cycle check covers them), with their imports deferred into functions
    assert {"benchmarks.compare_spec", "benchmarks.compare_report"} <= GRAPH["benchmarks.compare_run"]
    assert "tfmot_easiedge.selection" in GRAPH["benchmarks.compare_prune"]  # only imported inside functions


def test_no_package_imports_another_packages_private_module():
    bad = cross_package_private_imports()
    assert not bad, "imports of another package's private module:\n  " + "\n  ".join(bad)


def test_no_package_imports_another_packages_private_name():
    bad = private_names_from_other_packages()
    assert not bad, "private names used across packages:\n  " + "\n  ".join(bad)


def test_no_import_cycle():
    cycles = import_cycles()
    assert not cycles, "import cycles (deferred and TYPE_CHECKING imports count):\n  " + "\n  ".join(
        " <-> ".join(c) + (" (package inits)" if _package_inits_only(c) else "") for c in cycles)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("tfmot_easiedge")))
def test_module_is_under_500_lines(module):
    lines = len(MODULES[module].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{MODULES[module].relative_to(ROOT)} has {lines} lines (limit {MAX_LINES})"


def test_the_checks_catch_what_they_claim(tmp_path):
    # A synthetic graph with a private cross-package import and a cycle must be caught.
    fake = {"tfmot_easiedge.a": {"tfmot_easiedge.b._x"}, "tfmot_easiedge.b._x": {"tfmot_easiedge.a"},
            "tfmot_easiedge.b": set()}
    globals_backup = dict(GRAPH)
    GRAPH.clear()
    GRAPH.update(fake)
    paths = {m: tmp_path / (m.replace(".", "_") + ".py") for m in fake}
    paths["tfmot_easiedge.b"] = tmp_path / "b" / "__init__.py"
    saved = dict(MODULES)
    MODULES.clear()
    MODULES.update(paths)
    try:
        assert cross_package_private_imports() == ["tfmot_easiedge.a imports tfmot_easiedge.b._x"]
        assert import_cycles() == [["tfmot_easiedge.a", "tfmot_easiedge.b._x"]]
    finally:
        GRAPH.clear()
        GRAPH.update(globals_backup)
        MODULES.clear()
        MODULES.update(saved)
