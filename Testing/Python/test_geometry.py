"""Outputs carry exactly the input's geometry, also for anisotropic, oblique and reordered volumes."""

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from conftest import bundled_card, oblique_anisotropic
from ldseg.inference import Segmenter
from ldseg.settings import SegmentSettings
from ldseg.package import load_package
from ldseg.preprocess import AxisOrientation, prepare_image, probabilities_to_input_grid


def assert_same_geometry(a: sitk.Image, b: sitk.Image) -> None:
    assert a.GetSize() == b.GetSize()
    np.testing.assert_array_equal(a.GetSpacing(), b.GetSpacing())
    np.testing.assert_array_equal(a.GetOrigin(), b.GetOrigin())
    np.testing.assert_array_equal(a.GetDirection(), b.GetDirection())


@pytest.fixture(scope="module")
def segmenter(random_model):
    return Segmenter(load_package(random_model), torch.device("cpu"))


def test_oblique_anisotropic_input_round_trips_exactly(segmenter, small_knee):
    image = oblique_anisotropic(small_knee)
    assert image.GetSpacing() == (0.9, 1.4, 2.2)
    result = segmenter.segment(image, SegmentSettings(samples=2, keep_samples=True))
    for output in [result.labels, result.uncertainty, *result.samples]:
        assert_same_geometry(output, image)
    assert result.mean_probability.shape == (3, *image.GetSize()[::-1])


def reorder_storage(image: sitk.Image) -> sitk.Image:
    """The same physical volume stored with permuted and flipped voxel axes."""
    return sitk.Flip(sitk.PermuteAxes(image, [2, 0, 1]), [True, False, True])


def test_the_model_sees_the_same_image_whatever_the_voxel_storage_order(small_knee):
    card = bundled_card()
    reordered = reorder_storage(small_knee)
    assert reordered.GetDirection() != small_knee.GetDirection()
    torch.testing.assert_close(prepare_image(reordered, card).tensor, prepare_image(small_knee, card).tensor)


def test_probabilities_return_to_the_input_axis_order(small_knee):
    """A probability map made in canonical order comes back matching the reordered storage."""
    card = bundled_card()
    reordered = reorder_storage(small_knee)
    prepared = prepare_image(reordered, card)
    canonical = torch.rand(3, *card.model_grid)
    back = probabilities_to_input_grid(canonical, prepared)
    assert back.shape == (3, *reordered.GetSize()[::-1])
    reference = probabilities_to_input_grid(canonical, prepare_image(small_knee, card))
    # the same physical voxel gets the same probability in both storages
    as_reordered = sitk.GetArrayFromImage(reorder_storage(_with_geometry(reference[1], small_knee)))
    np.testing.assert_allclose(back[1], as_reordered, atol=1e-5)


def _with_geometry(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image


def test_axis_orientation_inverts():
    image = sitk.Image([5, 6, 7], sitk.sitkFloat32)
    image.SetDirection([0, 0, -1, 1, 0, 0, 0, -1, 0])
    orientation = AxisOrientation.of(image)
    array = np.random.default_rng(0).random((2, 7, 6, 5))
    assert not orientation.is_identity
    np.testing.assert_array_equal(orientation.from_canonical(orientation.to_canonical(array)), array)
