"""The import graph: no cycles, and a core that imports no modality and no evaluation.

Walks the static imports of every module under cpc/ (``import`` and ``from ... import``
statements anywhere in the file: at the top, inside functions, under ``if TYPE_CHECKING``),
as the ast sees them, with the packages they run on the way (``cpc.speech.audio`` runs
cpc/speech/__init__.py; an explicit ``import cpc`` runs cpc/__init__.py); imports by name at run time (``importlib``, how the registry loads the
modalities listed in cpc/modalities.py) are not edges.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "cpc"

# The modality-free core: the model and its parts, the config and registry, the training loop.
CORE = (
    "cpc.model",
    "cpc.encoder",
    "cpc.context",
    "cpc.predictors",
    "cpc.negatives",
    "cpc.infonce",
    "cpc.objectives",
    "cpc.config",
    "cpc.registry",
    "cpc.train",
    "cpc.checkpoint",
    "cpc.errors",
    "cpc.runtime",
    "cpc.data",
)
NOT_CORE = ("cpc.speech", "cpc.image", "cpc.text", "cpc.eval")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def import_graph() -> dict[str, set[str]]:
    """module -> the cpc modules it imports (``from cpc.x import y`` counts ``cpc.x.y`` when that is a module, and cpc.x)."""
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolve against this module's package
                    package = name.split(".") if is_package else name.split(".")[:-1]
                    base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in paths else base for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in paths:  # cpc.x.y.Name -> the module cpc.x.y
                    target = target.rpartition(".")[0]
                if not target.startswith("cpc"):
                    continue
                # Importing cpc.x.y runs cpc.x's __init__ too: an edge to each enclosing package
                # below the root (whose __init__ every module runs; an explicit ``import cpc`` counts).
                parts = target.split(".")
                for depth in range(2, len(parts)):
                    edges.add(".".join(parts[:depth]))
                edges.add(target)
        edges.discard(name)
        edges.difference_update(
            package for package in list(edges) if name.startswith(package + ".")
        )  # its own packages
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None (depth-first search, three colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for successor in sorted(graph.get(node, ())):
            if state.get(successor) == 1:
                return path[path.index(successor) :] + [successor]
            if successor not in state and (cycle := visit(successor)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def reachable(graph: dict[str, set[str]], start: str) -> dict[str, str]:
    """Every module ``start`` imports, directly or not -> the module that imports it (for the message)."""
    parents: dict[str, str] = {}
    stack = [start]
    while stack:
        node = stack.pop()
        for successor in graph.get(node, ()):
            if successor not in parents and successor != start:
                parents[successor] = node
                stack.append(successor)
    return parents


def chain(parents: dict[str, str], start: str, end: str) -> str:
    links = [end]
    while links[-1] != start:
        links.append(parents[links[-1]])
    return " -> ".join(reversed(links))


def test_the_walker_sees_every_kind_of_import():
    graph = import_graph()
    assert "cpc.registry" in graph["cpc.config"]  # top-level from-import
    assert "cpc.speech.streaming" in graph["cpc.speech.encoder"]  # an import inside a function
    assert "cpc.model" in graph["cpc.speech.streaming"]  # under TYPE_CHECKING, and inside a function
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("core", CORE)
def test_the_core_imports_no_modality_and_no_evaluation(core):
    graph = import_graph()
    assert core in graph, f"{core} is not a module under cpc/ (update CORE)"
    parents = reachable(graph, core)
    bad = sorted(
        module for module in parents if any(module == prefix or module.startswith(prefix + ".") for prefix in NOT_CORE)
    )
    assert not bad, f"{core} imports {bad[0]}: " + chain(parents, core, bad[0])


def test_every_modality_is_found_by_name_only():
    """The registry loads the modalities listed in cpc/modalities.py at run time; no core module imports that list."""
    graph = import_graph()
    for core in CORE:
        assert "cpc.modalities" not in reachable(graph, core), core
