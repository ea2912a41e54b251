"""The bundled knee-bones model: intact, the engine's default, and still segmenting real knees.

A regression guard (Dice >= 0.9, well under the model card's measured figures) on knee4, the case
held out from its training, also with the intensities rescaled as a scanner of another range would.
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
from ldseg.evaluation import dice
from ldseg.inference import Segmenter, SegmentSettings
from ldseg.package import load_package
from ldseg.store import DEFAULT_MODEL, bundled_directory, resolve_model

BUNDLED = REPO / "Resources" / "Models" / DEFAULT_MODEL


def test_the_default_model_is_the_bundled_package_and_its_checksum_matches():
    assert resolve_model() == bundled_directory() / DEFAULT_MODEL == BUNDLED
    card = json.loads((BUNDLED / "model-card.json").read_text())
    assert sha256_of(BUNDLED / card["weights_file"]) == card["weights_sha256"]
    assert (BUNDLED / card["weights_file"]).stat().st_size < 25 * 2**20
    assert "knee4" not in card["training"]["cases"]


@pytest.fixture(scope="module")
def held_out(data_dir):
    image = sitk.ReadImage(str(data_dir / "images" / "knee4.nii.gz"), sitk.sitkFloat32)
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(data_dir / "labels" / "knee4.nii.gz")))
    return image, truth


@pytest.fixture(scope="module")
def segmenter():
    return Segmenter(load_package(BUNDLED), torch.device("cpu"))


@pytest.mark.parametrize("intensity_scale", [1.0, 0.4, 1.5])
def test_bundled_model_segments_the_held_out_knee(segmenter, held_out, intensity_scale):
    image, truth = held_out
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
    # knee1 was a training case: near-perfect overlap expected; both bones present
    femur, tibia = (np.asarray(labels) == 1), (np.asarray(labels) == 2)
    assert dice(femur, truth == 1) >= 0.9 and dice(tibia, truth == 2) >= 0.9
