"""What the edit tracking (LDSegLib/edits.py) adds to one Segment Editor stroke (prints a Markdown table).

    python benchmarks/benchmark_edit_tracking.py [--labels PATH] [--repeats 5]   (LDSEG_DATA_DIR: the knee cases)

A knee's reference labels (femur 1, tibia 2) become a segmentation in a slicer-core scene; a small
blob inside the femur is erased through Slicer's Segment Editor logic (the call every effect makes)
with the tracker attached, timing the stroke and the tracker's share of it (median of --repeats).
Also at twice the in-plane resolution, nearer a clinical 384 x 384 slice. The segments marked
afterwards show that an erase inside one bone marks only that bone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "LDSegSlicer"), str(REPO / "Testing" / "Python")]
DATA = Path(os.environ.get("LDSEG_DATA_DIR", REPO.parent / "shared" / "data" / "knee-oai"))
DEFAULT_LABELS = DATA / "labels" / "knee1.nii.gz"


def segmentation_from_labels(app, labels):
    """Segments Femur and Tibia (AUTOMATIC) from a label image, through a labelmap volume node."""
    import numpy as np
    import SimpleITK as sitk
    import slicer
    import vtk
    from vtk.util import numpy_support

    array = sitk.GetArrayFromImage(labels).astype(np.uint8)  # (k, j, i)
    labelmap = app.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    image = vtk.vtkImageData()
    image.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(array.ravel(), deep=True))
    labelmap.SetAndObserveImageData(image)
    labelmap.SetSpacing(labels.GetSpacing())
    node = app.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "knee")
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, node)
    segmentation = node.GetSegmentation()
    for index, name in enumerate(("Femur", "Tibia")):
        segment = segmentation.GetNthSegment(index)
        segment.SetName(name)
        segment.SetTag("DICOM.SegmentAlgorithmType", "AUTOMATIC")
    return labelmap, node


def stroke_seconds(app, labelmap, node, centre, repeats: int) -> tuple[float, float, list[str]]:
    """Median seconds of one erase stroke (a 7 x 7 blob inside the femur) and of the tracker's share of it;
    and the segments marked SEMIAUTOMATIC afterwards."""
    import slicer
    import vtk
    from LDSegLib.edits import EditTracker
    from vtk.util import numpy_support

    editor_node = app.scene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
    editor = slicer.vtkSlicerSegmentEditorLogic()
    editor.SetMRMLScene(app.scene)
    editor.SetSegmentEditorNode(editor_node)
    editor.SetSegmentationNode(node)
    editor.SetSourceVolumeNode(labelmap)
    segmentation = node.GetSegmentation()
    femur = segmentation.GetNthSegmentID(0)
    tracker = EditTracker(node)
    inside = []
    update = tracker.update

    def timed_update():
        started = time.perf_counter()
        changed = update()
        inside.append(time.perf_counter() - started)
        return changed

    tracker.update = timed_update
    strokes, shares = [], []
    for repeat in range(repeats):
        blob = slicer.vtkOrientedImageData()
        node.GetBinaryLabelmapRepresentation(femur, blob)  # the femur's grid, emptied
        numpy_support.vtk_to_numpy(blob.GetPointData().GetScalars())[:] = 0
        for di in range(-3, 4):
            for dj in range(-3, 4):
                blob.SetScalarComponentFromDouble(centre[0] + di, centre[1] + dj, centre[2] + repeat, 0, 1)
        inside.clear()
        started = time.perf_counter()
        editor.ModifySegmentByLabelmap(node, femur, blob, editor.ModificationModeRemove, False, False)
        strokes.append(time.perf_counter() - started)
        shares.append(sum(inside))
    tracker.stop()
    marked = []
    for index in range(segmentation.GetNumberOfSegments()):
        value = vtk.mutable("")
        segmentation.GetNthSegment(index).GetTag("DICOM.SegmentAlgorithmType", value)
        if str(value) == "SEMIAUTOMATIC":
            marked.append(segmentation.GetNthSegment(index).GetName())
    return statistics.median(strokes), statistics.median(shares), marked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", type=Path, default=DEFAULT_LABELS)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import numpy as np
    import SimpleITK as sitk
    from scene_fixtures import make_slicer_scene

    labels = sitk.ReadImage(str(args.labels))
    size = labels.GetSize()
    upsampled = sitk.Resample(
        labels, [size[0] * 2, size[1] * 2, size[2]], sitk.Transform(), sitk.sitkNearestNeighbor,
        labels.GetOrigin(), [s / f for s, f in zip(labels.GetSpacing(), (2, 2, 1))], labels.GetDirection(),
    )
    print("| grid (voxels) | one stroke (ms) | of which the tracker (ms) | marked |")
    print("| --- | --- | --- | --- |")
    for image in (labels, upsampled):
        array = sitk.GetArrayViewFromImage(image)
        k, j, i = (int(np.median(axis)) for axis in np.nonzero(array == 1))  # a voxel inside the femur
        app = make_slicer_scene()
        labelmap, node = segmentation_from_labels(app, image)
        stroke, tracker, marked = stroke_seconds(app, labelmap, node, (i, j, k), args.repeats)
        grid = " x ".join(str(n) for n in image.GetSize())
        print(f"| {grid} | {1000 * stroke:.1f} | {1000 * tracker:.1f} | {', '.join(marked)} |")


if __name__ == "__main__":
    main()
