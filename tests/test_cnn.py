"""Study C's custom CNN, exactly: the final model's layers and parameters, and its grid."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from faceattr_lab import experiments, labels
from faceattr_lab.models.cnn import STUDY_C, custom_cnn

AGE, GENDER = labels.get("age_years_116"), labels.get("gender")


def _conv(k, c_in, c_out):  # weights + biases of a k x k convolution
    return k * k * c_in * c_out + c_out


def _bn(c):  # gamma, beta (trainable) and moving mean, variance (not trainable)
    return 4 * c


def test_study_c_final_model_layer_by_layer_at_128px():
    model = custom_cnn((128, 128, 3), [AGE, GENDER])
    # study C's final model: four 3x3 'same' convs 128-64-32-32, each BN -> ReLU -> 2x2 pool;
    # Flatten; Dropout 0.6; Dense 512; BN; ReLU; age Dense(1) linear; gender Dense(1) sigmoid
    expected = ["InputLayer", "Rescaling"]
    expected += ["Conv2D", "BatchNormalization", "ReLU", "MaxPooling2D"] * 4
    expected += ["Flatten", "Dropout", "Dense", "BatchNormalization", "ReLU", "Dense", "Dense"]
    assert [type(layer).__name__ for layer in model.layers] == expected
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [128, 64, 32, 32]
    assert all(c.kernel_size == (3, 3) and c.padding == "same" for c in convs)
    assert model.get_layer("dropout").rate == 0.6
    assert model.get_layer("dense").units == 512
    assert model.get_layer("flatten").output.shape[-1] == 8 * 8 * 32  # 128 / 2**4 = 8
    age, gender = model.get_layer("age"), model.get_layer("gender")
    assert (age.units, age.activation.__name__) == (1, "linear")
    assert (gender.units, gender.activation.__name__) == (1, "sigmoid")
    by_hand = (_conv(3, 3, 128) + _bn(128) + _conv(3, 128, 64) + _bn(64)
               + _conv(3, 64, 32) + _bn(32) + _conv(3, 32, 32) + _bn(32)
               + (8 * 8 * 32) * 512 + 512 + _bn(512)
               + (512 + 1) + (512 + 1))
    assert by_hand == 1_158_274
    assert model.count_params() == by_hand
    assert {b.momentum for b in model.layers
            if isinstance(b, keras.layers.BatchNormalization)} == {0.99}


def test_study_c_model_compiles_with_binary_cross_entropy_for_gender():
    from faceattr_lab.models import compile_for

    model = custom_cnn((32, 32, 3), [AGE, GENDER], conv_filters=(4, 4), dense_units=8)
    compile_for(model, [AGE, GENDER], loss_weights={"age": 2.0})
    images = np.random.default_rng(0).uniform(0, 255, (6, 32, 32, 3)).astype("float32")
    age = np.linspace(0.1, 0.9, 6).astype("float32")
    gender = np.array([0, 1, 1, 0, 1, 0])
    scores = model.evaluate(images, {"age": age, "gender": gender}, return_dict=True, verbose=0)
    out = model.predict(images, verbose=0)
    p = np.clip(out["gender"][:, 0], 1e-7, 1 - 1e-7)
    bce = -np.mean(gender * np.log(p) + (1 - gender) * np.log(1 - p))
    mse = np.mean((out["age"][:, 0] - age) ** 2)
    assert scores["gender_loss"] == pytest.approx(bce, rel=1e-4)
    assert scores["loss"] == pytest.approx(2 * mse + bce, rel=1e-4)


def test_relu_bn_order_applies_to_every_block_and_the_dense_layer():
    model = custom_cnn((32, 32, 3), [AGE, GENDER], conv_filters=(4, 4), dense_units=8,
                       bn_order="relu_bn")
    kinds = [type(layer).__name__ for layer in model.layers]
    for index, kind in enumerate(kinds):
        if kind in ("Conv2D",) or (kind == "Dense" and model.layers[index].name == "dense"):
            assert kinds[index + 1:index + 3] == ["ReLU", "BatchNormalization"]


def test_full_grid_is_study_c_tables_one_knob_at_a_time():
    base = {k: STUDY_C[k] for k in ("conv_filters", "dropout", "dense_units")}
    configs = experiments.ablation_configs(base, **experiments.STUDY_C_ABLATIONS)
    assert list(configs) == [
        "base", "conv_filters=128-64-32", "conv_filters=128-64-32-16",
        "conv_filters=128-64-64-32", "conv_filters=128-64-64-32-32", "bn_order=relu_bn",
        "age_activation=relu", "dense_units=1024", "dropout=0.4", "dropout=0.5", "dropout=0.7",
        "optimizer=rmsprop", "augment=True", "separate=True"]
    # the knobs' defaults are the study's final model and training
    assert experiments.DEFAULT_KNOBS["conv_filters"] == (128, 64, 32, 32)
    assert experiments.DEFAULT_KNOBS["dropout"] == 0.6
    assert experiments.DEFAULT_KNOBS["optimizer"] == "adam"
