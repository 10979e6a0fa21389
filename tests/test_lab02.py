"""Lab 02 runs end to end (quick profile): chosen on validation, judged on fresh seeds, tested once."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.lab

# the quick profile: the base and one variation of each of two knobs of study C
QUICK_GRID = ["base", "bn_order=relu_bn", "optimizer=rmsprop"]


def test_lab02_chooses_on_validation(lab_results):
    results = lab_results("02")
    assert results["configs"] == QUICK_GRID
    grid = {r["run"]: r for r in results["val_grid"]}
    assert list(grid) == QUICK_GRID
    for name, r in grid.items():
        assert r["age mae /116"] == pytest.approx(r["age mae"] / 116), name
    # the choice is the lowest validation loss, and its rival the base (or the runner-up)
    losses = {name: r["all loss"] for name, r in grid.items()}
    assert results["chosen_config"] == min(losses, key=losses.get)
    ranked = sorted(losses, key=losses.get)
    expected_rival = ranked[1] if ranked[0] == "base" else "base"
    assert results["rival_config"] == expected_rival
    # the no-learning baselines are those of the synthetic set (balanced-ish gender, wide ages)
    assert 0.5 <= results["test_majority_gender_accuracy"] < 0.6
    assert results["test_mean_age_baseline_mae"] > 10 and results["val_mean_age_baseline_mae"] > 10
    # the base learns both tasks on validation
    assert "base" in results["val_configs_learned"]
    assert grid["base"]["gender accuracy"] > results["test_majority_gender_accuracy"] + 0.15
    assert grid["base"]["age mae"] < results["val_mean_age_baseline_mae"] - 1.0


def test_lab02_paired_seed_verdict_follows_its_interval(lab_results):
    results = lab_results("02")
    paired = results["val_paired_difference"]
    seeds = paired["seeds"]
    assert len(seeds) == 3 and 42 not in seeds  # fresh seeds, the selection seed excluded
    assert (paired["a"], paired["b"]) == (results["chosen_config"], results["rival_config"])
    assert paired["ci_low"] < paired["mean"] < paired["ci_high"] or paired["std"] == 0
    assert paired["real"] == (paired["ci_low"] > 0 or paired["ci_high"] < 0)
    # the per-task table holds the same test for loss, age MAE and gender accuracy
    by_task = {(r["task"], r["metric"]): r for r in results["val_paired_by_task"]}
    assert set(by_task) == {("all", "loss"), ("age", "mae"), ("gender", "accuracy")}
    assert by_task[("all", "loss")]["mean"] == pytest.approx(paired["mean"])
    summary = {r["run"]: r for r in results["val_seed_summary"]}
    assert set(summary) == {results["chosen_config"], results["rival_config"]}
    assert all(r["n"] == 3 for r in summary.values())
    assert results["val_seed_std_loss"] == pytest.approx(summary[results["chosen_config"]]["std"])


def test_lab02_test_figures_have_intervals_and_beat_no_learning(lab_results):
    results = lab_results("02")
    rows = results["test_per_seed"]
    seeds = results["val_paired_difference"]["seeds"]
    assert {r["seed"] for r in rows} == set(seeds)  # the chosen configuration's fresh seeds only
    by_key = {(r["seed"], r["task"], r["metric"]): r for r in rows}
    for seed in seeds:
        acc = by_key[(seed, "gender", "accuracy")]
        mae = by_key[(seed, "age", "mae")]
        assert acc["ci_low"] <= acc["value"] <= acc["ci_high"]
        assert mae["ci_low"] <= mae["value"] <= mae["ci_high"]
        # a 95 % bootstrap interval of an accuracy on 300 faces: about 1.96 sqrt(p(1-p)/300)
        p = acc["value"]
        half = 1.96 * np.sqrt(p * (1 - p) / 300)
        assert (acc["ci_high"] - acc["ci_low"]) / 2 == pytest.approx(half, rel=0.35)
        # gender is learned on every seed: the whole interval beats the majority guess
        assert acc["ci_low"] > results["test_majority_gender_accuracy"]
    # age is learned on average over the seeds
    assert results["test_seed_mean"]["age mae"] < results["test_mean_age_baseline_mae"]
    spread = {(r["task"], r["metric"]): r for r in results["test_interval_vs_seed_spread"]}
    assert set(spread) == {("age", "mae"), ("gender", "accuracy")}


def test_lab02_quotes_the_study_in_years(lab_results):
    results = lab_results("02")
    # the study's scaled MAEs in years: 0.0673, 0.0680, 0.0549 x 116
    assert results["study_mae_years"] == pytest.approx(
        {"with augmentation": 7.81, "without augmentation": 7.89, "separate networks": 6.37},
        abs=0.01)
