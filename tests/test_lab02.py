"""Lab 02 runs end to end (quick profile) and records a complete, sane ablation grid."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.lab

# the quick profile: the base and one variation of each of three knobs of study C
QUICK_GRID = {"base", "bn_order=relu_bn", "age_activation=relu", "optimizer=rmsprop"}


def test_lab02_records_every_configuration(lab_results):
    results = lab_results("02")
    assert set(results["configs"]) == QUICK_GRID
    grid = {r["run"]: r for r in results["grid"]}
    assert set(grid) == QUICK_GRID
    for name, r in grid.items():
        assert 0.0 <= r["gender accuracy"] <= 1.0, name
        assert r["age mae"] >= 0 and r["all loss"] > 0, name
        assert r["age mae /116"] == pytest.approx(r["age mae"] / 116), name
    # the quick models learn: the base clearly beats both no-learning baselines, and so do
    # most configurations (a slow starter may lag at toy scale)
    baseline_mae, majority = results["mean_age_baseline_mae"], results["majority_gender_accuracy"]
    assert 0.5 <= majority < 0.6 and baseline_mae > 10
    assert grid["base"]["gender accuracy"] > majority + 0.15
    assert grid["base"]["age mae"] < baseline_mae - 1.0
    assert "base" in results["configs_learned"]
    assert len(results["configs_learned"]) >= len(QUICK_GRID) // 2
    # best and worst are the grid's lowest and highest joint test loss
    losses = {name: r["all loss"] for name, r in grid.items()}
    assert results["best_config"] == min(losses, key=losses.get)
    assert results["worst_config"] == max(losses, key=losses.get)
    # seed repeats: 2 seeds each for best and worst, mean >= 0, sample std >= 0
    summary = {r["run"]: r for r in results["seed_summary"]}
    assert set(summary) == {results["best_config"], results["worst_config"]}
    assert all(r["n"] == 2 and r["std"] >= 0 for r in summary.values())
    assert results["best_worst_gap"] == pytest.approx(
        summary[results["worst_config"]]["mean"] - summary[results["best_config"]]["mean"])
    assert set(results["configs_beyond_two_seed_std"]) <= QUICK_GRID - {"base"}
    # the study's scaled MAEs in years: 0.0673, 0.0680, 0.0549 x 116
    assert results["study_mae_years"] == pytest.approx(
        {"with augmentation": 7.81, "without augmentation": 7.89, "separate networks": 6.37},
        abs=0.01)
