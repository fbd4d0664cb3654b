"""The three tiers of ``docs/architecture.md``, checked on the real imports (``test_architecture.GRAPH``).

A package imports only from its own tier or the tiers below it; the few upward edges that exist are listed
in :data:`KNOWN_UPWARD` with the reason they are tolerated, so a new one fails here until it is argued for.

``python tests/test_tiers.py`` prints the package-level edges (the table the architecture doc is drawn from).
"""
from __future__ import annotations

import collections

from test_architecture import GRAPH

#: package (first name under ``tfmot_easiedge``) -> tier: 0 ground floor, 1 pruning core, 2 edge toolkit.
TIERS = {
    **dict.fromkeys(["_files", "_optional", "_keras_compat", "_lazy", "_network", "_progress", "_tf_check", "_version",
                     "data", "graph", "plan"], 0),
    **dict.fromkeys(["metrics", "importance", "selection", "rewrite", "admm"], 1),
    **dict.fromkeys(["export", "quantize", "report", "cli", "demo", "models", "latency", "device_profile"], 2),
}
TIER_NAMES = ("ground floor", "core", "edge toolkit")

#: Upward imports (module -> module) that are known and tolerated; each says why in the architecture doc.
KNOWN_UPWARD = {
    # EasiEdgeResult.save writes model, plan *and* report in one atomic directory (issue 17: one orchestration);
    # the import is deferred into save_result, and report imports nothing of admm, so there is no cycle.
    ("tfmot_easiedge.admm.saving", "tfmot_easiedge.report"),
}


def _package(module: str) -> str | None:
    """``tfmot_easiedge.a.b`` -> ``a``; None for the public face (``tfmot_easiedge`` itself) and benchmarks."""
    parts = module.split(".")
    return parts[1] if parts[0] == "tfmot_easiedge" and len(parts) > 1 else None


def package_edges() -> dict[tuple[str, str], set[tuple[str, str]]]:
    """``{(package, imported package): {(module, imported module), ...}}`` within ``tfmot_easiedge``."""
    edges: dict[tuple[str, str], set[tuple[str, str]]] = collections.defaultdict(set)
    for module, targets in GRAPH.items():
        source = _package(module)
        for target in targets:
            imported = _package(target)
            if source and imported and imported != source:
                edges[(source, imported)].add((module, target))
    return edges


def test_every_package_has_a_tier():
    packages = {_package(m) for m in GRAPH} - {None}
    assert packages <= set(TIERS), f"place these in a tier (docs/architecture.md): {sorted(packages - set(TIERS))}"


def test_no_package_imports_from_a_tier_above_it():
    upward = sorted(pair for (source, imported), pairs in package_edges().items()
                    if TIERS.get(imported, 0) > TIERS.get(source, 0) for pair in pairs)
    new = [f"{m} -> {t}" for m, t in upward if (m, t) not in KNOWN_UPWARD]
    assert not new, "imports from a higher tier:\n  " + "\n  ".join(new)
    assert set(upward) == KNOWN_UPWARD, f"gone, drop from KNOWN_UPWARD: {sorted(KNOWN_UPWARD - set(upward))}"


def test_the_ground_floor_modules_import_only_the_ground_floor():
    for (source, imported) in package_edges():
        if source.startswith("_"):
            assert TIERS[imported] == 0, f"{source} imports {imported}"


def test_only_the_edge_toolkit_imports_the_public_face():
    # tfmot_easiedge/__init__.py maps names to every package: a lower package importing it would be a cycle.
    users = {_package(m) for m, targets in GRAPH.items() if "tfmot_easiedge" in targets} - {None}
    assert all(TIERS[p] == 2 for p in users), sorted(p for p in users if TIERS[p] != 2)


if __name__ == "__main__":
    edges = package_edges()
    for source in sorted(TIERS, key=lambda p: (TIERS[p], p)):
        imported = sorted({b for a, b in edges if a == source}, key=lambda p: (TIERS.get(p, 9), p))
        print(f"{TIER_NAMES[TIERS[source]]:13s} {source:14s} -> {', '.join(imported) or '-'}")
