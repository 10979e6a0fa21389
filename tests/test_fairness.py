"""Tests for the fairness audit's tables (Lab 08): breakdown by intersections with bootstrap
intervals, and group_gaps. Point estimates are checked against scikit-learn, intervals against
a slow loop written here with the same resampling protocol, groups against hand-made fixtures."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from faceattr_lab import evaluate as ev
from test_evaluate import AGE4, AGE_REG, GENDER


def _slow_interval(true, pred, metric, n_resamples, seed, ci=0.95, rng=None):
    """The documented protocol, one resample at a time with scikit-learn."""
    rng = np.random.default_rng(seed) if rng is None else rng
    index = rng.integers(0, len(true), size=(n_resamples, len(true)))
    score = accuracy_score if metric == "accuracy" else balanced_accuracy_score
    values = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true"
        for row in index:
            values.append(score(true[row], pred[row]))
    return np.array(values)


@pytest.fixture
def audit():
    """400 faces; race C is small (12), gender missing for 5 faces."""
    rng = np.random.default_rng(3)
    n = 400
    race = np.array(["A"] * 200 + ["B"] * 188 + ["C"] * 12)
    gender = pd.array(rng.integers(0, 2, n), dtype="Int64")
    gender[:5] = pd.NA
    age_true = rng.integers(0, 4, n)
    # race A: 90 % right; B: 60 % right; C: random
    right = np.where(race == "A", rng.random(n) < 0.9,
                     np.where(race == "B", rng.random(n) < 0.6, rng.random(n) < 0.25))
    age_pred = np.where(right, age_true, (age_true + rng.integers(1, 4, n)) % 4)
    g_true = rng.integers(0, 2, n)
    g_pred = np.where(rng.random(n) < 0.8, g_true, 1 - g_true)
    return pd.DataFrame({
        "race": race, "gender": gender,
        "gender_true": pd.array(g_true, dtype="Int64"),
        "gender_pred": pd.array(g_pred, dtype="Int64"),
        "age_true": pd.array(age_true, dtype="Int64"),
        "age_pred": pd.array(age_pred, dtype="Int64"),
    })


def test_vectorised_scores_match_sklearn_points_and_slow_loop():
    rng = np.random.default_rng(0)
    true = rng.integers(0, 4, 150)
    true[true == 3] = 2  # class 3 absent from the truth: not averaged (sklearn's rule)
    pred = np.where(rng.random(150) < 0.7, true, rng.integers(0, 4, 150))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = balanced_accuracy_score(true, pred)
    point = ev._point_scores(true, pred)
    assert point["accuracy"] == pytest.approx(accuracy_score(true, pred))
    assert point["balanced_accuracy"] == pytest.approx(reference)
    fast = ev.resampled_scores(true, pred, n_resamples=200, seed=11)
    for metric in ("accuracy", "balanced_accuracy"):
        slow = _slow_interval(true, pred, metric, 200, seed=11)
        np.testing.assert_allclose(fast[metric], slow, atol=1e-12)


def test_breakdown_intervals_match_the_slow_reference(audit):
    table = ev.breakdown(audit, [GENDER, AGE4], by="race", ci=0.9, n_resamples=150, seed=5)
    for race in ("A", "B"):
        rows = audit[audit.race == race]
        true, pred = rows.age_true.to_numpy(int), rows.age_pred.to_numpy(int)
        for metric in ("accuracy", "balanced_accuracy"):
            row = table[(table.task == "age") & (table.group == race) & (table.metric == metric)]
            slow = _slow_interval(true, pred, metric, 150, seed=5)
            low, high = np.quantile(slow, [0.05, 0.95])
            assert row.ci_low.item() == pytest.approx(low)
            assert row.ci_high.item() == pytest.approx(high)
            assert low <= row.value.item() <= high
    assert table[table.metric.isin(["macro_f1", "one_off_accuracy"])].ci_low.isna().all()


def test_breakdown_without_ci_keeps_its_columns(audit):
    table = ev.breakdown(audit, GENDER, by="race")
    assert list(table.columns) == list(ev.BREAKDOWN_COLUMNS)


def test_breakdown_intersections_name_groups_and_drop_nobody(audit):
    table = ev.breakdown(audit, [GENDER, AGE4], by=["race", ("gender", "race")])
    inter = table[(table.by == "gender x race") & (table.task == "gender")]
    expected = {f"{g} / {r}" for g in ("male", "female") for r in "ABC"}
    assert expected <= set(inter.group)
    # the 5 faces without gender are "unknown / <race>", kept
    assert {g for g in inter.group if g.startswith("unknown / ")}
    assert inter.groupby("group").n.first().sum() == len(audit)
    # a hand count: female / A
    mask = (audit.gender == 1).fillna(False).to_numpy() & (audit.race == "A").to_numpy()
    acc = inter[(inter.group == "female / A") & (inter.metric == "accuracy")].value.item()
    assert acc == pytest.approx(accuracy_score(audit.gender_true[mask].astype(int),
                                               audit.gender_pred[mask].astype(int)))


def test_group_gaps_picks_extremes_and_lists_small_groups(audit):
    gaps = ev.group_gaps(audit, AGE4, by="race", n_resamples=400, seed=2)
    row = gaps.iloc[0]
    assert list(gaps.columns) == list(ev.GAP_COLUMNS)
    assert (row.best_group, row.worst_group) == ("A", "B")  # C (12 faces) is too small
    a, b = audit[audit.race == "A"], audit[audit.race == "B"]
    acc_a = accuracy_score(a.age_true.astype(int), a.age_pred.astype(int))
    acc_b = accuracy_score(b.age_true.astype(int), b.age_pred.astype(int))
    assert row.gap == pytest.approx(acc_a - acc_b)
    assert (row.n_best, row.n_worst) == (200, 188)
    # independent resamples of A then B, from one generator
    rng = np.random.default_rng(2)
    da = _slow_interval(a.age_true.to_numpy(int), a.age_pred.to_numpy(int), "accuracy", 400,
                        None, rng=rng)
    db = _slow_interval(b.age_true.to_numpy(int), b.age_pred.to_numpy(int), "accuracy", 400,
                        None, rng=rng)
    low, high = np.quantile(da - db, [0.025, 0.975])
    assert (row.ci_low, row.ci_high) == (pytest.approx(low), pytest.approx(high))
    assert row.excludes_zero  # 90 % against 60 % on ~200 faces each
    small = gaps.attrs["too_small"]
    assert small == [{"task": "age", "by": "race", "group": "C", "n": 12,
                                         "reason": "too_small"}]


def test_group_gaps_balanced_accuracy_and_unknown_left_out(audit):
    gaps = ev.group_gaps(audit, GENDER, by=("gender", "race"), metric="balanced_accuracy",
                         min_group=5, n_resamples=100)
    left = pd.DataFrame(gaps.attrs["left_out"])
    assert set(left[left.reason == "unknown"].group) <= {"unknown / A", "unknown / B",
                                                        "unknown / C"}
    assert not gaps.best_group.iloc[0].startswith("unknown")
    assert gaps.ci_low.iloc[0] <= gaps.gap.iloc[0] <= gaps.ci_high.iloc[0]


def test_group_gaps_rejects_bad_arguments(audit):
    with pytest.raises(ValueError, match="accuracy"):
        ev.group_gaps(audit, GENDER, by="race", metric="macro_f1")
    with pytest.raises(ValueError, match="classification"):
        ev.group_gaps(audit.assign(age_true=1.0, age_pred=2.0), AGE_REG, by="race")
    with pytest.raises(ValueError, match="ci"):
        ev.breakdown(audit, GENDER, by="race", ci=95)
