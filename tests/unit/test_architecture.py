"""The layout keeps its promises: one adapter per outside system, dependencies pointing one way.

The import graph of ``cloudbuilder/`` is read with ``ast`` (nothing is imported).
An import counts wherever it is written: at module level, in a class body or
inside a function.

- ``docker`` (the SDK) is imported only by the engine adapter, ``cloudbuilder/engine.py``;
- ``subprocess`` only by the runner, ``cloudbuilder/runner.py``;
- packaging is organised by format: the format modules (``packaging/formats/``)
  import nothing of ``cloudbuilder`` but each other's ``base``, ``reproducible`` and
  ``errors``; a backend (``fpm``, ``nfpm``) imports of packaging only the plan
  (``spec``, ``packager``) and the formats, never another backend or the
  selector (``backends``) that imports them;
- each stage is one module of ``cloudbuilder/stages/`` (its object: plan and run); a
  stage imports ``stages.base`` and the work it runs, never another stage (they hand
  off through the manifest) nor the orchestrator (``pipeline``), and no work module
  imports a stage;
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
KNOWN_CYCLES: tuple[frozenset[str], ...] = ()

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
    assert "cloudbuilder.binary" in graph["cloudbuilder.stages.binary"]  # a lazy import inside a function
    assert "cloudbuilder.engine" in graph["cloudbuilder.pipeline"]  # the same, in the orchestrator


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


FORMATS_PACKAGE = "cloudbuilder.packaging.formats"
# What a format module may import from cloudbuilder: the formats' shared types and two leaves.
FORMAT_DEPENDENCIES = {f"{FORMATS_PACKAGE}.base", "cloudbuilder.reproducible", "cloudbuilder.errors"}
BACKENDS = ("cloudbuilder.packaging.fpm", "cloudbuilder.packaging.nfpm")
# What a backend may import from cloudbuilder.packaging: the plan and the formats.
BACKEND_PACKAGING_DEPENDENCIES = {"cloudbuilder.packaging.spec", "cloudbuilder.packaging.packager"}


def _internal(deps: set[str], graph: dict[str, set[str]]) -> set[str]:
    return {d for d in deps if d in graph}


def test_format_modules_are_leaves():
    graph = _graph()
    formats = sorted(n for n in graph if n.startswith(FORMATS_PACKAGE + "."))
    assert {f"{FORMATS_PACKAGE}.deb", f"{FORMATS_PACKAGE}.rpm", f"{FORMATS_PACKAGE}.base"} <= set(formats)
    for name in formats:
        extra = _internal(graph[name], graph) - FORMAT_DEPENDENCIES - {name}
        assert not extra, f"{name} imports {sorted(extra)}: a format knows nothing of the spec, settings or backends"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_backend_imports_only_the_plan_and_the_formats(backend):
    graph = _graph()
    packaging = {d for d in _internal(graph[backend], graph) if d.startswith("cloudbuilder.packaging")}
    extra = {d for d in packaging - BACKEND_PACKAGING_DEPENDENCIES if not d.startswith(FORMATS_PACKAGE)}
    assert not extra, f"{backend} imports {sorted(extra)}; a backend imports only spec, packager and formats"
    assert "cloudbuilder.packaging.spec" in packaging and any(d.startswith(FORMATS_PACKAGE) for d in packaging)



STAGES = "cloudbuilder.stages"


def _stage_modules(graph: dict[str, set[str]]) -> list[str]:
    return sorted(n for n in graph if n.startswith(STAGES + ".") and n != f"{STAGES}.base")


def test_each_stage_is_one_module_and_imports_no_other_stage():
    graph = _graph()
    stages = _stage_modules(graph)
    assert len(stages) >= 6, stages
    for name in stages:
        others = {d for d in _internal(graph[name], graph)
                  if (d.startswith(STAGES + ".") and d not in (name, f"{STAGES}.base")) or d == "cloudbuilder.pipeline"}
        assert not others, f"{name} imports {sorted(others)}: stages hand off through the manifest, not each other"


def test_every_stage_of_the_pipeline_lives_in_its_own_stages_module():
    from cloudbuilder import pipeline

    homes = [t.__module__ for t in pipeline.STAGE_TYPES]
    assert len(set(homes)) == len(homes) and all(h.startswith(STAGES + ".") for h in homes), homes
    assert sorted(homes) == _stage_modules(_graph())


def test_no_work_module_imports_a_stage_or_the_orchestrator():
    graph = _graph()
    upper = {n for n in graph if n.startswith(STAGES)} | {"cloudbuilder.pipeline"}
    for name, deps in graph.items():
        if name in upper or name.startswith("cloudbuilder.tasks"):
            continue
        assert not (deps & upper), f"{name} imports {sorted(deps & upper)}: only tasks run stages"
