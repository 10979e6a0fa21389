"""Lab 06's additions: year classes, the OR-CNN head, the median baseline, rank consistency."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest

import faceattr_lab as fl


def test_year_classes_one_class_per_year():
    scheme = fl.labels.year_classes(21, 60)
    assert scheme.kind == "classification" and scheme.num_classes == 40
    assert fl.labels.get("age_classes_21_60") == scheme
    df = pd.DataFrame({"age": pd.array([21, 22, 60, 61, 20, None], dtype="Int64"),
                       "age_group": pd.array([pd.NA] * 6, dtype="string")})
    kept, excluded = fl.labels.select(df, [scheme])
    assert scheme.encode(kept).tolist() == [0, 1, 39]
    assert len(excluded) == 3 and excluded["reason"].str.contains("age_classes_21_60").all()
    with pytest.raises(ValueError, match="lo < hi"):
        fl.labels.year_classes(60, 21)


def test_orcnn_head_has_independent_weights():
    scheme = fl.labels.coral(0, 4)  # 5 ranks, 4 tasks
    features = keras.Input((6,))
    coral = keras.Model(features, fl.models.add_heads(features, [scheme]))
    orcnn = keras.Model(features, fl.models.add_heads(features, [scheme], ordinal="independent"))
    assert fl.models.count_params(coral)["trainable"] == 6 + 4  # one w, four biases
    assert fl.models.count_params(orcnn)["trainable"] == 6 * 4 + 4  # a w and a bias per task
    fl.models.compile_for(orcnn, [scheme])
    assert "coral" in orcnn.loss["age"].loss.name
    with pytest.raises(ValueError, match="independent"):
        fl.models.add_heads(features, [scheme], ordinal="orcnn")


def test_median_baseline_is_the_mae_minimiser():
    train = np.array([20, 21, 22, 30, 80])
    test = np.array([21, 25, 60])
    base = fl.evaluate.median_baseline(train, test)
    assert base["median"] == 22
    assert base["mae"] == pytest.approx((1 + 3 + 38) / 3)
    assert base["rmse"] == pytest.approx(np.sqrt((1 + 9 + 38 ** 2) / 3))
    constants = np.arange(15, 90)
    maes = [np.mean(np.abs(train - c)) for c in constants]
    assert constants[int(np.argmin(maes))] == base["median"]
    with pytest.raises(ValueError, match="non-empty"):
        fl.evaluate.median_baseline([], test)


def test_cumulative_probabilities_and_inconsistencies():
    p = np.array([[0.2, 0.5, 0.3], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(fl.evaluate.cumulative_probabilities(p), [[0.8, 0.3], [0, 0]],
                               atol=1e-12)
    cumulative = np.array([[0.9, 0.7, 0.8, 0.9], [0.9, 0.9, 0.1, 0.0], [0.1, 0.2, 0.1, 0.0]])
    assert fl.evaluate.rank_inconsistencies(cumulative).tolist() == [2, 0, 1]
    with pytest.raises(ValueError, match="N, K-1"):
        fl.evaluate.rank_inconsistencies(np.array([0.1, 0.2]))


def test_coral_is_consistent_whenever_its_biases_are_ordered():
    layer = fl.models.CoralOutput(6)
    layer.build((None, 3))
    layer.biases.assign(np.array([2.0, 1.0, 1.0, -0.5, -3.0], dtype="float32"))
    x = np.random.default_rng(0).normal(size=(200, 3)).astype("float32") * 10
    probabilities = np.asarray(fl.losses.coral_probabilities(layer(x)))
    assert (fl.evaluate.rank_inconsistencies(probabilities) == 0).all()
    classwise = np.asarray(fl.losses.coral_probabilities(layer(x), classwise=True))
    assert classwise.min() >= 0 and np.allclose(classwise.sum(axis=1), 1, atol=1e-6)
