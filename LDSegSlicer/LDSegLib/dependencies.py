"""First-run check of the Python packages the engine needs in Slicer's Python, and their install.

torch must come from the PyTorch extension (it picks the CUDA build that matches the driver); the
others are installed with Slicer's pip helpers. Nothing is installed without the user's consent:
the widget asks first, then calls install().
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata


@dataclass(frozen=True)
class Requirement:
    distribution: str  # name on PyPI
    module: str  # name to import
    minimum: str  # lowest version the engine is tested with

    @property
    def specifier(self) -> str:
        return f"{self.distribution}>={self.minimum}"


TORCH = Requirement("torch", "torch", "2.1")
REQUIREMENTS = (
    TORCH,
    Requirement("monai", "monai", "1.3"),
    Requirement("safetensors", "safetensors", "0.4"),
    Requirement("SimpleITK", "SimpleITK", "2.2"),
    Requirement("slicerio", "slicerio", "1.1"),
    Requirement("nibabel", "nibabel", "5.0"),
    Requirement("pydicom", "pydicom", "2.4"),
    Requirement("highdicom", "highdicom", "0.22"),
)


@dataclass(frozen=True)
class Missing:
    requirement: Requirement
    installed: str | None  # None: not installed; else the too-old version

    def describe(self) -> str:
        if self.installed is None:
            return f"{self.requirement.distribution} (not installed)"
        return f"{self.requirement.distribution} {self.installed} (LDSeg needs {self.requirement.minimum} or newer)"


def missing_requirements(requirements=REQUIREMENTS, version_of=None) -> list[Missing]:
    """Requirements that are absent or older than their minimum version."""
    version_of = version_of or _installed_version
    missing = []
    for requirement in requirements:
        installed = version_of(requirement.distribution)
        if installed is None or _version_tuple(installed) < _version_tuple(requirement.minimum):
            missing.append(Missing(requirement, installed))
    return missing


def explain(missing: list[Missing]) -> str:
    """The consent question / error text: what is missing and what installing will do."""
    lines = ["LDSeg needs Python packages that are missing or too old in Slicer's Python:"]
    lines += [f"  - {item.describe()}" for item in missing]
    if any(item.requirement is TORCH for item in missing):
        lines.append("PyTorch is installed through Slicer's PyTorch extension (install it from the Extensions Manager).")
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
    pip_ensure = getattr(getattr(slicer, "packaging", None), "pip_ensure", None)
    if pip_ensure is not None:  # Slicer >= 5.12: progress display and restart prompt
        from packaging.requirements import Requirement as PipRequirement

        pip_ensure([PipRequirement(text) for text in specifiers], prompt_install=False, requester="LDSeg")
    else:
        slicer.util.pip_install(specifiers)


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
