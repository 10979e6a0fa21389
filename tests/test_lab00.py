"""Lab 00 runs headlessly and records what its text explains."""

import pytest


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
        assert faces == 450  # the test split: 15 % of 2,995 faces
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
