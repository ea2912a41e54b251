"""Where the extension's resources are: Resources/ beside the module folder.

In the source tree that is the repository's Resources/; CMakeLists.txt installs it at the same place
relative to the module folder (lib/Slicer-X.Y/Resources beside lib/Slicer-X.Y/qt-scripted-modules),
which is also where the engine's model store looks for bundled models.
"""

from pathlib import Path

_MODULE_DIRECTORY = Path(__file__).resolve().parent.parent


def module_directory() -> Path:
    """The folder that holds LDSeg.py, LDSegLib/ and the engine package ldseg/."""
    return _MODULE_DIRECTORY


def resources_directory() -> Path:
    return _MODULE_DIRECTORY.parent / "Resources"


def terminology_file() -> Path:
    return resources_directory() / "Terminology" / "ldseg-knee.term.json"


def panel_file() -> Path:
    return resources_directory() / "UI" / "LDSegSlicer.ui"


def icon_file() -> Path:
    return resources_directory() / "Icons" / "LDSeg.png"
