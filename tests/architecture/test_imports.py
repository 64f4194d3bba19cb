"""The package layering: no import cycles, and the core imports nothing above it.

Every ``import`` statement counts, those inside functions too: a lazy import hides a cycle from
the interpreter, not from the design. Only the project's own packages are walked.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("sassha", "runners", "analysis", "search_spaces")
# What each package may import of the others (the layering of docs/architecture.md).
ALLOWED = {
    "sassha": set(),
    "search_spaces": set(),
    "runners": {"sassha", "search_spaces", "analysis"},
    "analysis": {"sassha", "search_spaces"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports (``from pkg import mod`` counts as ``pkg.mod``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        else:
            continue
        out |= {t for t in targets if t in known and t != name}
    return out


def _graph() -> nx.DiGraph:
    modules = _modules()
    graph = nx.DiGraph()
    for name, path in modules.items():
        graph.add_node(name)
        for target in _imports(name, path, set(modules)):
            # A package importing its own submodules (re-exports) is not a cycle of the design.
            if not target.startswith(name + "."):
                graph.add_edge(name, target)
    return graph


def test_the_walk_sees_the_imports():
    graph = _graph()
    assert ("runners.plan", "runners.spec") in graph.edges
    assert ("runners.tune.point", "sassha.trial") in graph.edges  # an import inside a function
    assert len(graph) > 60


def test_no_import_cycles():
    cycles = [c for c in nx.simple_cycles(_graph()) if len(c) > 1]
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c + c[:1]) for c in cycles)


def test_packages_import_only_the_layers_below():
    bad = [
        f"{a} -> {b}"
        for a, b in _graph().edges
        if a.split(".")[0] != b.split(".")[0] and b.split(".")[0] not in ALLOWED[a.split(".")[0]]
    ]
    assert bad == []
