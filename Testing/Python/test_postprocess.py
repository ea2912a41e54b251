"""Largest-component post-processing of the fused label map."""

import numpy as np

from ldseg.postprocess import keep_largest_components


def test_islands_become_background_and_other_structures_stay():
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[2:10, 2:10, 2:10] = 1  # femur
    labels[15:17, 15:17, 15:17] = 1  # a femur island far away
    labels[12:14, 2:6, 2:6] = 2  # tibia, one piece
    kept = keep_largest_components(labels, [1, 2])
    assert (kept[15:17, 15:17, 15:17] == 0).all()
    np.testing.assert_array_equal(kept[:14], labels[:14])
    assert labels[15, 15, 15] == 1  # the input is not modified


def test_pieces_touching_at_a_corner_are_one_structure():
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[1:4, 1:4, 1:4] = 1
    labels[4:6, 4:6, 4:6] = 1  # meets the first cube only at the corner (3, 3, 3)-(4, 4, 4)
    np.testing.assert_array_equal(keep_largest_components(labels, [1, 2]), labels)
