"""Oversampling to a size with augmentation (study B's experts, lab 07), on hand-made data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from faceattr_lab import pipeline


def _images(n=3, side=8):
    """n constant grey images, image i at level 40 * (i + 1): each one tells its source."""
    return np.stack([np.full((side, side, 3), 40 * (i + 1), np.uint8) for i in range(n)])


def test_oversample_repeats_every_row_as_evenly_as_possible():
    df = pd.DataFrame({"path": ["a", "b", "c"], "gender": [0, 1, 0]})
    grown = pipeline.oversample(df, 8, seed=1)
    assert len(grown) == 8
    assert grown["path"].iloc[:3].tolist() == ["a", "b", "c"]  # the originals first, in order
    counts = grown["path"].value_counts()
    assert sorted(counts) == [2, 3, 3]  # 8 = 3 + 3 + 2: floor or ceil of 8 / 3 each
    assert grown["copy"].iloc[:3].tolist() == [0, 0, 0]
    for path, rows in grown.groupby("path"):
        assert rows["copy"].tolist() == list(range(len(rows)))
        assert rows["gender"].nunique() == 1  # labels travel with their row
    assert pipeline.oversample(df, 8, seed=1).equals(grown)  # seeded
    assert pipeline.oversample(df, 3)["copy"].eq(0).all()  # already full size: unchanged


def test_augment_to_size_keeps_originals_and_augments_each_copy():
    images, targets = _images(), {"gender": np.array([0, 1, 0]), "age": np.array([5, 6, 7])}
    invert = lambda batch, training: 255.0 - batch  # a hand-made "augmentation"  # noqa: E731
    grown, labels, source = pipeline.augment_to_size(images, targets, 7, augment=invert, seed=3)
    assert grown.shape == (7, 8, 8, 3) and grown.dtype == np.uint8
    assert np.array_equal(grown[:3], images)  # originals untouched
    assert source[:3].tolist() == [0, 1, 2] and sorted(np.bincount(source)) == [2, 2, 3]
    for row in range(3, 7):  # every copy is its source, augmented
        assert np.array_equal(grown[row], 255 - images[source[row]])
        assert labels["age"][row] == targets["age"][source[row]]
        assert labels["gender"][row] == targets["gender"][source[row]]


def test_augment_to_size_default_is_seeded_crop_flip_brightness():
    images, targets = _images(4, 16), {"gender": np.array([0, 1, 0, 1])}
    a = pipeline.augment_to_size(images, targets, 10, seed=5)
    b = pipeline.augment_to_size(images, targets, 10, seed=5)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[2], b[2])
    # constant images: crop and flip leave them alone, brightness shifts each copy's level
    shifts = a[0][4:].astype(int).mean(axis=(1, 2, 3)) - images[a[2][4:]].astype(int).mean(
        axis=(1, 2, 3))
    assert np.all(np.abs(shifts) <= 0.2 * 255 + 1) and np.any(np.abs(shifts) > 1)


@pytest.mark.parametrize("size", [2, 3.5, True])
def test_oversampling_rejects_bad_sizes(size):
    with pytest.raises(ValueError, match="size"):
        pipeline.augment_to_size(_images(), {"gender": np.array([0, 1, 0])}, size)
    with pytest.raises(ValueError, match="size"):
        pipeline.oversample(pd.DataFrame({"path": list("abc")}), size)
