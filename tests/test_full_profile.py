"""Every lab's full profile (`PROFILE="full"`), the path students take on Colab, runs end to end.

The real datasets cannot be fetched here, so a session fixture writes small synthetic copies in
the datasets' real on-disk layouts (``fl.datasets.make_synthetic``) into a data folder, and each
lab runs headlessly with ``PROFILE="full"`` against it, through the same loaders, label schemes
and code paths a real run takes. The overrides only shrink the run (image size, epochs, a
sample of faces, random instead of ImageNet weights, which cannot be downloaded offline);
they are parameters every lab documents.
"""

from __future__ import annotations

import pytest

from faceattr_lab import config
from faceattr_lab.course import runner
from faceattr_lab.datasets.synthetic import make_synthetic

pytestmark = [pytest.mark.full, pytest.mark.slow]

FIXTURE_SIZES = {"utkface": 300, "fairface": 120, "afad": 120, "adience": 160}
SMALL = {"PROFILE": "full", "IMAGE_SIZE": 32, "EPOCHS": 1, "BATCH_SIZE": 32}


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    """A data folder holding utkface/, fairface/, afad/ and adience/ in their real layouts."""
    root = tmp_path_factory.mktemp("data")
    for layout, n in FIXTURE_SIZES.items():
        make_synthetic(root / layout, layout, n=n, seed=7, image_size=64, workers=1)
    return root


def _run(lab, data_root, tmp_path, **parameters):
    row = runner.run_lab(lab, parameters=parameters, output=tmp_path,
                         env={config.DATA_ENV: str(data_root)})
    assert row["status"] == "ok", f"{row['lab']} (full profile) failed: {row['error']}"
    return row["results"]


def test_lab00_full_profile(data_root, tmp_path):
    results = _run("00", data_root, tmp_path, **SMALL)
    loaded = results["n_images"]
    # the UTKFace fixture's files, less the defects the generator wrote into it
    assert 0 < loaded <= FIXTURE_SIZES["utkface"]
    assert loaded + results["n_excluded"] == FIXTURE_SIZES["utkface"]


def test_lab01_full_profile(data_root, tmp_path):
    results = _run("01", data_root, tmp_path, PROFILE="full")
    assert results["n_images"] + results["n_excluded"] == FIXTURE_SIZES["utkface"]


def test_lab02_full_profile(data_root, tmp_path):
    results = _run("02", data_root, tmp_path, N_SEEDS=3, **SMALL)
    # all fourteen configurations of study C's tables, chosen on validation
    assert len(results["configs"]) == 14
    assert results["chosen_config"] in results["configs"]
    assert len(results["val_paired_difference"]["seeds"]) == 3


def test_lab03_full_profile(data_root, tmp_path):
    results = _run("03", data_root, tmp_path, WEIGHTS="random", TRAIN_BACKBONES="MobileNetV2",
                   COUNT_BACKBONES="MobileNetV2", FINE_TUNE_EPOCHS=1, **SMALL)
    assert {r["backbone"] for r in results["val_backbone_comparison"]} == {"MobileNetV2"}
    assert results["final_phase"] in results["val_loss_per_phase"]


def test_lab05_full_profile(data_root, tmp_path):
    # study A's protocol on its default dataset, FairFace (both official splits: the official
    # val is the test split), with its loss (npairs), t-SNE maps; one epoch per phase at 32 px,
    # and SmallVGG from scratch for ResNet50V2 (a fl.models.BACKBONES encoder too, the same
    # code path, built and traced in a fraction of the time)
    results = _run("05", data_root, tmp_path, ENCODER="SmallVGG",
                   VARIANTS="npairs", HEAD_EPOCHS=1, FINE_TUNE_EPOCHS=1, KNN_K=3, **SMALL)
    assert results["split_sizes"]["test"] > 0  # FairFace's official val, read as the test split
    assert results["chosen_variant"] == "npairs"
    assert results["final_phase"] in results["val_loss_per_phase"]
    assert results["no_recompile_changed_tensors"] == 0
    assert results["fine_tune_changed_tensors"] > 0
    assert set(results["test_accuracy"]["supcon"]) == {"gender", "age", "race"}


def test_lab04_full_profile(data_root, tmp_path):
    # the full path at toy size: two of the five test folds, and SmallVGG with random weights
    # in VGG16's place (the same fl.models.backbone path, traced in a fraction of the time)
    results = _run("04", data_root, tmp_path, WEIGHTS="random", CV_IMAGE_SIZE=40, CV_CROP=36,
                   CV_FILTERS="8,16,24", CV_EPOCHS=1, CV_BATCH_SIZE=32, CV_FOLDS="0,3",
                   SHARED_BACKBONE="SmallVGG", CONDITIONED_BACKBONE="SmallVGG",
                   CONDITIONED_EPOCHS=1, **SMALL)
    # the Adience fixture in its real layout: subject-exclusive folds, the chosen test folds
    assert results["subjects_in_two_folds"] == 0
    assert {row["fold"] for row in results["cv_folds"]} == {0, 3}
    # trained end to end with the backbone's top 4 weighted layers trainable
    conditioned = {row["model"] for row in results["val_conditioned"]}
    assert conditioned == {f"partly frozen SmallVGG, {mode}"
                           for mode in ("plain", "gating", "attention")}
    assert results["final_model"] in results["val_mean_accuracy"]


def test_lab07_full_profile(data_root, tmp_path):
    # study B's protocol on the FairFace fixture in its real layout (official val as test, the
    # validation carved from official train), trained on images augmented anew each epoch; at
    # toy size: SmallVGG with random weights in ResNet152V2's place, its last block trained
    results = _run("07", data_root, tmp_path, DATASET="fairface", BACKBONE="SmallVGG",
                   WEIGHTS="random", FINE_TUNE_LAYERS=8, PATIENCE=1, **SMALL)
    train = results["split_sizes"]["train"]
    assert results["expert_train_sizes"] == {"male": train, "female": train}
    assert sum(results["expert_own_faces"].values()) == train
    assert results["reload_max_difference"] == 0.0
    assert results["chosen_model"] in results["val_mean_accuracy"]
    assert set(results["test_accuracy"]) == {"gender", "age", "race"}


def test_lab06_full_profile(data_root, tmp_path):
    # CORAL's protocol on the UTKFace fixture: ages 21-60, random crops, a head per model; at
    # toy size, 40 px images with 32 px crops and the kit's SmallVGG from scratch in ResNet-34's
    # place for training (a documented BACKBONE; the ResNet-34 is still built and counted)
    results = _run("06", data_root, tmp_path, BACKBONE="smallvgg", CROP=32, PATIENCE=1,
                   **{**SMALL, "IMAGE_SIZE": 40})
    assert results["age_range"] == [21, 60] and results["num_ranks"] == 40
    assert sum(results["split_sizes"].values()) == results["faces_in_range"]
    assert results["resnet34_params"]["trainable"] == 21_284_672
    assert set(results["test_mae"]) == {"regression", "cross-entropy", "OR-CNN", "CORAL",
                                        "median baseline"}
    assert results["test_inconsistent_faces"]["CORAL"] == 0
    assert set(results["epochs_run"].values()) == {1}


def test_lab08_full_profile(data_root, tmp_path):
    # the audit on the FairFace fixture in its real layout (official val as the test split):
    # three training sets of one size, each fine-tuned on images augmented each epoch; at toy
    # size, SmallVGG with random weights in ResNet152V2's place, its last block trained, and
    # every group kept in the gap (the fixture's test split has a handful of faces per race)
    results = _run("08", data_root, tmp_path, BACKBONE="SmallVGG", WEIGHTS="random",
                   FINE_TUNE_LAYERS=8, PATIENCE=1, MIN_GROUP=1, CAM_FACES=2, **SMALL)
    sizes = results["train_set_sizes"]
    assert len(set(sizes.values())) == 1 and len(sizes) == 3 and results["models_trained"] == 3
    assert results["split_sizes"]["test"] > 0  # FairFace's official val, read as the test split
    assert results["chosen_model"] in sizes
    assert set(results["test_accuracy"]) == set(results["gradcam_center_share"]) == {
        "gender", "age", "race"}
    assert {r["by"] for r in results["test_by_group"]} == {"race", "gender", "gender x race"}


def test_lab09_full_profile(data_root, tmp_path):
    # FairFace in its real layout (official val as test, validation carved from official
    # train), a backbone fine-tuned on augmented images as lab 07's end-to-end model is; at toy
    # size: SmallVGG with random weights in ResNet152V2's place, its last block trained; then
    # the same detection, CSV, upload and export steps on the astronaut photo
    results = _run("09", data_root, tmp_path, DATASET="fairface", BACKBONE="SmallVGG",
                   WEIGHTS="random", FINE_TUNE_LAYERS=8, PATIENCE=1, TIMING_REPEATS=1, **SMALL)
    assert results["schemes"] == ["gender", "age_fairface9", "race_fairface7"]
    assert results["split_sizes"]["test"] > 0  # FairFace's official val, read as the test split
    assert set(results["val_accuracy"]) == {"gender", "age", "race"}
    assert results["astronaut_faces"] == 1 and results["model_input_size"] == 32
    statuses = {r["file"]: r["status"].split(":")[0] for r in results["csv_rows"]}
    assert statuses == {"astronaut.png": "ok", "astronaut_turned_small.jpg": "ok",
                        "broken.jpg": "unreadable", "coffee.jpg": "no face"}
    assert max(results["export_max_difference"].values()) <= 1e-5
