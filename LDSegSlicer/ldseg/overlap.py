"""Dice overlap, the one definition used by training validation, the evaluation and the samples' agreement.

Dice(A, B) = 2 |A n B| / (|A| + |B|), and 1 when both masks are empty (two models that agree that a
structure is absent agree perfectly). Counted in integers, so it is exact; the tests check it against
MONAI's DiceMetric.
"""

from __future__ import annotations


def dice_of_counts(intersection: int, size_a: int, size_b: int) -> float:
    total = size_a + size_b
    return 1.0 if total == 0 else 2.0 * intersection / total


def dice(a, b) -> float:
    """Dice of two boolean masks of the same shape (numpy arrays or torch tensors)."""
    return dice_of_counts(int((a & b).sum()), int(a.sum()), int(b.sum()))
