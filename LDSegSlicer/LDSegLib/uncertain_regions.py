"""Finds the largest connected regions of high uncertainty, where a correction should start.

"Next uncertain region" in the panel visits them in order of size, centring the slice views on each.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UncertainRegion:
    center_ras: tuple[float, float, float]  # centroid of the region's voxels
    voxels: int
    volume_ml: float
    mean_uncertainty: float


def uncertain_regions(volume_node, threshold: float, limit: int = 10) -> list[UncertainRegion]:
    """Connected regions (face neighbours) with uncertainty >= threshold, largest first."""
    import numpy as np
    import vtk
    from vtk.util import numpy_support

    image = volume_node.GetImageData()
    if image is None:
        return []
    dims = image.GetDimensions()
    values = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[::-1])  # (k, j, i)
    mask = (values >= threshold).astype(np.uint8)
    if not mask.any():
        return []

    mask_image = vtk.vtkImageData()
    mask_image.SetDimensions(dims)
    mask_image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(mask.ravel(), deep=True))
    connectivity = vtk.vtkImageConnectivityFilter()
    connectivity.SetInputData(mask_image)
    connectivity.SetScalarRange(1, 1)
    connectivity.SetExtractionModeToAllRegions()
    connectivity.SetLabelModeToSizeRank()  # label 1 = largest region
    connectivity.Update()
    labels = numpy_support.vtk_to_numpy(connectivity.GetOutput().GetPointData().GetScalars()).reshape(mask.shape)

    count = min(limit, connectivity.GetNumberOfExtractedRegions())
    flat_labels = labels.ravel()
    k, j, i = (axis.ravel() for axis in np.indices(mask.shape))
    sizes = np.bincount(flat_labels, minlength=count + 1)
    sums = [np.bincount(flat_labels, weights=axis, minlength=count + 1) for axis in (i, j, k)]
    uncertainty_sums = np.bincount(flat_labels, weights=values.ravel().astype(float), minlength=count + 1)
    ijk_to_ras = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(ijk_to_ras)
    voxel_ml = abs(ijk_to_ras.Determinant()) / 1000.0
    regions = []
    for label in range(1, count + 1):
        centroid_ijk = [float(total[label] / sizes[label]) for total in sums] + [1.0]
        center = ijk_to_ras.MultiplyPoint(centroid_ijk)[:3]
        regions.append(
            UncertainRegion(
                center_ras=tuple(center),
                voxels=int(sizes[label]),
                volume_ml=float(sizes[label] * voxel_ml),
                mean_uncertainty=float(uncertainty_sums[label] / sizes[label]),
            )
        )
    return regions


class RegionCursor:
    """Steps through the regions in order and wraps around, for the panel's button."""

    def __init__(self, regions: list[UncertainRegion]) -> None:
        self.regions = regions
        self._next = 0

    def next(self) -> UncertainRegion | None:
        if not self.regions:
            return None
        region = self.regions[self._next % len(self.regions)]
        self._next += 1
        return region

    @property
    def position(self) -> int:
        """1-based number of the region last returned."""
        return (self._next - 1) % len(self.regions) + 1 if self.regions else 0
