"""Reads the engine's JSON summary (<name>.json) into what the scene layer imports.

The layout is the engine's result contract, ldseg.summary.RunSummary, parsed with the same class that
wrote it; this module only turns its file names into absolute paths.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ldseg.card import Label
from ldseg.summary import RunSummary, StructureFigures


class SummaryError(ValueError):
    """The summary is missing, unreadable or lacks what the import needs; the message says which."""


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
    statistics: dict[str, StructureFigures] = field(default_factory=dict)
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
        summary = RunSummary.from_plain(data, "summary")
    except (KeyError, TypeError, ValueError) as error:
        raise SummaryError(f"The engine summary {path} is not one this LDSeg reads: {error}.") from None
    return _engine_result(summary, path)


def _engine_result(summary: RunSummary, path: Path) -> EngineResult:
    folder, files = path.parent, summary.files
    missing = sorted({"segmentation", "uncertainty"} - set(files))
    if missing:
        raise SummaryError(f"The engine summary {path} lists no {' or '.join(missing)} file.")
    return EngineResult(
        summary_path=path,
        model_name=summary.model.name,
        model_version=summary.model.version,
        labels=summary.labels,
        segmentation_path=folder / files["segmentation"],
        uncertainty_path=folder / files["uncertainty"],
        uncertainty_measure=summary.settings.uncertainty,
        uncertainty_range=summary.uncertainty_range,
        sample_paths=tuple(folder / files[key] for key in sorted(files) if key.startswith("sample_")),
        statistics={name: _nan_for_none(figures) for name, figures in summary.structures.items()},
        settings=dataclasses.asdict(summary.settings),
        seconds=summary.timings_seconds.get("total"),
        device=summary.device,
        timings=dict(summary.timings_seconds),
    )


def _nan_for_none(figures: StructureFigures) -> StructureFigures:
    """A figure the engine could not compute (JSON null) as NaN, which the statistics table shows as empty."""
    values = dataclasses.asdict(figures)
    return StructureFigures(**{key: math.nan if value is None else value for key, value in values.items()})
