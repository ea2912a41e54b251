"""What the evaluation needs from a model, LDSeg or baseline alike: one prediction per volume.

A module of its own so that the evaluation and the baseline both import it, neither the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import SimpleITK as sitk


@dataclass
class Prediction:
    """One model's output for one volume, as numpy arrays on the input grid (z, y, x)."""

    labels: np.ndarray  # fused label map, uint8
    mean_probability: np.ndarray  # (C, z, y, x) mean class probability over the samples
    uncertainty: np.ndarray  # float32 per-voxel uncertainty
    samples: list[np.ndarray]  # label map of every single sample (one for a deterministic model)


class Predictor(Protocol):
    """What the evaluation needs from a model: its card (name, version, labels, num_classes) and predict."""

    card: Any
    kind: str  # "ldseg" or "baseline"
    settings: dict[str, Any]  # what the report should say about how it was run

    def predict(self, image: sitk.Image) -> Prediction: ...
