"""The scene layer on a real (slicer-core) MRML scene: engine result files become the right nodes."""

import math

import numpy as np
import pytest
import vtk
from scene_fixtures import SHAPE, knee_masks, make_slicer_scene, write_engine_outputs, write_input_image

slicer = pytest.importorskip("slicer")

from LDSegLib import scene as scene_layer  # noqa: E402
from LDSegLib.edits import EditTracker  # noqa: E402
from LDSegLib.heatmap import COLOR_TABLE_NAME, inferno  # noqa: E402
from LDSegLib.summary import read_summary  # noqa: E402
from LDSegLib.terminology import parse_terminology_entry  # noqa: E402


@pytest.fixture
def case(tmp_path):
    """A scene with the input volume inside a patient/study, and engine outputs on disk."""
    app = make_slicer_scene()
    volume = app.load_volume(write_input_image(tmp_path))
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(app.scene)
    patient = hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), "Patient 1")
    study = hierarchy.CreateStudyItem(patient, "Knee MRI")
    hierarchy.CreateItem(study, volume)
    result = read_summary(write_engine_outputs(tmp_path / "out", "knee", samples=3))
    return app, volume, result, study


def segment_tag(segment, name):
    value = vtk.mutable("")
    return str(value) if segment.GetTag(name, value) else None


def segment_array(segmentation_node, volume, name):
    """The segment resampled on the input grid, as a (k, j, i) array."""
    segment_id = segmentation_node.GetSegmentation().GetSegmentIdBySegmentName(name)
    labelmap = slicer.vtkMRMLLabelMapVolumeNode()
    ids = vtk.vtkStringArray()
    ids.InsertNextValue(segment_id)
    scene = volume.GetScene()
    scene.AddNode(labelmap)
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    assert logic.ExportSegmentsToLabelmapNode(segmentation_node, ids, labelmap, volume)
    from vtk.util import numpy_support

    image = labelmap.GetImageData()
    array = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(image.GetDimensions()[::-1])
    scene.RemoveNode(labelmap)
    return array > 0


def node_ids(scene):
    return {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}


def test_segments_get_names_colors_terminology_and_automatic_algorithm_tags(case):
    app, volume, result, _ = case
    imported = scene_layer.import_result(app.scene, volume, result)
    segmentation = imported.segmentation.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 2
    expected = {
        "Femur": ("71341001", "Bone structure of femur", (0.93, 0.82, 0.62)),
        "Tibia": ("12611008", "Bone structure of tibia", (0.45, 0.67, 0.86)),
    }
    for name, (code, meaning, color) in expected.items():
        segment = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName(name))
        assert segment.GetColor() == pytest.approx(color)
        category, type_ = parse_terminology_entry(segment_tag(segment, segment.GetTerminologyEntryTagName()))
        assert (category.scheme, category.code, category.meaning) == ("SCT", "123037004", "Anatomical Structure")
        assert (type_.scheme, type_.code, type_.meaning) == ("SCT", code, meaning)
        assert segment_tag(segment, "DICOM.SegmentAlgorithmType") == "AUTOMATIC"
        assert segment_tag(segment, "DICOM.SegmentAlgorithmName") == "LDSeg ldseg-knee 1.2.0"


def test_terminology_entries_resolve_in_slicers_terminology_logic(case):
    """The shipped .term.json makes the tibia (absent from Slicer's lists) a known, colored type."""
    from LDSegLib.terminology import load_terminology

    app, volume, result, _ = case
    load_terminology(app.terminologies_logic)
    imported = scene_layer.import_result(app.scene, volume, result)
    segmentation = imported.segmentation.GetSegmentation()
    segment = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("Tibia"))
    entry = slicer.vtkSlicerTerminologyEntry()
    logic = app.terminologies_logic
    assert logic.DeserializeTerminologyEntry(segment_tag(segment, segment.GetTerminologyEntryTagName()), entry)
    found = slicer.vtkSlicerTerminologyEntry()
    assert logic.FindTypeInTerminologyBy3dSlicerLabel(entry.GetTerminologyContextName(), "tibia", found)
    assert found.GetTypeObject().GetCodeValue() == entry.GetTypeObject().GetCodeValue() == "12611008"
    assert found.GetCategoryObject().GetCodeValue() == entry.GetCategoryObject().GetCodeValue() == "123037004"


def test_segmentation_references_the_input_geometry_and_matches_the_engine_masks(case):
    app, volume, result, _ = case
    imported = scene_layer.import_result(app.scene, volume, result)
    node = imported.segmentation
    geometry = node.GetSegmentation().GetConversionParameter("Reference image geometry")
    expected = slicer.vtkSegmentationConverter.SerializeImageGeometry(_oriented_geometry(volume))
    assert geometry == expected
    femur, tibia = knee_masks()
    assert np.array_equal(segment_array(node, volume, "Femur"), femur.transpose(2, 1, 0))
    assert np.array_equal(segment_array(node, volume, "Tibia"), tibia.transpose(2, 1, 0))


def _oriented_geometry(volume):
    image = slicer.vtkOrientedImageData()
    image.ShallowCopy(volume.GetImageData())
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    image.SetImageToWorldMatrix(matrix)
    return image


def test_uncertainty_volume_has_input_geometry_inferno_fixed_window_and_threshold(case):
    app, volume, result, _ = case
    settings = scene_layer.DisplaySettings(opacity=0.6, threshold_fraction=0.25)
    imported = scene_layer.import_result(app.scene, volume, result, settings=settings)
    uncertainty = imported.uncertainty
    expected, actual = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(expected)
    uncertainty.GetIJKToRASMatrix(actual)
    assert [actual.GetElement(r, c) for r in range(4) for c in range(4)] == pytest.approx(
        [expected.GetElement(r, c) for r in range(4) for c in range(4)]
    )
    assert uncertainty.GetImageData().GetDimensions() == SHAPE
    display = uncertainty.GetDisplayNode()
    assert display.GetColorNode().GetName() == COLOR_TABLE_NAME
    assert not display.GetAutoWindowLevel()
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == pytest.approx((0.0, math.log(3)))
    assert display.GetApplyThreshold()
    assert display.GetLowerThreshold() == pytest.approx(0.25 * math.log(3))
    legend = slicer.vtkSlicerColorLogic.GetColorLegendDisplayNode(uncertainty)
    assert legend is not None and legend.GetVisibility()
    assert legend.GetTitleText() == "entropy"


def test_heatmap_table_is_inferno_dark_to_bright():
    assert inferno(0.0) == pytest.approx((0.001, 0.0, 0.014))
    assert inferno(1.0) == pytest.approx((0.988, 0.998, 0.645))
    brightness = [sum(inferno(x / 10)) for x in range(11)]
    assert brightness == sorted(brightness)


def test_uncertainty_is_the_foreground_layer_over_the_input_in_every_slice_view(case):
    app, volume, result, _ = case
    imported = scene_layer.import_result(app.scene, volume, result, settings=scene_layer.DisplaySettings(opacity=0.7))
    composites = [app.scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode") for i in range(3)]
    assert len(composites) == 3
    for composite in composites:
        assert composite.GetBackgroundVolumeID() == volume.GetID()
        assert composite.GetForegroundVolumeID() == imported.uncertainty.GetID()
        assert composite.GetForegroundOpacity() == pytest.approx(0.7)
    from LDSegLib.display import set_overlay_opacity, set_threshold_fraction

    set_overlay_opacity(app.scene, 0.2)
    assert all(c.GetForegroundOpacity() == pytest.approx(0.2) for c in composites)
    set_threshold_fraction(imported.uncertainty, 0.5)
    assert imported.uncertainty.GetDisplayNode().GetLowerThreshold() == pytest.approx(0.5 * math.log(3))


def test_statistics_table_lists_each_structure_with_its_figures(case):
    app, volume, result, _ = case
    table = scene_layer.import_result(app.scene, volume, result).statistics_table
    assert table.GetNumberOfRows() == 2
    assert [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())] == [
        "Structure", "Volume", "Mean uncertainty", "Boundary uncertainty", "Sample agreement"
    ]
    assert table.GetColumnUnitLabel("Volume") == "mL"
    assert table.GetCellText(0, 0) == "Femur"
    assert float(table.GetCellText(1, 1)) == pytest.approx(10.25)
    assert float(table.GetCellText(0, 4)) == pytest.approx(0.95)


def test_samples_become_a_browsable_sequence(case):
    app, volume, result, _ = case
    imported = scene_layer.import_result(
        app.scene, volume, result, scene_layer.ImportTargets(load_samples=True), sequences_logic=app.sequences_logic
    )
    browser = imported.samples_browser
    sequence = browser.GetMasterSequenceNode()
    assert sequence.GetNumberOfDataNodes() == 3
    proxy = browser.GetProxyNode(sequence)
    assert proxy.IsA("vtkMRMLSegmentationNode")
    assert proxy.GetSegmentation().GetNumberOfSegments() == 2
    browser.SetSelectedItemNumber(1)
    segment = proxy.GetSegmentation().GetNthSegment(0)
    assert segment_tag(segment, "DICOM.SegmentAlgorithmType") == "AUTOMATIC"


def test_results_are_placed_in_the_input_study(case):
    app, volume, result, study = case
    imported = scene_layer.import_result(
        app.scene, volume, result, scene_layer.ImportTargets(load_samples=True), sequences_logic=app.sequences_logic
    )
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(app.scene)
    for node in (imported.segmentation, imported.uncertainty, imported.statistics_table, imported.samples_browser):
        assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(node)) == study, node.GetName()


def test_existing_output_nodes_are_overwritten_not_duplicated(case):
    app, volume, result, _ = case
    first = scene_layer.import_result(app.scene, volume, result)
    first.segmentation.GetSegmentation().AddEmptySegment("stale", "stale")
    segmentations_before = app.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")
    second = scene_layer.import_result(
        app.scene, volume, result, scene_layer.ImportTargets(first.segmentation, first.uncertainty)
    )
    assert second.segmentation is first.segmentation and second.uncertainty is first.uncertainty
    assert app.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == segmentations_before
    segmentation = second.segmentation.GetSegmentation()
    names = sorted(segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments()))
    assert names == ["Femur", "Tibia"]


def test_a_result_that_does_not_match_the_model_leaves_the_scene_unchanged(case, tmp_path):
    app, volume, result, _ = case
    import dataclasses

    before = node_ids(app.scene)
    wrong_labels = tuple(dataclasses.replace(label, name=label.name + "X") for label in result.labels)
    with pytest.raises(scene_layer.ResultImportError, match="not a label of model"):
        scene_layer.import_result(app.scene, volume, dataclasses.replace(result, labels=wrong_labels))
    missing = dataclasses.replace(result, uncertainty_path=tmp_path / "missing.nrrd")
    with pytest.raises(scene_layer.ResultImportError, match="missing"):
        scene_layer.import_result(app.scene, volume, missing)
    assert node_ids(app.scene) == before


def test_editing_a_segment_makes_it_semiautomatic_and_leaves_the_others(case):
    app, volume, result, _ = case
    node = scene_layer.import_result(app.scene, volume, result).segmentation
    tracker = EditTracker(node)
    segmentation = node.GetSegmentation()
    femur_id = segmentation.GetSegmentIdBySegmentName("Femur")
    labelmap = slicer.vtkOrientedImageData()
    node.GetBinaryLabelmapRepresentation(femur_id, labelmap)
    extent = labelmap.GetExtent()
    labelmap.SetScalarComponentFromDouble(extent[0], extent[2], extent[4], 0, 1)  # paint one voxel
    assert slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        labelmap, node, femur_id, slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE
    )
    femur = segmentation.GetSegment(femur_id)
    tibia = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("Tibia"))
    assert segment_tag(femur, "DICOM.SegmentAlgorithmType") == "SEMIAUTOMATIC"
    assert segment_tag(femur, "DICOM.SegmentAlgorithmName") == "LDSeg ldseg-knee 1.2.0"
    assert segment_tag(tibia, "DICOM.SegmentAlgorithmType") == "AUTOMATIC"
    tracker.stop()


def test_scene_saved_as_mrb_and_loaded_again_keeps_the_results(case, tmp_path):
    app, volume, result, study = case
    scene_layer.import_result(
        app.scene, volume, result, scene_layer.ImportTargets(load_samples=True), sequences_logic=app.sequences_logic
    )
    bundle = tmp_path / "knee.mrb"
    assert app.scene.WriteToMRB(str(bundle))

    loaded = make_slicer_scene()
    assert loaded.scene.ReadFromMRB(str(bundle))
    scene = loaded.scene
    segmentation_node = scene.GetFirstNodeByName("knee LDSeg")
    uncertainty = scene.GetFirstNodeByName("knee LDSeg uncertainty")
    table = scene.GetFirstNodeByName("knee LDSeg statistics")
    input_volume = scene.GetFirstNodeByName("knee")
    assert segmentation_node.IsA("vtkMRMLSegmentationNode") and uncertainty and table and input_volume
    segmentation = segmentation_node.GetSegmentation()
    tibia = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("Tibia"))
    assert tibia.GetColor() == pytest.approx((0.45, 0.67, 0.86))
    assert parse_terminology_entry(segment_tag(tibia, tibia.GetTerminologyEntryTagName()))[1].code == "12611008"
    assert segment_tag(tibia, "DICOM.SegmentAlgorithmType") == "AUTOMATIC"
    assert segment_tag(tibia, "DICOM.SegmentAlgorithmName") == "LDSeg ldseg-knee 1.2.0"
    assert np.array_equal(segment_array(segmentation_node, input_volume, "Tibia"), knee_masks()[1].transpose(2, 1, 0))
    display = uncertainty.GetDisplayNode()
    assert display.GetColorNode().GetName() == COLOR_TABLE_NAME
    assert display.GetColorNode().GetNumberOfColors() == 256
    assert display.GetApplyThreshold() and not display.GetAutoWindowLevel()
    assert display.GetWindowLevelMax() == pytest.approx(math.log(3), rel=1e-5)
    assert slicer.vtkSlicerColorLogic.GetColorLegendDisplayNode(uncertainty) is not None
    assert table.GetNumberOfRows() == 2 and table.GetCellText(0, 0) == "Femur"
    assert scene.GetNumberOfNodesByClass("vtkMRMLSequenceNode") == 1
    assert scene.GetNthNodeByClass(0, "vtkMRMLSequenceNode").GetNumberOfDataNodes() == 3
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    parent = hierarchy.GetItemParent(hierarchy.GetItemByDataNode(segmentation_node))
    assert hierarchy.GetItemName(parent) == "Knee MRI"
    assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(input_volume)) == parent
    composite = scene.GetNthNodeByClass(0, "vtkMRMLSliceCompositeNode")
    assert composite.GetForegroundVolumeID() == uncertainty.GetID()


def test_without_labels_in_the_summary_the_segments_own_terminology_is_kept(tmp_path):
    """The engine writes the card's codes into the .seg.nrrd; the import keeps them and adds the DICOM tags."""
    import slicerio

    app = make_slicer_scene()
    volume = app.load_volume(write_input_image(tmp_path))
    summary_path = write_engine_outputs(tmp_path / "out", samples=0, with_labels=False)
    seg_path = tmp_path / "out" / "knee.seg.nrrd"
    segmentation = slicerio.read_segmentation(str(seg_path))
    anatomical = ["SCT", "123037004", "Anatomical Structure"]
    types = {
        "Femur": ["SCT", "71341001", "Bone structure of femur"],
        "Tibia": ["SCT", "12611008", "Bone structure of tibia"],
    }
    for segment in segmentation["segments"]:
        segment["terminology"] = {
            "contextName": "LDSeg knee bones", "category": anatomical, "type": types[segment["name"]]
        }
    slicerio.write_segmentation(str(seg_path), segmentation)
    result = read_summary(summary_path)
    assert result.labels == ()
    imported = scene_layer.import_result(app.scene, volume, result)
    node = imported.segmentation.GetSegmentation()
    tibia = node.GetSegment(node.GetSegmentIdBySegmentName("Tibia"))
    assert parse_terminology_entry(segment_tag(tibia, tibia.GetTerminologyEntryTagName()))[1].code == "12611008"
    assert segment_tag(tibia, "DICOM.SegmentAlgorithmType") == "AUTOMATIC"
    assert tibia.GetColor() == pytest.approx((0.45, 0.67, 0.86))
    assert imported.statistics_table.GetNumberOfRows() == 2

    for segment in segmentation["segments"]:
        del segment["terminology"]
    slicerio.write_segmentation(str(seg_path), segmentation)
    with pytest.raises(scene_layer.ResultImportError, match="no LDSeg terminology"):
        scene_layer.import_result(app.scene, volume, read_summary(summary_path))
