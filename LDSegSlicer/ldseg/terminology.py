"""The coded context of every segment the engine writes, in one place for the engine and the Slicer scene layer.

TERMINOLOGY_CONTEXT must match SegmentationCategoryTypeContextName in Resources/Terminology/ldseg-knee.term.json
(Slicer's own terminologies lack the tibia); ANATOMIC_CONTEXT is Slicer's default region context.
No numerical imports (Slicer imports it).
"""

from __future__ import annotations

from .card import Code

TERMINOLOGY_CONTEXT = "LDSeg knee bones"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"
ANATOMIC_REGION = Code("SCT", "72696002", "Knee")
