"""Every third-party import is declared in pyproject.toml, so a fresh `pip install -e ".[test]"` has it.

A dependency that only the developer's machine happens to carry passes every other test there and
fails for the next person; this test names it instead. Import names are mapped to distributions with
importlib.metadata.packages_distributions().
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions

from conftest import REPO
from LDSegLib.dependencies import REQUIREMENTS

SOURCE_FOLDERS = ("LDSegSlicer", "Testing", "benchmarks")
FIRST_PARTY = {"ldseg", "LDSegLib", "LDSeg"}
# Modules that exist only inside Slicer's own Python: the module file and LDSegLib's Slicer-only
# paths import them, the tests never do (they run on slicer-core).
INSIDE_SLICER_ONLY = {
    "qt",  # Slicer's PythonQt bindings (LDSeg.py)
    "ctk",  # CTK widgets (LDSeg.py)
    "PyTorchUtils",  # the PyTorch extension's module (dependencies.install)
    "SampleData",  # Slicer's sample data module
    "DICOMLib",  # Slicer's DICOM module library
}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return normalized(re.match(r"[A-Za-z0-9_.-]+", requirement).group(0))


def declared_distributions() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    return {requirement_name(requirement) for requirement in requirements}


def imported_modules() -> dict[str, set[str]]:
    """Top-level names of absolute imports (also inside functions and as __import__("x")) -> files."""
    found: dict[str, set[str]] = {}
    for folder in SOURCE_FOLDERS:
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names = [node.module]
                elif (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__"
                      and node.args and isinstance(node.args[0], ast.Constant)):
                    names = [node.args[0].value]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(REPO)))
    return found


def local_modules() -> set[str]:
    """Helper modules that sit beside the scripts importing them (conftest, scene_fixtures, ...)."""
    return {path.stem for folder in SOURCE_FOLDERS for path in (REPO / folder).rglob("*.py")}


def test_every_third_party_import_is_declared_in_pyproject():
    declared = declared_distributions()
    distributions = packages_distributions()
    skipped = set(sys.stdlib_module_names) | FIRST_PARTY | INSIDE_SLICER_ONLY | local_modules()
    problems = []
    for module, files in sorted(imported_modules().items()):
        if module in skipped:
            continue
        providers = {normalized(name) for name in distributions.get(module, ())}
        if not providers:
            problems.append(f"{module} (imported by {', '.join(sorted(files))}) is not installed by any distribution")
        elif not providers & declared:
            problems.append(f"{module} (imported by {', '.join(sorted(files))}) comes from {', '.join(sorted(providers))}, "
                            "which pyproject.toml does not declare")
    assert not problems, "\n".join(problems)


def test_the_slicer_only_allow_list_names_nothing_that_is_imported_in_the_tests():
    """An allow-listed module the test suite imports would be a real dependency hiding in the list."""
    tests = {module for module, files in imported_modules().items()
             if any(not file.startswith("LDSegSlicer") for file in files)}
    assert not tests & INSIDE_SLICER_ONLY


# Core dependencies that only `ldseg evaluate` needs, which the panel never runs.
EVALUATION_ONLY = {"scipy"}


def test_the_panel_installs_the_engine_dependencies_pyproject_declares():
    """LDSegLib.dependencies installs into Slicer's Python what `pip install .` would, for the panel's path."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    engine = {requirement_name(text): text for text in project["dependencies"]}
    assert {normalized(requirement.distribution) for requirement in REQUIREMENTS} == set(engine) - EVALUATION_ONLY
    for requirement in REQUIREMENTS:
        text = engine[normalized(requirement.distribution)].split("#")[0].replace(" ", "")
        assert f">={requirement.minimum}" in text, (requirement, text)
        if requirement.below:
            assert f"<{requirement.below}" in text, (requirement, text)
