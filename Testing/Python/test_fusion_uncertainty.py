"""Fusion rules and uncertainty maps on hand-made samples whose answers are known."""

import math

import numpy as np
import pytest

from ldseg import choices
from ldseg.fusion import fuse
from ldseg.uncertainty import (
    MEASURES,
    UNCERTAINTY_MEASURES,
    SampleStatistics,
    class_labels,
    mean_pairwise_dice,
    structure_statistics,
    uncertainty_range,
)


def one_hot(labels: np.ndarray, classes: int = 3) -> np.ndarray:
    return np.moveaxis(np.eye(classes, dtype=np.float32)[labels], -1, 0)


def statistics(samples: list[np.ndarray]) -> SampleStatistics:
    stats = SampleStatistics(3, samples[0].shape)
    for labels in samples:
        stats.add(one_hot(labels))
    return stats


@pytest.fixture
def split_samples():
    """Four samples on a 1 x 2 x 2 grid: voxel 0 unanimous femur, voxel 1 split 2/2 femur/tibia,
    voxel 2 unanimous background, voxel 3 three tibia and one background."""
    layouts = [[1, 1, 0, 2], [1, 1, 0, 2], [1, 2, 0, 2], [1, 2, 0, 0]]
    return [np.array(layout, dtype=np.uint8).reshape(1, 2, 2) for layout in layouts]


@pytest.mark.parametrize("measure", UNCERTAINTY_MEASURES)
def test_uncertainty_is_zero_where_all_samples_agree(split_samples, measure):
    u = statistics(split_samples).uncertainty(measure).ravel()
    assert u[0] == pytest.approx(0.0, abs=1e-6) and u[2] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    "measure, expected", [("entropy", math.log(2)), ("mutual_information", math.log(2)), ("disagreement", 0.5), ("variance", 0.25)]
)
def test_uncertainty_is_maximal_where_samples_split_evenly(split_samples, measure, expected):
    u = statistics(split_samples).uncertainty(measure).ravel()
    assert u[1] == pytest.approx(expected, abs=1e-5)
    assert u[1] >= u.max() - 1e-6  # the even split is the most uncertain voxel


def test_mutual_information_is_zero_when_samples_are_identically_unsure():
    stats = SampleStatistics(3, (1, 1, 1))
    soft = np.array([0.5, 0.5, 0.0], dtype=np.float32).reshape(3, 1, 1, 1)
    for _ in range(4):
        stats.add(soft)
    assert stats.uncertainty("entropy").item() == pytest.approx(math.log(2), abs=1e-5)
    assert stats.uncertainty("mutual_information").item() == pytest.approx(0.0, abs=1e-5)


def test_class_labels_is_argmax_with_ties_to_the_lower_class():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 3, size=(3, 4, 5, 6)).astype(np.float32)  # many ties
    assert np.array_equal(class_labels(scores), scores.argmax(axis=0))
    assert class_labels(scores).dtype == np.uint8


@pytest.mark.parametrize("measure", UNCERTAINTY_MEASURES)
def test_statistics_for_one_measure_give_the_same_map(split_samples, measure):
    one = SampleStatistics(3, split_samples[0].shape, (measure,))
    for labels in split_samples:
        one.add(one_hot(labels))
    assert np.array_equal(one.uncertainty(measure), statistics(split_samples).uncertainty(measure))
    other = next(name for name in UNCERTAINTY_MEASURES if name != measure)
    with pytest.raises(ValueError, match="was not accumulated"):
        one.uncertainty(other)


def test_fusion_rules(split_samples):
    stats = statistics(split_samples)
    assert fuse(stats, "majority").ravel().tolist() == [1, 1, 0, 2]  # the 2/2 tie goes to the lower label
    assert fuse(stats, "mean").ravel().tolist()[::2] == [1, 0]
    assert fuse(stats, "mean").ravel()[3] == 2


def test_staple_and_majority_agree_on_unanimous_input(knee_labels):
    labels = np.asarray(__import__("SimpleITK").GetArrayFromImage(knee_labels))[::4, ::4, ::4]
    stats = statistics([labels] * 5)
    np.testing.assert_array_equal(fuse(stats, "staple"), labels)
    np.testing.assert_array_equal(fuse(stats, "majority"), labels)
    np.testing.assert_array_equal(fuse(stats, "mean"), labels)


def test_structure_statistics_volume_uncertainty_and_agreement():
    labels = np.zeros((10, 10, 10), dtype=np.uint8)
    labels[2:6, 2:6, 2:6] = 1  # a 4 x 4 x 4 cube: 64 voxels, 56 of them on its boundary
    shifted = np.zeros_like(labels)
    shifted[2:6, 2:6, 3:7] = 1  # overlaps 48 of 64; misses the cube's x = 2 face (16 voxels)
    stats = statistics([labels, labels, shifted])
    fused = fuse(stats, "majority")
    np.testing.assert_array_equal(fused, labels)
    figures = structure_statistics(fused, stats.uncertainty("disagreement"), stats, 1, voxel_volume_mm3=2.0)
    assert figures.volume_ml == pytest.approx(64 * 2.0 / 1000)
    # disagreement 1/3 on the x = 2 face (one sample of three outvoted), 0 elsewhere inside the cube
    assert figures.mean_uncertainty == pytest.approx(16 / 3 / 64)
    assert figures.boundary_uncertainty == pytest.approx(16 / 3 / 56)
    assert figures.mean_pairwise_dice == pytest.approx((1.0 + 2 * (2 * 48 / 128)) / 3)
    assert mean_pairwise_dice([labels == 1]) == 1.0


def test_the_measure_registry_is_what_the_command_line_and_the_panel_offer():
    assert tuple(MEASURES) == UNCERTAINTY_MEASURES == choices.UNCERTAINTY_MEASURES


@pytest.mark.parametrize("measure", UNCERTAINTY_MEASURES)
@pytest.mark.parametrize("classes", [2, 3, 5])
def test_each_measure_stays_in_its_range_and_reaches_its_top(measure, classes):
    """Soft random samples stay inside [0, upper(C)]; C confident samples, one per class, reach the top
    (variance only for C = 2: its top 0.25 is a two-way split)."""
    rng = np.random.default_rng(classes)
    low, high = uncertainty_range(measure, classes)
    soft = SampleStatistics(classes, (50,), (measure,))
    for _ in range(6):
        soft.add(rng.dirichlet(np.full(classes, 0.3), size=50).T.astype(np.float32))
    values = soft.uncertainty(measure)
    assert low == 0.0 and values.min() >= -1e-6 and values.max() <= high + 1e-5
    spread = SampleStatistics(classes, (1,), (measure,))
    for value in range(classes):
        spread.add(one_hot(np.array([value]), classes))
    top = spread.uncertainty(measure).item()
    if measure != "variance" or classes == 2:
        assert top == pytest.approx(high, abs=1e-5)
    else:
        assert top == pytest.approx((classes - 1) / classes**2, abs=1e-6)


@pytest.mark.parametrize("measure", UNCERTAINTY_MEASURES)
def test_a_measure_accumulates_only_what_it_declares(measure):
    stats = SampleStatistics(3, (2, 2), (measure,))
    accumulated = {name for name, array in (("entropy", stats.sum_entropy),
                                            ("squared_probability", stats.sum_squared_probability)) if array is not None}
    assert accumulated == set(MEASURES[measure].accumulates)
