"""Marks a segment SEMIAUTOMATIC once a person edits it, so DICOM export tells AI from corrected AI.

Slicer writes MANUAL unless a segment carries DICOM.SegmentAlgorithmType; LDSeg sets AUTOMATIC on
import, and this observer switches an edited segment to SEMIAUTOMATIC (keeping the algorithm name).
"""

from __future__ import annotations

from .scene import ALGORITHM_TYPE_TAG


class EditTracker:
    """Watches one segmentation node's source representation (the labelmap the Segment Editor edits)."""

    def __init__(self, segmentation_node) -> None:
        import vtk

        self.segmentation_node = segmentation_node
        self._segmentation = segmentation_node.GetSegmentation()

        @vtk.calldata_type(vtk.VTK_STRING)
        def on_modified(_caller, _event, segment_id):
            self._mark_edited(segment_id)

        self._callback = on_modified
        self._tag = self._segmentation.AddObserver(
            self._segmentation.SourceRepresentationModified, self._callback
        )

    def _mark_edited(self, segment_id) -> None:
        # Without a segment ID the event only says that a shared labelmap layer changed; the
        # segment-specific event that Slicer sends for each edited segment follows it.
        segment = self._segmentation.GetSegment(segment_id) if segment_id else None
        if segment is not None and _algorithm_type(segment) == "AUTOMATIC":
            segment.SetTag(ALGORITHM_TYPE_TAG, "SEMIAUTOMATIC")

    def stop(self) -> None:
        self._segmentation.RemoveObserver(self._tag)


def _algorithm_type(segment) -> str:
    import vtk

    value = vtk.mutable("")
    return str(value) if segment.GetTag(ALGORITHM_TYPE_TAG, value) else ""
