"""What only an older Slicer or Windows would show, checked without them.

- Slicer 5.8 ships Python 3.9 (Slicer's top-level CMakeLists.txt, Slicer_REQUIRED_PYTHON_VERSION): the
  module file must load there and say which Slicer LDSeg needs, without importing LDSegLib (3.11+).
  Checked with Python 3.9's grammar and, where a Python 3.9 is installed, by loading the module file
  in it against stand-ins for Slicer's qt/vtk/slicer modules.
- On Windows each plain subprocess from a GUI program opens a console window (slicer.util's
  launchConsoleProcess hides it with STARTUPINFO): every subprocess the module starts passes the
  hiding options.
"""

import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE_DIRECTORY = REPO / "LDSegSlicer"
MODULE_FILE = MODULE_DIRECTORY / "LDSeg.py"
# What LDSeg.py imports before its version check.
BEFORE_THE_CHECK = [MODULE_FILE, MODULE_DIRECTORY / "ldseg" / "__init__.py", MODULE_DIRECTORY / "ldseg" / "choices.py"]


def python_39():
    """A working Python 3.9 (pyenv's shims exist without one, so each candidate is tried)."""
    candidates = [shutil.which("python3.9"), *sorted(Path.home().glob(".pyenv/versions/3.9*/bin/python"))]
    for candidate in filter(None, candidates):
        try:
            version = subprocess.run([str(candidate), "-c", "import sys; print(sys.version_info[:2])"],
                                     capture_output=True, text=True, timeout=30, check=False).stdout.strip()
        except OSError:
            continue
        if version == "(3, 9)":
            return str(candidate)
    return None


PYTHON_39 = python_39()


@pytest.mark.parametrize("path", BEFORE_THE_CHECK, ids=lambda path: path.name)
def test_what_loads_before_the_version_check_keeps_to_python_3_9_grammar(path):
    ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=(3, 9))


def test_the_module_file_builds_no_union_type_at_run_time():
    """`X | Y` of types fails on 3.9 when evaluated: in annotations (parameterNodeWrapper reads them)
    and in expressions at class or file scope. LDSeg.py does not use `from __future__ import annotations`."""
    tree = ast.parse(MODULE_FILE.read_text(encoding="utf-8"))
    unions = [
        ast.unparse(node) for node in ast.walk(tree)
        if isinstance(node, (ast.arg, ast.AnnAssign, ast.FunctionDef))
        for annotation in [getattr(node, "annotation", None) or getattr(node, "returns", None)]
        if annotation is not None and any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr)
                                          for n in ast.walk(annotation))
    ]
    assert not unions
    assert not any(isinstance(node, ast.ImportFrom) and node.module == "__future__" for node in tree.body)


STAND_INS = {
    "qt.py": """
        class QLabel:
            def __init__(self, text=""):
                self.text, self.wordWrap = text, False
        class QTimer:
            def __init__(self): self.timeout = self
            def setInterval(self, ms): pass
            def connect(self, slot): pass
        class QIcon:
            def __init__(self, path): self.path = path
    """,
    "vtk.py": "",
    "slicer/__init__.py": """
        class vtkMRMLScalarVolumeNode: pass
        class vtkMRMLSegmentationNode: pass
        class _App:
            def connect(self, signal, slot): pass
        app = _App()
    """,
    "slicer/parameterNodeWrapper.py": """
        def parameterNodeWrapper(cls): return cls
        def WithinRange(low, high): return (low, high)
        def Choice(values): return tuple(values)
    """,
    "slicer/ScriptedLoadableModule.py": """
        class ScriptedLoadableModule:
            def __init__(self, parent): self.parent = parent
        class _Layout:
            def __init__(self): self.widgets = []
            def addWidget(self, widget): self.widgets.append(widget)
            def addStretch(self, factor): pass
        class ScriptedLoadableModuleWidget:
            def __init__(self, parent=None): self.parent = parent
            def setup(self): self.layout = _Layout()
        class ScriptedLoadableModuleLogic:
            def __init__(self): pass
        class ScriptedLoadableModuleTest: pass
    """,
    "slicer/util.py": """
        class VTKObservationMixin:
            def __init__(self): pass
    """,
}

LOAD_IN_OLD_PYTHON = """
import json, sys, types
import LDSeg
parent = types.SimpleNamespace()
LDSeg.LDSeg(parent)
widget = LDSeg.LDSegWidget()
widget.setup()
try:
    LDSeg.LDSegLogic()
    logic_error = None
except RuntimeError as error:
    logic_error = str(error)
print(json.dumps({
    "python": list(sys.version_info[:2]),
    "help": parent.helpText,
    "panel": [w.text for w in widget.layout.widgets],
    "logic_error": logic_error,
    "icon": hasattr(parent, "icon"),
    "scene_layer_loaded": any(name.startswith("LDSegLib") for name in sys.modules),
}))
"""


@pytest.mark.skipif(PYTHON_39 is None, reason="no Python 3.9 interpreter on this machine")
def test_an_old_slicer_loads_the_module_and_is_told_which_slicer_it_needs(tmp_path):
    for name, text in STAND_INS.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(MODULE_DIRECTORY)])}
    completed = subprocess.run([str(PYTHON_39), "-c", LOAD_IN_OLD_PYTHON], capture_output=True, text=True, env=env,
                               cwd=tmp_path, check=False)
    assert completed.returncode == 0, completed.stderr
    seen = json.loads(completed.stdout)
    assert seen["python"] == [3, 9]
    needs = "LDSeg needs 3D Slicer 5.10 or later (Python 3.12); this Slicer runs Python 3.9."
    assert needs in seen["help"]
    assert any(needs in text for text in seen["panel"])
    assert needs in seen["logic_error"]
    assert not seen["scene_layer_loaded"] and not seen["icon"]


def subprocess_calls(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "subprocess"
                and node.func.attr in {"run", "Popen", "call", "check_call", "check_output"}):
            yield node


def test_every_subprocess_the_module_starts_hides_its_console_window():
    calls = 0
    for path in [MODULE_FILE, *sorted((MODULE_DIRECTORY / "LDSegLib").glob("*.py"))]:
        for call in subprocess_calls(path):
            calls += 1
            spread = [ast.unparse(keyword.value) for keyword in call.keywords if keyword.arg is None]
            assert spread in (["windowless()"], ["_new_process_group()"]), (
                f"{path.name}:{call.lineno} starts a process without the Windows console-hiding options"
            )
    assert calls >= 4  # engine run, device probe, model import, taskkill


def test_the_windows_options_ask_for_no_console_window(monkeypatch):
    from LDSegLib import process

    class StartupInfo:
        dwFlags = 0
        wShowWindow = 1

    for name, value in (("STARTUPINFO", StartupInfo), ("STARTF_USESHOWWINDOW", 1), ("SW_HIDE", 0),
                        ("CREATE_NO_WINDOW", 0x08000000), ("CREATE_NEW_PROCESS_GROUP", 0x00000200)):
        monkeypatch.setattr(subprocess, name, value, raising=False)
    monkeypatch.setattr(os, "name", "nt")
    options = process.windowless()
    assert options["creationflags"] == 0x08000000
    assert options["startupinfo"].dwFlags & 1 and options["startupinfo"].wShowWindow == 0
    engine = process._new_process_group()
    assert engine["creationflags"] == 0x08000000 | 0x00000200 and "startupinfo" in engine
    monkeypatch.setattr(os, "name", "posix")
    assert process.windowless() == {}
    assert process._new_process_group() == {"start_new_session": True}


def test_inside_slicer_the_engine_runs_in_pythonslicer_never_the_slicer_binary(monkeypatch, tmp_path):
    from LDSegLib import process

    fake_slicer = type(sys)("slicer")
    fake_slicer.app = object()  # what only the application has
    monkeypatch.setitem(sys.modules, "slicer", fake_slicer)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "SlicerApp-real"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(RuntimeError, match="PythonSlicer"):
        process.python_executable()
    python_slicer = tmp_path / "PythonSlicer"
    python_slicer.write_text("#!/bin/sh\n")
    python_slicer.chmod(0o755)
    assert process.python_executable() == str(python_slicer)  # beside the Slicer binary
    monkeypatch.delitem(sys.modules, "slicer")
    assert process.python_executable() == str(tmp_path / "SlicerApp-real")  # plain Python: itself
