"""Lab 08 (a fairness audit) end to end: what its recorded numbers teach."""

from __future__ import annotations

import numpy as np
import pytest

from lab_settings import settings_namespace, whole_faces

TASKS = ("gender", "age", "race")
CLASSES = {"gender": 2, "age": 9, "race": 7}
RACES = ("White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian",
         "Middle Eastern")
# UTKFace's race mix on FairFace's seven groups, as the lab states it
UTKFACE_MIX = {"White": 0.42, "Black": 0.19, "Latino_Hispanic": 0.04, "East Asian": 0.08,
               "Southeast Asian": 0.06, "Indian": 0.17, "Middle Eastern": 0.04}
SETS = ("imbalanced", "balanced", "imbalanced + reweighted")
MIN_GROUP = 20


@pytest.mark.lab
def test_lab08_runs_and_records_what_it_teaches(lab_results):
    results = lab_results("08")
    sizes = results["split_sizes"]
    test = sizes["test"]
    counts = results["race_counts"]
    for split, size in sizes.items():  # every face has one of the seven races
        assert set(counts[split]) == set(RACES) and sum(counts[split].values()) == size
    assert sum(results["test_gender_counts"].values()) == test

    # three training sets of one size, drawn from the training split with the mixes claimed
    size = results["train_set_sizes"]["imbalanced"]
    assert results["train_set_sizes"] == dict.fromkeys(SETS, size)
    mixes = results["train_set_race_counts"]
    for race in RACES:
        assert abs(mixes["imbalanced"][race] - UTKFACE_MIX[race] * size) < 1  # largest remainders
        assert abs(mixes["balanced"][race] - size / 7) < 1
        assert max(mixes["imbalanced"][race], mixes["balanced"][race]) <= counts["train"][race]
    assert mixes["imbalanced + reweighted"] == mixes["imbalanced"]  # same faces, reweighted
    weights = results["reweighted_race_weights"]  # n / (7 n_r): each race weighs n / 7 in all
    for race in RACES:
        assert weights[race] == pytest.approx(size / (7 * mixes["imbalanced"][race]), rel=1e-6)
        assert weights[race] * mixes["imbalanced"][race] == pytest.approx(size / 7, rel=1e-6)
    seeds = results["seeds"]
    assert results["models_trained"] == len(SETS) * len(seeds) and len(seeds) == 3

    # validation: every model learned every task; the audited model has the highest mean
    # balanced accuracy over tasks and seeds, recomputed here from the recorded scores
    val = results["val_scores"]
    for name in SETS:
        for task in TASKS:
            accuracy = np.mean([r["value"] for r in val if r["run"] == name and
                                r["task"] == task and r["metric"] == "accuracy"])
            margin = {"gender": 0.3, "age": 0.05, "race": 0.15}[task]
            assert accuracy > results["val_majority_accuracy"][name][task] + margin
    mean_balanced = {name: np.mean([r["value"] for r in val if r["run"] == name
                                    and r["metric"] == "balanced_accuracy"]) for name in SETS}
    assert results["val_mean_balanced_accuracy"] == pytest.approx(mean_balanced)
    chosen = results["chosen_model"]
    assert chosen == max(mean_balanced, key=mean_balanced.get)

    # the whole test split: intervals bracket the values, wholly above the majority class;
    # balanced accuracy above 1/K
    for task in TASKS:
        low, high = results["test_accuracy_ci"][task]
        value = results["test_accuracy"][task]
        assert low <= value <= high and whole_faces(value, test)
        assert low > results["test_majority_accuracy"][task]
        assert results["chance"][task] == pytest.approx(1 / CLASSES[task])
        assert results["test_balanced_accuracy"][task] > results["chance"][task] + 0.1

    # per group: the groups of each grouping hold every test face, their accuracies weighted
    # by their faces give back the overall accuracy, and each interval brackets its value
    by_group = results["test_by_group"]
    expected_groups = {"race": 7, "gender": 2, "gender x race": 14}
    for by, k in expected_groups.items():
        for task in TASKS:
            rows = [r for r in by_group if r["by"] == by and r["task"] == task
                    and r["metric"] == "accuracy"]
            assert len(rows) == k and sum(r["n"] for r in rows) == test
            weighted = sum(r["value"] * r["n"] for r in rows) / test
            assert weighted == pytest.approx(results["test_accuracy"][task])
    for r in by_group:
        assert r["ci_low"] <= r["value"] + 1e-12 and r["value"] <= r["ci_high"] + 1e-12
        if r["metric"] == "accuracy":
            assert whole_faces(r["value"], r["n"])
    race_rows = {r["group"]: r for r in by_group if r["by"] == "race" and r["task"] == "race"
                 and r["metric"] == "accuracy"}
    assert {g: r["n"] for g, r in race_rows.items()} == counts["test"]

    # the largest gap: best and worst of the groups with enough faces, as in the group table
    for gap in results["test_gaps"]:
        groups = {r["group"]: r for r in by_group if r["by"] == gap["by"]
                  and r["task"] == gap["task"] and r["metric"] == gap["metric"]
                  and r["n"] >= MIN_GROUP}
        values = {g: r["value"] for g, r in groups.items()}
        assert gap["best"] == pytest.approx(max(values.values()))
        assert gap["worst"] == pytest.approx(min(values.values()))
        assert gap["best"] == pytest.approx(values[gap["best_group"]])
        assert gap["worst"] == pytest.approx(values[gap["worst_group"]])
        assert gap["gap"] == pytest.approx(gap["best"] - gap["worst"]) and gap["gap"] >= 0
        assert gap["ci_low"] <= gap["gap"] <= gap["ci_high"]
        assert gap["excludes_zero"] == (gap["ci_low"] > 0)
        assert min(gap["n_best"], gap["n_worst"]) >= MIN_GROUP
    # exercise 2 by hand gives the kit's race gap by race
    race_gap = next(g for g in results["test_gaps"] if g["task"] == "race" and g["by"] == "race"
                    and g["metric"] == "accuracy")
    best, worst, value = results["largest_gap_by_hand"]  # names may differ only on a tie
    assert value == pytest.approx(race_gap["gap"])
    assert race_rows[best]["value"] == pytest.approx(race_gap["best"])
    assert race_rows[worst]["value"] == pytest.approx(race_gap["worst"])

    # the confusion matrix: rows are the test races, its diagonal their recall
    confusion = {r["true"]: r for r in results["test_race_confusion"]}
    assert sum(sum(r[p] for p in RACES) for r in confusion.values()) == test
    for race in RACES:
        row = confusion[race]
        assert sum(row[p] for p in RACES) == counts["test"][race]
        assert row[race] / counts["test"][race] == pytest.approx(race_rows[race]["value"])
    for reading in results["test_race_confusion_read"]:
        row = confusion[reading["true race"]]
        others = {p: row[p] for p in RACES if p != reading["true race"]}
        assert reading["share"] == pytest.approx(max(others.values()) / reading["faces"])
        assert row[reading["most often taken for"]] == max(others.values())

    # calibration: ECE in [0, 1], the overall one recomputed with numpy from the recorded bins
    # (sum of n_b / N |accuracy_b - confidence_b|), and exercise 1's by hand equal to it
    ece = results["test_ece"]
    for r in ece:
        assert 0 <= r["value"] <= 1 and r["ci_low"] <= r["value"] + 1e-12
    bins = results["test_calibration_bins"]
    for task in TASKS:
        rows = [b for b in bins if b["task"] == task]
        n = np.array([b["n"] for b in rows], dtype=float)
        assert n.sum() == test
        gap = np.abs(np.array([b["accuracy"] for b in rows]) -
                     np.array([b["confidence"] for b in rows]))
        overall = next(r["value"] for r in ece if r["task"] == task and r["by"] == "all")
        assert overall == pytest.approx(float(np.sum(n / n.sum() * gap)))
        assert results["ece_by_hand"][task] == pytest.approx(overall)
        by_race = [r for r in ece if r["task"] == task and r["by"] == "race"]
        assert sum(r["n"] for r in by_race) == test

    # the intervention, on the same test faces: every model beats its majority class
    accuracy = results["intervention_test_accuracy"]
    for name in SETS:
        for task in TASKS:
            assert accuracy[name][task] > results["intervention_test_majority"][name][task]
    assert results["rare_races"] == ["Latino_Hispanic", "Southeast Asian", "Middle Eastern"]
    rare_faces = sum(counts["test"][r] for r in results["rare_races"])
    for row in results["intervention_paired"]:
        assert row["ci_low"] <= row["difference"] <= row["ci_high"]
        assert row["real"] == (row["ci_low"] > 0 or row["ci_high"] < 0)
        assert row["seeds ci_low"] <= row["seeds mean"] <= row["seeds ci_high"]
        if row["faces"].startswith("rare races"):
            assert row["n"] == rare_faces
    # what the lab teaches: on the rare races' faces the balanced set's race head beats the
    # imbalanced set's, beyond the choice of faces and beyond the seed spread
    rare = next(r for r in results["intervention_paired"] if r["comparison"] ==
                "balanced minus imbalanced" and r["faces"].startswith("rare")
                and r["task"] == "race")
    assert rare["difference"] > 0 and rare["real"] and rare["seeds real"]
    for gap in results["intervention_gaps"]:
        assert gap["best"] >= gap["worst"] and gap["ci_low"] <= gap["gap"] <= gap["ci_high"]

    # Grad-CAM: shares of heat are shares; the central square is a quarter of the pixels
    assert results["gradcam_center_area"] == pytest.approx(0.25)
    assert all(0 <= v <= 1 for v in results["gradcam_center_share"].values())
    assert results["gradcam_faces"] == min(128, test)


@pytest.mark.parametrize("parameters, named", [
    ({"DATASET": "utkface"}, "DATASET"),
    ({"IMAGE_SIZE": 16}, "IMAGE_SIZE"),
    ({"BACKBONE": "ResNet-152"}, "BACKBONE"),
    ({"BACKBONE": "MobileNetV2"}, "WEIGHTS"),  # "synthetic" weights are SmallVGG's
    ({"FINE_TUNE_LAYERS": -1}, "FINE_TUNE_LAYERS"),
    ({"HIDDEN": -3}, "HIDDEN"),
    ({"DROPOUT": 1.0}, "DROPOUT"),
    ({"PATIENCE": -1}, "PATIENCE"),
    ({"LEARNING_RATE": 0.0}, "LEARNING_RATE"),
    ({"HEAD_SEEDS": 0}, "HEAD_SEEDS"),
    ({"TRAIN_SIZE": 5}, "TRAIN_SIZE"),
    ({"BINS": 1}, "BINS"),
    ({"MIN_GROUP": 0}, "MIN_GROUP"),
    ({"CAM_FACES": 0}, "CAM_FACES"),
    ({"SEED": -1}, "SEED"),
])
def test_lab08_settings_cell_rejects_invalid_parameters(tmp_path, parameters, named):
    with pytest.raises(ValueError, match=rf"^{named}="):
        settings_namespace("08", tmp_path, **parameters)


def test_lab08_settings_cell_resolves_the_profiles(tmp_path):
    quick = settings_namespace("08", tmp_path)
    run = quick["run"]
    assert (run.dataset, run.image_size, run.weights, run.n_images) == ("synthetic", 32,
                                                                        "synthetic", 4000)
    assert quick["frozen"] and quick["backbone_name"] == "SmallVGG"
    assert quick["head_seeds"] == 3
    # FairFace, study B's fine-tuned ImageNet ResNet at 224 px, one seed
    full = settings_namespace("08", tmp_path, PROFILE="full", WEIGHTS="random")
    run = full["run"]
    assert (run.dataset, run.image_size, run.epochs, run["patience"]) == ("fairface", 224, 30, 5)
    assert full["backbone_name"] == "ResNet152V2" and not full["frozen"]
    assert full["TASKS"][-1] == "race_fairface7" and full["head_seeds"] == 1
    assert sum(full["UTKFACE_MIX"].values()) == pytest.approx(1.0)
