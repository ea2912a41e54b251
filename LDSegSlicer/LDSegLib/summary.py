"""Reads the engine's JSON summary (<name>.json), the one place that knows its layout.

The command line writes the summary next to the result files; the scene layer imports what it lists.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ldseg.card import Code, Label


class SummaryError(ValueError):
    """The summary is missing, unreadable or lacks what the import needs; the message says which."""


@dataclass(frozen=True)
class StructureStatistics:
    """Per-structure figures computed by the engine (definitions live in ldseg/uncertainty.py)."""

    volume_ml: float
    mean_uncertainty: float
    boundary_uncertainty: float
    mean_pairwise_dice: float


@dataclass(frozen=True)
class EngineResult:
    """What one `ldseg segment` run produced, with absolute paths."""

    summary_path: Path
    model_name: str
    model_version: str
    labels: tuple[Label, ...]
    segmentation_path: Path
    uncertainty_path: Path
    uncertainty_measure: str
    uncertainty_range: tuple[float, float]
    sample_paths: tuple[Path, ...] = ()
    statistics: dict[str, StructureStatistics] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    seconds: float | None = None
    device: str = ""  # what the engine ran on, as it said
    timings: dict = field(default_factory=dict)  # seconds per stage

    @property
    def algorithm_name(self) -> str:
        """The DICOM SegmentAlgorithmName: the algorithm and the model version that made the result."""
        return f"LDSeg {self.model_name} {self.model_version}".strip()


def read_summary(path: str | Path) -> EngineResult:
    """Parses <name>.json; paths in it are relative to the summary's folder."""
    path = Path(path).resolve()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SummaryError(f"The engine did not write its summary {path}.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SummaryError(f"The engine summary {path} cannot be read ({error}).") from None
    try:
        return _parse(data, path)
    except (KeyError, TypeError, ValueError) as error:
        raise SummaryError(f"The engine summary {path} lacks what LDSeg needs ({error!r}).") from None


def _parse(data: dict, path: Path) -> EngineResult:
    folder = path.parent
    files = data["files"]
    model = data["model"]
    labels = _labels(data.get("labels"))
    measure = str(data["settings"]["uncertainty"])
    low, high = data["uncertainty_range"]
    statistics = {
        name: StructureStatistics(
            volume_ml=float(values["volume_ml"]),
            mean_uncertainty=float(values["mean_uncertainty"]),
            boundary_uncertainty=float(values.get("boundary_uncertainty", math.nan)),
            mean_pairwise_dice=float(values.get("mean_pairwise_dice", math.nan)),
        )
        for name, values in data.get("structures", {}).items()
    }
    samples = sorted(key for key in files if key.startswith("sample_"))
    return EngineResult(
        summary_path=path,
        model_name=str(model["name"]),
        model_version=str(model["version"]),
        labels=labels,
        segmentation_path=folder / files["segmentation"],
        uncertainty_path=folder / files["uncertainty"],
        uncertainty_measure=measure,
        uncertainty_range=(float(low), float(high)),
        sample_paths=tuple(folder / files[key] for key in samples),
        statistics=statistics,
        settings=dict(data["settings"]),
        seconds=data.get("timings_seconds", {}).get("total"),
        device=str(data.get("device", "")),
        timings=dict(data.get("timings_seconds", {})),
    )


def _labels(items: list[dict] | None) -> tuple[Label, ...]:
    """The model card's labels when the summary lists them; else empty (the segments describe themselves)."""
    return tuple(
        Label(
            value=int(item["value"]),
            name=str(item["name"]),
            color=tuple(float(c) for c in item["color"]),  # type: ignore[arg-type]
            category=Code(**item["category"]),
            type=Code(**item["type"]),
        )
        for item in items or ()
    )
