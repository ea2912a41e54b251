"""The real engine, end to end: the panel's code path runs `python -m ldseg.cli segment` in a
background process on a real (shrunk) knee with a randomly initialised model, and the result
files are imported into a slicer-core scene."""

import sys

import pytest
import vtk
from scene_fixtures import make_slicer_scene

slicer = pytest.importorskip("slicer")

from LDSegLib import process  # noqa: E402
from LDSegLib.run import SegmentationRun  # noqa: E402
from ldseg.settings import RunSettings, SegmentSettings  # noqa: E402


def test_engine_command_line_result_becomes_scene_nodes(random_model, small_knee, tmp_path):
    """The panel passes the chosen package's folder: a package named like the bundled model (a newer
    import) is the one that runs, not the bundled one the engine would find first by name."""
    import SimpleITK as sitk
    from test_panel_logic import newer_copy

    chosen = newer_copy(random_model, tmp_path / "cache" / "knee-bones", "9.9.9")

    image_path = tmp_path / "knee1.nrrd"
    sitk.WriteImage(small_knee, str(image_path))
    app = make_slicer_scene()
    volume = app.load_volume(image_path, "knee1")
    settings = RunSettings(model=str(chosen), device="cpu",
                           segment=SegmentSettings(samples=2, steps=2, seed=3, keep_samples=True))
    run = SegmentationRun(app.scene, volume, settings, sequences_logic=app.sequences_logic, python=sys.executable)
    run.start()
    state = run.wait(timeout=900)
    assert state.finished and state.error is None, state.error
    assert any(isinstance(event, process.Progress) for event in state.events)
    assert state.seconds is not None and state.seconds > 0

    assert state.result.segmentation.GetAttribute("LDSeg.ModelVersion") == "knee-bones 9.9.9"
    segmentation = state.result.segmentation.GetSegmentation()
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    assert names == ["Femur", "Tibia"]
    for index in range(2):
        segment = segmentation.GetNthSegment(index)
        value = vtk.mutable("")
        assert segment.GetTag("DICOM.SegmentAlgorithmType", value) and str(value) == "AUTOMATIC"
        assert segment.GetTag(segment.GetTerminologyEntryTagName(), value) and "SCT^123037004" in str(value)

    uncertainty = state.result.uncertainty
    assert uncertainty.GetImageData().GetDimensions() == volume.GetImageData().GetDimensions()
    expected, actual = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(expected)
    uncertainty.GetIJKToRASMatrix(actual)
    assert all(abs(expected.GetElement(r, c) - actual.GetElement(r, c)) < 1e-4 for r in range(4) for c in range(4))
    assert state.result.statistics_table.GetNumberOfRows() == 2
    assert state.result.samples_browser.GetMasterSequenceNode().GetNumberOfDataNodes() == 2
