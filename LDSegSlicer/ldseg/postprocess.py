"""Post-processing of a fused label map on the input grid.

A femur or a tibia is one connected piece of bone. A fused segmentation sometimes adds small
islands far from it (in the 500-step leave-one-out, knee1's femur HD95 of 30 mm came from such
islands; keeping the largest component brought it to 4.6 mm). Dropping every piece but the
largest removes them without touching the bone's own boundary.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import SimpleITK as sitk


def keep_largest_components(labels: np.ndarray, values: Iterable[int]) -> np.ndarray:
    """`labels` with each of `values` cut down to its largest 26-connected piece; the rest becomes background."""
    kept = labels.copy()
    for value in values:
        mask = labels == value
        if not mask.any():
            continue
        components = sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8)), True)  # 26-connected
        largest = sitk.GetArrayFromImage(sitk.RelabelComponent(components, sortByObjectSize=True)) == 1
        kept[mask & ~largest] = 0
    return kept
