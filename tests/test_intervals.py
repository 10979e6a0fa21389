"""Intervals the labs report: bootstrap intervals over test faces, paired seed differences."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from faceattr_lab import evaluate as ev


def test_bootstrap_of_two_faces_matches_the_enumerated_distribution():
    # resampling [0, 1] twice with replacement gives means 0, 0.5, 1 with probability
    # 1/4, 1/2, 1/4: the 2.5 % quantile is 0 and the 97.5 % quantile is 1
    assert ev.bootstrap_ci([0.0, 1.0], n_resamples=4000) == (0.0, 1.0)
    # an 80 % interval cuts 10 % from each end: still 0 and 1 (each end holds 25 %)
    # a 40 % interval (30 % .. 70 %) falls inside the 50 % middle mass: 0.5 and 0.5
    assert ev.bootstrap_ci([0.0, 1.0], confidence=0.4, n_resamples=4000) == (0.5, 0.5)


def test_bootstrap_of_an_accuracy_matches_the_normal_approximation():
    hits = np.r_[np.ones(600), np.zeros(400)]  # accuracy 0.6 on 1,000 faces
    low, high = ev.bootstrap_ci(hits, n_resamples=5000, seed=1)
    half = 1.959964 * math.sqrt(0.6 * 0.4 / 1000)  # Wald interval, by hand
    assert low == pytest.approx(0.6 - half, abs=0.006)
    assert high == pytest.approx(0.6 + half, abs=0.006)
    assert ev.bootstrap_ci(hits, n_resamples=5000, seed=1) == (low, high)  # seeded


def test_bootstrap_refuses_what_it_cannot_resample():
    with pytest.raises(ValueError, match="at least 2"):
        ev.bootstrap_ci([1.0])
    with pytest.raises(ValueError, match="NaN"):
        ev.bootstrap_ci([1.0, np.nan, 2.0])
    with pytest.raises(ValueError, match="confidence"):
        ev.bootstrap_ci([1.0, 2.0], confidence=95)
    assert ev.bootstrap_ci([3.0, 3.0, 3.0]) == (3.0, 3.0)


def test_evaluate_adds_intervals_to_per_face_metrics_only():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Task:
        output: str
        kind: str
        classes: tuple = ()
        num_classes: int = 2

    gender, age = Task("gender", "classification", ("m", "f")), Task("age", "regression")
    rng = np.random.default_rng(0)
    true = rng.integers(0, 2, 200)
    pred = np.where(rng.random(200) < 0.8, true, 1 - true)
    years = rng.uniform(10, 60, 200)
    guess = years + rng.normal(0, 5, 200)
    predictions = pd.DataFrame({"gender_true": pd.array(true, dtype="Int64"),
                                "gender_pred": pd.array(pred, dtype="Int64"),
                                "age_true": years, "age_pred": guess})
    table = ev.evaluate(predictions, [gender, age], ci=0.95, seed=3).set_index(["task", "metric"])
    assert list(table.columns) == ["run", "value", "ci_low", "ci_high"]
    acc = table.loc[("gender", "accuracy")]
    assert acc.value == pytest.approx(np.mean(true == pred))
    assert (acc.ci_low, acc.ci_high) == ev.bootstrap_ci(true == pred, seed=3)
    mae = table.loc[("age", "mae")]
    assert (mae.ci_low, mae.ci_high) == ev.bootstrap_ci(np.abs(guess - years), seed=3)
    rmse = table.loc[("age", "rmse")]
    assert rmse.ci_low < rmse.value < rmse.ci_high
    assert table.loc[("gender", "macro_f1"), ["ci_low", "ci_high"]].isna().all()
    # without ci the table keeps its four columns
    assert list(ev.evaluate(predictions, [gender]).columns) == list(ev.TIDY_COLUMNS)


def test_paired_difference_by_hand():
    # differences 0.5, 1.0, 0.1: mean 0.5333, s = 0.4509, t(0.975, 2) = 4.302653
    result = ev.paired_difference([1.0, 2.0, 3.0], [0.5, 1.0, 2.9])
    assert result["n"] == 3
    assert result["mean"] == pytest.approx(1.6 / 3)
    assert result["std"] == pytest.approx(0.4509250, rel=1e-6)
    assert result["ci_low"] == pytest.approx(1.6 / 3 - 4.302653 * 0.4509250 / math.sqrt(3),
                                             rel=1e-5)
    assert result["real"] is False
    # the same gap every seed is real; a constant zero difference is not
    assert ev.paired_difference([1.0, 2.0, 3.0], [0.9, 1.9, 2.9])["real"] is True
    assert ev.paired_difference([1.0, 2.0], [1.0, 2.0])["real"] is False
    with pytest.raises(ValueError, match="paired"):
        ev.paired_difference([1.0, 2.0, 3.0], [1.0, 2.0])


def test_paired_bootstrap_resamples_faces_together():
    # 4 faces: model a right on 3, model b right on 1; the resampled difference of means takes
    # values k/4 - j/4, and with faces drawn together it can never exceed a's lead on any face
    a = np.array([1.0, 1.0, 1.0, 0.0])
    b = np.array([1.0, 0.0, 0.0, 0.0])
    result = ev.paired_bootstrap(a, b, n_resamples=4000)
    assert result["difference"] == pytest.approx(0.5)
    # per face a - b is (0, 1, 1, 0): the paired bootstrap of its mean spans [0, 1]
    assert (result["ci_low"], result["ci_high"]) == ev.bootstrap_ci(a - b, n_resamples=4000)
    assert result["ci_low"] >= 0.0 and result["ci_high"] <= 1.0
    # identical models: no difference, and not real
    same = ev.paired_bootstrap(a, a)
    assert same["difference"] == 0 and same["real"] is False
    # a large, consistent lead on 400 faces is real
    rng = np.random.default_rng(0)
    truth_hits = (rng.random(400) < 0.9).astype(float)
    worse = truth_hits * (rng.random(400) < 0.7)
    assert ev.paired_bootstrap(truth_hits, worse)["real"] is True
    with pytest.raises(ValueError, match="equally long"):
        ev.paired_bootstrap(a, b[:3])
