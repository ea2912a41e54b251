"""The result contract: `<name>.json`, the summary that `ldseg segment` writes beside its result files and
the Slicer scene layer reads (LDSegLib/summary.py). One versioned dataclass on both sides, so writer,
reader and the tests' stand-in engine cannot drift apart; no numerical imports (Slicer imports it).

Fields and their meaning are listed once, in docs/architecture.md ("The summary").
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from .card import Label
from .schema import from_plain
from .settings import SegmentSettings

SUMMARY_FORMAT_VERSION = 1


@dataclass(frozen=True)
class ModelIdentity:
    name: str
    version: str
    weights_sha256: str = ""


@dataclass(frozen=True)
class StructureFigures:
    """Per-structure figures of the fused result (definitions in ldseg/uncertainty.py); None (JSON null) where
    a figure is not a finite number."""

    volume_ml: float | None
    mean_uncertainty: float | None
    boundary_uncertainty: float | None
    mean_pairwise_dice: float | None


@dataclass(frozen=True)
class RunSummary:
    format_version: int  # SUMMARY_FORMAT_VERSION of the LDSeg that wrote it
    model: ModelIdentity
    settings: SegmentSettings  # as run: the card's defaults filled in
    device: str
    structures: dict[str, StructureFigures]
    uncertainty_range: tuple[float, float]  # theoretical range of the uncertainty measure, for display
    files: dict[str, str]  # kind -> file name in the summary's folder (segmentation, uncertainty, sample_00, ...)
    labels: tuple[Label, ...] = ()  # the model card's labels
    timings_seconds: dict[str, float] = field(default_factory=dict)
    input: str = ""  # the input as given on the command line
    cohort: dict[str, float] = field(default_factory=dict)  # figures `ldseg cohort` adds (uncertain_volume_ml)

    def to_json(self) -> str:
        """Strict JSON: NaN and infinities are written as null."""
        return json.dumps(_finite(dataclasses.asdict(self)), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_plain(cls, data: Any, where: str = "summary") -> RunSummary:
        """Parses a summary; raises ValueError for another format version, TypeError/KeyError naming a bad field."""
        version = data.get("format_version") if isinstance(data, dict) else None
        if version != SUMMARY_FORMAT_VERSION:
            raise ValueError(f"{where} has format version {version}, this LDSeg reads {SUMMARY_FORMAT_VERSION}")
        return from_plain(cls, data, where)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value
