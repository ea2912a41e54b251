"""Corrections become SEMIAUTOMATIC whichever path changed the voxels, on real slicer-core MRML.

Slicer's paths differ in what they tell an observer (see LDSegLib/edits.py): the Segment Editor's
modifier names the segment, a labelmap import (slicer.util.updateSegmentBinaryLabelmapFromArray, the
self test's path) and ClearSegment name none. Trackers belong to nodes, not node IDs, and go with the
node or the scene.
"""

import numpy as np
import pytest
import vtk
from scene_fixtures import make_slicer_scene, write_engine_outputs, write_input_image

slicer = pytest.importorskip("slicer")

from vtk.util import numpy_support  # noqa: E402

from LDSegLib import scene as scene_layer  # noqa: E402
from LDSegLib.edits import EditTracker, EditTrackers  # noqa: E402
from LDSegLib.summary import read_summary  # noqa: E402

LOGIC = slicer.vtkSlicerSegmentationsModuleLogic


@pytest.fixture
def case(tmp_path):
    app = make_slicer_scene()
    volume = app.load_volume(write_input_image(tmp_path))
    result = read_summary(write_engine_outputs(tmp_path / "out", "knee", samples=0))
    node = scene_layer.import_result(app.scene, volume, result).segmentation
    trackers = EditTrackers(app.scene)
    yield app, volume, result, node, trackers
    trackers.stop()  # idempotent


def algorithm_types(node):
    segmentation = node.GetSegmentation()
    types = {}
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        value = vtk.mutable("")
        segment.GetTag("DICOM.SegmentAlgorithmType", value)
        types[segment.GetName()] = str(value)
    return types


def segment_id(node, name):
    return node.GetSegmentation().GetSegmentIdBySegmentName(name)


def test_an_imported_result_in_the_scene_is_tracked_and_starts_automatic(case):
    _, _, _, node, trackers = case
    assert node in trackers  # attached to the LDSeg result already in the scene
    assert algorithm_types(node) == {"Femur": "AUTOMATIC", "Tibia": "AUTOMATIC"}


def test_the_observer_takes_calls_with_and_without_call_data(case):
    _, _, _, node, trackers = case
    tracker = trackers.track(node)
    segmentation = node.GetSegmentation()
    tracker._on_modified(segmentation, "SourceRepresentationModified")  # what VTK sends without call data
    tracker._on_modified(segmentation, "SourceRepresentationModified", segment_id(node, "Femur"))
    assert algorithm_types(node) == {"Femur": "AUTOMATIC", "Tibia": "AUTOMATIC"}  # nothing changed


def test_a_labelmap_import_marks_the_segment_it_changed(case):
    """slicer.util.updateSegmentBinaryLabelmapFromArray: ImportLabelmapToSegmentationNode, no call data."""
    app, volume, _, node, _ = case
    tibia = segment_id(node, "Tibia")
    labelmap = app.volumes_logic.CreateAndAddLabelVolume(app.scene, volume, "edit")
    ids = vtk.vtkStringArray()
    ids.InsertNextValue(tibia)
    assert LOGIC.ExportSegmentsToLabelmapNode(node, ids, labelmap, volume)
    image = labelmap.GetImageData()
    array = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    array[np.flatnonzero(array == 0)[0]] = 1  # one more voxel
    image.Modified()
    assert LOGIC.ImportLabelmapToSegmentationNode(labelmap, node, ids)
    assert algorithm_types(node) == {"Femur": "AUTOMATIC", "Tibia": "SEMIAUTOMATIC"}


def test_clearing_a_segment_marks_it(case):
    _, _, _, node, _ = case
    node.GetSegmentation().ClearSegment(segment_id(node, "Tibia"))
    assert algorithm_types(node) == {"Femur": "AUTOMATIC", "Tibia": "SEMIAUTOMATIC"}


def segment_editor(app, node, volume):
    """Slicer's Segment Editor logic (what every editor effect calls), default overwrite: all segments."""
    editor_node = app.scene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
    editor = slicer.vtkSlicerSegmentEditorLogic()
    editor.SetMRMLScene(app.scene)
    editor.SetSegmentEditorNode(editor_node)
    editor.SetSegmentationNode(node)
    editor.SetSourceVolumeNode(volume)
    assert editor_node.GetOverwriteMode() == editor_node.OverwriteAllSegments
    return editor


def test_painting_one_segment_over_another_marks_both(case):
    app, volume, _, node, _ = case
    femur, tibia = segment_id(node, "Femur"), segment_id(node, "Tibia")
    paint = slicer.vtkOrientedImageData()
    node.GetBinaryLabelmapRepresentation(tibia, paint)  # paint the femur over the tibia's voxels
    editor = segment_editor(app, node, volume)
    editor.ModifySegmentByLabelmap(node, femur, paint, editor.ModificationModeAdd, False, False)
    assert algorithm_types(node) == {"Femur": "SEMIAUTOMATIC", "Tibia": "SEMIAUTOMATIC"}


def test_painting_where_no_other_segment_is_marks_only_the_painted_one(case):
    app, volume, _, node, _ = case
    femur = segment_id(node, "Femur")
    paint = slicer.vtkOrientedImageData()
    node.GetBinaryLabelmapRepresentation(femur, paint)
    extent = paint.GetExtent()
    paint.SetScalarComponentFromDouble(extent[0], extent[2], extent[5], 0, 1)  # a corner voxel, outside the tibia
    editor = segment_editor(app, node, volume)
    editor.ModifySegmentByLabelmap(node, femur, paint, editor.ModificationModeAdd, False, False)
    assert algorithm_types(node) == {"Femur": "SEMIAUTOMATIC", "Tibia": "AUTOMATIC"}


def test_a_run_overwriting_its_previous_result_is_not_an_edit(case):
    app, volume, result, node, trackers = case
    with trackers.paused():
        scene_layer.import_result(app.scene, volume, result, scene_layer.ImportTargets(segmentation=node))
    assert algorithm_types(node) == {"Femur": "AUTOMATIC", "Tibia": "AUTOMATIC"}
    node.GetSegmentation().ClearSegment(segment_id(node, "Femur"))  # still tracked afterwards
    assert algorithm_types(node) == {"Femur": "SEMIAUTOMATIC", "Tibia": "AUTOMATIC"}


def test_trackers_go_with_their_node_and_survive_close_scene_id_reuse(case):
    app, volume, result, node, trackers = case
    first_id = node.GetID()
    app.scene.RemoveNode(node)
    assert len(trackers) == 0

    app.scene.Clear(0)  # Close Scene: node IDs start again (vtkMRMLScene::Clear clears UniqueIDs)
    assert len(trackers) == 0
    volume = app.volumes_logic.AddArchetypeVolume(str(write_input_image(result.summary_path.parent.parent)), "k")
    again = scene_layer.import_result(app.scene, volume, result).segmentation
    assert again.GetID() == first_id  # the reuse that an ID-keyed registry missed
    trackers.track(again)
    again.GetSegmentation().ClearSegment(segment_id(again, "Tibia"))
    assert algorithm_types(again) == {"Femur": "AUTOMATIC", "Tibia": "SEMIAUTOMATIC"}


def test_a_stopped_registry_marks_nothing(case):
    _, _, _, node, trackers = case
    trackers.stop()
    node.GetSegmentation().ClearSegment(segment_id(node, "Tibia"))
    assert algorithm_types(node) == {"Femur": "AUTOMATIC", "Tibia": "AUTOMATIC"}


def test_a_tracker_on_its_own_marks_the_changed_segment(case):
    _, _, _, node, trackers = case
    trackers.stop()
    tracker = EditTracker(node)
    node.GetSegmentation().ClearSegment(segment_id(node, "Femur"))
    tracker.stop()
    assert algorithm_types(node) == {"Femur": "SEMIAUTOMATIC", "Tibia": "AUTOMATIC"}


def test_looking_again_does_not_touch_the_segments(case):
    """The panel's timer re-reads the trackers every 200 ms during a run: that must not modify anything."""
    _, _, _, node, trackers = case
    segmentation = node.GetSegmentation()
    before = [segmentation.GetNthSegment(index).GetMTime() for index in range(segmentation.GetNumberOfSegments())]
    for _ in range(3):
        with trackers.paused():
            pass
    assert [segmentation.GetNthSegment(index).GetMTime() for index in range(segmentation.GetNumberOfSegments())] == before
