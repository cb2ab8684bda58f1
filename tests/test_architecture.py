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


def panel_imports() -> set[tuple[str, str]]:
    """``(module, where)`` for each import of the panel by a module outside it,
    ``where`` being the enclosing function's qualified name (``""`` at the top)."""
    found: set[tuple[str, str]] = set()
    for name, path in modules().items():
        if name.startswith("dask_monitor.panel"):
            continue
        tree = ast.parse(path.read_text())

        def visit(node: ast.AST, where: str, module: str = name) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.ClassDef | ast.FunctionDef):
                    inner = f"{where}.{child.name}" if where else child.name
                    visit(child, inner)
                    continue
                if _type_only(child):
                    continue
                targets: list[str] = []
                if isinstance(child, ast.ImportFrom) and not child.level:
                    base = child.module or ""
                    targets = [base] + [f"{base}.{a.name}" for a in child.names]
                elif isinstance(child, ast.Import):
                    targets = [a.name for a in child.names]
                if any(
                    t == "dask_monitor.panel" or t.startswith("dask_monitor.panel.")
                    for t in targets
                ):
                    found.add((module, where))
                visit(child, where)

        visit(tree, "")
    return found


#: Where the panel may be imported from outside it (module, function), and why.
PANEL_IMPORTERS = {
    # The one place that wires a scheduler to the panel's pages.
    ("dask_monitor.scheduler.dashboard", "add_pages"),
    # ``Monitor.report(path)``: the user's one-call report is rendered by the
    # panel from the client's snapshot, on the client, only when asked for.
    ("dask_monitor.client", "Monitor.report"),
    ("dask_monitor.client.monitor", "Monitor.report"),
}


def _may_import_the_panel(module: str, where: str) -> bool:
    """The command line serves and writes panels; elsewhere see PANEL_IMPORTERS."""
    if module == "dask_monitor.cli" or module.startswith("dask_monitor.cli."):
        return True
    return (module, where) in PANEL_IMPORTERS


def test_only_the_wiring_and_the_commands_import_the_panel() -> None:
    """Nothing else imports the panel, even lazily: the client's live panel
    link, the demo and replay reach the pages through ``dask_monitor.links``."""
    wrong = {(m, w) for m, w in panel_imports() if not _may_import_the_panel(m, w)}
    assert wrong == set()


def test_the_panel_import_finder_finds_imports() -> None:
    """The check itself can fail: known importers are found, at their function."""
    found = panel_imports()
    assert ("dask_monitor.client", "Monitor.report") in found
    assert any(m.startswith("dask_monitor.cli") for m, _ in found)
    assert not _may_import_the_panel("dask_monitor.client", "Monitor.panel")
