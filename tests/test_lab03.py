"""Lab 03 (transfer learning) end to end: its recorded numbers say what the lab teaches."""

from __future__ import annotations

import pytest

CHEAP_STUDY_B = {"Xception", "VGG19", "MobileNetV2"}  # built and counted in the quick profile
TASKS = ("gender", "age", "race")
HEADS = (1280 + 1) * (2 + 9 + 5)  # softmax heads on MobileNetV2's 1280 features, by hand
HELD_OUT = 150  # validation and test faces: 15 % each of the lab's 1,000


def _faces(accuracy: float) -> bool:
    """An accuracy on 150 faces is a whole number of faces over 150."""
    return 0 <= accuracy <= 1 and abs(accuracy * HELD_OUT - round(accuracy * HELD_OUT)) < 1e-6


@pytest.mark.lab
def test_lab03_runs_and_records_what_it_teaches(lab_results):
    results = lab_results("03")

    # keras.applications sizes without the top (millions): keras.io's published totals minus
    # the (d + 1) * 1000 ImageNet classifier, and VGG19's 16 conv layers
    counts = results["backbone_parameters_m"]
    assert CHEAP_STUDY_B <= set(counts)
    assert counts["MobileNetV2"] == pytest.approx(3.5 - 1281 * 1000 / 1e6, abs=0.06)
    assert counts["Xception"] == pytest.approx(22.9 - 2049 * 1000 / 1e6, abs=0.06)
    assert counts["VGG19"] == pytest.approx(20.024, abs=0.01)

    table = {r["backbone"]: r for r in results["val_backbone_comparison"]}
    assert set(table) == {"MobileNetV2"}  # the quick profile trains heads on one backbone
    for r in table.values():
        assert r["head params"] == HEADS
        assert r["head s/epoch"] > 0 and r["feature extraction (s)"] > 0
        assert all(_faces(r[f"{task} acc"]) for task in TASKS)
    assert set(results["val_majority_accuracy"]) == set(TASKS)
    assert all(0.0 < v < 1.0 for v in results["val_majority_accuracy"].values())
    # standardized random features still carry the gender cue: above chance for some backbone
    assert max(r["gender acc"] for r in table.values()) > 0.55

    # trainable = True without compile changes nothing; unfreeze (re-compiles) does
    assert results["no_recompile_changed_tensors"] == 0
    assert results["no_recompile_optimizer_params"] == HEADS
    assert results["fine_tune_changed_tensors"] > 0
    assert results["fine_tune_optimizer_params"] > HEADS
    assert results["fine_tune_learning_rate"] == pytest.approx(1e-4)
    phases = {r["run"]: r for r in results["val_phase_accuracy"]}
    assert set(phases) == {"1 frozen backbone", "2 no re-compile", "3 fine-tuned top"}

    assert results["reloaded_max_difference"] == 0.0
    assert results["fresh_relative_difference"] > 0.1  # a fresh random backbone is another one

    stl_mtl = {r["run"]: r for r in results["val_stl_mtl_accuracy"]}
    fusion = {r["run"]: r for r in results["val_fusion_accuracy"]}
    assert set(stl_mtl) == {"single-task (3 models)", "multi-task (1 model)"}
    assert set(fusion) == {"multi-task heads (1 model)", "gender fusion"}
    for scores in (*stl_mtl.values(), *fusion.values(), *phases.values()):
        assert all(_faces(scores[task]) for task in TASKS)  # scored on the 150 validation faces
    # fine-tuning is chosen or not on validation; the test split is read once, with intervals
    val_loss = results["val_loss_per_phase"]
    assert set(val_loss) == {"2 no re-compile", "3 fine-tuned top"}
    assert results["final_phase"] == min(val_loss, key=val_loss.get)
    for task in TASKS:
        low, high = results["test_accuracy_ci"][task]
        assert low <= results["test_accuracy"][task] <= high
        # 150 test faces: 1 face is 1/150, so every accuracy is a multiple of it
        assert _faces(results["test_accuracy"][task])
    # the paired gaps are the differences of the recorded accuracies, on the same faces
    gaps = {r["multi-task minus single-task"]: r for r in results["val_stl_mtl_gaps"]}
    assert set(gaps) == set(TASKS)
    for task, gap in gaps.items():
        assert gap["difference"] == pytest.approx(stl_mtl["multi-task (1 model)"][task]
                                                  - stl_mtl["single-task (3 models)"][task])
        assert gap["ci_low"] <= gap["difference"] <= gap["ci_high"]
        assert gap["real"] == (gap["ci_low"] > 0 or gap["ci_high"] < 0)
    # the fused model reports the gender classifier's own predictions
    assert fusion["gender fusion"]["gender"] == pytest.approx(
        stl_mtl["single-task (3 models)"]["gender"])
