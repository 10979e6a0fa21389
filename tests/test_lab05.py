"""Lab 05 (two-phase SupCon) end to end: its recorded numbers say what the lab teaches."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lab_settings import settings_namespace, whole_faces

TASKS = ("gender", "age", "race")
CLASSES = {"gender": 2, "age": 9, "race": 5}
# the quick encoder, the kit's CNN with conv_filters (16, 32, 128): per block a 3x3 convolution
# with bias and a BatchNormalization (gamma and beta trained, mean and variance not)
BLOCKS = [(3, 16), (16, 32), (32, 128)]
ENCODER_TRAINABLE = sum(9 * c_in * c_out + c_out + 2 * c_out for c_in, c_out in BLOCKS)
ENCODER_TENSORS = 6 * len(BLOCKS)  # kernel, bias, gamma, beta, moving mean and variance
FEATURES = BLOCKS[-1][1]
# study A's head per task: Dropout, Dense(512, relu), Dropout, Dense(K, softmax)
HEADS = sum((FEATURES + 1) * 512 + (512 + 1) * k for k in CLASSES.values())
VARIANTS = ("supcon", "npairs")


@pytest.mark.lab
def test_lab05_runs_and_records_what_it_teaches(lab_results):
    results = lab_results("05")
    sizes = results["split_sizes"]
    val, test = sizes["val"], sizes["test"]
    assert 430 <= val <= 450 and 430 <= test <= 450  # 15 % each of 3,000 synthetic faces

    # every model learned every task on the validation split: well above the majority class
    majority = results["val_majority_accuracy"]
    rows = {r["run"]: r for r in results["val_accuracy"]}
    models = {"cross-entropy", *(f"SupCon {v}, phase 2" for v in VARIANTS)}
    assert set(rows) == models | {"majority class"}
    for name in models:
        assert all(whole_faces(rows[name][task], val) for task in TASKS)
        assert rows[name]["gender"] > majority["gender"] + 0.08
        assert rows[name]["age"] > majority["age"] + 0.04
        assert rows[name]["race"] > majority["race"] + 0.2
    assert all(rows["majority class"][task] == pytest.approx(majority[task]) for task in TASKS)

    # phase 1 lowered the SupCon loss of race and age below its value for an embedding that
    # separates nothing (every projection alike): ln B for npairs, tau/0.07 ln(2B - 1) two-view
    batch, temperature = 64, 0.1
    alike = {"npairs": math.log(batch), "supcon": temperature / 0.07 * math.log(2 * batch - 1)}
    for r in results["phase1_task_loss"]:
        assert r["all projections alike"] == pytest.approx(alike[r["variant"]])
        assert r["fallen below 'alike' by"] == pytest.approx(
            r["all projections alike"] - r["last epoch"])
        if r["task"] in ("race", "age"):
            assert r["last epoch"] < r["all projections alike"] - 0.2

    # the k-NN separation of every task rose in phase 1, for both variants
    knn = {r["embedding"]: r for r in results["knn_accuracy"]}
    assert set(knn) == {"before phase 1", "cross-entropy encoder", "majority class",
                        *(f"after phase 1 ({v})" for v in VARIANTS)}
    for variant in VARIANTS:
        after = knn[f"after phase 1 ({variant})"]
        for task in TASKS:
            assert after[task] > knn["before phase 1"][task]
            assert after[task] > majority[task]
            assert whole_faces(after[task], val)

    # trainable = True without compile changes no encoder tensor; the re-compile does
    assert results["heads_params"] == HEADS
    assert results["no_recompile_changed_tensors"] == 0
    assert results["no_recompile_optimizer_params"] == HEADS
    assert results["encoder_tensors"] == ENCODER_TENSORS
    assert results["fine_tune_changed_tensors"] == ENCODER_TENSORS  # kernels and statistics
    assert results["fine_tune_optimizer_params"] == HEADS + ENCODER_TRAINABLE
    assert results["model_trainable_params"] == HEADS + ENCODER_TRAINABLE

    # choices are made on validation
    variant_loss = results["val_loss_per_variant"]
    assert set(variant_loss) == set(VARIANTS)
    assert results["chosen_variant"] == min(variant_loss, key=variant_loss.get)
    phase_loss = results["val_loss_per_phase"]
    assert set(phase_loss) == {"phase 2", "phase 3"}
    assert results["final_phase"] == min(phase_loss, key=phase_loss.get)

    # the gaps are paired differences of the recorded accuracies, on the same faces
    gaps = results["val_supcon_minus_ce"]
    assert len(gaps) == 3 * (len(VARIANTS) + 1)
    for gap in gaps:
        assert gap["ci_low"] <= gap["difference"] <= gap["ci_high"]
        assert gap["real"] == (gap["ci_low"] > 0 or gap["ci_high"] < 0)
        name = gap["SupCon minus cross-entropy"]
        if name in rows:
            assert gap["difference"] == pytest.approx(rows[name][gap["task"]]
                                                      - rows["cross-entropy"][gap["task"]])

    # the test split, read once: both final models learned every task
    for model in ("cross-entropy", "supcon"):
        for task in TASKS:
            accuracy = results["test_accuracy"][model][task]
            low, high = results["test_accuracy_ci"][model][task]
            assert low <= accuracy <= high and whole_faces(accuracy, test)
            assert low > results["test_majority_accuracy"][task]

    # exercise 3: the nearest face's share of the denominator falls as the temperature grows
    # (each term exp((s_a - s_max) / tau) grows with tau), never below 1/15 (16 faces); a high
    # temperature flattens the softmax, the loss rising towards ln 15
    temperatures = {r["temperature"]: r for r in results["temperature_table"]}
    assert list(temperatures) == [0.05, 0.1, 0.5, 1.0]
    shares = [r["nearest face's share"] for r in temperatures.values()]
    assert all(a > b for a, b in zip(shares, shares[1:])) and shares[-1] >= 1 / 15
    assert temperatures[0.1]["mean anchor loss"] < temperatures[1.0]["mean anchor loss"] < \
        math.log(15)


@pytest.mark.lab
def test_lab05_counts_the_faces_a_right_closed_cut_misbins(lab_results):
    """pd.cut's right-closed bins put every age on a FairFace boundary one group low (and age 0
    in none): the lab's count equals the faces with such an age, counted here."""
    import faceattr_lab as fl

    results = lab_results("05")
    df = fl.datasets.load("synthetic", layout="utkface", n=3000, seed=results["seed"])
    ages = df["age"].dropna().to_numpy(dtype=int)
    assert results["right_closed_misbinned"] == int(np.isin(ages, [0, 3, 10, 20, 30, 40, 50,
                                                                   60, 70]).sum()) > 0


@pytest.mark.parametrize("parameters, named", [
    ({"DATASET": "adience"}, "DATASET"),  # no race and other age groups: not study A's tasks
    ({"ENCODER": "ResNet-50"}, "ENCODER"),
    ({"IMAGE_SIZE": 16}, "IMAGE_SIZE"),
    ({"BATCH_SIZE": 8}, "BATCH_SIZE"),
    ({"EPOCHS": 0}, "EPOCHS"),
    ({"HEAD_EPOCHS": 0}, "HEAD_EPOCHS"),
    ({"FINE_TUNE_EPOCHS": -1}, "FINE_TUNE_EPOCHS"),
    ({"LEARNING_RATE": "1e-3"}, "LEARNING_RATE"),
    ({"FINE_TUNE_LR": 2.0}, "FINE_TUNE_LR"),
    ({"TEMPERATURE": 0.0}, "TEMPERATURE"),
    ({"LOSS_WEIGHT": -0.1}, "LOSS_WEIGHT"),
    ({"VARIANTS": "supcon,simclr"}, "VARIANTS"),
    ({"VARIANTS": "supcon,,npairs"}, "VARIANTS"),
    ({"PROJECTION_HEAD": "mlp"}, "PROJECTION_HEAD"),
    ({"KNN_K": 0}, "KNN_K"),
    ({"TSNE": "yes"}, "TSNE"),
    ({"N_IMAGES": 10}, "N_IMAGES"),
    ({"SEED": -1}, "SEED"),
    ({"PROFILE": "fast"}, "PROFILE"),
])
def test_lab05_settings_cell_rejects_invalid_parameters(tmp_path, parameters, named):
    with pytest.raises(ValueError, match=rf"^{named}="):
        settings_namespace("05", tmp_path, **parameters)


def test_lab05_settings_cell_resolves_the_profiles(tmp_path):
    quick = settings_namespace("05", tmp_path)
    run = quick["run"]
    assert (run.dataset, run.image_size, run.batch_size, run["encoder"]) == (
        "synthetic", 32, 64, "cnn")
    assert (run.epochs, run["head_epochs"], run["fine_tune_epochs"]) == (5, 8, 2)
    assert quick["ce_epochs"] == 5 + 8 + 2  # the baseline gets the phases' epochs
    assert quick["variants"] == ["supcon", "npairs"] and run["tsne"] is False
    full = settings_namespace("05", tmp_path, PROFILE="full")
    run = full["run"]
    # study A: ResNet50V2 from scratch, 112 px, batch 64, 50 epochs, FairFace by default
    assert (run.dataset, run.image_size, run.batch_size, run["encoder"], run.weights) == (
        "fairface", 112, 64, "ResNet50V2", None)
    assert (run.epochs, run["head_epochs"], run["tsne"]) == (50, 50, True)
    assert full["TASKS_OF"]["afad"] == ("gender", "age_afad7")


def test_embedding_grid_draws_one_row_per_feature_set_and_one_column_per_task():
    import faceattr_lab as fl

    rng = np.random.default_rng(0)
    features = {"random": rng.normal(size=(30, 5)), "trained": rng.normal(size=(30, 4))}
    labels = {"gender": rng.integers(0, 2, 30), "race": np.r_[rng.integers(0, 3, 29), -1]}
    fig = fl.plots.embedding_grid(features, labels, class_names={"gender": ("male", "female")})
    axes = np.asarray(fig.axes).reshape(2, 2)
    assert [ax.get_title() for ax in axes.ravel()] == [
        "random: gender", "random: race", "trained: gender", "trained: race"]
    assert [t.get_text() for t in axes[0, 0].get_legend().get_texts()] == ["male", "female"]
    # the face without a race label is left out of the race panels
    assert sum(len(c.get_offsets()) for c in axes[0, 1].collections) == 29
    assert sum(len(c.get_offsets()) for c in axes[0, 0].collections) == 30
    with pytest.raises(ValueError, match="one per image"):
        fl.plots.embedding_grid(features, {"gender": labels["gender"],
                                           "race": labels["race"][:10]})
    with pytest.raises(ValueError, match="pca"):
        fl.plots.embedding_grid(features, labels, method="umap")
