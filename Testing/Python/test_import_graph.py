"""The engine's modules import each other without a cycle, lazy imports inside functions included
(a lazy import hides a cycle from Python, not from the next engineer)."""

import ast

from conftest import REPO

ENGINE = REPO / "LDSegSlicer" / "ldseg"


def engine_imports() -> dict[str, set[str]]:
    graph = {}
    for path in ENGINE.glob("*.py"):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                imported |= {node.module} if node.module else {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("ldseg."):
                imported.add(node.module.split(".")[1])
        graph[path.stem] = imported - {"__init__"}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                return path[path.index(target):] + [target] if target in path else [module, target]
            if target not in state and (cycle := visit(target, path + [target])):
                return cycle
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module, [module])):
            return cycle
    return None


def test_the_engine_has_no_import_cycle():
    cycle = find_cycle(engine_imports())
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"evaluation": {"baseline"}, "baseline": {"training", "evaluation"}, "training": set()}) == [
        "baseline", "evaluation", "baseline"]
