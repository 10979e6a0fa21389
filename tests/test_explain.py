"""Tests for Grad-CAM (Lab 08; Selvaraju et al. 2017). Independent references: with
conv -> global average pooling -> linear layer, Grad-CAM equals Zhou et al.'s (2016) CAM, computed
here in numpy from the conv maps and the dense weights; a model that only sees the left half of
the image puts its heat there; a kit backbone (nested models) works end to end."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import faceattr_lab as fl
from faceattr_lab import explain


def _cam_model(activation, units):
    keras.utils.set_random_seed(1)
    images = keras.Input((8, 8, 3), name="image")
    maps = keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="conv")(images)
    pooled = keras.layers.GlobalAveragePooling2D()(maps)
    head = keras.layers.Dense(units, activation=activation, name="race")(pooled)
    return keras.Model(images, {"race": head}), keras.Model(images, maps)


def _normalised(cam):
    cam = np.maximum(cam, 0)
    peak = cam.reshape(len(cam), -1).max(axis=1)[:, None, None]
    return np.where(peak > 0, cam / np.where(peak > 0, peak, 1), 0)


@pytest.mark.parametrize("activation", [None, "softmax"])
def test_grad_cam_equals_cam_for_gap_then_linear(activation):
    model, conv = _cam_model(activation, 3)
    x = np.random.default_rng(0).uniform(0, 255, (4, 8, 8, 3)).astype("float32")
    maps = conv.predict(x, verbose=0)  # (4, 8, 8, 5)
    weights = model.get_layer("race").kernel.numpy()  # (5, 3)
    logits = maps.mean(axis=(1, 2)) @ weights + model.get_layer("race").bias.numpy()
    for class_index in (None, 2, np.array([0, 1, 2, 0])):
        chosen = logits.argmax(axis=1) if class_index is None else np.broadcast_to(class_index, 4)
        # CAM (Zhou et al. 2016): ReLU(sum_k w_kc A_k), at the conv's 8 x 8 = the input size
        reference = _normalised(np.einsum("nhwk,kn->nhw", maps, weights[:, chosen]))
        got = explain.grad_cam(model, x, "race", class_index=class_index)
        assert got.shape == (4, 8, 8) and got.dtype == np.float32
        np.testing.assert_allclose(got, reference, atol=1e-5)


def test_single_sigmoid_unit_uses_plus_and_minus_logit():
    model, conv = _cam_model("sigmoid", 1)
    x = np.random.default_rng(1).uniform(0, 255, (3, 8, 8, 3)).astype("float32")
    maps = conv.predict(x, verbose=0)
    w = model.get_layer("race").kernel.numpy()[:, 0]
    for cls, sign in ((1, 1.0), (0, -1.0)):
        reference = _normalised(sign * np.einsum("nhwk,k->nhw", maps, w))
        got = explain.grad_cam(model, x, "race", class_index=cls)
        np.testing.assert_allclose(got, reference, atol=1e-5)


class _LeftHalf(keras.layers.Layer):
    """Zeroes the right half of feature maps: what follows sees only columns 0..W/2-1."""

    def call(self, x):
        width = x.shape[2]
        mask = np.concatenate([np.ones(width // 2), np.zeros(width - width // 2)])
        return x * keras.ops.convert_to_tensor(mask.reshape(1, 1, width, 1), x.dtype)


def test_a_model_that_sees_only_the_left_half_looks_there():
    keras.utils.set_random_seed(2)
    images = keras.Input((16, 12, 3), name="image")  # not square: rows and columns differ
    maps = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(images)
    left = _LeftHalf(name="left")(maps)
    pooled = keras.layers.GlobalAveragePooling2D()(left)
    head = keras.layers.Dense(2, activation="softmax", name="gender")(pooled)
    model = keras.Model(images, {"gender": head})
    x = np.random.default_rng(3).uniform(0, 255, (3, 16, 12, 3)).astype("float32")
    heat = explain.grad_cam(model, x, "gender", class_index=[0, 1, 0])  # layer: "left"
    assert heat.shape == (3, 16, 12)
    assert np.isfinite(heat).all()  # a map without positive evidence is all 0, not NaN
    total = heat.sum(axis=(1, 2))
    hot = total > 0
    assert hot.sum() >= 2
    assert np.all(heat[hot][:, :, :6].sum(axis=(1, 2)) / total[hot] > 0.99)  # left 6 of 12
    assert np.allclose(heat[hot].max(axis=(1, 2)), 1.0)


@pytest.fixture(scope="module")
def kit_model():
    keras.utils.set_random_seed(0)
    base = fl.models.backbone("SmallVGG", (32, 32, 3), weights=None)
    images = keras.Input((32, 32, 3), name="image")
    heads = fl.models.add_heads(base(images), fl.labels.resolve(["gender", "race_utk5"]))
    return keras.Model(images, heads)


def test_kit_backbone_model_works_through_nested_models(kit_model):
    x = np.random.default_rng(4).uniform(0, 255, (5, 32, 32, 3)).astype("float32")
    for output in ("gender", "race"):
        heat = explain.grad_cam(kit_model, x, output, batch_size=2)
        assert heat.shape == (5, 32, 32) and heat.dtype == np.float32
        assert np.isfinite(heat).all() and heat.min() >= 0 and heat.max() <= 1
    # a named layer inside the nested application; one class for all faces
    heat = explain.grad_cam(kit_model, x, "race", class_index=4, layer="block3_relu2")
    assert heat.shape == (5, 32, 32) and np.isfinite(heat).all()
    # the tapped forward pass reproduces the model's own outputs
    path = explain._target_path(kit_model, None, explain._record(kit_model, x[:1])["steps"])
    assert path[-1].name == "block4_relu2"
    outputs = explain._forward(kit_model, x, path, lambda a: a)
    expected = kit_model.predict(x, verbose=0)
    np.testing.assert_allclose(np.asarray(outputs["race"]), expected["race"], atol=1e-5)


def test_bad_arguments_say_what_to_do(kit_model):
    x = np.zeros((2, 32, 32, 3), "float32")
    with pytest.raises(ValueError, match="outputs are"):
        explain.grad_cam(kit_model, x, "age")
    with pytest.raises(ValueError, match=r"0\.\.1"):
        explain.grad_cam(kit_model, x, "gender", class_index=2)
    with pytest.raises(ValueError, match="one int"):
        explain.grad_cam(kit_model, x, "gender", class_index=[0, 1, 1])
    with pytest.raises(ValueError, match="no layer"):
        explain.grad_cam(kit_model, x, "gender", layer="conv99")
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        explain.grad_cam(kit_model, x[0], "gender")


def test_gradcam_grid_lays_out_faces_and_overlays():
    from faceattr_lab import plots

    faces = np.random.default_rng(5).uniform(0, 255, (3, 8, 8, 3))
    heat = {"gender": np.random.default_rng(6).random((3, 8, 8)), "race": np.zeros((3, 8, 8))}
    fig = plots.gradcam_grid(faces, heat, titles={"gender": ["female 0.93", "male 0.61", "x"]},
                             face_titles=["Black", "White", "Indian"])
    assert isinstance(fig, plots.PhotoFigure)
    titles = [ax.get_title() for ax in fig.axes]
    assert "gender head\nfemale 0.93" in titles and "male 0.61" in titles
    assert "face\nBlack" in titles and "White" in titles
    with pytest.raises(ValueError, match="face_titles"):
        plots.gradcam_grid(faces, heat, face_titles=["Black"])
    assert sum(bool(ax.get_images()) for ax in fig.axes) == 9  # 3 faces x (face + 2 overlays)
    with pytest.raises(ValueError, match="one \\(H, W\\) map per face"):
        plots.gradcam_grid(faces, {"gender": np.zeros((2, 8, 8))})
    with pytest.raises(ValueError, match="titles"):
        plots.gradcam_grid(faces, heat, titles={"age": ["a", "b", "c"]})


def test_a_backbone_called_once_per_head_gives_the_same_maps(kit_model):
    # lab 07's deployed models call the backbone once per head: two runs of the target layer
    base = kit_model.get_layer("smallvgg")
    images = keras.Input((32, 32, 3), name="image")
    twice = keras.Model(images, {name: kit_model.get_layer(name)(base(images))
                                 for name in ("gender", "race")})
    x = np.random.default_rng(7).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    for output in ("gender", "race"):
        np.testing.assert_allclose(explain.grad_cam(twice, x, output),
                                   explain.grad_cam(kit_model, x, output), atol=1e-5)
