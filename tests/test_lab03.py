"""Lab 03 (transfer learning) end to end: its recorded numbers say what the lab teaches."""

from __future__ import annotations

import pytest

from faceattr_lab import config, runner

STUDY_B = {"Xception", "VGG19", "ResNet152V2", "InceptionResNetV2", "MobileNetV2", "DenseNet201"}
TASKS = {"gender": 2, "age": 9, "race": 5}  # classes per head


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab03")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(config.DATA_ENV, str(root / "data"))
        patch.setenv(config.OUTPUT_ENV, str(root / "out"))
        row = runner.run_lab("03", output=root / "out")
    assert row["status"] == "ok", row["error"]
    return row["results"]


@pytest.mark.slow
def test_parameter_counts_of_study_b_backbones(results):
    counts = results["backbone_parameters_m"]
    assert STUDY_B <= set(counts)
    # keras.applications' documented sizes without the top (millions), within rounding
    assert counts["MobileNetV2"] == pytest.approx(2.258, abs=0.01)
    assert counts["VGG19"] == pytest.approx(20.024, abs=0.01)
    assert counts["ResNet152V2"] == pytest.approx(58.332, abs=0.01)


@pytest.mark.slow
def test_backbone_comparison_has_every_backbone_and_valid_accuracies(results):
    table = {row["backbone"]: row for row in results["backbone_comparison"]}
    assert set(table) == {"MobileNetV2", "EfficientNetB0"}
    for row in table.values():
        # softmax heads on 1280 features, counted by hand: (1280 + 1) * (2 + 9 + 5)
        assert row["head params"] == 1281 * 16
        assert row["head s/epoch"] > 0 and row["feature extraction (s)"] > 0
        for task in TASKS:
            assert 0.0 <= row[f"{task} acc"] <= 1.0


@pytest.mark.slow
def test_trainable_without_recompile_changes_nothing_unfreeze_does(results):
    assert results["no_recompile_changed_tensors"] == 0
    assert results["no_recompile_optimizer_params"] == 1281 * 16  # still the heads only
    assert results["fine_tune_changed_tensors"] > 0
    assert results["fine_tune_optimizer_params"] > results["no_recompile_optimizer_params"]
    assert results["fine_tune_learning_rate"] == pytest.approx(1e-4)


@pytest.mark.slow
def test_weights_file_reloads_exactly(results):
    assert results["reloaded_max_difference"] == 0.0


@pytest.mark.slow
def test_stl_mtl_and_fusion_accuracies(results):
    stl_mtl = {row["run"]: row for row in results["stl_mtl_accuracy"]}
    fusion = {row["run"]: row for row in results["fusion_accuracy"]}
    assert set(stl_mtl) == {"single-task (3 models)", "multi-task (1 model)"}
    assert set(fusion) == {"end-to-end (1 model)", "gender fusion"}
    for table in (stl_mtl, fusion):
        for row in table.values():
            assert all(0.0 <= row[task] <= 1.0 for task in TASKS)
    # the fused model reports the gender classifier's own predictions
    assert fusion["gender fusion"]["gender"] == pytest.approx(
        stl_mtl["single-task (3 models)"]["gender"])
