"""Lab 00 runs headlessly and records what its text explains."""

import os
from pathlib import Path

import pytest

from conftest import RESULTS_ENV

N_TEST = 450  # the test split: 15 % of 2,995 faces


@pytest.mark.lab
def test_lab00_trains_above_its_majority_baselines_and_reports_exclusions(lab_results):
    results = lab_results("00")
    # 3,000 synthetic files: the 5 UTKFace defects are excluded with a reason, none are lost
    assert results["n_images"] + results["n_excluded"] == 3000
    assert results["n_excluded"] == 5

    counts = results["test_class_counts"]
    baselines = {row["task"]: row for row in results["majority_baseline"]}
    assert set(baselines) == set(counts) == {"gender", "race", "age"}
    for task, base in baselines.items():
        faces = sum(counts[task].values())
        assert faces == N_TEST
        # the baseline answers one class for every face: its accuracy is that class's share
        # of the test faces, counted by hand from the recorded class counts
        assert base["test accuracy"] == pytest.approx(counts[task][base["always predicts"]] / faces)
        assert base["test accuracy"] <= max(counts[task].values()) / faces
        # recall 1 on one class, 0 on the others: balanced accuracy 1/k (all k in the test split)
        assert len(counts[task]) == base["classes"]
        assert base["test balanced accuracy"] == pytest.approx(1 / base["classes"])
    # uneven classes put the majority class well above chance for race and age groups
    assert baselines["race"]["test accuracy"] > 0.3 > 1 / 5
    assert baselines["age"]["test accuracy"] > 0.25 > 1 / 9

    # what the text says one epoch does: every task's 95 % interval lies above its majority
    # baseline, and each gain exceeds the seed spread (about 0.06 over seeds 42, 7, 8)
    accuracy = {"gender": results["gender_accuracy"], "race": results["race_accuracy"],
                "age": results["age_group_accuracy"]}
    for task, value in accuracy.items():
        assert value <= 1
        assert results["accuracy_ci_low"][task] < value
        assert results["accuracy_ci_low"][task] > baselines[task]["test accuracy"], task
        assert value - baselines[task]["test accuracy"] > 0.06, task


@pytest.mark.lab
def test_lab00_exercise_measures_how_the_model_leans_on_the_majority(lab_results):
    results = lab_results("00")
    counts = results["test_class_counts"]
    baselines = {row["task"]: row for row in results["majority_baseline"]}
    accuracy = {"gender": results["gender_accuracy"], "race": results["race_accuracy"],
                "age": results["age_group_accuracy"]}
    leaning = {row["task"]: row for row in results["answer_shares"]}
    assert set(leaning) == set(counts)
    for task, row in leaning.items():
        favourite = row["model's favourite answer"]
        given, truly = row["share of faces given it"], row["share truly in it"]
        # the true share of the favourite class, counted by hand from the test class counts
        assert truly == pytest.approx(counts[task].get(favourite, 0) / N_TEST)
        # the most common answer covers at least 1/k of the faces
        assert 1 / baselines[task]["classes"] <= given <= 1
        # every face given the favourite beyond its true count is an error
        assert accuracy[task] <= 1 - (given - truly) + 1e-9, task
        assert row["given / truly"] == pytest.approx(given / truly)
        # the text: the favourite is the training split's majority class, given too often
        assert favourite == baselines[task]["always predicts"], task
        assert given > truly, task
    # the text: the age head leans the most, on 20-29
    assert leaning["age"]["model's favourite answer"] == "20-29"
    assert max(leaning, key=lambda task: leaning[task]["given / truly"]) == "age"
    assert leaning["age"]["balanced accuracy"] < accuracy["age"]


@pytest.mark.lab
def test_lab00_shows_the_runs_own_output_folder(lab_results):
    results = lab_results("00")
    shown = Path(results["environment"]["output folder"])
    assert shown.name == "00_quickstart"  # the run's folder, not the outputs root
    folder = os.environ.get(RESULTS_ENV)
    if folder:  # the run wrote its results.json into the folder the table names
        assert shown == Path(folder).resolve() / "00_quickstart"
    assert (shown / "results.json").exists()
