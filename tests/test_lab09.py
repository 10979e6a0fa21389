"""Lab 09 (faces in the wild): what its recorded numbers teach, and its parameter checks."""

from __future__ import annotations

import math

import pytest

from lab_settings import settings_namespace, whole_faces

TASKS = ("gender", "age", "race")
STAGES = {("detection (MTCNN)", 1), ("alignment", 1), ("model, Keras", 1),
          ("model, Keras", 64), ("model, SavedModel serve", 1), ("model, SavedModel serve", 64)}


@pytest.mark.lab
def test_lab09_runs_and_records_what_it_teaches(lab_results):
    results = lab_results("09")
    assert results["schemes"] == ["gender", "age_fairface9", "race_utk5"]
    assert results["model_input_size"] == 32

    # the quick model learned every task on the synthetic validation faces
    val = results["split_sizes"]["val"]
    assert 430 <= val <= 450  # 15 % of 3,000 synthetic faces
    majority = results["val_majority_accuracy"]
    for task, margin in {"gender": 0.3, "age": 0.05, "race": 0.2}.items():
        assert whole_faces(results["val_accuracy"][task], val)
        assert results["val_accuracy"][task] > majority[task] + margin

    # MTCNN finds the astronaut's one face where it is (by eye: x 180-270, y 60-175)
    assert results["astronaut_faces"] == 1 and results["astronaut_confidence"] > 0.95
    x, y, w, h = results["astronaut_box"]
    assert 190 <= x + w / 2 <= 260 and 80 <= y + h / 2 <= 150
    (lx, ly), (rx, ry) = results["astronaut_eyes"]
    assert x < lx < rx < x + w and y < ly < y + h / 2 and y < ry < y + h / 2

    # the eye angle by hand, and the turned photo's face turned back by alignment
    angles = results["eye_angles"]
    assert angles["photo"] == pytest.approx(math.degrees(math.atan2(ry - ly, rx - lx)))
    assert results["rotated_faces"] == 1
    assert abs(angles["photo"]) < 10
    assert abs(angles["photo"] - angles["rotated photo"] - 25) < 5  # ROTATION = 25 degrees
    assert results["exercise_eye_angles"] == pytest.approx(angles)
    gaps = results["crop_difference"]
    assert gaps["aligned crops"] < 0.75 * gaps["MTCNN boxes"]  # aligned: nearly the same crop

    # exercise 1: the square around the box, side max(w, h) * (1 + 2 * 0.25)
    half = max(w, h) * 1.5 / 2
    assert results["exercise_crop_box"] == pytest.approx(
        [x + w / 2 - half, y + h / 2 - half, x + w / 2 + half, y + h / 2 + half])

    # probabilities: one distribution per head, and they move under harmless nudges
    assert set(results["probability_sums"]) == set(TASKS)
    assert all(total == pytest.approx(1, abs=1e-5) for total in results["probability_sums"].values())
    assert set(results["perturbation_faces"].values()) == {1}  # the face found every time
    changes = results["perturbation_changes"]
    for task in TASKS:
        assert changes[task]["as it is"] == 0
        assert results["perturbation_max_change"][task] == pytest.approx(max(changes[task].values()))
        assert results["perturbation_max_change"][task] > 0.1

    # detection limits: shrinking loses the face; a lower threshold keeps a weak one
    rows = results["detection_by_scale"]
    assert rows[0]["photo side (px)"] == 512 and rows[0]["faces at 0.9"] == 1
    assert all(r["faces at 0.5"] >= r["faces at 0.7"] >= r["faces at 0.9"] for r in rows)
    assert any(r["faces at 0.5"] == 1 and r["faces at 0.9"] == 0 for r in rows)  # the trade
    assert rows[-1]["faces at 0.5"] == 0  # too small at any threshold
    assert results["faces_without_a_face_at_lowest_threshold"] == {"coffee": 0, "chelsea": 0}

    # the command: one row per face, per faceless image and per unreadable file
    assert results["predict_exit_status"] == 0
    statuses = {r["file"]: r["status"] for r in results["csv_rows"]}
    assert sorted(statuses) == ["astronaut.png", "astronaut_turned_small.jpg", "broken.jpg",
                                "coffee.jpg"]  # notes.txt is not an image by its extension
    assert statuses["astronaut.png"] == statuses["astronaut_turned_small.jpg"] == "ok"
    assert statuses["coffee.jpg"] == "no face"
    assert statuses["broken.jpg"].startswith("unreadable: ")
    assert results["csv_vs_notebook_max_difference"] < 1e-4  # 5 decimals in the CSV
    assert results["upload_rows"] == [{"image": "astronaut.png", "status": "ok"}]

    # export: both reloads give the model's outputs on 7 aligned faces and 64 validation faces
    assert results["export_check_images"] == 7 + 64
    assert set(results["export_max_difference"]) == {"keras", "saved_model"}
    assert max(results["export_max_difference"].values()) <= 1e-5
    timing = {(r["stage"], r["batch"]): r["s / face"] for r in results["seconds_per_face"]}
    assert set(timing) == STAGES and all(v > 0 for v in timing.values())


@pytest.mark.parametrize("parameters, named", [
    ({"MIN_CONFIDENCE": 1.5}, "MIN_CONFIDENCE"),
    ({"MARGIN": -0.1}, "MARGIN"),
    ({"ROTATION": 90.0}, "ROTATION"),
    ({"TIMING_REPEATS": 0}, "TIMING_REPEATS"),
    ({"BACKBONE": "ResNet-152"}, "BACKBONE"),
    ({"BACKBONE": "MobileNetV2"}, "WEIGHTS"),  # synthetic weights are SmallVGG's
    ({"MODEL": "/no/such/model.keras"}, "MODEL"),
    ({"SCHEMES": "gender,race_utk6"}, "SCHEMES"),
    ({"DATASET": "afad"}, "DATASET"),
    ({"FINE_TUNE_LAYERS": -1}, "FINE_TUNE_LAYERS"),
    ({"LEARNING_RATE": 0.0}, "LEARNING_RATE"),
    ({"SEED": -1}, "SEED"),
])
def test_lab09_settings_cell_rejects_invalid_parameters(tmp_path, parameters, named):
    with pytest.raises(ValueError, match=rf"^{named}="):
        settings_namespace("09", tmp_path, **parameters)


def test_lab09_settings_cell_resolves_the_profiles(tmp_path):
    quick = settings_namespace("09", tmp_path)
    run = quick["run"]
    assert (run.dataset, run.image_size, run.weights, run.epochs) == ("synthetic", 32,
                                                                      "synthetic", 20)
    assert quick["backbone_name"] == "SmallVGG" and quick["frozen"] is True
    full = settings_namespace("09", tmp_path, PROFILE="full", WEIGHTS="random")
    run = full["run"]
    assert (run.dataset, run.image_size, run.epochs, run["patience"]) == ("fairface", 224, 30, 5)
    assert full["backbone_name"] == "ResNet152V2" and full["frozen"] is False
    assert full["TASKS_OF"][run.dataset][-1] == "race_fairface7"
    schemes = settings_namespace("09", tmp_path, SCHEMES="gender, coral_21_60")
    assert schemes["scheme_names"] == ["gender", "coral_21_60"]
