"""The bundled knee-bones model: intact, the engine's default, and still segmenting real knees.

A regression guard (Dice >= 0.9, well under the model card's measured figures) on a shared knee case,
also with the intensities rescaled as a scanner of another range would. The bundled model is trained
on all four shared cases; how the recipe does on unseen cases is in its card (leave-one-out, and the
knee1-3 model on knee4), measured by benchmarks/leave_one_out.py and `ldseg evaluate`.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from conftest import REPO
from ldseg.download import sha256_of
from ldseg.overlap import dice
from ldseg.inference import Segmenter
from ldseg.settings import SegmentSettings
from ldseg.package import load_package
from ldseg.store import DEFAULT_MODEL, bundled_directory, resolve_model

BUNDLED = REPO / "Resources" / "Models" / DEFAULT_MODEL


def test_the_default_model_is_the_bundled_package_and_its_checksum_matches():
    assert resolve_model() == bundled_directory() / DEFAULT_MODEL == BUNDLED
    card = json.loads((BUNDLED / "model-card.json").read_text())
    assert sha256_of(BUNDLED / card["weights_file"]) == card["weights_sha256"]
    assert (BUNDLED / card["weights_file"]).stat().st_size < 25 * 2**20
    assert card["training"]["cases"] == ["knee1", "knee2", "knee3", "knee4"]
    assert set(card["metrics"]["leave_one_out"]["means"]) == {"LDSeg", "UNet baseline"}


@pytest.fixture(scope="module")
def knee4(data_dir):
    image = sitk.ReadImage(str(data_dir / "images" / "knee4.nii.gz"), sitk.sitkFloat32)
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(data_dir / "labels" / "knee4.nii.gz")))
    return image, truth


@pytest.fixture(scope="module")
def segmenter():
    return Segmenter(load_package(BUNDLED), torch.device("cpu"))


@pytest.mark.parametrize("intensity_scale", [1.0, 0.4, 1.5])
def test_bundled_model_segments_a_knee_of_any_intensity_range(segmenter, knee4, intensity_scale):
    image, truth = knee4
    result = segmenter.segment(image * intensity_scale, SegmentSettings(samples=8))
    labels = sitk.GetArrayFromImage(result.labels)
    for label in segmenter.card.labels:
        assert dice(labels == label.value, truth == label.value) >= 0.9, label.name


def test_readme_main_command_on_the_sample_case(data_dir, tmp_path, monkeypatch):
    """`ldseg segment --sample -o OUT` with the sample taken from a local folder, as in CI."""
    monkeypatch.setenv("LDSEG_SAMPLE_DIR", str(data_dir / "images"))
    run = subprocess.run([sys.executable, "-m", "ldseg.cli", "segment", "--sample", "-o", str(tmp_path)],
                         capture_output=True, text=True, cwd=REPO, timeout=600)
    assert run.returncode == 0, run.stderr
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "knee1.seg.nrrd")))
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(data_dir / "labels" / "knee1.nii.gz")))
    summary = json.loads((tmp_path / "knee1.json").read_text())
    assert summary["model"]["name"] == DEFAULT_MODEL
    femur, tibia = (np.asarray(labels) == 1), (np.asarray(labels) == 2)
    assert dice(femur, truth == 1) >= 0.9 and dice(tibia, truth == 2) >= 0.9
