"""The Slicer module checked without Slicer: the module file parses, the panel and the parameter node
agree, the build lists every file, the extension description matches the build, and nothing heavy
is imported when Slicer loads the module."""

import ast
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE_DIRECTORY = REPO / "LDSegSlicer"
MODULE_FILE = MODULE_DIRECTORY / "LDSeg.py"
PANEL_FILE = REPO / "Resources" / "UI" / "LDSegSlicer.ui"
HEAVY_MODULES = {"torch", "monai", "SimpleITK", "numpy", "scipy", "highdicom", "nibabel", "safetensors", "ldseg"}
# Engine modules that import only the standard library (test_light_engine_modules_stay_light checks it).
LIGHT_ENGINE_MODULES = {
    "ldseg.card", "ldseg.choices", "ldseg.errors", "ldseg.schema", "ldseg.settings", "ldseg.summary", "ldseg.terminology",
    "ldseg.store", "ldseg.download", "ldseg.sample_data",
}


@pytest.fixture(scope="module")
def module_tree():
    return ast.parse(MODULE_FILE.read_text(encoding="utf-8"), filename=str(MODULE_FILE))


@pytest.fixture(scope="module")
def panel():
    return ElementTree.parse(PANEL_FILE).getroot()


def classes(tree):
    return {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}


def parameter_fields(tree):
    """Annotated fields of the @parameterNodeWrapper class: name -> annotation source."""
    wrapped = [
        node for node in classes(tree).values()
        if any(ast.unparse(decorator) == "parameterNodeWrapper" for decorator in node.decorator_list)
    ]
    assert len(wrapped) == 1, "exactly one @parameterNodeWrapper class"
    return {
        item.target.id: ast.unparse(item.annotation)
        for item in wrapped[0].body
        if isinstance(item, ast.AnnAssign)
    }


def panel_widgets(panel):
    return {widget.get("name"): widget for widget in panel.iter("widget")}


def parameter_bindings(panel):
    bindings = {}
    for widget in panel.iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bindings[prop.find("string").text] = widget
    return bindings


def test_module_file_has_the_four_slicer_classes(module_tree):
    names = classes(module_tree)
    assert names["LDSeg"].bases[0].id == "ScriptedLoadableModule"
    assert names["LDSegWidget"].bases[0].id == "ScriptedLoadableModuleWidget"
    assert names["LDSegLogic"].bases[0].id == "ScriptedLoadableModuleLogic"
    assert names["LDSegTest"].bases[0].id == "ScriptedLoadableModuleTest"


def test_every_widget_the_code_uses_exists_in_the_panel(module_tree, panel):
    used = {
        node.attr for node in ast.walk(module_tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
        and node.value.attr == "ui" and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"
    }
    assert used, "the widget uses no panel widgets?"
    missing = used - set(panel_widgets(panel))
    assert not missing, f"LDSeg.py uses widgets that are not in {PANEL_FILE.name}: {sorted(missing)}"


def test_every_parameter_name_in_the_panel_maps_to_a_parameter_field(module_tree, panel):
    fields = parameter_fields(module_tree)
    bindings = parameter_bindings(panel)
    unknown = set(bindings) - set(fields)
    assert not unknown, f"SlicerParameterName without a parameter field: {sorted(unknown)}"
    assert {"inputVolume", "samples", "ddimSteps", "fusion", "uncertaintyMeasure", "device", "seed",
            "outputSegmentation", "outputUncertainty", "uncertaintyOpacity", "uncertaintyThreshold"} <= set(bindings)


def test_bound_widgets_can_represent_their_parameter_types(module_tree, panel):
    """The same pairs Slicer's parameterNodeWrapper GUI connectors accept."""
    fields = parameter_fields(module_tree)
    for name, widget in parameter_bindings(panel).items():
        widget_class, annotation = widget.get("class"), fields[name]
        if widget_class == "QComboBox":
            assert annotation.startswith("Annotated[str, Choice("), (name, annotation)
        elif widget_class == "QSpinBox":
            assert re.match(r"Annotated\[int, WithinRange\(", annotation), (name, annotation)
        elif widget_class == "ctkSliderWidget":
            assert re.match(r"Annotated\[float, WithinRange\(", annotation), (name, annotation)
        elif widget_class == "QCheckBox":
            assert annotation == "bool", (name, annotation)
        elif widget_class == "qMRMLNodeComboBox":
            node_types = [s.text for s in widget.find("property[@name='nodeTypes']/stringlist")]
            assert node_types == [annotation], (name, annotation, node_types)
        else:
            pytest.fail(f"{name}: no parameter connector for {widget_class}")


def cmake_list(variable):
    text = (MODULE_DIRECTORY / "CMakeLists.txt").read_text(encoding="utf-8")
    block = re.search(rf"set\({variable}\n(.*?)\n  \)", text, re.S)
    assert block, f"set({variable} ...) not found"
    return [line.strip().replace("${MODULE_NAME}", "LDSeg") for line in block.group(1).splitlines() if line.strip()]


def test_every_python_file_is_listed_in_the_build():
    listed = set(cmake_list("MODULE_PYTHON_SCRIPTS"))
    on_disk = {
        path.relative_to(MODULE_DIRECTORY).as_posix()
        for path in MODULE_DIRECTORY.rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert on_disk - listed == set(), f"add to LDSegSlicer/CMakeLists.txt: {sorted(on_disk - listed)}"
    assert listed - on_disk == set(), f"listed but missing: {sorted(listed - on_disk)}"


def test_every_resource_is_listed_in_the_build():
    listed = set(cmake_list("MODULE_RESOURCES"))
    needed = {
        path.relative_to(REPO).as_posix()
        for path in (REPO / "Resources").rglob("*")
        if path.is_file() and path.parts[len(REPO.parts) + 1] not in ("Models", "Screenshots")
    }
    assert needed == listed
    assert all((REPO / name).is_file() for name in listed)


def test_catalog_entry_follows_the_extensions_index_schema_and_matches_the_build():
    """The Extensions Index reads one JSON entry per extension (schemas/slicer-extension-catalog-entry-
    schema-v1.0.2.json in Slicer/ExtensionsIndex); the older .s4ext description stays beside it for the
    indexes of Slicer before 5.x, in sync with the CMake variables."""
    cmake = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    metadata = {key.lower(): value for key, value in re.findall(r'set\(EXTENSION_(\w+) "(.*?)"\)', cmake)}
    entry = json.loads((REPO / "LDSegSlicer.json").read_text(encoding="utf-8"))
    allowed = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
               "dicom_support_rule", "build_subdirectory", "enabled", "tier"}  # additionalProperties: false
    assert {"$schema", "category", "scm_url"} <= set(entry) <= allowed
    assert entry["$schema"].endswith("slicer-extension-catalog-entry-schema-v1.0.2.json#")
    assert entry["category"] == metadata["category"]
    assert entry["build_dependencies"] == metadata["depends"].split()
    assert entry["scm_url"].removesuffix(".git") == metadata["homepage"]
    assert 1 <= entry["tier"] <= 5 and isinstance(entry["build_subdirectory"], str)
    s4ext = dict(
        line.split(" ", 1) for line in (REPO / "LDSegSlicer.s4ext").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    )
    for key in ("homepage", "category", "contributors", "description", "iconurl", "screenshoturls", "depends"):
        assert s4ext[key] == metadata[key], key
    assert re.search(r"find_package\(Slicer 5\.10 REQUIRED\)", cmake), "the supported Slicer versions"
    assert "slicerMacroBuildScriptedModule" in (MODULE_DIRECTORY / "CMakeLists.txt").read_text(encoding="utf-8")
    for url in [metadata["iconurl"], *metadata["screenshoturls"].split()]:
        local = REPO / url.split("/main/", 1)[1]
        assert local.is_file(), f"{url} points to {local}, which does not exist"
    assert "Apache License" in (REPO / "LICENSE").read_text(encoding="utf-8")


def top_level_imports(path):
    """Packages imported at file scope; light engine modules (stdlib only) are not counted."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module)
    return {name.split(".")[0] for name in names - LIGHT_ENGINE_MODULES}


def test_light_engine_modules_stay_light():
    code = ("import sys; " + "; ".join(f"import {m}" for m in sorted(LIGHT_ENGINE_MODULES))
            + "; print(sorted(m for m in sys.modules if m.split('.')[0] in %r))" % (HEAVY_MODULES - {"ldseg"}))
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_loading_the_module_imports_nothing_heavy():
    """Extension review rule: heavy packages are imported lazily, never when Slicer loads the module."""
    for path in [MODULE_FILE, *sorted((MODULE_DIRECTORY / "LDSegLib").glob("*.py"))]:
        heavy = top_level_imports(path) & HEAVY_MODULES
        assert not heavy, f"{path.name} imports {heavy} at file scope"


def test_the_scene_layer_never_imports_qt():
    for path in sorted((MODULE_DIRECTORY / "LDSegLib").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        modules |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert not {"qt", "ctk", "PythonQt"} & modules, path.name


def test_panel_object_names_are_unique(panel):
    """slicer.util.childWidgetVariables maps names to widgets; a duplicate would hide one of them."""
    names = [element.get("name") for element in panel.iter() if element.tag in ("widget", "layout", "spacer")]
    assert len(names) == len(set(names))


def test_the_engine_writes_the_terminology_context_the_shipped_file_declares():
    import json

    from ldseg.terminology import TERMINOLOGY_CONTEXT

    shipped = json.loads((REPO / "Resources" / "Terminology" / "ldseg-knee.term.json").read_text(encoding="utf-8"))
    assert shipped["SegmentationCategoryTypeContextName"] == TERMINOLOGY_CONTEXT
