"""Shared fixtures: the real knee cases from ../shared, a randomly initialised model package with
the bundled model's architecture (for tests of the machinery), and small real input volumes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from ldseg.card import ModelCard
from ldseg.networks import LDSegNetwork
from ldseg.package import save_package
from ldseg.training import TrainConfig

REPO = Path(__file__).resolve().parents[2]
TRAINING_CONFIG = REPO / "configs" / "knee-bones.yaml"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared knee cases (images/ and labels/), never copied into the repository."""
    path = Path(os.environ.get("LDSEG_DATA_DIR", REPO.parent / "shared" / "data" / "knee-oai"))
    assert (path / "images" / "knee1.nii.gz").is_file(), f"shared knee data not found in {path}; set LDSEG_DATA_DIR"
    return path


@pytest.fixture(scope="session")
def knee_image(data_dir: Path) -> sitk.Image:
    return sitk.ReadImage(str(data_dir / "images" / "knee1.nii.gz"), sitk.sitkFloat32)


@pytest.fixture(scope="session")
def knee_labels(data_dir: Path) -> sitk.Image:
    return sitk.ReadImage(str(data_dir / "labels" / "knee1.nii.gz"), sitk.sitkUInt8)


def bundled_card() -> ModelCard:
    """The card of the bundled model's training config (architecture, grid, labels)."""
    return TrainConfig.load(TRAINING_CONFIG).card()


@pytest.fixture(scope="session")
def random_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model package with the bundled architecture and random weights (seeded)."""
    torch.manual_seed(0)
    card = bundled_card()
    directory = tmp_path_factory.mktemp("random-model")
    save_package(LDSegNetwork(card), card, directory)
    return directory


@pytest.fixture(scope="session")
def small_knee(knee_image: sitk.Image) -> sitk.Image:
    """knee1 resampled to a coarse grid (1/3 of the voxels per axis): real anatomy, fast tests."""
    return shrink(knee_image, 3)


def shrink(image: sitk.Image, factor: int) -> sitk.Image:
    return sitk.Shrink(image, [factor] * 3)


def oblique_anisotropic(image: sitk.Image, spacing=(0.9, 1.4, 2.2), degrees=(12.0, -8.0, 20.0)) -> sitk.Image:
    """Resamples `image` onto a rotated grid with anisotropic spacing and a non-zero origin."""
    rotation = sitk.Euler3DTransform()
    rotation.SetRotation(*np.deg2rad(degrees))
    direction = np.array(rotation.GetMatrix()).reshape(3, 3)
    extent = np.array(image.GetSize()) * np.array(image.GetSpacing())
    size = [max(8, int(e / s * 0.8)) for e, s in zip(extent, spacing)]
    centre = np.array(image.TransformContinuousIndexToPhysicalPoint([s / 2 for s in image.GetSize()]))
    origin = centre - direction @ (np.array(size) * np.array(spacing) / 2)
    reference = sitk.Image(size, sitk.sitkFloat32)
    reference.SetSpacing(spacing)
    reference.SetDirection(direction.ravel().tolist())
    reference.SetOrigin(origin.tolist())
    return sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
