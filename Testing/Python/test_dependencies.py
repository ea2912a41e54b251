"""The first-run dependency check: what counts as missing, and what the user is told."""

import scene_fixtures  # noqa: F401  (puts the module folder on sys.path)
from LDSegLib.dependencies import REQUIREMENTS, TORCH, Requirement, explain, missing_requirements

MONAI = Requirement("monai", "monai", "1.3", below="1.7")


def test_absent_and_too_old_packages_are_missing_and_new_enough_ones_are_not():
    versions = {"torch": "2.4.1+cu121", "monai": "1.2.0"}
    missing = missing_requirements((TORCH, MONAI, Requirement("slicerio", "slicerio", "1.1")),
                                   version_of=versions.get, importable=lambda module: False)
    found = [(item.requirement.distribution, item.installed) for item in missing]
    assert found == [("monai", "1.2.0"), ("slicerio", None)]
    too_new = missing_requirements((MONAI,), version_of={"monai": "1.7.0"}.get, importable=lambda module: False)
    assert [item.installed for item in too_new] == ["1.7.0"]
    assert MONAI.specifier == "monai>=1.3,<1.7"


def test_a_module_built_into_slicer_without_package_metadata_is_not_reinstalled():
    simpleitk = Requirement("SimpleITK", "SimpleITK", "2.2")
    assert missing_requirements((simpleitk,), version_of=lambda name: None, importable=lambda module: True) == []


def test_the_explanation_names_each_package_and_sends_torch_to_the_pytorch_extension():
    missing = missing_requirements((TORCH, MONAI), version_of={"monai": "1.0"}.get, importable=lambda module: False)
    text = explain(missing)
    assert "torch (not installed)" in text and "monai 1.0 (LDSeg needs 1.3 or newer, below 1.7)" in text
    assert "PyTorch extension" in text


def test_this_environment_has_everything_the_engine_needs():
    assert missing_requirements(REQUIREMENTS) == [], explain(missing_requirements(REQUIREMENTS))


def test_slicer_s_own_dicom_packages_are_never_asked_for():
    """The panel gives the engine an NRRD file; Slicer bundles pydicom (2.4.4 in 5.10, 3.0.2 and
    highdicom 0.27.0 in 5.12) for its DICOM module and other extensions."""
    assert not {"pydicom", "highdicom"} & {requirement.distribution for requirement in REQUIREMENTS}


def test_slicer_5_12_installs_through_slicer_packaging_which_must_be_imported(monkeypatch):
    """slicer/__init__.py does not import slicer.packaging: an attribute lookup never finds it."""
    import sys
    import types

    from LDSegLib import dependencies

    asked = []
    packaging = types.ModuleType("slicer.packaging")
    packaging.pip_ensure = lambda requirements, **options: asked.append((requirements, options))
    monkeypatch.setitem(sys.modules, "slicer.packaging", packaging)
    fake_slicer = types.ModuleType("slicer")
    fake_slicer.util = types.SimpleNamespace(pip_install=lambda specifiers: asked.append(("pip_install", specifiers)))
    monkeypatch.setitem(sys.modules, "slicer", fake_slicer)
    missing = missing_requirements((MONAI,), version_of=lambda name: None, importable=lambda module: False)
    dependencies.install(missing)
    assert asked == [(["monai>=1.3,<1.7"], {"prompt_install": False, "requester": "LDSeg"})]
    monkeypatch.delitem(sys.modules, "slicer.packaging")  # Slicer 5.10: no slicer.packaging
    monkeypatch.setitem(sys.modules, "slicer.packaging", None)
    dependencies.install(missing)
    assert asked[-1] == ("pip_install", ["monai>=1.3,<1.7"])
