"""The panel's Qt-free parts on real components: model choice by package folder, model import
through the engine's command line, the device and package probe, the sample data source, the run
report, and results that follow the input's transform and show in 3D."""

import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from scene_fixtures import make_slicer_scene, write_engine_outputs, write_input_image

slicer = pytest.importorskip("slicer")

from ldseg import sample_data  # noqa: E402
from ldseg.store import StoredModel, list_models  # noqa: E402
from LDSegLib import display  # noqa: E402
from LDSegLib import scene as scene_layer  # noqa: E402
from LDSegLib.devices import DeviceProbe  # noqa: E402
from LDSegLib.models import ModelImport, chosen_index, label, new_arrival, package_source  # noqa: E402
from LDSegLib.report import run_report  # noqa: E402
from LDSegLib.run import RunState  # noqa: E402
from LDSegLib.sample import sample_data_source  # noqa: E402
from LDSegLib.summary import read_summary  # noqa: E402


def newer_copy(package: Path, folder: Path, version: str) -> Path:
    """The same package with another version in its card, as a newer release would be."""
    shutil.copytree(package, folder)
    card = json.loads((folder / "model-card.json").read_text())
    card["version"] = version
    (folder / "model-card.json").write_text(json.dumps(card, indent=2))
    return folder


def test_the_choice_is_the_package_folder_so_a_same_name_import_is_not_shadowed(tmp_path):
    bundled = StoredModel("knee-bones", "0.2.0", tmp_path / "bundled" / "knee-bones", "bundled")
    imported = StoredModel("knee-bones", "0.3.0", tmp_path / "cache" / "knee-bones", "cache")
    models = [bundled, imported]
    assert chosen_index(models, str(imported.directory)) == 1
    assert chosen_index(models, str(bundled.directory)) == 0
    assert chosen_index(models, "/a/folder/since/removed") == 0 and chosen_index([], "") == -1
    assert label(imported) == "knee-bones 0.3.0 (cache)" != label(bundled)


def test_import_of_a_chosen_model_card_imports_its_folder(random_model, tmp_path, monkeypatch):
    """The file dialog returns model-card.json; `ldseg models import` takes the folder."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("LDSEG_CACHE_DIR", str(cache))
    package = newer_copy(random_model, tmp_path / "download" / "knee-bones", "7.0.0")
    assert package_source(str(package / "model-card.json")) == str(package)
    assert package_source(str(tmp_path / "model.zip")) == str(tmp_path / "model.zip")
    job = ModelImport(str(package / "model-card.json"), python=sys.executable)
    job.wait(300)
    assert job.finished and job.error is None, job.error
    assert "7.0.0" in job.message
    imported = [model for model in list_models() if model.source == "cache"]
    assert [(model.name, model.version) for model in imported] == [("knee-bones", "7.0.0")]
    before = [model for model in list_models() if model.source == "bundled"]
    after = list_models()
    assert after[new_arrival(before, after)].version == "7.0.0"  # the panel selects what was imported
    assert new_arrival(after, after) == -1


def test_a_failed_import_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("LDSEG_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "notes.txt").write_text("not a model")
    job = ModelImport(str(tmp_path / "notes.txt"), python=sys.executable)
    job.wait(120)
    assert job.finished and job.message is None
    assert "neither a model folder" in job.error


def test_the_probe_reports_the_device_and_the_engine_and_torch_versions():
    import ldseg
    import torch

    probe = DeviceProbe(python=sys.executable)
    assert probe.wait(120) is not None
    assert probe.result.startswith(("CPU only", "CUDA", "Apple MPS")), probe.result
    assert probe.packages.startswith(f"LDSeg engine {ldseg.__version__}, PyTorch {torch.__version__}")


def test_the_sample_data_source_is_the_command_line_sample_with_its_checksum():
    source = sample_data_source()
    assert source["uris"] == [sample_data.SAMPLE_URL]
    assert source["checksums"] == [f"SHA256:{sample_data.SAMPLE_SHA256}"]
    assert source["fileNames"] == [sample_data.SAMPLE_NAME] and len(source["nodeNames"]) == 1
    assert Path(source["thumbnailFileName"]).is_file()
    local = os.environ.get("LDSEG_SAMPLE_DIR")
    if local:  # the file Slicer would download is the one the checksum names
        assert sample_data.sample_case().name.endswith(".nii.gz")


@pytest.fixture
def imported(tmp_path):
    app = make_slicer_scene()
    volume = app.load_volume(write_input_image(tmp_path))
    result = read_summary(write_engine_outputs(tmp_path / "out", "knee", samples=2))
    return app, volume, result


def test_results_follow_the_input_s_transform(imported):
    app, volume, result = imported
    transform = app.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "registration")
    volume.SetAndObserveTransformNodeID(transform.GetID())
    nodes = scene_layer.import_result(app.scene, volume, result, scene_layer.ImportTargets(load_samples=True),
                                      sequences_logic=app.sequences_logic)
    proxy = nodes.samples_browser.GetProxyNode(nodes.samples_browser.GetMasterSequenceNode())
    for node in (nodes.segmentation, nodes.uncertainty, proxy):
        assert node.GetTransformNodeID() == transform.GetID(), node.GetName()


def test_show_3d_builds_surfaces_and_shows_them(imported):
    app, volume, result = imported
    node = scene_layer.import_result(app.scene, volume, result).segmentation
    display.show_in_3d(node)
    segmentation = node.GetSegmentation()
    assert segmentation.ContainsRepresentation("Closed surface")
    surface = segmentation.GetNthSegment(0).GetRepresentation("Closed surface")
    assert surface.GetNumberOfPoints() > 100
    assert node.GetDisplayNode().GetVisibility3D()


def test_the_run_report_has_engine_device_settings_timings_or_the_whole_error(imported):
    _, _, result = imported
    done = RunState(finished=True, engine_result=dataclasses.replace(result, device="cpu"), seconds=4.5)
    text = run_report(done, "ldseg-knee 1.2.0 (bundled)", "knee 1")
    assert "knee 1, model ldseg-knee 1.2.0 (bundled)" in text
    assert "Made by LDSeg ldseg-knee 1.2.0 on cpu" in text
    assert "Settings: samples 2, steps 2, fusion mean" in text and "Timings: sampling 3.0 s, total 4.2 s" in text and "Wall time: 4.5 s" in text
    error = "The LDSeg engine stopped unexpectedly (exit code 3). Its last output:\nTraceback\nCUDA out of memory"
    failed = run_report(RunState(finished=True, error=error), "m", "knee 1")
    assert error in failed
