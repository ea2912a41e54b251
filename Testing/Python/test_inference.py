"""Posterior sampling through the Segmenter: reproducibility, diversity, progress, cancel, settings."""

import dataclasses

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from ldseg.errors import CancelledError, LDSegError
from ldseg.inference import Segmenter, select_device
from ldseg.settings import SegmentSettings
from ldseg.package import load_package
from ldseg.store import resolve_model


@pytest.fixture(scope="module")
def segmenter(random_model):
    return Segmenter(load_package(random_model), torch.device("cpu"))


def arrays(result):
    return sitk.GetArrayFromImage(result.labels), sitk.GetArrayFromImage(result.uncertainty)


def test_a_seed_reproduces_the_result_bit_for_bit(segmenter, small_knee):
    settings = SegmentSettings(samples=3, seed=7)
    first, second = segmenter.segment(small_knee, settings), segmenter.segment(small_knee, settings)
    for a, b in zip(arrays(first), arrays(second)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first.mean_probability, second.mean_probability)


def test_another_seed_draws_other_samples(segmenter, small_knee):
    a = segmenter.segment(small_knee, SegmentSettings(samples=2, seed=1)).mean_probability
    b = segmenter.segment(small_knee, SegmentSettings(samples=2, seed=2)).mean_probability
    assert not np.array_equal(a, b)


def test_samples_differ_and_fuse_to_their_mean(segmenter, small_knee):
    settings = SegmentSettings(samples=4, keep_samples=True, fusion="majority", largest_component=False)
    result = segmenter.segment(small_knee, settings)
    samples = [sitk.GetArrayFromImage(s) for s in result.samples]
    assert len(samples) == 4
    assert any(not np.array_equal(samples[0], other) for other in samples[1:])
    votes = np.stack([(np.stack(samples) == c).sum(0) for c in range(3)])
    np.testing.assert_array_equal(sitk.GetArrayFromImage(result.labels), votes.argmax(0))
    np.testing.assert_allclose(result.mean_probability.sum(0), 1.0, atol=1e-4)


def test_chunking_does_not_change_the_samples(segmenter, small_knee):
    whole = segmenter.segment(small_knee, SegmentSettings(samples=4, chunk_size=4)).mean_probability
    chunked = segmenter.segment(small_knee, SegmentSettings(samples=4, chunk_size=1)).mean_probability
    np.testing.assert_allclose(whole, chunked, atol=1e-4)


def test_progress_names_stages_and_reaches_one(segmenter, small_knee):
    reports = []
    segmenter.segment(small_knee, SegmentSettings(samples=2), progress=lambda stage, f: reports.append((stage, f)))
    stages = [stage for stage, _ in reports]
    assert stages[0] == "Preparing image" and stages[-1] == "Done" and "Sampling" in stages and "Fusing samples" in stages
    fractions = [f for _, f in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_cancel_stops_during_sampling(segmenter, small_knee):
    calls = []

    def should_cancel():
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(CancelledError):
        segmenter.segment(small_knee, SegmentSettings(samples=8, chunk_size=1), should_cancel=should_cancel)
    assert len(calls) == 4


@pytest.mark.parametrize(
    "settings, message",
    [
        (SegmentSettings(samples=0), "number of samples must be between 1 and 64"),
        (SegmentSettings(samples=100000), "number of samples must be between 1 and 64"),
        (SegmentSettings(steps=0), "number of DDIM steps must be between"),
        (SegmentSettings(fusion="average"), "Unknown fusion 'average'"),
        (SegmentSettings(uncertainty="confidence"), "Unknown uncertainty measure 'confidence'"),
    ],
)
def test_bad_settings_are_refused(segmenter, small_knee, settings, message):
    with pytest.raises(LDSegError, match=message):
        segmenter.segment(small_knee, settings)


def test_device_selection():
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type in ("cuda", "mps", "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(LDSegError, match="CUDA GPU was requested"):
            select_device("cuda")
    with pytest.raises(LDSegError, match="Unknown device"):
        select_device("tpu")



def pieces(mask: np.ndarray) -> int:
    components = sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8)), True)
    return int(sitk.GetArrayFromImage(components).max())


def test_each_structure_is_one_piece_unless_all_components_are_asked_for(data_dir):
    """Single samples of the bundled model on a coarse knee4 often carry islands; the default drops them."""
    segmenter = Segmenter(load_package(resolve_model()), torch.device("cpu"))
    image = sitk.Shrink(sitk.ReadImage(str(data_dir / "images" / "knee4.nii.gz"), sitk.sitkFloat32), [3] * 3)
    for seed in range(5):
        settings = SegmentSettings(samples=1, seed=seed, largest_component=False)
        raw = sitk.GetArrayFromImage(segmenter.segment(image, settings).labels)
        if max(pieces(raw == value) for value in (1, 2)) > 1:
            break
    else:
        raise AssertionError("no seed gave an island; pick a case or grid where the raw output has one")
    cleaned = sitk.GetArrayFromImage(segmenter.segment(image, dataclasses.replace(settings, largest_component=True)).labels)
    assert [pieces(cleaned == value) for value in (1, 2)] == [1, 1]
    changed = cleaned != raw
    assert changed.any() and (cleaned[changed] == 0).all()
