"""Imports point one way: no module of the package imports, even lazily,
one that imports it back, and the panel reads snapshots, not the plugin."""

from __future__ import annotations

import ast
from pathlib import Path

import dask_monitor

SRC = Path(dask_monitor.__file__).parent


def modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _type_only(node: ast.AST) -> bool:
    """An ``if TYPE_CHECKING:`` block: imports that never run."""
    return (
        isinstance(node, ast.If)
        and isinstance(node.test, ast.Name)
        and node.test.id == "TYPE_CHECKING"
    )


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports, at the top or in functions."""
    mods = modules()
    graph: dict[str, set[str]] = {name: set() for name in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        tree = ast.parse(path.read_text())
        skip = {
            id(n) for block in ast.walk(tree) if _type_only(block)
            for n in ast.walk(block)
        }  # fmt: skip
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package
                    for _ in range(node.level - 1):
                        up = up.rsplit(".", 1)[0]
                    base = f"{up}.{base}" if base else up
                subs = [f"{base}.{a.name}" for a in node.names]
                targets = [s for s in subs if s in mods] or [base]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in mods and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    """No cycle, counting imports inside functions (they run too)."""
    assert cycles(import_graph()) == []


def test_the_finder_finds_a_cycle() -> None:
    """The check itself can fail: a made-up cycle is reported."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_the_panel_does_not_import_the_plugin_or_the_client() -> None:
    """Panel modules read snapshots: they import neither the scheduler plugin
    nor the client nor the command line."""
    forbidden = {"dask_monitor.client", "dask_monitor.cli"}
    for name, targets in import_graph().items():
        if name.startswith("dask_monitor.panel"):
            scheduler = {t for t in targets if t.startswith("dask_monitor.scheduler")}
            assert not targets & forbidden, (name, targets & forbidden)
            assert not scheduler, (name, scheduler)
