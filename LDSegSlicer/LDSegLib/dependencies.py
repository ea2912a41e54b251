"""First-run check of the Python packages the engine needs in Slicer's Python, and their install.

torch must come from the PyTorch extension (it picks the CUDA build that matches the driver); the
others are installed with Slicer's pip helpers. Nothing is installed without the user's consent:
the widget asks first, then calls install().
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from importlib import metadata


@dataclass(frozen=True)
class Requirement:
    distribution: str  # name on PyPI
    module: str  # name to import
    minimum: str  # lowest version the engine is tested with
    below: str | None = None  # first version that is not supported, if any

    @property
    def specifier(self) -> str:
        return f"{self.distribution}>={self.minimum}" + (f",<{self.below}" if self.below else "")


# The engine's dependencies (pyproject.toml) that the panel's path uses. Not pydicom or highdicom: the
# panel gives the engine an NRRD file, never DICOM, and Slicer bundles its own pydicom (2.4.4 in 5.10,
# 3.0.2 with highdicom 0.27.0 in 5.12: SuperBuild/External_python-dicom-requirements.cmake) that its
# DICOM module and other extensions rely on.
TORCH = Requirement("torch", "torch", "2.4")
REQUIREMENTS = (
    TORCH,
    Requirement("monai", "monai", "1.6", below="1.7"),
    Requirement("einops", "einops", "0.7"),
    Requirement("numpy", "numpy", "1.26"),
    Requirement("SimpleITK", "SimpleITK", "2.3"),
    Requirement("nibabel", "nibabel", "5.0"),
    Requirement("safetensors", "safetensors", "0.4"),
    Requirement("slicerio", "slicerio", "1.4"),
    Requirement("pynrrd", "nrrd", "1.0"),
    Requirement("PyYAML", "yaml", "6.0"),
    Requirement("matplotlib", "matplotlib", "3.8"),
    Requirement("tqdm", "tqdm", "4.66"),
)


@dataclass(frozen=True)
class Missing:
    requirement: Requirement
    installed: str | None  # None: not installed; else the too-old version

    def describe(self) -> str:
        if self.installed is None:
            return f"{self.requirement.distribution} (not installed)"
        below = self.requirement.below
        needed = f"{self.requirement.minimum} or newer" + (f", below {below}" if below else "")
        return f"{self.requirement.distribution} {self.installed} (LDSeg needs {needed})"


def missing_requirements(requirements=REQUIREMENTS, version_of=None, importable=None) -> list[Missing]:
    """Requirements that are absent or older than their minimum version.

    A module that imports but has no package metadata was built into Slicer (SimpleITK, for one):
    it counts as present, and is never reinstalled over Slicer's own copy.
    """
    version_of = version_of or _installed_version
    importable = importable or _importable
    missing = []
    for requirement in requirements:
        installed = version_of(requirement.distribution)
        if installed is None and importable(requirement.module):
            continue
        if installed is None or not _supported(installed, requirement):
            missing.append(Missing(requirement, installed))
    return missing


def explain(missing: list[Missing]) -> str:
    """The consent question / error text: what is missing and what installing will do."""
    lines = ["LDSeg needs Python packages that are missing or too old in Slicer's Python:"]
    lines += [f"  - {item.describe()}" for item in missing]
    if any(item.requirement is TORCH for item in missing):
        lines.append("PyTorch comes from Slicer's PyTorch extension (install it from the Extensions Manager).")
    lines.append("Installing downloads them from the Python Package Index; Slicer may ask to restart afterwards.")
    return "\n".join(lines)


def install(missing: list[Missing]) -> None:
    """Installs inside Slicer (call only after the user agreed). Raises RuntimeError with what to do."""
    import slicer

    if any(item.requirement is TORCH for item in missing):
        try:
            import PyTorchUtils
        except ImportError:
            raise RuntimeError(
                "PyTorch is missing and the PyTorch extension is not installed. Install 'PyTorch' from "
                "Slicer's Extensions Manager, restart Slicer and press Segment again."
            ) from None
        torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
            askConfirmation=False, torchVersionRequirement=f">={TORCH.minimum}"
        )
        if torch is None:
            raise RuntimeError("PyTorch could not be installed; see the PyTorch extension's messages.")
    specifiers = [item.requirement.specifier for item in missing if item.requirement is not TORCH]
    if not specifiers:
        return
    try:  # Slicer >= 5.12: progress display and restart prompt (slicer/__init__.py does not import it)
        from slicer.packaging import pip_ensure
    except ImportError:
        slicer.util.pip_install(specifiers)
        return
    pip_ensure(specifiers, prompt_install=False, requester="LDSeg")


def _supported(version: str, requirement: Requirement) -> bool:
    numbers = _version_tuple(version)
    if numbers < _version_tuple(requirement.minimum):
        return False
    return requirement.below is None or numbers < _version_tuple(requirement.below)


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _installed_version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _version_tuple(version: str) -> tuple[int, ...]:
    """Numeric release part only ("2.1.0+cu121" -> (2, 1, 0)); enough for minimum-version checks."""
    numbers = []
    for part in version.split("+")[0].split("."):
        digits = "".join(c for c in part if c.isdigit()) if part[:1].isdigit() else ""
        if not digits:
            break
        numbers.append(int(digits))
    return tuple(numbers)
