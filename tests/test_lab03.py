"""Lab 03 (transfer learning) end to end: its recorded numbers say what the lab teaches."""

from __future__ import annotations

import pytest

from lab_settings import settings_namespace, whole_faces

CHEAP_STUDY_B = {"Xception", "VGG19", "MobileNetV2"}  # built and counted in the quick profile
TASKS = ("gender", "age", "race")
FEATURES = 256  # SmallVGG's last block
HEADS = (FEATURES + 1) * (2 + 9 + 5)  # softmax heads on SmallVGG's features, by hand
# unfreezing SmallVGG's last block (8 layers, BatchNorm kept frozen) trains its two 3x3
# convolutions, without bias: 128 -> 256 and 256 -> 256 channels, and the heads
FINE_TUNED = 9 * 128 * 256 + 9 * 256 * 256 + HEADS


@pytest.mark.lab
def test_lab03_runs_and_records_what_it_teaches(lab_results):
    results = lab_results("03")
    sizes = results["split_sizes"]
    val, test = sizes["val"], sizes["test"]
    # 15 % each of the kit's 3,000 synthetic faces (less the few the loader excludes)
    assert 430 <= val <= 450 and 430 <= test <= 450

    # keras.applications sizes without the top (millions): keras.io's published totals minus
    # the (d + 1) * 1000 ImageNet classifier, and VGG19's 16 conv layers
    counts = results["backbone_parameters_m"]
    assert CHEAP_STUDY_B <= set(counts)
    assert counts["MobileNetV2"] == pytest.approx(3.5 - 1281 * 1000 / 1e6, abs=0.06)
    assert counts["Xception"] == pytest.approx(22.9 - 2049 * 1000 / 1e6, abs=0.06)
    assert counts["VGG19"] == pytest.approx(20.024, abs=0.01)

    # the pre-trained SmallVGG against the same network with random weights
    table = {r["backbone"]: r for r in results["val_backbone_comparison"]}
    assert set(table) == {"SmallVGG", "SmallVGG (random weights)"}
    assert table["SmallVGG"]["weights"] == "synthetic-pretrained"
    assert table["SmallVGG (random weights)"]["weights"] == "random"
    majority = results["val_majority_accuracy"]
    assert set(majority) == set(TASKS) and all(0.0 < v < 1.0 for v in majority.values())
    for r in table.values():
        assert r["head params"] == HEADS
        assert r["head s/epoch"] > 0 and r["feature extraction (s)"] > 0
        assert all(whole_faces(r[f"{task} acc"], val) for task in TASKS)
    pretrained = table["SmallVGG"]
    # what the lab teaches holds on every seed: the pre-trained features carry gender and age
    assert pretrained["gender acc"] > majority["gender"] + 0.2
    assert pretrained["age acc"] > majority["age"] + 0.05
    assert pretrained["race acc"] > majority["race"] + 0.15
    gaps = {r["pre-trained minus random"]: r for r in results["val_pretraining_gaps"]}
    assert gaps["gender"]["ci_low"] > 0  # pre-training helps gender, beyond the choice of faces
    for task, gap in gaps.items():
        assert gap["difference"] == pytest.approx(
            pretrained[f"{task} acc"] - table["SmallVGG (random weights)"][f"{task} acc"])

    # trainable = True without compile changes nothing; unfreeze (re-compiles) does
    assert results["no_recompile_changed_tensors"] == 0
    assert results["no_recompile_optimizer_params"] == HEADS
    assert results["fine_tune_changed_tensors"] == 2  # the last block's two kernels
    assert results["fine_tune_optimizer_params"] == FINE_TUNED
    assert results["fine_tune_learning_rate"] == pytest.approx(1e-4)
    phases = {r["run"]: r for r in results["val_phase_accuracy"]}
    assert set(phases) == {"1 frozen backbone", "2 no re-compile", "3 fine-tuned top"}

    assert results["reloaded_max_difference"] == 0.0
    assert results["fresh_relative_difference"] > 0.1  # a fresh random backbone is another one

    stl_mtl = {r["run"]: r for r in results["val_stl_mtl_accuracy"]}
    assert set(stl_mtl) == {"single-task (3 models)", "multi-task (1 model)"}
    # study B's gender fusion moved to lab 07: section 7 only points there
    assert not {"val_fusion_accuracy", "val_fusion_gaps"} & set(results)
    for scores in (*stl_mtl.values(), *phases.values()):
        assert all(whole_faces(scores[task], val) for task in TASKS)  # scored on validation faces
    # fine-tuning is chosen or not on validation; the test split is read once, with intervals
    val_loss = results["val_loss_per_phase"]
    assert set(val_loss) == {"2 no re-compile", "3 fine-tuned top"}
    assert results["final_phase"] == min(val_loss, key=val_loss.get)
    for task in TASKS:
        low, high = results["test_accuracy_ci"][task]
        assert low <= results["test_accuracy"][task] <= high
        assert whole_faces(results["test_accuracy"][task], test)
        # the final model learned every task: its interval lies above the test majority share
        assert low > results["test_majority_accuracy"][task]
    # the paired gaps are the differences of the recorded accuracies, on the same faces
    gaps = {r["multi-task minus single-task"]: r for r in results["val_stl_mtl_gaps"]}
    assert set(gaps) == set(TASKS)
    for task, gap in gaps.items():
        assert gap["difference"] == pytest.approx(stl_mtl["multi-task (1 model)"][task]
                                                  - stl_mtl["single-task (3 models)"][task])
        assert gap["ci_low"] <= gap["difference"] <= gap["ci_high"]
        assert gap["real"] == (gap["ci_low"] > 0 or gap["ci_high"] < 0)

    # exercise 2: every block's features, the top one being section 3's
    blocks = {r["block"]: r for r in results["val_block_accuracy"]}
    assert set(blocks) == {"block2_pool", "block3_pool", "block4_pool", "majority class"}
    assert [blocks[b]["features"] for b in ("block2_pool", "block3_pool", "block4_pool")] == [
        64, 128, FEATURES]
    for task in TASKS:
        assert blocks["block4_pool"][f"{task} acc"] == pytest.approx(pretrained[f"{task} acc"])
        assert blocks["majority class"][f"{task} acc"] == pytest.approx(majority[task])
    block_gaps = {r["block3_pool minus block4_pool"]: r for r in results["val_block3_minus_block4"]}
    for task, gap in block_gaps.items():
        assert gap["difference"] == pytest.approx(blocks["block3_pool"][f"{task} acc"]
                                                  - blocks["block4_pool"][f"{task} acc"])


@pytest.mark.parametrize("parameters, named", [
    ({"IMAGE_SIZE": 8}, "IMAGE_SIZE"),
    ({"TRAIN_BACKBONES": "SmallVGG,Xception", "IMAGE_SIZE": 32}, "IMAGE_SIZE"),  # 71 px
    ({"TRAIN_BACKBONES": "ResNet-50"}, "TRAIN_BACKBONES"),
    ({"COUNT_BACKBONES": "VGG19,,MobileNetV2"}, "COUNT_BACKBONES"),
    ({"FINE_TUNE_BACKBONE": "VGG-16"}, "FINE_TUNE_BACKBONE"),
    ({"FINE_TUNE_LAYERS": 0}, "FINE_TUNE_LAYERS"),
    ({"FINE_TUNE_LR": -1e-4}, "FINE_TUNE_LR"),
    ({"FINE_TUNE_EPOCHS": 0}, "FINE_TUNE_EPOCHS"),
    ({"N_FACES": 50}, "N_FACES"),
    ({"RANDOM_CONTROL": "yes"}, "RANDOM_CONTROL"),
    ({"WEIGHTS": "/no/such/file.weights.h5"}, "WEIGHTS"),
    ({"EPOCHS": 0}, "EPOCHS"),
    ({"SEED": -1}, "SEED"),
])
def test_lab03_settings_cell_rejects_invalid_parameters(tmp_path, parameters, named):
    with pytest.raises(ValueError, match=rf"^{named}="):
        settings_namespace("03", tmp_path, **parameters)


def test_lab03_settings_cell_resolves_the_profiles(tmp_path):
    quick = settings_namespace("03", tmp_path)
    run = quick["run"]
    assert (run.image_size, run.weights, run["fine_tune_layers"]) == (32, "synthetic", 8)
    assert quick["train_names"] == ["SmallVGG"] and quick["fine_tune_name"] == "SmallVGG"
    assert quick["weights_for"]("MobileNetV2") is None  # offline: no ImageNet in the quick profile
    full = settings_namespace("03", tmp_path, PROFILE="full", WEIGHTS="random")
    assert full["run"].image_size == 100 and full["fine_tune_name"] == "MobileNetV2"
    assert len(full["train_names"]) == 7 and full["weights_for"]("VGG16") is None
