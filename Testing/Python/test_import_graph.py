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


# Known, and the only one: cohort.py imports its Ray backend lazily, which imports cohort.py's Case and
# CohortJob. Splitting those into a module of their own removes it; until then it is listed, not hidden.
KNOWN_LAZY_EDGES = {("cohort", "cohort_ray")}


def test_the_engine_has_no_import_cycle():
    graph = engine_imports()
    for source, target in KNOWN_LAZY_EDGES:
        assert target in graph[source], f"{source} no longer imports {target}: drop it from KNOWN_LAZY_EDGES"
        graph[source] = graph[source] - {target}
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"evaluation": {"baseline"}, "baseline": {"training", "evaluation"}, "training": set()}) == [
        "baseline", "evaluation", "baseline"]
