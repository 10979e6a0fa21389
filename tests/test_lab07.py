"""Lab 07 (study B's gender-specific fusion) end to end: what its recorded numbers teach."""

from __future__ import annotations

import pytest

from lab_settings import settings_namespace, whole_faces

TASKS = ("gender", "age", "race")
EXPERT_TASKS = ("age", "race")
CLASSES = {"gender": 2, "age": 9, "race": 5}
# SmallVGG by hand: four blocks of two 3x3 convolutions without bias (32-64-128-256 filters),
# each followed by a BatchNormalization with 4 values per channel (gamma, beta, mean, variance)
WIDTHS = (32, 64, 128, 256)
CONVS = [(3, 32), (32, 32), (32, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256)]
SMALL_VGG = sum(9 * c_in * c_out + 4 * c_out for c_in, c_out in CONVS)
FEATURES = WIDTHS[-1]


def heads(*tasks):
    """Softmax heads on SmallVGG's 256 pooled features: (d + 1) K each."""
    return sum((FEATURES + 1) * CLASSES[t] for t in tasks)


# the top block trains: its two convolutions' kernels (BatchNorm stays frozen), and the heads
TOP_BLOCK = 9 * 128 * 256 + 9 * 256 * 256
TRAINABLE = {"end-to-end": TOP_BLOCK + heads(*TASKS),
             "gender classifier": TOP_BLOCK + heads("gender"),
             "male expert": TOP_BLOCK + heads(*EXPERT_TASKS),
             "female expert": TOP_BLOCK + heads(*EXPERT_TASKS)}
DEPLOYED = {"end-to-end": SMALL_VGG + heads(*TASKS),
            "gender fusion": 3 * SMALL_VGG + heads("gender") + 2 * heads(*EXPERT_TASKS)}


@pytest.mark.lab
def test_lab07_runs_and_records_what_it_teaches(lab_results):
    results = lab_results("07")
    sizes = results["split_sizes"]
    train, val, test = sizes["train"], sizes["val"], sizes["test"]
    assert 430 <= val <= 450 and 430 <= test <= 450  # 15 % each of 3,000 synthetic faces
    genders = results["train_gender_counts"]
    assert genders["male"] + genders["female"] == train and min(genders.values()) > 0.4 * train

    # each expert: its own gender's training faces, grown by augmented copies to full size
    assert results["expert_own_faces"] == genders
    assert results["expert_train_sizes"] == {"male": train, "female": train}
    assert results["images_per_epoch"] == {m: train for m in TRAINABLE}  # the same budget

    # every model learned every task on the validation faces, well above the majority class
    majority = results["val_majority_accuracy"]
    rows = {r["run"]: r for r in results["val_accuracy"]}
    oracle = "oracle fusion (true gender)"
    assert set(rows) == {"end-to-end", "gender fusion", oracle, "majority class"}
    assert all(rows["majority class"][t] == pytest.approx(majority[t]) for t in TASKS)
    for name in ("end-to-end", "gender fusion", oracle):
        tasks = EXPERT_TASKS if name == oracle else TASKS
        assert all(whole_faces(rows[name][t], val) for t in tasks)
        assert all(rows[name][t] > majority[t] + margin for t, margin in
                   {"gender": 0.3, "age": 0.05, "race": 0.2}.items() if t in tasks)
    assert rows[oracle]["gender"] is None  # the oracle predicts no gender

    # paired gaps: the differences of the recorded accuracies, real only beyond the interval
    for gap in results["val_gaps"]:
        a, b = gap["comparison"].split(" minus ")
        assert gap["difference"] == pytest.approx(rows[a][gap["task"]] - rows[b][gap["task"]])
        assert gap["ci_low"] <= gap["difference"] <= gap["ci_high"]
        assert gap["real"] == (gap["ci_low"] > 0 or gap["ci_high"] < 0)

    # per gender: the two groups hold every validation face, and their accuracies, weighted by
    # their faces, give back the overall accuracy
    by_gender = results["val_accuracy_by_gender"]
    for name in ("end-to-end", "gender fusion"):
        groups = {r["group"]: r for r in by_gender if r["run"] == name}
        assert set(groups) == {"male", "female"}
        assert sum(g["faces"] for g in groups.values()) == val
        for t in TASKS:
            weighted = sum(g[t] * g["faces"] for g in groups.values()) / val
            assert weighted == pytest.approx(rows[name][t])

    # gender errors: right- plus wrong-routed faces are the validation split; on right-routed
    # faces the fusion and the oracle are the same expert; the totals follow by total probability
    routed = {r["faces routed"]: r for r in results["val_gender_error_propagation"]}
    right, wrong = routed["gender predicted right"], routed["gender predicted wrong"]
    assert right["faces"] + wrong["faces"] == val
    assert right["faces"] / val == pytest.approx(rows["gender fusion"]["gender"])
    for t in EXPERT_TASKS:
        assert right[f"fusion {t}"] == pytest.approx(right[f"oracle {t}"])
        for model, name in (("fusion", "gender fusion"), ("oracle", oracle),
                            ("end-to-end", "end-to-end")):
            total = (right[f"{model} {t}"] * right["faces"]
                     + wrong[f"{model} {t}"] * wrong["faces"]) / val
            assert total == pytest.approx(rows[name][t])
    for r in results["expected_vs_measured"]:  # exercise 2's formula is that identity
        assert r["your formula"] == pytest.approx(r["measured (section 5)"])
        assert r["oracle routing, by the formula"] == pytest.approx(r["oracle, measured"])

    # parameters counted by hand; the fusion deploys three backbones
    assert results["trainable_params"] == TRAINABLE
    costs = {r["model"]: r for r in results["costs"]}
    assert costs["end-to-end"]["trainable parameters"] == TRAINABLE["end-to-end"]
    assert costs["gender fusion"]["trainable parameters"] == sum(
        TRAINABLE[m] for m in ("gender classifier", "male expert", "female expert"))
    for name, count in DEPLOYED.items():
        assert costs[name]["deployed parameters"] == count
    assert results["fusion_deployed_params"] == DEPLOYED["gender fusion"]  # after reloading
    # three trainings and three backbones per face cost more than one
    for column in ("training (s)", "inference (ms / face)"):
        assert costs["gender fusion"][column] > costs["end-to-end"][column] > 0

    # one .keras file: the reloaded fusion predicts exactly what the trained one did, and
    # exercise 1's routing by hand is the fused model's
    assert results["reload_max_difference"] == 0.0
    assert results["reload_changed_predictions"] == 0
    assert results["route_by_hand_max_difference"] == 0.0

    # the final model is chosen on validation; the test split is read once, with intervals
    mean_val = results["val_mean_accuracy"]
    for name in ("end-to-end", "gender fusion"):
        assert mean_val[name] == pytest.approx(sum(rows[name][t] for t in TASKS) / 3)
    assert results["chosen_model"] == max(mean_val, key=mean_val.get)
    for t in TASKS:
        low, high = results["test_accuracy_ci"][t]
        assert low <= results["test_accuracy"][t] <= high
        assert whole_faces(results["test_accuracy"][t], test)
        assert low > results["test_majority_accuracy"][t]  # learned: above the majority class


@pytest.mark.parametrize("parameters, named", [
    ({"IMAGE_SIZE": 16}, "IMAGE_SIZE"),
    ({"BACKBONE": "ResNet-152"}, "BACKBONE"),
    ({"BACKBONE": "MobileNetV2"}, "STORED_MAPS"),  # stored maps need SmallVGG's plain chain
    ({"BACKBONE": "MobileNetV2", "STORED_MAPS": False}, "WEIGHTS"),  # synthetic: SmallVGG's
    ({"FINE_TUNE_LAYERS": 0}, "FINE_TUNE_LAYERS"),
    ({"STORED_MAPS": "yes"}, "STORED_MAPS"),
    ({"PATIENCE": -1}, "PATIENCE"),
    ({"LEARNING_RATE": 0.0}, "LEARNING_RATE"),
    ({"BRIGHTNESS": 1.5}, "BRIGHTNESS"),
    ({"DATASET": "afad"}, "DATASET"),
    ({"EPOCHS": 0}, "EPOCHS"),
    ({"SEED": -1}, "SEED"),
])
def test_lab07_settings_cell_rejects_invalid_parameters(tmp_path, parameters, named):
    with pytest.raises(ValueError, match=rf"^{named}="):
        settings_namespace("07", tmp_path, **parameters)


def test_lab07_settings_cell_resolves_the_profiles(tmp_path):
    quick = settings_namespace("07", tmp_path)
    run = quick["run"]
    assert (run.dataset, run.image_size, run.weights, run.epochs) == ("synthetic", 32,
                                                                      "synthetic", 4)
    assert quick["backbone_name"] == "SmallVGG" and run["stored_maps"] is True
    # study B's protocol: FairFace at 224 px, an ImageNet ResNet, 30 epochs, patience 5
    full = settings_namespace("07", tmp_path, PROFILE="full", WEIGHTS="random")
    run = full["run"]
    assert (run.dataset, run.image_size, run.epochs, run["patience"]) == ("fairface", 224, 30, 5)
    assert full["backbone_name"] == "ResNet152V2" and run["stored_maps"] is False
    assert full["TASKS_OF"][run.dataset][-1] == "race_fairface7"
