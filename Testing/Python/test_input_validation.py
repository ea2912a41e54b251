"""Bad input volumes get one clear LDSegError, from the reader or the segmenter."""

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from ldseg.errors import LDSegError
from ldseg.imageio import read_image
from ldseg.inference import Segmenter
from ldseg.package import load_package


def write(image: sitk.Image, path):
    sitk.WriteImage(image, str(path))
    return path


def volume(array: np.ndarray) -> sitk.Image:
    return sitk.GetImageFromArray(array.astype(np.float32))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: sitk.Image([64, 64], sitk.sitkFloat32), "is a 2D image"),
        (lambda: sitk.Image([32, 32, 32, 3], sitk.sitkFloat32), "is a 4D image"),
        (lambda: sitk.Image([32, 32, 32], sitk.sitkVectorFloat32, 3), "3 components per voxel"),
        (lambda: volume(np.full((32, 32, 32), 7.0)), "is empty: every voxel has the value 7"),
        (lambda: volume(np.where(np.eye(32)[None] > 0, np.nan, 1.0).repeat(32, 0)), "NaN or infinite"),
        (lambda: volume(np.where(np.eye(32)[None] > 0, np.inf, 1.0).repeat(32, 0)), "NaN or infinite"),
        (lambda: volume(np.random.default_rng(0).random((4, 32, 32))), "too small"),
    ],
)
def test_bad_volumes_are_refused_when_read(tmp_path, make, message):
    path = write(make(), tmp_path / "bad.nrrd")
    with pytest.raises(LDSegError, match=message):
        read_image(path)


def test_volume_too_small_for_the_model_grid_is_refused_by_the_segmenter(random_model):
    small = volume(np.random.default_rng(0).random((20, 20, 20)))
    with pytest.raises(LDSegError, match="too small"):
        Segmenter(load_package(random_model), torch.device("cpu")).segment(small)


def test_truncated_and_foreign_files_are_refused(tmp_path, knee_image):
    path = write(knee_image, tmp_path / "knee.nii.gz")
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(LDSegError, match="unreadable or truncated"):
        read_image(truncated)
    raw = write(knee_image, tmp_path / "knee.nii")
    cut = tmp_path / "cut.nii"
    cut.write_bytes(raw.read_bytes()[: raw.stat().st_size - 1000])
    with pytest.raises(LDSegError, match="unreadable or truncated"):
        read_image(cut)
    nrrd = write(knee_image, tmp_path / "knee.nrrd")
    cut_nrrd = tmp_path / "cut.nrrd"
    cut_nrrd.write_bytes(nrrd.read_bytes()[: nrrd.stat().st_size - 1000])
    with pytest.raises(LDSegError, match="unreadable or truncated"):
        read_image(cut_nrrd)
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(LDSegError, match="not a supported image file"):
        read_image(tmp_path / "notes.txt")
    with pytest.raises(LDSegError, match="does not exist"):
        read_image(tmp_path / "missing.nii.gz")
