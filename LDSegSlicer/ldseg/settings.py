"""The settings of a segmentation run: one object that the command line, `evaluate`, the Slicer panel and
the cohort runner all build, in a module free of numerical imports (the panel imports it into Slicer).

Fields left unset (None) take the model card's defaults when the engine resolves the settings against
the card it runs (`for_card`), so a model that needs more samples or DDIM steps says so in its card
and every front end follows.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from .choices import FUSION_METHODS, MAX_SAMPLES, MAX_STEPS, UNCERTAINTY_MEASURES
from .errors import LDSegError

if TYPE_CHECKING:
    from .card import ModelCard

DEFAULT_NOISE_SIGMAS = (0.05, 0.10, 0.20)  # `ldseg evaluate`: Gaussian noise added to the [0, 1]-scaled image


class SettingError(LDSegError):
    """A setting outside its range or choices; `field` names it, so a front end can name its own control."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class SegmentSettings:
    """How one volume is segmented (the engine's part of a run)."""

    samples: int | None = None  # posterior samples N; None: the card's diffusion.default_samples
    steps: int | None = None  # DDIM steps k; None: the card's diffusion.default_steps
    fusion: str = "mean"
    uncertainty: str = "entropy"
    seed: int | None = 0
    chunk_size: int = 8  # samples per batch (halved on GPU out-of-memory)
    keep_samples: bool = False
    largest_component: bool = True  # drop islands apart from each structure's largest piece

    def for_card(self, card: ModelCard) -> SegmentSettings:
        """These settings with the card's defaults in the unset fields, checked."""
        resolved = replace(
            self,
            samples=card.diffusion.default_samples if self.samples is None else self.samples,
            steps=card.diffusion.default_steps if self.steps is None else self.steps,
        )
        resolved.validate()
        return resolved

    def validate(self) -> None:
        """Raises SettingError (an LDSegError naming the field) for a value outside its range or choices."""
        if self.samples is not None and not 1 <= self.samples <= MAX_SAMPLES:
            raise SettingError("samples", f"The number of samples must be between 1 and {MAX_SAMPLES} (got {self.samples}); "
                               "8 is a good default.")
        if self.steps is not None and not 1 <= self.steps <= MAX_STEPS:
            raise SettingError("steps", f"The number of DDIM steps must be between 1 and {MAX_STEPS} (got {self.steps}); "
                               "LDSeg needs only 2.")
        if self.fusion not in FUSION_METHODS:
            raise SettingError("fusion", f"Unknown fusion {self.fusion!r}; choose one of {', '.join(FUSION_METHODS)}.")
        if self.uncertainty not in UNCERTAINTY_MEASURES:
            raise SettingError("uncertainty", f"Unknown uncertainty measure {self.uncertainty!r}; "
                               f"choose one of {', '.join(UNCERTAINTY_MEASURES)}.")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise SettingError("seed", f"The seed must be between 0 and 2^63 - 1 (got {self.seed}).")
        if self.chunk_size < 1:
            raise SettingError("chunk_size", f"The chunk size must be at least 1 (got {self.chunk_size}).")

    def cli_options(self) -> dict[str, object]:
        """The `ldseg segment` options that say these settings: flag -> value (True: bare flag; None, False: left out)."""
        return {
            "samples": self.samples,
            "steps": self.steps,
            "fusion": self.fusion,
            "uncertainty": self.uncertainty,
            "seed": self.seed,
            "chunk-size": self.chunk_size,
            "save-samples": self.keep_samples,
            "all-components": not self.largest_component,
        }


@dataclass(frozen=True)
class RunSettings:
    """A whole `ldseg segment` run: which model, on which device, segmenting how."""

    model: str = ""  # name or folder; "": the default model
    device: str = "auto"
    segment: SegmentSettings = field(default_factory=SegmentSettings)

    def cli_options(self) -> dict[str, object]:
        return {"model": self.model or None, "device": self.device, **self.segment.cli_options()}
