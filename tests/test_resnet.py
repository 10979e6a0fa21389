"""fl.models.resnet34 (lab 06): He et al.'s ResNet-34 as a Functional model."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import faceattr_lab as fl


def _resnet_trainable(blocks=(3, 4, 6, 3), filters=(64, 128, 256, 512)) -> int:
    """Conv kernels (no bias) + BatchNorm gamma and beta, counted from the paper's table."""
    total = 7 * 7 * 3 * 64 + 2 * 64  # stem convolution and its BatchNorm
    c_in = 64
    for stage, (count, c) in enumerate(zip(blocks, filters)):
        for block in range(count):
            total += 9 * c_in * c + 9 * c * c + 2 * (2 * c)  # two 3x3 convolutions + BNs
            if c_in != c:  # the first block of stages 2-4: 1x1 projection + BN
                total += c_in * c + 2 * c
            c_in = c
    return total


def test_hand_count_matches_torchvision():
    # torchvision's resnet34: 21,797,672 parameters, of which fc is 512 * 1000 + 1000
    assert _resnet_trainable() == 21_797_672 - (512 * 1000 + 1000) == 21_284_672


def test_resnet34_parameters_and_shapes():
    model = fl.models.resnet34((120, 120, 3))
    counts = fl.models.count_params(model)
    assert counts["trainable"] == _resnet_trainable()
    # BatchNorm's moving mean and variance: 2 per channel of every BatchNorm
    assert counts["non_trainable"] == (_resnet_trainable() - sum(
        np.prod(w.shape) for w in model.trainable_weights if len(w.shape) == 4))
    assert model.output.shape == (None, 512)
    assert len([layer for layer in model.layers if layer.name.endswith("_add")]) == 16


@pytest.mark.parametrize("ordinal, extra", [("coral", 512 + 39), ("independent", 512 * 39 + 39)])
def test_resnet_heads(ordinal, extra):
    scheme = fl.labels.coral(21, 60)
    model = fl.models.resnet34((64, 64, 3), [scheme], blocks=(1, 1, 1, 1), ordinal=ordinal)
    assert model.output["age"].shape == (None, 39)
    assert fl.models.count_params(model)["trainable"] == _resnet_trainable((1, 1, 1, 1)) + extra


def test_resnet_saves_and_loads(tmp_path):
    scheme = fl.labels.coral(0, 5)
    model = fl.models.resnet34((32, 32, 3), [scheme], blocks=(1, 1, 1, 1))
    fl.models.compile_for(model, [scheme])
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    path = tmp_path / "resnet.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(images, verbose=0)["age"],
                               model.predict(images, verbose=0)["age"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kwargs, word", [
    ({"input_shape": (16, 16, 3)}, "at least 32"), ({"input_shape": (64, 64)}, "height, width"),
    ({"blocks": (3, 4, 6)}, "four positive"), ({"ordinal": "orcnn"}, "independent")])
def test_resnet_bad_arguments(kwargs, word):
    arguments = {"input_shape": (64, 64, 3), **kwargs}
    with pytest.raises(ValueError, match=word):
        fl.models.resnet34(**arguments)
