"""The layout keeps its promises: one adapter per outside system, dependencies pointing one way.

The import graph of ``cloudbuilder/`` is read with ``ast`` (nothing is imported).
An import counts wherever it is written: at module level, in a class body or
inside a function.

- ``docker`` (the SDK) is imported only by the engine adapter, ``cloudbuilder/engine.py``;
- ``subprocess`` only by the runner, ``cloudbuilder/runner.py``;
- no import cycle.  Function-level (lazy) imports count for cycles too: a lazy
  import only hides a cycle from Python's import machinery, the two modules
  still depend on each other (both cycles issue 10 names are made of one
  module-level and one lazy import).  The cycles that exist today are listed in
  ``KNOWN_CYCLES``; that list must only shrink: a new cycle fails, and so does a
  listed one that is gone (delete its entry).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "cloudbuilder"

# Each entry: the modules of one cycle (a strongly connected component of the graph).
KNOWN_CYCLES: tuple[frozenset[str], ...] = (
    # binary.build_binary lazily imports pipeline.built_binary_path; pipeline.build lazily imports
    # binary.build_binary. Goes away with the workspace that owns dist/ paths (issue 10 items 1-2).
    frozenset({"cloudbuilder.binary", "cloudbuilder.pipeline"}),
    # backends.select_backend lazily imports fpm and nfpm, which import backends' Invocation/Layout.
    # Goes away with packaging organised by format (issue 10 item 4).
    frozenset({"cloudbuilder.packaging.backends", "cloudbuilder.packaging.fpm", "cloudbuilder.packaging.nfpm"}),
)

# Outside systems and the one module allowed to import each.
ADAPTERS = {
    "docker": "cloudbuilder.engine",
    "subprocess": "cloudbuilder.runner",
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module ``name`` imports (absolute names), wherever the import statement is."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            for alias in node.names:  # `from . import git`: the submodule, when it is one
                if f"{target}.{alias.name}" in known:
                    found.add(f"{target}.{alias.name}")
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """The strongly connected components with more than one module (Tarjan), inside the package."""
    inside = {n: {m for m in deps if m in graph and m != n} for n, deps in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: set[frozenset[str]] = set()

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(inside[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                out.add(frozenset(component))

    for node in sorted(inside):
        if node not in index:
            visit(node)
    return out


def test_the_graph_is_read():
    graph = _graph()
    assert "cloudbuilder.engine" in graph and "cloudbuilder.packaging.build" in graph
    assert "cloudbuilder.runner" in graph["cloudbuilder.packaging.build"]  # `from .. import runner`
    assert "cloudbuilder.git" in graph["cloudbuilder.archive"]  # `from . import git`
    assert "cloudbuilder.pipeline" in graph["cloudbuilder.binary"]  # a lazy import inside a function


@pytest.mark.parametrize("library", sorted(ADAPTERS))
def test_an_outside_system_is_imported_only_by_its_adapter(library):
    importers = sorted(name for name, deps in _graph().items()
                       if any(d == library or d.startswith(library + ".") for d in deps))
    others = [name for name in importers if name != ADAPTERS[library]]
    assert not others, f"`import {library}` belongs in {ADAPTERS[library]} only; move what {others} need there"
    assert importers == [ADAPTERS[library]]


def test_no_import_cycle_beyond_the_known_ones():
    cycles = _cycles(_graph())
    new = [sorted(c) for c in cycles if c not in KNOWN_CYCLES]
    assert not new, f"import cycles in cloudbuilder/: {new}; make the dependency point one way"


@pytest.mark.parametrize("cycle", KNOWN_CYCLES, ids=lambda c: "<->".join(sorted(m.rsplit(".", 1)[-1] for m in c)))
def test_a_known_cycle_still_exists(cycle):
    assert cycle in _cycles(_graph()), (
        f"the cycle {sorted(cycle)} is gone (or changed): remove (or update) its entry in KNOWN_CYCLES")


def test_cycles_are_found():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "os"}, "d": {"a"}, "e": {"e"}}
    assert _cycles(graph) == {frozenset({"a", "b", "c"})}
