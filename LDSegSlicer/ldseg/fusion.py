"""Fusing N posterior samples into one label map.

- mean (default): argmax of the mean class probability p_bar; uses the samples' soft information.
- majority: the class most samples chose (ties go to the lower label value, background first).
- staple: SimpleITK's multi-label STAPLE (Warfield et al. 2004), which weights each sample by its
  estimated performance; voxels STAPLE leaves undecided take the majority vote.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .choices import FUSION_METHODS
from .uncertainty import SampleStatistics, class_labels


def fuse(stats: SampleStatistics, method: str) -> np.ndarray:
    """The fused label map (uint8, same shape as the samples)."""
    if method == "mean":
        return class_labels(stats.mean_probability)
    if method == "majority":
        return majority_vote(stats)
    if method == "staple":
        return staple(stats)
    raise ValueError(f"unknown fusion method {method!r}; choose one of {', '.join(FUSION_METHODS)}")


def majority_vote(stats: SampleStatistics) -> np.ndarray:
    return class_labels(stats.vote_counts())


def staple(stats: SampleStatistics) -> np.ndarray:
    if stats.count == 1:
        return stats.sample_labels[0].copy()
    undecided = 255
    images = [sitk.GetImageFromArray(labels) for labels in stats.sample_labels]
    fused = sitk.GetArrayFromImage(sitk.MultiLabelSTAPLE(images, undecided)).astype(np.uint8)
    unresolved = fused == undecided
    if unresolved.any():
        fused[unresolved] = majority_vote(stats)[unresolved]
    return fused
