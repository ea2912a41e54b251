"""Standard terminology (SNOMED CT) for the segments, in the form Slicer stores in a segment tag.

Slicer's bundled terminologies lack the tibia, so the extension ships its own context
(Resources/Terminology/ldseg-knee.term.json); the entries written here name that context so that
Slicer's terminology selector finds them.
"""

from __future__ import annotations

import json
from functools import lru_cache

from ldseg.card import Code
from ldseg.terminology import ANATOMIC_CONTEXT, ANATOMIC_REGION

from .paths import terminology_file


def _serialized(code: Code) -> str:
    return f"{code.scheme}^{code.code}^{code.meaning}"


@lru_cache(maxsize=1)
def context_name() -> str:
    """The SegmentationCategoryTypeContextName of the shipped terminology file."""
    data = json.loads(terminology_file().read_text(encoding="utf-8"))
    return data["SegmentationCategoryTypeContextName"]




def terminology_entry(category: Code, type_: Code, region: Code | None = ANATOMIC_REGION) -> str:
    """Slicer's serialized terminology entry (the value of vtkSegment.GetTerminologyEntryTagName()).

    Layout: context~category~type~type modifier~anatomic context~anatomic region~region modifier;
    the same fields the engine writes into the .seg.nrrd.
    """
    region_text = _serialized(region) if region else "^^"
    return f"{context_name()}~{_serialized(category)}~{_serialized(type_)}~^^~{ANATOMIC_CONTEXT}~{region_text}~^^"


def parse_terminology_entry(entry: str) -> tuple[Code, Code]:
    """Category and type codes of a serialized entry (the inverse of terminology_entry)."""
    parts = entry.split("~")
    if len(parts) < 3:
        raise ValueError(f"Not a Slicer terminology entry: {entry!r}")
    category, type_ = (Code(*part.split("^", 2)) for part in parts[1:3])
    return category, type_


def load_terminology(terminologies_logic) -> str:
    """Makes the shipped terminology known to Slicer's Terminologies logic (once); returns its name."""
    import vtk

    loaded = vtk.vtkStringArray()
    terminologies_logic.GetLoadedTerminologyNames(loaded)
    names = {loaded.GetValue(index) for index in range(loaded.GetNumberOfValues())}
    if context_name() not in names and not terminologies_logic.LoadTerminologyFromFile(str(terminology_file())):
        raise RuntimeError(f"Slicer could not load the LDSeg terminology file {terminology_file()}.")
    return context_name()
