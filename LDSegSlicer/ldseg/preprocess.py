"""Pre- and post-processing between an input volume and the model grid.

Training and inference share these functions, so the network always sees images prepared the
same way:
1. reorient the voxel array to the closest canonical (LPS, identity-direction) axis order: a
   lossless permutation and flip, so oblique or differently stored volumes look like the training data;
2. robust per-volume intensity normalisation (percentiles to [0, 1]);
3. resize to the model grid over the same field of view (anti-aliased for the image).
The way back resizes class probabilities (never labels) to the input grid and undoes the
permutation, so outputs carry exactly the input's size, spacing, origin and direction.
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel.orientations as orientations
import numpy as np
import SimpleITK as sitk
import torch
from monai.transforms import Resize

from .card import ModelCard, Normalization


@dataclass(frozen=True)
class AxisOrientation:
    """Permutation and flips between an image's voxel axes and the canonical (LPS) axes.

    Arrays are in SimpleITK/numpy order (..., z, y, x); only the last three axes are touched.
    """

    ornt: np.ndarray  # nibabel orientation of the (i, j, k) = (x, y, z) index axes

    @classmethod
    def of(cls, image: sitk.Image) -> AxisOrientation:
        direction = np.array(image.GetDirection()).reshape(3, 3)
        affine = np.eye(4)
        affine[:3, :3] = direction * np.array(image.GetSpacing())
        return cls(orientations.io_orientation(affine))

    @property
    def is_identity(self) -> bool:
        return bool(np.array_equal(self.ornt, [[0, 1], [1, 1], [2, 1]]))

    def to_canonical(self, array: np.ndarray) -> np.ndarray:
        return self._apply(array, self.ornt)

    def from_canonical(self, array: np.ndarray) -> np.ndarray:
        identity = orientations.axcodes2ornt(("R", "A", "S"))
        return self._apply(array, orientations.ornt_transform(identity, self.ornt))

    def canonical_shape(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """Shape (z, y, x) of an array of `shape` after to_canonical."""
        return self.to_canonical(np.empty(shape, dtype=np.uint8)).shape

    def _apply(self, array: np.ndarray, ornt: np.ndarray) -> np.ndarray:
        if np.array_equal(ornt, [[0, 1], [1, 1], [2, 1]]):
            return array
        # numpy (..., z, y, x) -> nibabel (x, y, z, ...) and back
        spatial_first = np.moveaxis(array, (-1, -2, -3), (0, 1, 2))
        moved = orientations.apply_orientation(spatial_first, ornt)
        return np.ascontiguousarray(np.moveaxis(moved, (0, 1, 2), (-1, -2, -3)))


def normalise_intensity(array: np.ndarray, normalization: Normalization) -> np.ndarray:
    """Maps the volume's lower/upper intensity percentiles to 0 and 1 and clips.

    Percentiles rather than min/max: MR intensities have no fixed scale and a few bright voxels
    (fat, vessels, artefacts) would otherwise compress the bone contrast.
    """
    array = array.astype(np.float32, copy=False)
    low, high = np.percentile(array, [normalization.lower_percentile, normalization.upper_percentile])
    if high <= low:  # mostly constant volume: fall back to the full range
        low, high = float(array.min()), float(array.max())
    return np.clip((array - low) / max(high - low, 1e-6), 0.0, 1.0)


@dataclass(frozen=True)
class PreparedImage:
    """The image on the model grid, and what is needed to bring results back to the input grid."""

    tensor: torch.Tensor  # (1, 1, D, H, W) float32, model grid, canonical orientation
    orientation: AxisOrientation
    input_shape: tuple[int, int, int]  # (z, y, x) of the input array


def prepare_image(image: sitk.Image, card: ModelCard) -> PreparedImage:
    """Input volume -> normalised image on the model grid (steps 1-3 above)."""
    orientation = AxisOrientation.of(image)
    array = orientation.to_canonical(sitk.GetArrayViewFromImage(image))
    normalised = normalise_intensity(array, card.normalization)
    resized = image_to_model_grid(torch.from_numpy(normalised)[None], card)
    return PreparedImage(resized[None], orientation, tuple(image.GetSize()[::-1]))


def image_to_model_grid(image: torch.Tensor, card: ModelCard) -> torch.Tensor:
    """(C, z, y, x) image -> (C, D, H, W) on the model grid, Gaussian anti-aliased before downsampling."""
    resized = Resize(card.model_grid, mode="trilinear", anti_aliasing=True)(image)
    return torch.as_tensor(resized, dtype=torch.float32)


def labels_to_model_grid(labels: torch.Tensor, card: ModelCard) -> torch.Tensor:
    """(z, y, x) label map -> (D, H, W) labels: resize one-hot channels linearly, then argmax.

    Resizing labels linearly and thresholding (as the reference code does) dilates masks.
    """
    one_hot = torch.nn.functional.one_hot(labels.long(), card.num_classes).permute(3, 0, 1, 2).float()
    resized = Resize(card.model_grid, mode="trilinear")(one_hot)
    return torch.as_tensor(resized).argmax(0)


def probabilities_to_input_grid(probabilities: torch.Tensor, prepared: PreparedImage) -> np.ndarray:
    """(C, D, H, W) class probabilities on the model grid -> (C, z, y, x) float32 on the input grid.

    The permutation is undone on the small model grid first; resizing commutes with it.
    """
    array = prepared.orientation.from_canonical(probabilities.float().cpu().numpy())
    resized = Resize(prepared.input_shape, mode="trilinear")(torch.from_numpy(array))
    return np.asarray(torch.as_tensor(resized), dtype=np.float32)
