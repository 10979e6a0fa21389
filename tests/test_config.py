"""Parameter checks: settings() validates every standard value; check_parameter, parse_names."""

from __future__ import annotations

import math
import re

import pytest

from faceattr_lab import config


@pytest.fixture(autouse=True)
def _folders(tmp_path, monkeypatch):
    monkeypatch.setenv(config.DATA_ENV, str(tmp_path / "data"))
    monkeypatch.setenv(config.OUTPUT_ENV, str(tmp_path / "out"))


# --- settings -------------------------------------------------------------------------------

def test_settings_accepts_valid_values(tmp_path):
    weights = tmp_path / "mine.weights.h5"
    weights.write_bytes(b"")
    data = tmp_path / "my_data"
    data.mkdir()
    run = config.settings("99_test", "full", seed=0, dataset="fairface", image_size=32,
                          epochs=1, batch_size=1, n_images=0, weights=str(weights),
                          data_root=str(data), min_image_size=32)
    assert (run.dataset, run.image_size, run.epochs, run.batch_size) == ("fairface", 32, 1, 1)
    assert (run.seed, run.n_images, run.data_root) == (0, 0, data)
    assert run.weights == str(weights)
    assert config.settings("99_test", "quick", n_images=100).n_images == 100
    assert config.settings("99_test", "full", weights="imagenet").weights == "imagenet"
    assert config.settings("99_test", "full", weights="random").weights is None


def test_settings_bounds_are_inclusive():
    assert config.settings("99_test", image_size=48, min_image_size=48).image_size == 48
    assert config.settings("99_test", n_images=config.MIN_SYNTHETIC_IMAGES).n_images == 100


@pytest.mark.parametrize("kwargs, typed", [
    ({"profile": "fast"}, "PROFILE='fast'"),
    ({"profile": None}, "PROFILE=None"),
    ({"dataset": "celeba"}, "DATASET='celeba'"),
    ({"image_size": 0}, "IMAGE_SIZE=0"),
    ({"image_size": -32}, "IMAGE_SIZE=-32"),
    ({"image_size": 64.5}, "IMAGE_SIZE=64.5"),
    ({"image_size": "64"}, "IMAGE_SIZE='64'"),
    ({"image_size": True}, "IMAGE_SIZE=True"),
    ({"epochs": 0}, "EPOCHS=0"),
    ({"epochs": 2.0}, "EPOCHS=2.0"),
    ({"epochs": False}, "EPOCHS=False"),
    ({"batch_size": -1}, "BATCH_SIZE=-1"),
    ({"batch_size": True}, "BATCH_SIZE=True"),
    ({"n_images": 50}, "N_IMAGES=50"),
    ({"n_images": 0}, "N_IMAGES=0"),
    ({"n_images": 99}, "N_IMAGES=99"),
    ({"n_images": 3000.0}, "N_IMAGES=3000.0"),
    ({"dataset": "utkface", "n_images": -1}, "N_IMAGES=-1"),
    ({"seed": -1}, "SEED=-1"),
    ({"seed": 1.5}, "SEED=1.5"),
    ({"seed": True}, "SEED=True"),
    ({"seed": None}, "SEED=None"),
    ({"weights": 3}, "WEIGHTS=3"),
    ({"weights": "no_such.weights.h5"}, "WEIGHTS='no_such.weights.h5'"),
    ({"data_root": "/no/such/folder"}, "DATA_DIR='/no/such/folder'"),
])
def test_settings_names_the_bad_parameter(kwargs, typed):
    with pytest.raises(ValueError) as error:
        config.settings("99_test", **kwargs)
    message = str(error.value)
    assert message.startswith(typed + ":"), message
    assert "; set " in message or "; fix " in message  # says what to do instead


def test_settings_min_image_size_says_why():
    with pytest.raises(ValueError, match=r"IMAGE_SIZE=8: .*at least 32 px.*set IMAGE_SIZE"):
        config.settings("99_test", image_size=8, min_image_size=32)
    # the lab's own default is checked too, not only what the student typed
    with pytest.raises(ValueError, match=r"IMAGE_SIZE=32: .*at least 64 px"):
        config.settings("99_test", min_image_size=64)
    with pytest.raises(ValueError, match="min_image_size"):
        config.settings("99_test", min_image_size=0)


def test_settings_missing_files_say_they_do_not_exist(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        config.settings("99_test", "full", weights=str(tmp_path / "gone.weights.h5"))
    with pytest.raises(ValueError, match="no such folder"):
        config.settings("99_test", data_root=tmp_path / "gone")
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="DATA_DIR"):
        config.settings("99_test", data_root=a_file)  # a file is not a folder


def test_settings_n_images_zero_means_all_of_a_real_dataset():
    assert config.PROFILE_DEFAULTS["full"]["n_images"] == 0  # the full profile's "all"
    assert config.settings("99_test", "full").n_images == 0
    assert config.settings("99_test", "quick", dataset="utkface", n_images=0).n_images == 0
    # synthetic data has no "all": the full profile on synthetic data uses the quick set's size
    synthetic = config.settings("99_test", "full", dataset="synthetic")
    assert synthetic.n_images == config.PROFILE_DEFAULTS["quick"]["n_images"]
    with pytest.raises(ValueError, match="N_IMAGES=0: synthetic"):
        config.settings("99_test", "full", dataset="synthetic", n_images=0)


def test_settings_suggests_the_labs_default():
    with pytest.raises(ValueError, match=r"None for this lab's default \(16 in the quick"):
        config.settings("99_test", batch_size=0, lab_defaults={"quick": {"batch_size": 16}})
    # a parameter the lab does not default through lab_defaults gets no "None" advice
    with pytest.raises(ValueError, match=r"EPOCHS=0") as caught:
        config.settings("99_test", epochs=0, lab_defaults={"quick": {"batch_size": 16}})
    assert "None" not in str(caught.value)


def test_settings_fails_before_writing_results(tmp_path):
    out = tmp_path / "never"
    with pytest.raises(ValueError):
        config.settings("99_test", epochs=0, output=out)
    assert not out.exists()


# --- check_parameter ------------------------------------------------------------------------

@pytest.mark.parametrize("value, kwargs, expected", [
    (3, {"kind": int}, 3),
    (1e-4, {"kind": float, "minimum": 1e-6, "maximum": 1.0}, 1e-4),
    (1, {"kind": float}, 1.0),
    (0, {"kind": int, "minimum": 0}, 0),  # bounds are inclusive
    (10, {"kind": int, "maximum": 10}, 10),
    (3, {"kind": (int, str)}, 3),
    ("avg", {"kind": (int, str)}, "avg"),
    (None, {"kind": int, "allow_none": True}, None),
    ("max", {"choices": ("avg", "max")}, "max"),
    ("b", {"choices": {"a": 1, "b": 2}}, "b"),
    (True, {"kind": bool}, True),
    (2.5, {}, 2.5),
])
def test_check_parameter_passes_valid_values(value, kwargs, expected):
    result = config.check_parameter("X", value, **kwargs)
    assert result == expected and type(result) is type(expected)


def test_check_parameter_float_returns_float_and_int_stays_int():
    assert type(config.check_parameter("LR", 1, kind=float)) is float
    assert type(config.check_parameter("N", 1, kind=(int, float))) is int
    np = pytest.importorskip("numpy")
    assert type(config.check_parameter("N", np.int64(5), kind=int)) is int
    assert type(config.check_parameter("LR", np.float32(0.5), kind=float)) is float


@pytest.mark.parametrize("value, kwargs, rule", [
    (-1.0, {"kind": float, "minimum": 1e-6}, ">= 1e-06"),
    (2.0, {"kind": float, "maximum": 1.0}, "<= 1.0"),
    (True, {"kind": int}, "an int"),
    (False, {"kind": float}, "a number"),
    (1.5, {"kind": int}, "an int"),
    ("3", {"kind": int}, "an int"),
    (None, {"kind": int}, "an int"),
    ("fast", {"choices": ["quick", "full"]}, "one of 'full', 'quick'"),
    ("c", {"choices": {"b": 1, "a": 2}}, "one of 'a', 'b'"),
    (math.nan, {"kind": float}, "not NaN"),
    (math.nan, {"kind": float, "minimum": 0.0}, ">= 0.0"),
    ([1], {"kind": int, "minimum": 0}, "an int"),
])
def test_check_parameter_rejects_with_name_value_rule_and_advice(value, kwargs, rule):
    with pytest.raises(ValueError) as error:
        config.check_parameter("MY_PARAM", value, **kwargs)
    message = str(error.value)
    assert message.startswith(f"MY_PARAM={value!r}: must be "), message
    assert rule in message
    assert "; set MY_PARAM to " in message


def test_check_parameter_says_bounds_are_inclusive_and_suggests_a_value():
    with pytest.raises(ValueError) as error:
        config.check_parameter("FINE_TUNE_LR", -1.0, kind=float, minimum=1e-6, maximum=1.0)
    message = str(error.value)
    assert "inclusive" in message and re.search(r"e\.g\. 1e-06\b", message)
    with pytest.raises(ValueError, match=r"e\.g\. 0\.0001 \(a number, without quotes\)"):
        config.check_parameter("FINE_TUNE_LR", "1e-4", kind=float)
    with pytest.raises(ValueError, match=r"e\.g\. 20\b"):
        config.check_parameter("FINE_TUNE_LAYERS", 50, kind=int, maximum=20)


@pytest.mark.parametrize("kwargs", [
    {"kind": "int"}, {"kind": ()}, {"minimum": 5, "maximum": 1},
])
def test_check_parameter_rejects_bad_rules(kwargs):
    with pytest.raises(ValueError, match="pass"):
        config.check_parameter("X", 3, **kwargs)


# --- parse_names ----------------------------------------------------------------------------

BACKBONES = {"MobileNetV2": 1, "VGG16": 2, "VGG19": 3, "Xception": 4}


def test_parse_names_splits_and_strips():
    assert config.parse_names("TRAIN_BACKBONES", "MobileNetV2, VGG16", BACKBONES) == \
        ["MobileNetV2", "VGG16"]
    assert config.parse_names("T", " Xception ", ["Xception"]) == ["Xception"]
    assert config.parse_names("T", "VGG19,MobileNetV2", iter(BACKBONES)) == ["VGG19", "MobileNetV2"]


def test_parse_names_lists_unknown_names_and_sorted_choices():
    with pytest.raises(ValueError) as error:
        config.parse_names("TRAIN_BACKBONES", "MobileNetV2, ResNet9, vgg16", BACKBONES)
    message = str(error.value)
    assert message.startswith("TRAIN_BACKBONES='MobileNetV2, ResNet9, vgg16':")
    assert "'ResNet9'" in message and "'vgg16'" in message
    assert "'MobileNetV2', 'VGG16', 'VGG19', 'Xception'" in message  # sorted choices
    assert "unknown 'ResNet9', 'vgg16'" in message  # the known name is not listed as unknown


@pytest.mark.parametrize("text", ["", " ", "VGG16,", "VGG16,,VGG19", ", VGG16"])
def test_parse_names_rejects_empty_items(text):
    with pytest.raises(ValueError, match="TRAIN_BACKBONES=.*empty"):
        config.parse_names("TRAIN_BACKBONES", text, BACKBONES)


@pytest.mark.parametrize("text", [None, 3, ["VGG16"]])
def test_parse_names_rejects_non_strings(text):
    with pytest.raises(ValueError, match="TRAIN_BACKBONES=.*comma-separated"):
        config.parse_names("TRAIN_BACKBONES", text, BACKBONES)


def test_parse_names_rejects_repeats():
    with pytest.raises(ValueError, match="'VGG16' more than once"):
        config.parse_names("TRAIN_BACKBONES", "VGG16, MobileNetV2, VGG16", BACKBONES)
