"""Marks a segment SEMIAUTOMATIC once its voxels change, so DICOM export tells AI from corrected AI.

Slicer writes MANUAL unless a segment carries DICOM.SegmentAlgorithmType; LDSeg sets AUTOMATIC on
import, and this observer switches a changed segment to SEMIAUTOMATIC (keeping the algorithm name).

The segmentation's SourceRepresentationModified event does not say reliably which segment changed:
the Segment Editor sends the segment ID (vtkSegmentationModifier.cxx), a labelmap import or
ClearSegment sends nothing (vtkSegmentation::OnSourceRepresentationModified forwards the labelmap's
own ModifiedEvent), and SetSourceRepresentationName or a layer split send an object pointer
(vtkSegmentation.cxx). VTK then calls a Python observer with or without a third argument
(vtkPythonCommand.cxx). So the tracker ignores the call data and compares each segment's voxels with
what it saw last: whichever tool made the change, and whichever segments an edit overwrote, the
changed segments are the ones marked.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager

from .scene import ALGORITHM_TYPE_TAG, RESULT_ATTRIBUTE

BINARY_LABELMAP = "Binary labelmap"


class EditTracker:
    """Watches one segmentation node; `paused` is set while LDSeg itself rewrites the segments."""

    def __init__(self, segmentation_node) -> None:
        self.segmentation_node = segmentation_node
        self.paused = False
        self._segmentation = segmentation_node.GetSegmentation()
        self._seen: dict[str, tuple] = {}  # segment ID -> (layer MTime, fingerprint)
        self.rebaseline()
        self._tag = self._segmentation.AddObserver(self._segmentation.SourceRepresentationModified, self._on_modified)

    def _on_modified(self, caller=None, event=None, call_data=None) -> None:
        if not self.paused:
            self.update()

    def rebaseline(self) -> None:
        """Takes the current voxels as the unedited state (after LDSeg wrote them)."""
        _observe_every_source(self._segmentation)
        self._seen = self._current()

    def update(self) -> list[str]:
        """Marks every AUTOMATIC segment whose voxels changed since the last look; returns their IDs."""
        current = self._current()
        changed = [
            segment_id for segment_id, (_, fingerprint) in current.items()
            if segment_id in self._seen and self._seen[segment_id][1] != fingerprint
        ]
        self._seen = current
        for segment_id in changed:
            segment = self._segmentation.GetSegment(segment_id)
            if _algorithm_type(segment) == "AUTOMATIC":
                segment.SetTag(ALGORITHM_TYPE_TAG, "SEMIAUTOMATIC")
        return changed

    def _current(self) -> dict[str, tuple]:
        seen = {}
        for index in range(self._segmentation.GetNumberOfSegments()):
            segment_id = self._segmentation.GetNthSegmentID(index)
            segment = self._segmentation.GetSegment(segment_id)
            source = segment.GetRepresentation(self._segmentation.GetSourceRepresentationName())
            mtime = source.GetMTime() if source is not None else 0
            previous = self._seen.get(segment_id)
            if previous is not None and previous[0] == mtime and source is not None:
                seen[segment_id] = previous  # layer untouched: same voxels
            else:
                seen[segment_id] = (mtime, _fingerprint(segment, source, self._segmentation))
        return seen

    def stop(self) -> None:
        self._segmentation.RemoveObserver(self._tag)


class EditTrackers:
    """The trackers of one scene, keyed by node (IDs repeat after Close Scene: vtkMRMLScene::Clear
    clears UniqueIDs). A tracker goes with its node's removal or the scene's close; LDSeg results in
    an imported scene (.mrb, .mrml) are tracked again."""

    def __init__(self, scene) -> None:
        import vtk

        self.scene = scene
        self._trackers: dict[object, EditTracker] = {}

        @vtk.calldata_type(vtk.VTK_OBJECT)
        def on_node_removed(_caller, _event, node=None):
            self._drop(node)

        self._on_node_removed = on_node_removed
        self._observers = [
            scene.AddObserver(scene.NodeRemovedEvent, self._on_node_removed),
            scene.AddObserver(scene.StartCloseEvent, lambda *_: self.clear()),
            scene.AddObserver(scene.EndImportEvent, lambda *_: self.track_results()),
        ]
        self.track_results()

    def __len__(self) -> int:
        return len(self._trackers)

    def __contains__(self, node) -> bool:
        return node in self._trackers

    def track(self, segmentation_node) -> EditTracker:
        """Starts tracking the node, or takes its current voxels as unedited if already tracked."""
        tracker = self._trackers.get(segmentation_node)
        if tracker is None:
            tracker = self._trackers[segmentation_node] = EditTracker(segmentation_node)
        else:
            tracker.rebaseline()
        return tracker

    def track_results(self) -> None:
        for index in range(self.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")):
            node = self.scene.GetNthNodeByClass(index, "vtkMRMLSegmentationNode")
            if node.GetAttribute(RESULT_ATTRIBUTE):
                self.track(node)

    @contextmanager
    def paused(self):
        """For LDSeg's own writes into segmentations (a run overwriting its previous result)."""
        for tracker in self._trackers.values():
            tracker.paused = True
        try:
            yield
        finally:
            for tracker in self._trackers.values():
                tracker.paused = False
                tracker.rebaseline()

    def clear(self) -> None:
        for tracker in self._trackers.values():
            tracker.stop()
        self._trackers.clear()

    def stop(self) -> None:
        self.clear()
        for tag in self._observers:
            self.scene.RemoveObserver(tag)
        self._observers = []

    def _drop(self, node) -> None:
        gone = [key for key in self._trackers if key is node or not self.scene.IsNodePresent(key)]
        for key in gone:
            self._trackers.pop(key).stop()


def _observe_every_source(segmentation) -> None:
    """vtkSegmentation::AddSegment updates its source-representation observers before the new segment
    is in its map (vtkSegmentation.cxx), so the last segment added reports no changes until a segment
    is modified; a segment's ModifiedEvent runs that update (OnSegmentModified). Only then: it also
    tells the views to update."""
    name = segmentation.GetSourceRepresentationName()
    segments = [segmentation.GetNthSegment(index) for index in range(segmentation.GetNumberOfSegments())]
    sources = [segment.GetRepresentation(name) for segment in segments]
    if any(source is not None and not source.HasObserver("ModifiedEvent") for source in sources):
        segments[0].Modified()


def _fingerprint(segment, source, segmentation) -> tuple:
    """What a segment covers, independent of the labelmap's extent: its bounding box in world
    coordinates and a hash of its voxels inside it. Other representations: their modification time."""
    if source is None:
        return ("none",)
    if segmentation.GetSourceRepresentationName() != BINARY_LABELMAP:
        return ("mtime", source.GetMTime())
    import numpy as np
    import vtk
    from vtk.util import numpy_support

    scalars = source.GetPointData().GetScalars()
    dimensions = source.GetDimensions()
    if scalars is None or min(dimensions) <= 0:
        return ("empty",)
    mask = numpy_support.vtk_to_numpy(scalars).reshape(dimensions[::-1]) == segment.GetLabelValue()
    bounds = []
    for axis in range(3):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        if present.size == 0:
            return ("empty",)
        bounds.append((int(present[0]), int(present[-1]) + 1))
    cropped = mask[tuple(slice(low, high) for low, high in bounds)]
    matrix = vtk.vtkMatrix4x4()
    source.GetImageToWorldMatrix(matrix)
    extent = source.GetExtent()
    corner_ijk = [extent[0] + bounds[2][0], extent[2] + bounds[1][0], extent[4] + bounds[0][0], 1.0]
    corner = matrix.MultiplyPoint(corner_ijk)[:3]
    axes = [matrix.GetElement(row, column) for row in range(3) for column in range(3)]
    digest = hashlib.blake2b(np.packbits(cropped).tobytes() + str(cropped.shape).encode(), digest_size=16).hexdigest()
    return tuple(round(value, 3) for value in (*corner, *axes)) + (digest,)


def _algorithm_type(segment) -> str:
    import vtk

    value = vtk.mutable("")
    return str(value) if segment.GetTag(ALGORITHM_TYPE_TAG, value) else ""
