"""Lab 04 (single- vs multi-task) end to end: its recorded numbers say what the lab teaches."""

from __future__ import annotations

import numpy as np
import pytest

from lab_settings import settings_namespace

TASKS = ("gender", "age", "race")
ARMS = ("single-task age", "single-task gender", "multi-task")
TESTS = ("centre crop", "over-sampled")


def _levi_hassner_params(head_classes) -> int:
    """The paper's network at 227 px, by hand (Levi & Hassner 2015, ceil-mode pools)."""
    conv = (7 * 7 * 3 * 96 + 96) + (5 * 5 * 96 * 256 + 256) + (3 * 3 * 256 * 384 + 384)
    dense = (7 * 7 * 384 * 512 + 512) + (512 * 512 + 512)
    return conv + dense + sum(513 * k for k in head_classes)


def _cnn_params(filters=(8, 16, 32)) -> int:
    """Section 2's trunk: 3x3 convolutions with bias, each with a BatchNorm's gamma and beta."""
    total, channels = 0, 3
    for width in filters:
        total += 9 * channels * width + width + 2 * width
        channels = width
    return total


@pytest.mark.lab
def test_lab04_runs_and_records_what_it_teaches(lab_results):
    results = lab_results("04")

    # section 1: Adience's folds are subject-exclusive; every arm keeps its labelled faces
    assert results["subjects_in_two_folds"] == 0
    faces = results["adience_faces"]
    assert faces["multi-task"] >= max(faces["single-task age"], faces["single-task gender"])
    assert faces["multi-task"] <= faces["single-task age"] + faces["single-task gender"]
    assert results["levi_hassner_paper_params"] == {
        "single-task age": _levi_hassner_params([8]),       # 11,415,048
        "single-task gender": _levi_hassner_params([2]),
        "multi-task": _levi_hassner_params([8, 2])}

    folds = results["cv_folds"]
    summary = {(r["run"], r["test"], r["task"], r["metric"]): r for r in results["cv_summary"]}
    majority = {(r["task"], r["metric"]): r["value"] for r in results["cv_majority"]}
    for (run, test, task, metric), row in summary.items():
        values = [f["value"] for f in folds if (f["run"], f["test"], f["task"], f["metric"])
                  == (run, test, task, metric)]
        assert len(values) == 5  # one model per test fold
        assert row["mean"] == pytest.approx(np.mean(values))
        assert row["std"] == pytest.approx(np.std(values, ddof=1))
        # every model beats the training folds' majority class, on average over the folds
        assert row["mean"] > majority[(task, metric)], (run, test, task, metric)
    assert {k[1] for k in summary} == set(TESTS)

    # the paired comparison is the mean of the per-fold differences, over-sampled test
    paired = {r["single-task minus multi-task"]: r for r in results["stl_minus_mtl_over_folds"]}
    for name, (single, task, metric) in {
            "age accuracy": ("single-task age", "age", "accuracy"),
            "age one off accuracy": ("single-task age", "age", "one_off_accuracy"),
            "gender accuracy": ("single-task gender", "gender", "accuracy")}.items():
        def per_fold(run):
            rows = sorted((f for f in folds if (f["run"], f["test"], f["task"], f["metric"])
                           == (run, "over-sampled", task, metric)), key=lambda f: f["fold"])
            return np.array([f["value"] for f in rows])
        differences = per_fold(single) - per_fold("multi-task")
        assert paired[name]["mean"] == pytest.approx(differences.mean())
        assert paired[name]["std"] == pytest.approx(differences.std(ddof=1))
        assert paired[name]["ci_low"] <= paired[name]["mean"] <= paired[name]["ci_high"]
        assert paired[name]["real"] == (paired[name]["ci_low"] > 0 or paired[name]["ci_high"] < 0)

    # section 2: three single-task models against one multi-task model, counted by hand
    table = {r["model"]: r for r in results["val_stl_mtl"]}
    heads = {"gender": 2, "age": 9, "race": 5}
    trunk = _cnn_params()
    assert table["multi-task"]["trainable"] == trunk + 33 * sum(heads.values())
    assert table["single-task (3 models)"]["trainable"] == 3 * trunk + 33 * sum(heads.values())
    bn_statistics = 2 * (8 + 16 + 32)  # moving mean and variance, not trained
    assert table["multi-task"]["deployed"] == table["multi-task"]["trainable"] + bn_statistics
    val_majority = results["val_majority_accuracy"]
    for task in TASKS:
        assert table["multi-task"][f"{task} accuracy"] > val_majority[task]
        assert table["single-task (3 models)"][f"{task} accuracy"] > val_majority[task]
    gaps = {r["multi-task minus single-task"]: r for r in results["val_mtl_minus_stl"]}
    for task, gap in gaps.items():
        assert gap["difference"] == pytest.approx(table["multi-task"][f"{task} accuracy"]
                                                  - table["single-task (3 models)"]
                                                  [f"{task} accuracy"])

    # section 3: the frozen backbone's heads, counted by hand (SmallVGG's 2 x 2 x 256 map)
    conditioned = {r["model"].split(", ")[1]: r for r in results["val_conditioned"]}
    plain = (257 * 32) + (33 * 2) + 257 * (heads["age"] + heads["race"])
    assert conditioned["plain"]["trainable"] == plain
    assert conditioned["gating"]["trainable"] == plain + 33 * 256
    assert conditioned["attention"]["trainable"] > conditioned["gating"]["trainable"]
    for row in conditioned.values():
        assert row["gender accuracy"] > val_majority["gender"] + 0.2

    # every model of the lab is on the accuracy-parameters plot
    plotted = {r["model"] for r in results["accuracy_vs_trainable"]}
    assert {"multi-task", "single-task (one per task)"} <= plotted
    assert {f"Levi-Hassner {arm}" for arm in ARMS} <= plotted
    assert len([m for m in plotted if m.startswith("frozen")]) == 3

    # the final model is chosen on validation; the test split is read once, with intervals
    chosen = results["val_mean_accuracy"]
    assert results["final_model"] == max(chosen, key=chosen.get)
    for task in TASKS:
        low, high = results["test_accuracy_ci"][task]
        assert low <= results["test_accuracy"][task] <= high
        assert low > results["test_majority_accuracy"][task]


@pytest.mark.parametrize("parameters, named", [
    ({"CV_FOLDS": "0,5"}, "CV_FOLDS"),
    ({"CV_FOLDS": "3"}, "CV_FOLDS"),
    ({"CV_CROP": 40, "CV_IMAGE_SIZE": 32}, "CV_CROP"),
    ({"CV_IMAGE_SIZE": 16}, "CV_IMAGE_SIZE"),
    ({"CV_FILTERS": "32,64"}, "CV_FILTERS"),
    ({"CV_FILTERS": "32,sixty,96"}, "CV_FILTERS"),
    ({"CV_DATASET": "utkface"}, "CV_DATASET"),
    ({"CV_FACES": 10}, "CV_FACES"),
    ({"CV_EPOCHS": 0}, "CV_EPOCHS"),
    ({"SHARED_BACKBONE": "ResNet-50"}, "SHARED_BACKBONE"),
    ({"CONDITIONED_BACKBONE": "cnn"}, "CONDITIONED_BACKBONE"),
    ({"TRAINED_TOP_LAYERS": -1}, "TRAINED_TOP_LAYERS"),
    ({"CONDITIONED_LR": 0.0}, "CONDITIONED_LR"),
    ({"LEARNING_RATE": "fast"}, "LEARNING_RATE"),
    ({"IMAGE_SIZE": 8}, "IMAGE_SIZE"),
    ({"SEED": -1}, "SEED"),
])
def test_lab04_settings_cell_rejects_invalid_parameters(tmp_path, parameters, named):
    with pytest.raises(ValueError, match=rf"^{named}="):
        settings_namespace("04", tmp_path, **parameters)


def test_lab04_settings_cell_resolves_the_profiles(tmp_path):
    quick = settings_namespace("04", tmp_path)
    assert quick["cv_folds"] == [0, 1, 2, 3, 4]
    assert (quick["cv_size"], quick["cv_crop"], quick["first_stride"]) == (28, 24, 2)
    assert quick["shared_name"] == "cnn" and quick["conditioned_name"] == "SmallVGG"
    full = settings_namespace("04", tmp_path, PROFILE="full", WEIGHTS="random")
    assert (full["cv_size"], full["cv_crop"], full["first_stride"]) == (256, 227, 4)
    assert full["cv_filters"] == (96, 256, 384)  # the paper's widths
    assert full["run"].image_size == 100 and full["shared_name"] == "VGG16"
