"""Turns the engine's result files into MRML nodes (scene layer: MRML and VTK, never Qt).

The import reads every file before it touches the scene, so a failed import, like a cancelled run,
leaves the scene as it was. Functions take the scene and the logics they need as arguments: the
module passes Slicer's, the tests pass a bare slicer-core scene's.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import display
from .summary import EngineResult, Label
from .terminology import context_name, parse_terminology_entry, terminology_entry

ALGORITHM_TYPE_TAG = "DICOM.SegmentAlgorithmType"
ALGORITHM_NAME_TAG = "DICOM.SegmentAlgorithmName"
RESULT_ATTRIBUTE = "LDSeg.ModelVersion"  # marks nodes made by LDSeg; survives saving the scene

STATISTICS_COLUMNS = (
    ("Structure", None, "Segment name"),
    ("Volume", "mL", "Volume of the fused segmentation"),
    ("Mean uncertainty", None, "Mean voxel uncertainty inside the structure"),
    ("Boundary uncertainty", None, "Mean voxel uncertainty on the structure's boundary"),
    ("Sample agreement", "Dice", "Mean pairwise Dice between the samples"),
)


class ResultImportError(RuntimeError):
    """A result file could not be turned into nodes; the message says which and why."""


@dataclass
class ImportTargets:
    """Existing nodes to overwrite; None means create new ones (the panel's default)."""

    segmentation: object | None = None
    uncertainty: object | None = None
    load_samples: bool = False


@dataclass
class ImportedResult:
    segmentation: object
    uncertainty: object
    statistics_table: object
    samples_browser: object | None = None


@dataclass
class DisplaySettings:
    opacity: float = 0.5
    threshold_fraction: float = 0.2  # of the measure's display range

    def threshold(self, display_range: tuple[float, float]) -> float:
        low, high = display_range
        return low + self.threshold_fraction * (high - low)


def import_result(
    scene,
    input_volume,
    result: EngineResult,
    targets: ImportTargets | None = None,
    settings: DisplaySettings | None = None,
    sequences_logic=None,
) -> ImportedResult:
    """Creates (or overwrites) the segmentation, uncertainty, statistics and sample nodes."""
    targets = targets or ImportTargets()
    settings = settings or DisplaySettings()
    # 1. Read everything outside the scene: nothing changes if a file is bad.
    segmentation = _read_segmentation(result.segmentation_path)
    _describe_segments(segmentation, result)
    uncertainty = _read_volume(result.uncertainty_path)
    samples = [_read_segmentation(path) for path in result.sample_paths] if targets.load_samples else []
    for sample in samples:
        _describe_segments(sample, result)

    # 2. Commit to the scene.
    base = input_volume.GetName()
    segmentation_node = _commit_segmentation(scene, segmentation, targets.segmentation, f"{base} LDSeg")
    segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(input_volume)
    display.style_segmentation(segmentation_node)
    uncertainty_node = _commit_volume(scene, uncertainty, targets.uncertainty, f"{base} LDSeg uncertainty")
    uncertainty_node.SetAttribute("LDSeg.UncertaintyMeasure", result.uncertainty_measure)
    threshold = settings.threshold(result.uncertainty_range)
    display.style_uncertainty(uncertainty_node, result.uncertainty_range, threshold)
    display.show_over_input(scene, input_volume, uncertainty_node, settings.opacity)
    table = statistics_table(scene, result, f"{base} LDSeg statistics")
    browser = _samples_sequence(scene, samples, f"{base} LDSeg samples", sequences_logic) if samples else None
    for node in (segmentation_node, uncertainty_node, table):
        _mark(node, result)
    _follow_transform(input_volume, [segmentation_node, uncertainty_node, _proxy(browser)])
    _place_beside(scene, input_volume, [segmentation_node, uncertainty_node, table, browser])
    return ImportedResult(segmentation_node, uncertainty_node, table, browser)


def _read_segmentation(path):
    """Reads into a private scene: reading makes display nodes, which need a scene."""
    import slicer

    staging = slicer.vtkMRMLScene()
    node = staging.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = staging.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(path))
    if not path.is_file() or not storage.ReadData(node):
        raise ResultImportError(f"The segmentation file {path} is missing or not a Slicer segmentation.")
    return node


def _read_volume(path):
    import slicer

    node = slicer.vtkMRMLScalarVolumeNode()
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    storage.SetSingleFile(True)
    if not path.is_file() or not storage.ReadData(node) or node.GetImageData() is None:
        raise ResultImportError(f"The uncertainty map {path} is missing or cannot be read.")
    return node


def _describe_segments(segmentation_node, result: EngineResult) -> None:
    """Names, colors, terminology and DICOM algorithm tags from the model card labels.

    Segments are matched to the summary's labels by name (the engine writes both from the same
    card). Without labels in the summary, the card's codes come from the segments' own terminology,
    which the engine wrote from the card.
    """
    segmentation = segmentation_node.GetSegmentation()
    labels = {label.name: label for label in result.labels}
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        if labels:
            label: Label | None = labels.get(segment.GetName())
            if label is None:
                raise ResultImportError(
                    f"Segment {segment.GetName()!r} in {result.segmentation_path.name} is not a label of model "
                    f"{result.model_name} {result.model_version} (labels: {', '.join(labels)})."
                )
            color, category, type_ = label.color, label.category, label.type
        else:
            color, (category, type_) = segment.GetColor(), _codes_of(segment, result)
        segment.SetColor(*color)
        segment.SetTag(segment.GetTerminologyEntryTagName(), terminology_entry(category, type_))
        segment.SetTag(ALGORITHM_TYPE_TAG, "AUTOMATIC")
        segment.SetTag(ALGORITHM_NAME_TAG, result.algorithm_name)


def _codes_of(segment, result: EngineResult):
    """Category and type codes from the terminology the engine wrote into the segment.

    Slicer gives a segment without terminology a default one ("Tissue"), so only entries in LDSeg's
    own terminology context count.
    """
    import vtk

    entry = vtk.mutable("")
    if not segment.GetTag(segment.GetTerminologyEntryTagName(), entry) or not str(entry).startswith(
        context_name() + "~"
    ):
        raise ResultImportError(
            f"Segment {segment.GetName()!r} in {result.segmentation_path.name} has no LDSeg terminology and the "
            "summary lists no labels; it was not written by a compatible version of LDSeg."
        )
    return parse_terminology_entry(str(entry))


def _commit_segmentation(scene, loaded, target, name):
    if target is None:
        target = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", scene.GenerateUniqueName(name))
    segmentation = target.GetSegmentation()
    wasModifying = target.StartModify()
    segmentation.RemoveAllSegments()
    source = loaded.GetSegmentation()
    for index in range(source.GetNumberOfSegments()):
        segmentation.CopySegmentFromSegmentation(source, source.GetNthSegmentID(index))
    target.EndModify(wasModifying)
    return target


def _commit_volume(scene, loaded, target, name):
    if target is None:
        loaded.SetName(scene.GenerateUniqueName(name))
        scene.AddNode(loaded)
        loaded.CreateDefaultDisplayNodes()
        return loaded
    wasModifying = target.StartModify()
    target.CopyOrientation(loaded)
    target.SetAndObserveImageData(loaded.GetImageData())
    target.EndModify(wasModifying)
    if target.GetDisplayNode() is None:
        target.CreateDefaultDisplayNodes()
    return target


def statistics_table(scene, result: EngineResult, name: str):
    """One row per structure: volume (mL), mean and boundary uncertainty, sample agreement."""
    import slicer
    import vtk

    table = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(name))
    columns = [vtk.vtkStringArray()] + [vtk.vtkDoubleArray() for _ in STATISTICS_COLUMNS[1:]]
    for column, (title, _, _) in zip(columns, STATISTICS_COLUMNS, strict=True):
        column.SetName(title)
    for name in [label.name for label in result.labels] or list(result.statistics):
        figures = result.statistics.get(name)
        columns[0].InsertNextValue(name)
        values = (
            (figures.volume_ml, figures.mean_uncertainty, figures.boundary_uncertainty, figures.mean_pairwise_dice)
            if figures
            else (float("nan"),) * 4
        )
        for column, value in zip(columns[1:], values, strict=True):
            column.InsertNextValue(value)
    with slicer.util.NodeModify(table):
        for column, (title, unit, description) in zip(columns, STATISTICS_COLUMNS, strict=True):
            table.AddColumn(column)
            table.SetColumnDescription(title, description)
            if unit:
                table.SetColumnUnitLabel(title, unit)
        table.SetUseColumnTitleAsColumnHeader(True)
        table.SetLocked(True)
    return table


def _samples_sequence(scene, samples, name, sequences_logic):
    """The N samples as a browsable sequence (one segmentation per sample)."""
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", scene.GenerateUniqueName(name))
    sequence.SetIndexName("sample")
    sequence.SetIndexUnit("")
    sequence.SetIndexType(sequence.NumericIndex)
    for number, sample in enumerate(samples, start=1):
        sample.SetName(f"{name} {number}")
        sequence.SetDataNodeAtValue(sample, str(number))
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", scene.GenerateUniqueName(f"{name} browser"))
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    browser.SetSelectedItemNumber(0)
    if sequences_logic is not None:
        sequences_logic.UpdateProxyNodesFromSequences(browser)
        proxy = browser.GetProxyNode(sequence)
        if proxy is not None:
            proxy.CreateDefaultDisplayNodes()
            proxy.GetDisplayNode().SetVisibility(False)
    return browser


def _proxy(browser):
    if browser is None:
        return None
    return browser.GetProxyNode(browser.GetMasterSequenceNode())


def _follow_transform(input_volume, nodes) -> None:
    """The engine read the input's own voxel grid, without its parent transform: the results go under
    the same transform, so they lie on the image wherever it has been moved (registration)."""
    transform_id = input_volume.GetTransformNodeID()
    for node in nodes:
        if node is not None:
            node.SetAndObserveTransformNodeID(transform_id)


def _mark(node, result: EngineResult) -> None:
    node.SetAttribute(RESULT_ATTRIBUTE, f"{result.model_name} {result.model_version}")


def _place_beside(scene, input_volume, nodes) -> None:
    """Puts the result nodes in the input's folder of the subject hierarchy (its study, for DICOM)."""
    import slicer

    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    if hierarchy is None:
        return
    input_item = _item_of(hierarchy, input_volume, hierarchy.GetSceneItemID())
    parent = hierarchy.GetItemParent(input_item)
    for node in nodes:
        if node is not None:
            hierarchy.SetItemParent(_item_of(hierarchy, node, parent), parent)


def _item_of(hierarchy, node, parent):
    """The node's subject hierarchy item; Slicer makes one for each node, a bare scene does not."""
    item = hierarchy.GetItemByDataNode(node)
    return item if item else hierarchy.CreateItem(parent, node)
