"""Tests for calibration (Lab 08; Guo et al. 2017): reliability tables and the expected
calibration error, against numbers worked out by hand and the formula written in numpy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from faceattr_lab import evaluate as ev
from test_evaluate import AGE_CORAL, AGE_REG, GENDER, RACE3


@pytest.fixture
def hand():
    """Five faces, two classes, 5 bins of width 0.2. Confidence = max(p):
    face  p(female)  conf  bin          pred  true  right
    0     0.10       0.90  (0.8, 1.0]   0     0     yes
    1     0.95       0.95  (0.8, 1.0]   1     0     no
    2     0.70       0.70  (0.6, 0.8]   1     1     yes
    3     0.35       0.65  (0.6, 0.8]   0     1     no
    4     0.55       0.55  (0.4, 0.6]   1     1     yes
    bin (0.4,0.6]: n 1, conf 0.55,  acc 1   -> |diff| 0.45,  weight 1/5
    bin (0.6,0.8]: n 2, conf 0.675, acc 0.5 -> |diff| 0.175, weight 2/5
    bin (0.8,1.0]: n 2, conf 0.925, acc 0.5 -> |diff| 0.425, weight 2/5
    ECE = 0.45/5 + 2*0.175/5 + 2*0.425/5 = 0.09 + 0.07 + 0.17 = 0.33
    """
    female = np.array([0.10, 0.95, 0.70, 0.35, 0.55])
    return pd.DataFrame({
        "race": ["A", "A", "B", "B", "B"],
        "gender_true": pd.array([0, 0, 1, 1, 1], dtype="Int64"),
        "gender_pred": pd.array((female > 0.5).astype(int), dtype="Int64"),
        "gender_prob_male": 1 - female,
        "gender_prob_female": female,
    })


def test_hand_reliability_table_and_ece(hand):
    table = ev.calibration(hand, GENDER, bins=5)
    assert list(table.columns) == list(ev.CALIBRATION_COLUMNS)
    assert list(table.bin) == [2, 3, 4]  # only non-empty bins
    np.testing.assert_allclose(table.lower, [0.4, 0.6, 0.8])
    np.testing.assert_allclose(table.upper, [0.6, 0.8, 1.0])
    assert list(table.n) == [1, 2, 2]
    np.testing.assert_allclose(table.confidence, [0.55, 0.675, 0.925])
    np.testing.assert_allclose(table.accuracy, [1.0, 0.5, 0.5])
    assert set(table.by) == {"all"} and set(table.group) == {"all"}
    ece = ev.calibration_error(hand, GENDER, bins=5)
    assert list(ece.columns) == list(ev.CALIBRATION_ERROR_COLUMNS)
    assert ece.value.item() == pytest.approx(0.33)
    assert (ece.metric.item(), ece.n.item()) == ("ece", 5)


def test_by_group_splits_faces(hand):
    table = ev.calibration(hand, GENDER, bins=5, by="race")
    # race A = faces 0, 1: both in (0.8, 1.0], one right
    a = table[table.group == "A"]
    assert (a.bin.tolist(), a.n.tolist(), a.accuracy.tolist()) == ([4], [2], [0.5])
    ece = ev.calibration_error(hand, GENDER, bins=5, by="race").set_index("group").value
    assert ece["A"] == pytest.approx(abs(0.5 - 0.925))
    # race B: (0.4,0.6] 1 right conf .55; (0.6,0.8] 0.5 right conf .675
    assert ece["B"] == pytest.approx((0.45 + 2 * 0.175) / 3)


def _numpy_ece(probabilities, true, bins):
    """Guo et al.'s formula, written out: equal-width bins (lo, hi] on [0, 1]."""
    confidence = probabilities.max(axis=1)
    right = probabilities.argmax(axis=1) == true
    total = 0.0
    edges = np.linspace(0, 1, bins + 1)
    for b, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        members = (confidence > lo) & (confidence <= hi) | ((b == 0) & (confidence == 0))
        if members.any():
            total += members.mean() * abs(right[members].mean() - confidence[members].mean())
    return total, confidence, right


def test_three_class_ece_matches_numpy_formula_and_ci_brackets_it():
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(300, 3)) * 2
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    true = np.array([rng.choice(3, p=row) for row in p])  # roughly calibrated
    df = pd.DataFrame({"race_true": pd.array(true, dtype="Int64"),
                       **{f"race_prob_{c}": p[:, i] for i, c in enumerate(RACE3.classes)}})
    expected, confidence, right = _numpy_ece(p, true, 15)
    out = ev.calibration_error(df, RACE3, bins=15, ci=0.95, n_resamples=300, seed=1)
    assert out.value.item() == pytest.approx(expected)
    assert out.ci_low.item() <= out.value.item() <= out.ci_high.item()
    # the table's bins agree with an independent per-bin computation
    table = ev.calibration(df, RACE3, bins=15)
    for row in table.itertuples():
        members = (confidence > row.lower) & (confidence <= row.upper)
        assert row.n == members.sum()
        assert row.confidence == pytest.approx(confidence[members].mean())
        assert row.accuracy == pytest.approx(right[members].mean())
    assert table.n.sum() == 300


def test_bad_schemes_and_arguments_raise(hand):
    with pytest.raises(ValueError, match="class probabilities"):
        ev.calibration(hand.assign(age_true=3.0, age_pred=4.0), AGE_REG)
    with pytest.raises(ValueError, match="class probabilities"):
        ev.calibration_error(hand, [GENDER, AGE_CORAL])
    with pytest.raises(ValueError, match="bins"):
        ev.calibration(hand, GENDER, bins=0)
    with pytest.raises(ValueError, match="prob"):
        ev.calibration(hand.drop(columns="gender_prob_female"), GENDER)


def test_reliability_figure_one_panel_per_task_or_per_group(hand):
    from faceattr_lab import plots

    fig = plots.reliability(hand, GENDER, bins=5)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 1
    labels = [t.get_text() for t in visible[0].get_legend().get_texts()]
    assert "perfectly calibrated" in labels and "all (ECE 0.330, n=5)" in labels
    # two groups share a panel; more than three get one panel each
    fig = plots.reliability(hand, GENDER, bins=5, by="race")
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 1
    many = hand.assign(race=["A", "B", "C", "D", "E"])
    fig = plots.reliability(many, GENDER, bins=5, by="race")
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert sorted(ax.get_title() for ax in visible) == [f"gender: {g}" for g in "ABCDE"]
