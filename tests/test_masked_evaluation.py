"""Issue #9: evaluation scores each task on its labelled rows when labels are masked (-1 / NaN)."""

import dataclasses
import warnings

import numpy as np
import pytest

pipeline = pytest.importorskip("faceattr_lab.pipeline")
from faceattr_lab import evaluate, labels  # noqa: E402

GENDER = labels.get("gender")
AGE = labels.get("age_years_116")
RANK = dataclasses.replace(labels.coral(21, 24), output="rank")  # ranks 0..3 = ages 21..24
SCHEMES = [GENDER, AGE, RANK]

# one row per image: gender probability of "female", scaled age prediction, 3 CORAL logits
OUTPUTS = {
    "gender": np.array([[.9, .1], [.2, .8], [.6, .4], [.3, .7], [.4, .6], [.8, .2]], "float32"),
    "age": np.array([[.25], [.5], [.1], [.75], [.3], [.2]], "float32"),
    "rank": np.array([[1, 1, -1], [-1, -1, -1], [1, 1, 1], [1, -1, -1], [2, 2, 2], [1, 1, -1]],
                     "float32"),  # predicted ranks 2, 0, 3, 1, 3, 2
}
TARGETS = {"gender": np.array([0, -1, 1, 1, -1, 0]),
           "age": np.array([29 / 116, np.nan, 0.0, np.nan, 58 / 116, 29 / 116], "float32"),
           "rank": np.array([-1, 0, 3, 1, -1, 0])}


class _FixedModel:
    """Returns OUTPUTS for the images, whose first pixel holds the row number."""

    def predict_on_batch(self, images):
        rows = np.asarray(images)[:, 0, 0, 0].astype(int)
        return {name: value[rows] for name, value in OUTPUTS.items()}


def test_predict_and_evaluate_leave_masked_labels_out_for_every_kind():
    images = np.zeros((6, 2, 2, 3), np.uint8)
    images[:, 0, 0, 0] = np.arange(6)
    ds = pipeline.from_arrays(images, TARGETS, batch_size=4)
    table = evaluate.predict(_FixedModel(), ds, SCHEMES)
    assert table["gender_true"].isna().tolist() == [False, True, False, False, True, False]
    assert table["age_true"].isna().tolist() == [False, True, False, True, False, False]
    assert table["rank_true"].isna().tolist() == [True, False, False, False, True, False]
    assert table["rank_true_years"].isna().tolist() == [True, False, False, False, True, False]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scores = evaluate.evaluate(table, SCHEMES)
    messages = [str(w.message) for w in caught]
    for output, count in (("gender", 2), ("age", 2), ("rank", 2)):
        assert any(f"{count} of 6 images have no '{output}' label" in m for m in messages)
    value = scores.set_index(["task", "metric"])["value"]
    # by hand, labelled rows only. gender: rows 0, 2, 3, 5 predicted 0, 0, 1, 0 -> 3 of 4
    assert value["gender", "accuracy"] == pytest.approx(3 / 4)
    # age in years: rows 0, 2, 4, 5: |29 - 29|, |11.6 - 0|, |34.8 - 58|, |23.2 - 29|
    assert value["age", "mae"] == pytest.approx((0 + 11.6 + 23.2 + 5.8) / 4, rel=1e-5)
    # ranks in years: rows 1, 2, 3, 5: true 21, 24, 22, 21 vs predicted 21, 24, 22, 23
    assert value["rank", "mae"] == pytest.approx(2 / 4)
    assert value["rank", "mean_signed_error"] == pytest.approx(2 / 4)
