"""Under ``mixed_float16`` every model family's outputs stay float32 (CPU, tiny models).

Keras' mixed precision guide: a model's last layer must compute in float32, so that softmax
probabilities, logits and projections (and the losses on them) are not float16. These tests
build each family under the policy, run a forward pass and check each output's dtype.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from faceattr_lab import labels, train
from faceattr_lab.models import (backbones, cnn, conditioned, fusion, levi_hassner_cnn,
                                 supcon)

GENDER = labels.get("gender")
RACE = labels.get("race_utk5")
AGE_GROUP = labels.get("age_fairface9")
AGE_CORAL = labels.get("coral_21_60")
SIZE = 32


@pytest.fixture
def mixed_float16():
    """The mixed_float16 global policy for one test, float32 again afterwards (even on failure)."""
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _images(size=SIZE, count=3):
    return np.random.default_rng(0).uniform(0, 255, (count, size, size, 3)).astype("float32")


def _check_outputs(model, schemes, size=SIZE, expect=None):
    """Forward pass; every output float32, softmax rows summing to 1."""
    outputs = model(_images(size), training=False)
    assert isinstance(outputs, dict)
    assert set(outputs) == set(expect or [scheme.output for scheme in schemes])
    for key, value in outputs.items():
        assert keras.backend.standardize_dtype(value.dtype) == "float32", (model.name, key)
        assert np.all(np.isfinite(np.asarray(value))), (model.name, key)
    for scheme in schemes:
        value = np.asarray(outputs[scheme.output])
        if scheme.kind == "classification" and value.shape[-1] == scheme.num_classes:
            np.testing.assert_allclose(value.sum(axis=-1), 1.0, atol=1e-3)
    return outputs


def test_the_fixture_really_switches_the_policy(mixed_float16):
    # guards the tests below: under the policy a plain Dense computes in float16
    dense = keras.layers.Dense(2)
    assert keras.backend.standardize_dtype(dense(np.ones((1, 3), "float32")).dtype) == "float16"


def test_custom_cnn_with_ordinal_and_sigmoid_gender_heads(mixed_float16):
    schemes = [GENDER, RACE, AGE_CORAL]
    model = cnn.custom_cnn((SIZE, SIZE, 3), schemes, conv_filters=(4, 8), dense_units=8,
                           sigmoid_gender=True)
    outputs = _check_outputs(model, schemes)
    assert outputs["gender"].shape[-1] == 1                       # the binary sigmoid head
    assert np.all((np.asarray(outputs["gender"]) >= 0) & (np.asarray(outputs["gender"]) <= 1))
    assert outputs["age"].shape[-1] == AGE_CORAL.num_classes - 1  # CORAL logits


def test_levi_hassner(mixed_float16):
    size = levi_hassner_cnn.minimum_size()
    schemes = [GENDER, AGE_GROUP]
    model = levi_hassner_cnn.levi_hassner((size, size, 3), schemes, dense_units=8)
    _check_outputs(model, schemes, size=size)


def test_transfer_model(mixed_float16):
    schemes = [GENDER, RACE]
    model = backbones.transfer_model("MobileNetV2", (SIZE, SIZE, 3), schemes, weights=None)
    _check_outputs(model, schemes)


@pytest.mark.parametrize("mode", conditioned.MODES)
def test_gender_conditioned(mixed_float16, mode):
    schemes = [GENDER, AGE_GROUP, RACE]
    model = conditioned.gender_conditioned("MobileNetV2", (SIZE, SIZE, 3), schemes, mode=mode,
                                           embedding_dim=8, weights=None)
    _check_outputs(model, schemes)


def test_gender_fusion(mixed_float16):
    def expert(name):
        return cnn.custom_cnn((SIZE, SIZE, 3), [AGE_GROUP, RACE], conv_filters=(4,),
                              dense_units=8, name=name)

    gender_model = cnn.custom_cnn((SIZE, SIZE, 3), [GENDER], conv_filters=(4,), dense_units=8,
                                  sigmoid_gender=False)
    fused = fusion.gender_fusion(gender_model, expert("male"), expert("female"))
    _check_outputs(fused, [GENDER, AGE_GROUP, RACE])


@pytest.mark.parametrize("head", supcon.PROJECTION_HEADS)
def test_supcon_projection_and_classifier(mixed_float16, head):
    # seeded: with some random draws the tiny encoder's ReLUs are all dead on these images,
    # the projection is the zero vector and has no unit-length version (order-dependent flake)
    keras.utils.set_random_seed(0)
    schemes = [GENDER, RACE]
    encoder = supcon.supcon_encoder("cnn", (SIZE, SIZE, 3), conv_filters=(4, 8))
    projection = supcon.projection_model(encoder, schemes, dim=8, head=head)
    outputs = _check_outputs(projection, [], expect=["gender", "race"])
    if head == "supcontrast":   # L2-normalised in float32
        np.testing.assert_allclose(np.linalg.norm(np.asarray(outputs["race"]), axis=-1), 1.0,
                                   rtol=1e-5)
    classifier = supcon.classifier_model(encoder, schemes, hidden=8)
    _check_outputs(classifier, schemes)


def test_enable_mixed_precision_if_gpu_follows_the_device_list(monkeypatch):
    try:
        monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
        assert train.enable_mixed_precision_if_gpu() is False
        assert keras.mixed_precision.global_policy().name == "float32"
        fake_gpu = tf.config.PhysicalDevice(name="/physical_device:GPU:0", device_type="GPU")
        monkeypatch.setattr(tf.config, "list_physical_devices",
                            lambda kind=None: [fake_gpu] if kind in (None, "GPU") else [])
        assert train.enable_mixed_precision_if_gpu() is True
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
    finally:
        keras.mixed_precision.set_global_policy("float32")
