"""The package's shape (docs/architecture.md): no import circle, a docstring atop every module, and the
runnable examples in the small pure helpers' docstrings."""

from __future__ import annotations

import ast
import doctest
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "asrcompress"

# Modules whose docstrings hold examples; each must hold at least one, so a deleted example fails here.
DOCTESTED = [
    "asrcompress.compression.packing",
    "asrcompress.compression.registry",
    "asrcompress.decoding",
    "asrcompress.text",
    "asrcompress.wer_table",
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import that runs, at the top or inside a function; imports for type checkers only are left out."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if _is_type_checking_block(node):  # its body runs for type checkers only; an else branch runs
            for child in getattr(node, "orelse", []):
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _owning_module(dotted: str) -> str | None:
    """The package module a dotted import name lands in (``a.b.c`` may be the function ``c`` of ``a.b``)."""
    while dotted and dotted not in MODULES:
        dotted = dotted.rpartition(".")[0]
    return dotted or None


def _with_parents(name: str) -> set[str]:
    """Importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` first."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & set(MODULES)


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports when it runs (its own parent packages excepted)."""
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                dotted = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                dotted = [f"{base}.{alias.name}" for alias in node.names]
            for item in dotted:
                owner = _owning_module(item)
                if owner is not None:
                    targets |= _with_parents(owner)
        graph[name] = targets - _with_parents(name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle (as a path that returns to its start), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_find_cycle_reports_a_circle_and_passes_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_relative_lazy_and_package_imports():
    graph = import_graph()
    assert "asrcompress.compression.store" in graph["asrcompress.decode_stage"]  # a top-level relative import
    assert "asrcompress.compression" in graph["asrcompress.decode_stage"]  # ... and the package it lives in
    assert "asrcompress.download" in graph["asrcompress.catalog"]  # an import inside a function
    # registry names CompressionContext for type checkers only: no arrow
    assert "asrcompress.compression.context" not in graph["asrcompress.compression.registry"]


def test_no_import_circle_in_the_package():
    assert find_cycle(import_graph()) is None


def test_the_ctc_library_sits_below_the_store_and_the_training_loop():
    """decoding is imported by training and by the store's methods; it must import neither (nor what does)."""
    graph = import_graph()
    below: set[str] = set()
    frontier = ["asrcompress.decoding"]
    while frontier:
        for target in graph[frontier.pop()] - below:
            below.add(target)
            frontier.append(target)
    assert not below & {"asrcompress.compression.store", "asrcompress.training", "asrcompress.export",
                        "asrcompress.cost", "asrcompress.decode_stage"}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_says_what_it_holds(name):
    docstring = ast.get_docstring(ast.parse(MODULES[name].read_text(encoding="utf-8")))
    assert docstring and docstring.splitlines()[0].strip(), f"{MODULES[name]} has no docstring first line"


@pytest.mark.parametrize("name", DOCTESTED)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} lost its examples"
    assert result.failed == 0
