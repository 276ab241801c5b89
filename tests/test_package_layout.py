"""The package reads top to bottom: no import cycle between its modules, no function too long to read at once."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "karpa_lab"
MAX_FUNCTION_LINES = 80  # code lines, the docstring not counted


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text(encoding="utf-8")) for p in PACKAGE.rglob("*.py")}


def imports_of(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """The course modules ``name`` imports anywhere (inside functions too). A package's ``__init__``
    importing its own submodules is how it shows its API, so those edges are left out."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            package = name if tree_is_package(name, known) else name.rpartition(".")[0]
            base = node.module if node.level == 0 else ".".join(
                package.split(".")[: len(package.split(".")) - node.level + 1] + [node.module])
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names}
    return {m for m in found if m in known and m != name and not m.startswith(name + ".")}


def tree_is_package(name: str, known: set[str]) -> bool:
    return any(k.startswith(name + ".") for k in known)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, nxt])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def import_graphs() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Module by module, and part by part (``karpa_lab.widgets`` standing for all its modules)."""
    trees = modules()
    graph = {name: imports_of(name, tree, set(trees)) for name, tree in trees.items()}
    part = lambda m: ".".join(m.split(".")[:2])
    parts: dict[str, set[str]] = {part(m): set() for m in graph if m != "karpa_lab"}
    for m, targets in graph.items():
        if m != "karpa_lab":
            parts[part(m)] |= {part(t) for t in targets if part(t) != part(m) and t != "karpa_lab"}
    return graph, parts


def test_no_import_cycle_between_course_modules_or_parts():
    for graph in import_graphs():
        cycle = find_cycle(graph)
        assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def code_lines(fn: ast.FunctionDef) -> int:
    body = fn.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    return 0 if not body else body[-1].end_lineno - body[0].lineno + 1


def test_no_function_too_long_to_read_at_once():
    long = [f"{name}.{node.name}: {code_lines(node)} lines" for name, tree in modules().items()
            for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and code_lines(node) > MAX_FUNCTION_LINES]
    assert not long, long
