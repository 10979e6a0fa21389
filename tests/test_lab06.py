"""Lab 06 (CORAL, ordinal age) end to end: its recorded numbers say what the lab teaches."""

from __future__ import annotations

import numpy as np
import pytest

from lab_settings import settings_namespace

HEADS = ("regression", "cross-entropy", "OR-CNN", "CORAL")
FEATURES = 256  # the kit's SmallVGG: its last block has 256 filters, globally pooled
MARGIN = 3.0  # years every head must beat the median baseline by on the test split


def _resnet34_trainable() -> int:
    """He et al.'s ResNet-34 without its classifier: conv kernels (no bias) + BN gamma, beta."""
    total, c_in = 7 * 7 * 3 * 64 + 2 * 64, 64
    for count, c in zip((3, 4, 6, 3), (64, 128, 256, 512)):
        for _ in range(count):
            total += 9 * c_in * c + 9 * c * c + 4 * c + (c_in * c + 2 * c if c_in != c else 0)
            c_in = c
    return total


@pytest.mark.lab
def test_lab06_runs_and_records_what_it_teaches(lab_results):
    results = lab_results("06")
    lo, hi = results["age_range"]
    assert (lo, hi) == (0, 90) and results["num_ranks"] == hi - lo + 1 == 91
    sizes = results["split_sizes"]
    n = results["faces_in_range"]
    assert sum(sizes.values()) == n
    assert abs(sizes["test"] - 0.2 * n) <= 2 and abs(sizes["val"] - 0.15 * n) <= 2

    # the median baseline, recomputed from the test ages and the training median
    ages = np.array(results["test_ages"], dtype=float)
    assert len(ages) == sizes["test"] and ages.min() >= lo and ages.max() <= hi
    mae, mae_ci = results["test_mae"], results["test_mae_ci"]
    assert mae["median baseline"] == pytest.approx(
        np.mean(np.abs(ages - results["train_median_age"])))
    assert results["test_rmse"]["median baseline"] == pytest.approx(
        np.sqrt(np.mean((ages - results["train_median_age"]) ** 2)))

    # every head beats the baseline clearly, face by face, and every interval holds its estimate
    paired = {r["comparison"]: r for r in results["test_paired"]}
    for head in HEADS:
        assert mae[head] < mae["median baseline"] - MARGIN
        gap = paired[f"{head} minus median baseline"]
        assert gap["real"] and gap["ci_high"] < 0
        assert gap["difference"] == pytest.approx(mae[head] - mae["median baseline"])
    for name in (*HEADS, "median baseline"):
        low, high = mae_ci[name]
        assert low <= mae[name] <= high
        low, high = results["test_rmse_ci"][name]
        assert low <= results["test_rmse"][name] <= high
        assert results["test_rmse"][name] >= mae[name]  # RMSE >= MAE always

    # rank consistency: CORAL (ordered biases) and the softmax's cumulative probabilities never
    # rise; OR-CNN's independent tasks do
    assert results["coral_bias_rises"] == 0
    first, last = results["coral_biases_first_last"]
    assert first > last
    for split in ("val", "test"):
        counts = results[f"{split}_inconsistent_faces"]
        assert counts["CORAL"] == 0 and counts["cross-entropy"] == 0
        assert counts["OR-CNN"] > 0
    # per-rank probabilities P(r = k) = P(r > k-1) - P(r > k): never negative for CORAL, sum 1;
    # negative exactly on the faces whose answers rise
    classwise = results["val_classwise"]
    assert classwise["CORAL"]["smallest P(r = k)"] >= -1e-6
    assert classwise["CORAL"]["faces with a negative P(r = k)"] == 0
    for head in ("CORAL", "OR-CNN"):
        assert classwise[head]["largest |sum - 1|"] < 1e-5
    assert classwise["OR-CNN"]["smallest P(r = k)"] < 0
    assert (classwise["OR-CNN"]["faces with a negative P(r = k)"]
            == results["val_inconsistent_faces"]["OR-CNN"])

    # parameters by hand: Normalization (not trained) -> Dense(h) -> output layer
    h = results["hidden_units"]
    trunk = FEATURES * h + h
    k = results["num_ranks"]
    assert results["head_trainable_params"] == {
        "regression": trunk + h + 1, "cross-entropy": trunk + (h + 1) * k,
        "OR-CNN": trunk + (h + 1) * (k - 1), "CORAL": trunk + h + (k - 1)}
    assert results["resnet34_params"]["trainable"] == _resnet34_trainable() == 21_284_672

    # choices are made on validation
    val = results["val_mae"]
    assert results["chosen_head"] == min(HEADS, key=val.get)
    assert all(1 <= e <= 150 for e in results["epochs_run"].values())


@pytest.mark.parametrize("parameters, word", [
    ({"AGE_RANGE": "60,21"}, "lo < hi"), ({"AGE_RANGE": "21-60"}, "lo,hi"),
    ({"BACKBONE": "resnet50"}, "BACKBONE"), ({"CROP": 64}, "CROP"),
    ({"DATASET": "fairface"}, "DATASET"), ({"CROP": 28}, "end to end")])
def test_lab06_rejects_bad_parameters(tmp_path, parameters, word):
    with pytest.raises(ValueError, match=word):
        settings_namespace("06", tmp_path, **parameters)


def test_lab06_full_profile_settings(tmp_path):
    namespace = settings_namespace("06", tmp_path, PROFILE="full")
    assert (namespace["lo"], namespace["hi"]) == (21, 60)
    assert namespace["backbone_name"] == "resnet34" and namespace["input_shape"] == (120, 120, 3)
    assert namespace["learning_rate"] == 5e-4 and namespace["run"].batch_size == 256
    afad = settings_namespace("06", tmp_path, PROFILE="full", DATASET="afad")
    assert (afad["lo"], afad["hi"]) == (15, 40)
