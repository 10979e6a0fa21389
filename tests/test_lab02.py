"""Lab 02 runs end to end (quick profile): chosen on validation, judged on fresh seeds, tested once.

The figures the lab records are checked against references computed here: the no-learning
baselines from the recorded faces' labels (and from the synthetic generator's age mixture), the
margins from the recorded metrics, the t-interval with scipy. The settings cell is run alone to
check that every invalid parameter stops the lab there, before anything is loaded or trained.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from lab_settings import settings_namespace

# the quick profile: the base and one variation of each of two knobs of study C
QUICK_GRID = ["base", "bn_order=relu_bn", "optimizer=rmsprop"]
MIN_MARGIN = {"age": 2.5, "gender": 0.15}  # the lab's "learned": years of age MAE, accuracy
# the synthetic UTKFace layout's ages (fl.datasets.synthetic._sample_age): integer ages, uniform
# within four bands drawn with these probabilities
AGE_BANDS = [((0, 9), 0.12), ((10, 19), 0.10), ((20, 35), 0.45), ((36, 90), 0.33)]


def _mean_age_mae(ages, mean_age) -> float:
    return float(np.mean(np.abs(np.asarray(ages, float) - mean_age)))


def _generator_ages():
    """Every integer age of the generator's mixture with its probability."""
    ages = np.concatenate([np.arange(lo, hi + 1) for (lo, hi), _ in AGE_BANDS])
    probs = np.concatenate([np.full(hi - lo + 1, p / (hi - lo + 1)) for (lo, hi), p in AGE_BANDS])
    return ages, probs


@pytest.mark.lab
def test_lab02_baselines_are_those_of_the_recorded_faces(lab_results):
    results = lab_results("02")
    faces = results["baseline_inputs"]
    assert len(faces["val"]["age"]) == len(faces["test"]["age"]) == 300
    train_mean = faces["train_mean_age"]
    majority = faces["train_majority_gender"]
    # recomputed from the labels of the faces the lab used
    assert results["val_mean_age_baseline_mae"] == pytest.approx(
        _mean_age_mae(faces["val"]["age"], train_mean))
    assert results["test_mean_age_baseline_mae"] == pytest.approx(
        _mean_age_mae(faces["test"]["age"], train_mean))
    assert results["test_majority_gender_accuracy"] == pytest.approx(
        np.mean(np.asarray(faces["test"]["gender"]) == majority))
    # and against the generator: its age mixture's mean and mean absolute deviation, within
    # the sampling error of 1,400 training and 300 held-out faces
    ages, probs = _generator_ages()
    mean = float(ages @ probs)
    mad = float(np.abs(ages - mean) @ probs)
    sd_abs = float(np.sqrt(((np.abs(ages - mean) - mad) ** 2) @ probs))
    assert train_mean == pytest.approx(mean, abs=4 * np.sqrt((ages - mean) ** 2 @ probs / 1400))
    for split in ("val", "test"):
        assert results[f"{split}_mean_age_baseline_mae"] == pytest.approx(
            mad, abs=4 * sd_abs / np.sqrt(300) + 0.5)
    assert 0.5 <= results["test_majority_gender_accuracy"] < 0.6  # two near-balanced classes


@pytest.mark.lab
def test_lab02_chooses_on_validation_and_every_model_learns(lab_results):
    results = lab_results("02")
    assert results["configs"] == QUICK_GRID
    grid = {r["run"]: r for r in results["val_grid"]}
    assert list(grid) == QUICK_GRID
    faces = results["baseline_inputs"]
    val_majority = float(np.mean(np.asarray(faces["val"]["gender"])
                                 == faces["train_majority_gender"]))
    for name, r in grid.items():
        assert r["age mae /116"] == pytest.approx(r["age mae"] / 116), name
        assert r["age margin"] == pytest.approx(results["val_mean_age_baseline_mae"]
                                                - r["age mae"]), name
        assert r["gender margin"] == pytest.approx(r["gender accuracy"] - val_majority), name
    # the choice is the lowest validation loss, and its rival the base (or the runner-up)
    losses = {name: r["all loss"] for name, r in grid.items()}
    assert results["chosen_config"] == min(losses, key=losses.get)
    ranked = sorted(losses, key=losses.get)
    expected_rival = ranked[1] if ranked[0] == "base" else "base"
    assert results["rival_config"] == expected_rival
    # "learned" is exactly the configurations past both margins, and the quick profile's
    # models all are: age by more than 2.5 years, gender by more than 0.15
    learned = [name for name, r in grid.items() if r["age margin"] > MIN_MARGIN["age"]
               and r["gender margin"] > MIN_MARGIN["gender"]]
    assert results["val_configs_learned"] == learned == QUICK_GRID


@pytest.mark.lab
def test_lab02_margins_over_no_learning_exceed_the_seed_spread(lab_results):
    results = lab_results("02")
    chosen, rival = results["chosen_config"], results["rival_config"]
    faces = results["baseline_inputs"]
    val_majority = float(np.mean(np.asarray(faces["val"]["gender"])
                                 == faces["train_majority_gender"]))
    rows = {(r["run"], r["task"]): r for r in results["val_margins"]}
    assert set(rows) == {(run, task) for run in (chosen, rival) for task in ("age", "gender")}
    for (run, task), r in rows.items():
        level = results["val_mean_age_baseline_mae"] if task == "age" else val_majority
        assert r["no learning"] == pytest.approx(level)
        margin = level - r["mean"] if task == "age" else r["mean"] - level
        assert r["margin"] == pytest.approx(margin)
        assert r["margin / seed std"] == pytest.approx(margin / r["seed std"])
        # every seed beats no learning, and the mean by well over the seed spread
        assert r["smallest margin"] > 0, (run, task)
        assert r["margin"] > 3 * r["seed std"], (run, task)


@pytest.mark.lab
def test_lab02_paired_seed_verdict_follows_its_interval(lab_results):
    results = lab_results("02")
    paired = results["val_paired_difference"]
    seeds = paired["seeds"]
    selection = results["selection_seed"]
    assert seeds == [selection + 1, selection + 2, selection + 3]  # fresh: selection excluded
    assert (paired["a"], paired["b"]) == (results["chosen_config"], results["rival_config"])
    # a 95 % Student-t interval over the paired differences, recomputed
    half = stats.t.ppf(0.975, paired["n"] - 1) * paired["std"] / np.sqrt(paired["n"])
    assert paired["ci_low"] == pytest.approx(paired["mean"] - half)
    assert paired["ci_high"] == pytest.approx(paired["mean"] + half)
    assert paired["real"] == (paired["ci_low"] > 0 or paired["ci_high"] < 0)
    # the joint loss splits into its two weighted head terms
    terms = results["val_loss_terms_difference"]
    assert terms["age term"] + terms["gender term"] == pytest.approx(paired["mean"], abs=1e-6)
    # the per-task table holds the same test for loss, age MAE and gender accuracy
    by_task = {(r["task"], r["metric"]): r for r in results["val_paired_by_task"]}
    assert set(by_task) == {("all", "loss"), ("age", "mae"), ("gender", "accuracy")}
    assert by_task[("all", "loss")]["mean"] == pytest.approx(paired["mean"])
    for r in by_task.values():
        assert r["real"] == (r["ci_low"] > 0 or r["ci_high"] < 0)
    summary = {r["run"]: r for r in results["val_seed_summary"]}
    assert set(summary) == {results["chosen_config"], results["rival_config"]}
    assert all(r["n"] == 3 for r in summary.values())
    assert results["val_seed_std_loss"] == pytest.approx(summary[results["chosen_config"]]["std"])


@pytest.mark.lab
def test_lab02_test_figures_have_intervals_and_beat_no_learning(lab_results):
    results = lab_results("02")
    rows = results["test_per_seed"]
    seeds = results["val_paired_difference"]["seeds"]
    assert {r["seed"] for r in rows} == set(seeds)  # the chosen configuration's fresh seeds only
    by_key = {(r["seed"], r["task"], r["metric"]): r for r in rows}
    baseline = {"age": results["test_mean_age_baseline_mae"],
                "gender": results["test_majority_gender_accuracy"]}
    for seed in seeds:
        acc = by_key[(seed, "gender", "accuracy")]
        mae = by_key[(seed, "age", "mae")]
        assert acc["ci_low"] <= acc["value"] <= acc["ci_high"]
        assert mae["ci_low"] <= mae["value"] <= mae["ci_high"]
        # a 95 % bootstrap interval of an accuracy on 300 faces: about 1.96 sqrt(p(1-p)/300)
        p = acc["value"]
        half = 1.96 * np.sqrt(p * (1 - p) / 300)
        assert (acc["ci_high"] - acc["ci_low"]) / 2 == pytest.approx(half, rel=0.35)
        # both tasks learned on every seed: the whole interval beats no learning
        assert acc["ci_low"] > baseline["gender"]
        assert mae["ci_high"] < baseline["age"]
    spread = {r["task"]: r for r in results["test_interval_vs_seed_spread"]}
    assert set(spread) == {"age", "gender"}
    for task, metric in (("age", "mae"), ("gender", "accuracy")):
        values = np.array([by_key[(seed, task, metric)]["value"] for seed in seeds])
        r = spread[task]
        assert r["no learning"] == pytest.approx(baseline[task])
        margin = baseline[task] - values.mean() if task == "age" else values.mean() - baseline[task]
        assert r["seed std"] == pytest.approx(values.std(ddof=1))
        assert r["margin (mean over seeds)"] == pytest.approx(margin)
        assert results["test_seed_mean"][f"{task} {metric}"] == pytest.approx(values.mean())
        # the margin over no learning dwarfs the seed spread: several years of age MAE
        assert r["margin (mean over seeds)"] > 3 * r["seed std"], task
    assert spread["age"]["margin (mean over seeds)"] > 4.0


@pytest.mark.lab
def test_lab02_quotes_the_study_in_years(lab_results):
    results = lab_results("02")
    # the study's scaled MAEs in years: 0.0673, 0.0680, 0.0549 x 116
    assert results["study_mae_years"] == pytest.approx(
        {"with augmentation": 7.81, "without augmentation": 7.89, "separate networks": 6.37},
        abs=0.01)


# ---------------------------------------------------------------------------------------------
# The settings cell: every parameter is checked there
# ---------------------------------------------------------------------------------------------

def _settings_namespace(tmp_path, **parameters) -> dict:
    return settings_namespace("02", tmp_path, **parameters)


@pytest.mark.parametrize("parameters, named", [
    ({"IMAGE_SIZE": 8}, "IMAGE_SIZE"),
    ({"PROFILE": "full", "IMAGE_SIZE": 16}, "IMAGE_SIZE"),
    ({"N_SEEDS": 2}, "N_SEEDS"),
    ({"N_SEEDS": 3.5}, "N_SEEDS"),
    ({"DATASET": "fairface"}, "DATASET"),
    ({"DATASET": "celeba"}, "DATASET"),
    ({"LEARNING_RATE": 5.0}, "LEARNING_RATE"),
    ({"LEARNING_RATE": "fast"}, "LEARNING_RATE"),
    ({"LR_SCHEDULE": "linear"}, "LR_SCHEDULE"),
    ({"MAX_AGE": 50.0}, "MAX_AGE"),
    ({"AGE_LOSS_WEIGHT": -1.0}, "AGE_LOSS_WEIGHT"),
    ({"EPOCHS": 0}, "EPOCHS"),
    ({"BATCH_SIZE": 0}, "BATCH_SIZE"),
    ({"N_IMAGES": 5000}, "N_IMAGES"),
    ({"N_IMAGES": 10}, "N_IMAGES"),
    ({"SEED": -1}, "SEED"),
    ({"PROFILE": "fast"}, "PROFILE"),
])
def test_lab02_settings_cell_rejects_invalid_parameters(tmp_path, parameters, named):
    with pytest.raises(ValueError, match=rf"^{named}="):
        _settings_namespace(tmp_path, **parameters)


def test_lab02_settings_cell_resolves_the_quick_profile(tmp_path):
    namespace = _settings_namespace(tmp_path)
    run = namespace["run"]
    assert (run.image_size, run.epochs, run.batch_size, run.n_images) == (32, 6, 64, 2000)
    assert (run["n_seeds"], run["learning_rate"], run["lr_schedule"]) == (3, 6e-3, "cosine")
    assert namespace["QUICK"] is True
    full = _settings_namespace(tmp_path, PROFILE="full", IMAGE_SIZE=32)["run"]
    assert (full.epochs, full["n_seeds"], full["learning_rate"], full["lr_schedule"]) == (
        30, 5, 1e-3, "constant")
