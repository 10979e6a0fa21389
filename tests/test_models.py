"""Every model family builds, trains one step, and round-trips through .keras (CPU, tiny)."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from faceattr_lab import labels, losses, models
from faceattr_lab.models import backbones, conditioned, fusion, heads, supcon
from faceattr_lab.models.cnn import custom_cnn

SIZE = 64
GENDER = labels.get("gender")
RACE = labels.get("race_utk5")
AGE_GROUP = labels.get("age_fairface9")
AGE_SCALED = labels.get("age_years_116")
AGE_CORAL = labels.get("coral_21_60")


def _images(count=4, size=SIZE, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (count, size, size, 3)).astype("float32")


def _targets(schemes, count=4, seed=0):
    rng = np.random.default_rng(seed)
    targets = {}
    for scheme in schemes:
        if scheme.kind == "regression":
            targets[scheme.output] = rng.uniform(0, 1, (count, 1)).astype("float32")
        else:
            targets[scheme.output] = rng.integers(0, scheme.num_classes, count)
    return targets


def _train_save_reload(model, schemes, tmp_path, size=SIZE, **compile_options):
    """Compile from the schemes, fit one step, save .keras, reload: same predictions."""
    models.compile_for(model, schemes, **compile_options)
    images = _images(size=size)
    history = model.fit(images, _targets(schemes), batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    before, after = model.predict(images, verbose=0), reloaded.predict(images, verbose=0)
    assert set(before) == {scheme.output for scheme in schemes}
    for key in before:
        np.testing.assert_allclose(after[key], before[key], rtol=1e-5, atol=1e-6)
    return history


def test_public_names_are_functions_even_after_their_modules_are_imported():
    # a submodule named like a function would replace it on the package once imported
    import faceattr_lab.models.conditioned  # noqa: F401
    import faceattr_lab.models.levi_hassner_cnn  # noqa: F401

    for name in models.__all__:
        assert not isinstance(getattr(models, name), type(keras)), name


# --- heads and CORAL ---------------------------------------------------------------------------

def test_coral_layer_has_one_weight_vector_and_k_minus_1_biases():
    layer = models.CoralOutput(5)
    features = np.random.default_rng(1).normal(size=(3, 16)).astype("float32")
    logits = keras.ops.convert_to_numpy(layer(features))
    assert sorted(tuple(weight.shape) for weight in layer.weights) == [(4,), (16, 1)]
    kernel, biases = layer.linear.kernel.numpy(), layer.biases.numpy()
    np.testing.assert_allclose(logits, features @ kernel + biases[None, :], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(biases, [1.0, 0.75, 0.5, 0.25])  # ordered: rank consistent


def test_coral_rank_and_probabilities_match_numpy():
    logits = np.array([[2.0, 0.5, -0.1, -3.0], [-1.0, -2.0, -3.0, -4.0]], dtype="float32")
    sigmoid = 1 / (1 + np.exp(-logits))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(losses.coral_predict(logits)),
                                  (sigmoid > 0.5).sum(axis=1))
    np.testing.assert_allclose(losses.coral_probabilities(logits), sigmoid, rtol=1e-6)
    classwise = keras.ops.convert_to_numpy(losses.coral_probabilities(logits, classwise=True))
    expected = np.concatenate([1 - sigmoid[:, :1], sigmoid[:, :-1] - sigmoid[:, 1:],
                               sigmoid[:, -1:]], axis=1)
    np.testing.assert_allclose(classwise, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(classwise.sum(axis=1), 1.0, rtol=1e-6)


def test_add_heads_follows_each_scheme_kind():
    features = keras.Input((8,))
    outputs = models.add_heads(features, [GENDER, AGE_SCALED, AGE_CORAL.__class__(
        **{**AGE_CORAL.__dict__, "output": "rank"})], hidden=4, dropout=0.2,
        regression_activation="sigmoid")
    model = keras.Model(features, outputs)
    x = np.random.default_rng(2).normal(size=(5, 8)).astype("float32")
    predictions = model.predict(x, verbose=0)

    def weights(name):
        return [weight.numpy() for weight in model.get_layer(name).weights]

    def hidden(output):  # Dense(4, relu); dropout is off at inference
        kernel, bias = weights(f"{output}_hidden")
        return np.maximum(x @ kernel + bias, 0)

    kernel, bias = weights("gender")  # softmax Dense(2)
    z = hidden("gender") @ kernel + bias
    softmax = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(predictions["gender"], softmax, rtol=1e-5, atol=1e-6)
    kernel, bias = weights("age")  # sigmoid Dense(1)
    sigmoid = 1 / (1 + np.exp(-(hidden("age") @ kernel + bias)))
    np.testing.assert_allclose(predictions["age"], sigmoid, rtol=1e-5, atol=1e-6)
    coral = model.get_layer("rank")  # CORAL: one shared weight vector, K-1 biases
    kernel, biases = coral.linear.kernel.numpy(), coral.biases.numpy()
    assert kernel.shape == (4, 1) and biases.shape == (AGE_CORAL.num_classes - 1,)
    np.testing.assert_allclose(predictions["rank"], hidden("rank") @ kernel + biases[None, :],
                               rtol=1e-5, atol=1e-5)


def test_add_heads_and_compile_for_reject_bad_arguments():
    features = keras.Input((8,))
    with pytest.raises(ValueError, match="regression_activation"):
        models.add_heads(features, [AGE_SCALED], regression_activation="tanh")
    with pytest.raises(ValueError, match="share an output"):
        models.add_heads(features, [AGE_GROUP, AGE_SCALED])
    model = keras.Model(features, models.add_heads(features, [GENDER]))
    with pytest.raises(ValueError, match="no output"):
        models.compile_for(model, [RACE])
    with pytest.raises(ValueError, match="not heads"):
        models.compile_for(model, [GENDER], loss_weights={"age": 2.0})


def test_compile_for_picks_losses_and_metrics_per_kind():
    features = keras.Input((8,))
    model = keras.Model(features, models.add_heads(features, [GENDER, AGE_CORAL]))
    models.compile_for(model, [GENDER, AGE_CORAL], optimizer="rmsprop", learning_rate=0.01,
                       loss_weights={"age": 2.0})
    assert isinstance(model.optimizer, keras.optimizers.RMSprop)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)
    targets = _targets([GENDER, AGE_CORAL], count=8)
    history = model.fit(np.ones((8, 8), "float32"), targets, epochs=1, verbose=0)
    assert {"gender_accuracy", "age_mae", "gender_loss", "age_loss"} <= set(history.history)
    # the rank MAE against an independent count of positive logits
    logits = model.predict(np.ones((8, 8), "float32"), verbose=0)["age"]
    expected = np.abs((logits > 0).sum(axis=1) - targets["age"]).mean()
    metric = heads.CoralRankMAE()
    metric.update_state(targets["age"], logits)
    assert float(metric.result()) == pytest.approx(expected)


def test_count_params():
    inputs = keras.Input((3,))
    frozen = keras.layers.Dense(4, name="frozen")
    outputs = keras.layers.Dense(2)(frozen(inputs))
    frozen.trainable = False
    counts = models.count_params(keras.Model(inputs, outputs))
    assert counts == {"trainable": 10, "non_trainable": 16, "total": 26}


# --- custom CNN (study C) ----------------------------------------------------------------------

@pytest.mark.parametrize("bn_order", ["bn_relu", "relu_bn", "none"])
def test_custom_cnn_trains_and_round_trips(tmp_path, bn_order):
    schemes = [AGE_SCALED, GENDER]
    model = custom_cnn((SIZE, SIZE, 3), schemes, conv_filters=(8, 16), dense_units=32,
                       bn_order=bn_order, age_activation="sigmoid")
    _train_save_reload(model, schemes, tmp_path, loss_weights={"age": 2.0})
    layer_kinds = [type(layer).__name__ for layer in model.layers]
    if bn_order == "none":
        assert "BatchNormalization" not in layer_kinds
    else:
        conv = layer_kinds.index("Conv2D")
        expected = (["BatchNormalization", "ReLU"] if bn_order == "bn_relu"
                    else ["ReLU", "BatchNormalization"])
        assert layer_kinds[conv + 1:conv + 3] == expected


def test_custom_cnn_separate_heads_share_no_weights():
    schemes = [AGE_SCALED, GENDER]
    model = custom_cnn((32, 32, 3), schemes, conv_filters=(4, 8), dense_units=8, separate=True)
    images = _images(size=32)
    gender_before = model.predict(images, verbose=0)["gender"]
    for layer in model.layers:  # wipe the age network: gender must not move
        if layer.name.startswith("age"):
            for weight in layer.weights:
                weight.assign(np.zeros(weight.shape, "float32"))
    np.testing.assert_allclose(model.predict(images, verbose=0)["gender"], gender_before)
    with pytest.raises(ValueError, match="at least 16 px"):
        custom_cnn((8, 8, 3), schemes, conv_filters=(4, 8, 8, 8))


# --- backbones and transfer models (studies B, E) ----------------------------------------------

PREPROCESS_MODULES = {"VGG16": "vgg16", "VGG19": "vgg19", "ResNet50": "resnet50",
                      "ResNet50V2": "resnet_v2", "ResNet152V2": "resnet_v2",
                      "Xception": "xception", "InceptionResNetV2": "inception_resnet_v2",
                      "MobileNetV2": "mobilenet_v2", "DenseNet121": "densenet",
                      "DenseNet201": "densenet", "EfficientNetB0": "efficientnet"}


def test_every_backbone_has_a_reference_preprocess():
    # SmallVGG is the kit's own: it scales to [-1, 1] as keras.applications' "tf" mode does
    assert set(PREPROCESS_MODULES) | {"SmallVGG"} == set(models.BACKBONES)
    assert models.BACKBONES["SmallVGG"].preprocess == "tf"


@pytest.mark.parametrize("name", sorted(PREPROCESS_MODULES))
def test_preprocess_layer_matches_keras_applications(name):
    images = _images(count=2, size=8, seed=4)
    module = getattr(keras.applications, PREPROCESS_MODULES[name])
    expected = module.preprocess_input(images.copy())
    layer = backbones.Preprocess(models.BACKBONES[name].preprocess)
    np.testing.assert_allclose(layer(images), expected, rtol=1e-5, atol=1e-4)


# Published parameter counts of the keras.applications models WITH their ImageNet top (the
# "Total params" of model.summary(), also in the papers' tables), minus that top:
# GlobalAveragePooling + Dense(1000) on F features = F * 1000 + 1000 weights; VGG's top is
# Flatten(7 * 7 * 512 = 25088) -> Dense(4096) -> Dense(4096) -> Dense(1000).
_VGG_TOP = (25088 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 1000 + 1000)  # 123,642,856
NOTOP_PARAMS = {
    "VGG16": 138_357_544 - _VGG_TOP,                     # 14,714,688
    "VGG19": 143_667_240 - _VGG_TOP,                     # 20,024,384
    "ResNet50": 25_636_712 - (2048 * 1000 + 1000),       # 23,587,712
    "ResNet50V2": 25_613_800 - (2048 * 1000 + 1000),     # 23,564,800
    "ResNet152V2": 60_380_648 - (2048 * 1000 + 1000),    # 58,331,648
    "Xception": 22_910_480 - (2048 * 1000 + 1000),       # 20,861,480
    "InceptionResNetV2": 55_873_736 - (1536 * 1000 + 1000),  # 54,336,736
    "MobileNetV2": 3_538_984 - (1280 * 1000 + 1000),     # 2,257,984
    "DenseNet121": 8_062_504 - (1024 * 1000 + 1000),     # 7,037,504
    "DenseNet201": 20_242_984 - (1920 * 1000 + 1000),    # 18,321,984
    "EfficientNetB0": 5_330_571 - (1280 * 1000 + 1000),  # 4,049,571
}
# MobileNetV2's BatchNorm layers hold 17,056 channels in all: 34,112 non-trainable moving
# means and variances (its published "Non-trainable params") and as many gammas and betas.
MOBILENET_V2_BN_STATS = 34_112


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PREPROCESS_MODULES))
def test_every_backbone_builds_at_its_minimum_size(name):
    spec = models.BACKBONES[name]
    model = models.backbone(name, (spec.min_size, spec.min_size, 3), weights=None)
    assert len(model.output.shape) == 2 and not model.trainable_weights
    assert spec.citation and isinstance(model.get_layer("preprocess"), backbones.Preprocess)
    # the whole application without its top, frozen, and the Preprocess layer adds nothing
    assert models.count_params(model) == {"trainable": 0, "non_trainable": NOTOP_PARAMS[name],
                                          "total": NOTOP_PARAMS[name]}


def test_mobilenet_v2_parameter_counts_frozen_and_trainable():
    frozen = models.backbone("MobileNetV2", (32, 32, 3), weights=None)
    assert models.count_params(frozen)["total"] == 2_257_984 == NOTOP_PARAMS["MobileNetV2"]
    assert models.count_params(frozen)["trainable"] == 0
    trainable = models.backbone("MobileNetV2", (32, 32, 3), weights=None, trainable=True)
    # everything but the BatchNorm moving statistics trains
    assert models.count_params(trainable) == {
        "trainable": 2_257_984 - MOBILENET_V2_BN_STATS,  # 2,223,872
        "non_trainable": MOBILENET_V2_BN_STATS, "total": 2_257_984}
    assert frozen.output.shape == (None, 1280)


def test_backbone_rejects_unknown_names_small_images_and_missing_files(tmp_path):
    with pytest.raises(ValueError, match="choose one of.*ResNet50V2"):
        models.backbone("ResNet18", (64, 64, 3))
    with pytest.raises(ValueError, match=r"unknown backbone 'resnet50'.*'ResNet50'"):
        models.transfer_model("resnet50", (64, 64, 3), [GENDER], weights=None)
    with pytest.raises(ValueError, match="at least 71x71"):
        models.backbone("Xception", (64, 64, 3), weights=None)
    with pytest.raises(ValueError, match="is not a file"):
        models.backbone("MobileNetV2", (32, 32, 3), weights=tmp_path / "missing.weights.h5")


def test_imagenet_weights_argument_reaches_keras(monkeypatch):
    seen = {}
    original = keras.applications.mobilenet_v2.MobileNetV2

    def recording(**kwargs):
        seen.update(kwargs)
        return original(**{**kwargs, "weights": None})  # no download offline

    monkeypatch.setattr(keras.applications.mobilenet_v2, "MobileNetV2", recording)
    models.backbone("MobileNetV2", (32, 32, 3), weights="imagenet")
    assert seen["weights"] == "imagenet" and seen["include_top"] is False


def test_backbone_weights_file_round_trips(tmp_path):
    saved = models.backbone("MobileNetV2", (32, 32, 3), weights=None)
    path = tmp_path / "mobilenet.weights.h5"
    saved.save_weights(path)
    keras.utils.set_random_seed(123)  # a different random start, so loading must do the work
    loaded = models.backbone("MobileNetV2", (32, 32, 3), weights=path)
    fresh = models.backbone("MobileNetV2", (32, 32, 3), weights=None)
    for original, restored in zip(saved.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(restored.numpy(), original.numpy())
    assert any(not np.array_equal(a.numpy(), b.numpy())
               for a, b in zip(saved.trainable_variables or saved.weights, fresh.weights))


def _conv_kernels(model):
    application = model.get_layer("mobilenetv2").get_layer("mobilenetv2_application")
    return {layer.name: layer.kernel.numpy().copy() for layer in application.layers
            if isinstance(layer, keras.layers.Conv2D)}


def _batchnorm_means(model):
    application = model.get_layer("mobilenetv2").get_layer("mobilenetv2_application")
    return {layer.name: layer.moving_mean.numpy().copy() for layer in application.layers
            if isinstance(layer, keras.layers.BatchNormalization)}


def test_transfer_model_freeze_unfreeze_recompiles(tmp_path):
    schemes = [GENDER, AGE_GROUP, RACE]
    model = models.transfer_model("MobileNetV2", (32, 32, 3), schemes, weights=None,
                                  hidden=8, dropout=0.2)
    history = _train_save_reload(model, schemes, tmp_path, size=32, loss_weights={"race": 0.5})
    frozen_counts = models.count_params(model)
    # trainable while frozen: the heads only, Dense(1280 -> 8) + Dense(8 -> K) per task
    assert frozen_counts["trainable"] == sum(1280 * 8 + 8 + 8 * s.num_classes + s.num_classes
                                             for s in schemes)
    images, targets = _images(size=32), _targets(schemes)
    probabilities = model.predict(images, verbose=0)
    for scheme in schemes:  # softmax heads: one probability per class, summing to 1
        assert probabilities[scheme.output].shape == (4, scheme.num_classes)
        np.testing.assert_allclose(probabilities[scheme.output].sum(axis=1), 1.0, rtol=1e-5)
        assert (probabilities[scheme.output] > 0).all()

    kernels = _conv_kernels(model)
    head_kernel = model.get_layer("gender").kernel.numpy().copy()
    model.fit(images, targets, epochs=1, verbose=0)
    assert all(np.array_equal(kernels[name], value)
               for name, value in _conv_kernels(model).items())
    assert not np.array_equal(model.get_layer("gender").kernel.numpy(), head_kernel)  # heads train

    returned = models.unfreeze(model, n_layers=20, learning_rate=0.05)
    assert returned is model
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05)
    assert models.count_params(model)["trainable"] > frozen_counts["trainable"]
    assert model.get_compile_config()["loss_weights"] == {"gender": 1.0, "age": 1.0, "race": 0.5}
    means = _batchnorm_means(model)
    unfrozen_history = model.fit(images, targets, epochs=1, verbose=0)
    assert set(unfrozen_history.history) == set(history.history)  # same losses and metrics
    changed = [name for name, value in _conv_kernels(model).items()
               if not np.array_equal(kernels[name], value)]
    assert changed and "Conv_1" in changed and "Conv1" not in changed  # only the last layers
    assert all(np.array_equal(means[name], value)  # BatchNorm kept frozen
               for name, value in _batchnorm_means(model).items())

    models.freeze(model, "MobileNetV2")
    assert models.count_params(model)["trainable"] == frozen_counts["trainable"]
    kernels = _conv_kernels(model)
    model.fit(images, targets, epochs=1, verbose=0)
    assert all(np.array_equal(kernels[name], value)
               for name, value in _conv_kernels(model).items())


def test_unfreeze_recompiles_a_model_compiled_by_hand():
    model = models.transfer_model("MobileNetV2", (32, 32, 3), [GENDER], weights=None)
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss={"gender": "sparse_categorical_crossentropy"})
    models.unfreeze(model, learning_rate=0.001)
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.001)
    # the whole backbone but its BatchNorm layers (gammas and betas too), plus the gender head
    assert models.count_params(model)["trainable"] == (
        2_257_984 - 2 * MOBILENET_V2_BN_STATS + (1280 * 2 + 2))  # 2,192,322
    with pytest.raises(ValueError, match="no layer named"):
        models.freeze(model, "VGG16")


# --- gender-conditioned multi-task models (study E) --------------------------------------------

@pytest.mark.parametrize("mode", ["gating", "attention"])
def test_gender_conditioned_trains_and_round_trips(tmp_path, mode):
    schemes = [GENDER, AGE_GROUP, RACE]
    model = conditioned.gender_conditioned("MobileNetV2", (SIZE, SIZE, 3), schemes, mode=mode,
                                      embedding_dim=16, frozen_until=-3, weights=None)
    base = model.get_layer("mobilenetv2")
    trainable_backbone = [layer.name for layer in backbones._flat_layers(base)
                          if layer.trainable_weights]
    # the last 3 layers WITH weights (BatchNorm stays frozen): two of block 16 and Conv_1
    assert trainable_backbone == ["block_16_depthwise", "block_16_project", "Conv_1"]
    assert model.get_layer("gender_gate" if mode == "gating" else "gender_attention")
    _train_save_reload(model, schemes, tmp_path)
    with pytest.raises(ValueError, match="needs a 'gender' scheme"):
        conditioned.gender_conditioned("MobileNetV2", (32, 32, 3), [AGE_GROUP], weights=None)


def test_gender_conditioned_plain_is_the_unconditioned_control():
    """mode="plain": the same gender branch, the other heads on the pooled features."""
    schemes = [GENDER, AGE_GROUP, RACE]
    model = conditioned.gender_conditioned("MobileNetV2", (SIZE, SIZE, 3), schemes,
                                           mode="plain", embedding_dim=16, frozen_until="all",
                                           weights=None)
    names = {layer.name for layer in model.layers}
    assert "gender_gate" not in names and "gender_attention" not in names
    channels = 1280  # MobileNetV2's pooled features
    # by hand: the embedding, the gender head on it, age and race heads on the pooled features
    expected = ((channels + 1) * 16 + (16 + 1) * 2 + (channels + 1) * AGE_GROUP.num_classes
                + (channels + 1) * RACE.num_classes)
    assert models.count_params(model)["trainable"] == expected
    gated = conditioned.gender_conditioned("MobileNetV2", (SIZE, SIZE, 3), schemes,
                                           mode="gating", embedding_dim=16, frozen_until="all",
                                           weights=None)
    # gating adds exactly its gate: Dense(embedding -> channels, sigmoid)
    assert models.count_params(gated)["trainable"] == expected + (16 + 1) * channels
    with pytest.raises(ValueError, match="'plain' conditions nothing"):
        conditioned.gender_conditioned("MobileNetV2", (SIZE, SIZE, 3), schemes, mode="film",
                                       weights=None)


@pytest.mark.parametrize("mode", ["plain", "gating", "attention"])
def test_conditioned_heads_on_stored_maps_equal_the_frozen_end_to_end_model(mode):
    """Lab 04's shortcut: heads on a frozen backbone's stored feature maps, same outputs."""
    schemes = [GENDER, AGE_GROUP, RACE]
    full = conditioned.gender_conditioned("MobileNetV2", (SIZE, SIZE, 3), schemes, mode=mode,
                                          embedding_dim=16, frozen_until="all", weights=None)
    base = full.get_layer("mobilenetv2")
    heads = conditioned.conditioned_heads(base.output.shape[1:], schemes, mode=mode,
                                          embedding_dim=16)
    assert models.count_params(heads)["trainable"] == models.count_params(full)["trainable"]
    for layer in heads.layers:
        if layer.weights:
            layer.set_weights(full.get_layer(layer.name).get_weights())
    images = np.random.default_rng(0).uniform(0, 255, (3, SIZE, SIZE, 3)).astype("float32")
    expected = full(images, training=False)
    got = heads(base(images, training=False), training=False)
    for output in ("gender", "age", "race"):
        np.testing.assert_allclose(got[output], expected[output], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="feature map"):
        conditioned.conditioned_heads((1280,), schemes)


# --- gender-specific fusion (study B) ----------------------------------------------------------

def _constant_expert(value, name):
    """An age+race model whose outputs are the same for every image."""
    images = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(images)
    outputs = {
        key: keras.layers.Dense(size, kernel_initializer="zeros",
                                bias_initializer=keras.initializers.Constant(value),
                                name=key)(pooled)
        for key, size in (("age", 9), ("race", 5))
    }
    return keras.Model(images, outputs, name=name)


def _brightness_gender_model():
    """'female' (index 1) for bright images, 'male' for dark ones."""
    images = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(images)
    gender = keras.layers.Dense(2, activation="softmax", name="gender")
    outputs = {"gender": gender(pooled)}
    gender.set_weights([np.array([[0.0, 0.01]] * 3, "float32"), np.array([1.0, 0.0], "float32")])
    return keras.Model(images, outputs, name="expert")


def test_fusion_routes_each_face_to_its_gender_expert(tmp_path):
    gender_model = _brightness_gender_model()
    fused = models.gender_fusion(gender_model, _constant_expert(1.0, "expert"),
                                 _constant_expert(2.0, "expert"))
    images = np.zeros((4, 32, 32, 3), "float32")
    images[[1, 2]] = 255.0  # bright faces -> female
    predictions = fused.predict(images, verbose=0)
    np.testing.assert_allclose(predictions["gender"],
                               gender_model.predict(images, verbose=0)["gender"])
    for key in ("age", "race"):
        np.testing.assert_array_equal(predictions[key][:, 0], [1.0, 2.0, 2.0, 1.0])
    path = tmp_path / "fusion.keras"
    fused.save(path)
    reloaded = keras.models.load_model(path).predict(images, verbose=0)
    for key in predictions:
        np.testing.assert_allclose(reloaded[key], predictions[key])


def test_fusion_rejects_experts_that_do_not_match():
    images = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(images)
    only_age = keras.Model(images, {"age": keras.layers.Dense(9, name="age")(pooled)})
    with pytest.raises(ValueError, match="share their outputs"):
        models.gender_fusion(_brightness_gender_model(), _constant_expert(1.0, "m"), only_age)


def test_split_by_gender_refuses_missing_gender():
    import pandas as pd

    table = pd.DataFrame({"gender": pd.array([0, 1, 1, 0], dtype="Int64")})
    male, female = fusion.split_by_gender(table)
    assert list(male.index) == [0, 3] and list(female.index) == [1, 2]
    with pytest.raises(ValueError, match="1 rows have no gender"):
        fusion.split_by_gender(pd.DataFrame({"gender": pd.array([0, None], dtype="Int64")}))


# --- SupCon (study A) --------------------------------------------------------------------------

def test_supcon_projection_then_frozen_classifier(tmp_path):
    from faceattr_lab import losses

    schemes = [GENDER, RACE]
    encoder = models.supcon_encoder("cnn", (SIZE, SIZE, 3), conv_filters=(8, 16))
    projection = models.projection_model(encoder, schemes, dim=16)
    assert projection.output["race"].shape == (None, 16)
    projection.compile(optimizer="adam", loss={scheme.output: losses.SupConLoss()
                                               for scheme in schemes})
    images, targets = _images(), _targets(schemes)
    before_supcon = [weight.numpy().copy() for weight in encoder.trainable_weights]
    projection.fit(images, targets, epochs=1, verbose=0)
    # the SupCon phase trains the encoder itself, not only the projection heads
    assert any(not np.array_equal(weight.numpy(), before)
               for weight, before in zip(encoder.trainable_weights, before_supcon, strict=True))
    # keras_io head: Dense(16, relu) on the encoder's embedding
    embedding = encoder.predict(images, verbose=0)
    kernel, bias = (weight.numpy() for weight in projection.get_layer("race").weights)
    np.testing.assert_allclose(projection.predict(images, verbose=0)["race"],
                               np.maximum(embedding @ kernel + bias, 0), rtol=1e-4, atol=1e-5)

    encoder_weights = [weight.numpy().copy() for weight in encoder.weights]
    classifier = models.classifier_model(encoder, schemes, hidden=8)
    assert models.count_params(classifier)["trainable"] == sum(
        8 * 17 + 9 * scheme.num_classes for scheme in schemes)  # heads only
    _train_save_reload(classifier, schemes, tmp_path)
    for before, after in zip(encoder_weights, encoder.weights, strict=True):
        np.testing.assert_array_equal(after.numpy(), before)

    path = tmp_path / "projection.keras"
    projection.save(path)
    reloaded = keras.models.load_model(path, compile=False)
    np.testing.assert_allclose(reloaded.predict(images, verbose=0)["gender"],
                               projection.predict(images, verbose=0)["gender"], rtol=1e-5)


def test_supcon_encoder_from_a_backbone_name_or_a_model():
    encoder = models.supcon_encoder("MobileNetV2", (32, 32, 3))
    assert encoder.name == "encoder" and encoder.output.shape == (None, 1280)
    # trained from scratch: everything but the BatchNorm moving statistics is trainable
    assert models.count_params(encoder)["trainable"] == 2_257_984 - MOBILENET_V2_BN_STATS
    assert supcon.supcon_encoder(encoder) is encoder
    with pytest.raises(ValueError, match="use 'cnn'"):
        models.supcon_encoder("resnet", (32, 32, 3))


# --- masked multi-task losses (issue #9): each head learns from its labelled rows -----------------
RANK = dataclasses.replace(labels.coral(21, 24), output="rank")  # 4 ranks, 3 CORAL logits
MASKED_SCHEMES = [GENDER, RACE, AGE_SCALED, RANK]


def _tiny_multitask(schemes, seed=0, binary_sigmoid=True):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8,))
    trunk = keras.layers.Dense(16, activation="tanh", name="trunk")(inputs)
    return keras.Model(inputs, models.add_heads(trunk, schemes, binary_sigmoid=binary_sigmoid))


def _head_loss_by_hand(scheme, y, out, w):
    """Mean over labelled rows of w * loss, in float64 numpy, from the head's outputs."""
    y, out, w = np.asarray(y, np.float64), np.asarray(out, np.float64), np.asarray(w, np.float64)
    if scheme.kind == "regression":
        labelled = ~np.isnan(y)
        per_row = (out[:, 0] - np.nan_to_num(y)) ** 2
    else:
        labelled = y >= 0
        yi = np.where(labelled, y, 0).astype(int)
        if scheme.kind == "ordinal":  # CORAL: BCE over the tasks "rank > k"
            levels = (yi[:, None] > np.arange(out.shape[1])[None, :]).astype(float)
            log_p = -np.log1p(np.exp(-out))
            per_row = -(levels * log_p + (1 - levels) * (log_p - out)).sum(axis=1)
        elif out.shape[1] == 1:   # one sigmoid unit
            p = out[:, 0]
            per_row = -(yi * np.log(p) + (1 - yi) * np.log(1 - p))
        else:                     # softmax
            per_row = -np.log(out[np.arange(len(yi)), yi])
    return (w * per_row)[labelled].sum() / max(labelled.sum(), 1)


def _masked_targets(count=12, seed=3):
    rng = np.random.default_rng(seed)
    gender = rng.integers(0, 2, count)
    gender[::2] = -1                                  # half the rows lack gender
    race = rng.integers(0, 5, count)
    race[[1, 4]] = -1
    age = rng.uniform(0, 1, count).astype("float32")
    age[1::2] = np.nan                                # the other half lack age
    rank = rng.integers(0, 4, count)
    rank[[0, 3, 5]] = -1
    return {"gender": gender, "race": race, "age": age, "rank": rank}


@pytest.mark.parametrize("weighted", [False, True])
def test_compile_for_masks_every_head_and_matches_the_loss_by_hand(weighted):
    model = _tiny_multitask(MASKED_SCHEMES)
    models.compile_for(model, MASKED_SCHEMES, loss_weights={"age": 2.0})
    for scheme in MASKED_SCHEMES:
        assert isinstance(model.loss[scheme.output], losses.MaskedLoss)
        assert model.loss[scheme.output].kind == scheme.kind
    assert isinstance(model.loss["gender"].loss, keras.losses.BinaryCrossentropy)  # 1 unit
    assert isinstance(model.loss["rank"].loss, losses.CoralLoss)
    x = np.random.default_rng(1).normal(size=(12, 8)).astype("float32")
    y = _masked_targets()
    rng = np.random.default_rng(2)
    weights = {o: (rng.uniform(0.5, 3, 12).astype("float32") if weighted
                   else np.ones(12, "float32")) for o in y}
    predictions = model(x)
    total = model.compute_loss(x=x, y=y, y_pred=predictions,
                               sample_weight=weights if weighted else None)
    expected = sum({"age": 2.0}.get(s.output, 1.0) * _head_loss_by_hand(
        s, y[s.output], predictions[s.output].numpy(), weights[s.output])
        for s in MASKED_SCHEMES)
    assert float(total) == pytest.approx(expected, rel=1e-5)


def test_masked_metrics_score_labelled_rows_only():
    accuracy = heads.MaskedMetric("accuracy", "classification")
    probabilities = np.array([[.9, .1], [.2, .8], [.6, .4], [.3, .7]], "float32")
    accuracy.update_state(np.array([0, -1, 1, 1]), probabilities)   # right, -, wrong, right
    assert float(accuracy.result()) == pytest.approx(2 / 3)
    accuracy.update_state(np.array([0, 1, -1, -1]), probabilities,
                          sample_weight=np.array([3.0, 1.0, 5.0, 5.0]))  # right x3, right x1
    assert float(accuracy.result()) == pytest.approx((2 + 4) / (3 + 4))
    mae = heads.MaskedMetric("mae", "regression")
    mae.update_state(np.array([1.0, np.nan, -2.0]), np.array([[1.5], [9.0], [0.0]]))
    assert float(mae.result()) == pytest.approx((0.5 + 2.0) / 2)
    coral_mae = heads.MaskedMetric("coral_mae", "ordinal")   # predicted ranks: 2, 0, 3
    coral_mae.update_state(np.array([0, -1, 1]), np.array([[1., .5, -1], [-1, -1, -1],
                                                           [2., 2., 2.]]))
    assert float(coral_mae.result()) == pytest.approx((2 + 2) / 2)
    binary = heads.MaskedMetric("binary_accuracy", "classification")
    binary.update_state(np.array([1, -1, 0]), np.array([[.8], [.9], [.7]]))
    assert float(binary.result()) == pytest.approx(0.5)
    assert keras.metrics.deserialize(keras.metrics.serialize(coral_mae)).kind == "ordinal"
    with pytest.raises(ValueError, match="metric"):
        heads.MaskedMetric("auc")


def test_head_moves_only_from_its_labelled_rows():
    schemes = [GENDER, AGE_SCALED]
    x = np.random.default_rng(4).normal(size=(8, 8)).astype("float32")
    y = {"gender": np.array([-1, 1, -1, 0, -1, 1, -1, 0]),
         "age": np.array([.2, np.nan, .5, np.nan, .9, np.nan, .1, np.nan], "float32")}
    model = _tiny_multitask(schemes, binary_sigmoid=False)
    models.compile_for(model, schemes)

    def head_gradients(inputs, targets):
        with tf.GradientTape() as tape:
            loss = model.compute_loss(x=inputs, y=targets, y_pred=model(inputs))
        head = model.get_layer("gender").trainable_weights
        return [g.numpy() for g in tape.gradient(loss, head)]

    # the gender head's gradient from the whole batch is the one from its labelled rows alone
    rows = np.flatnonzero(y["gender"] >= 0)
    alone = {"gender": y["gender"][rows], "age": np.full(len(rows), np.nan, "float32")}
    for full, labelled in zip(head_gradients(x, y), head_gradients(x[rows], alone)):
        assert np.isfinite(full).all()
        np.testing.assert_allclose(full, labelled, rtol=1e-5, atol=1e-7)

    # a batch with no gender label leaves the gender head exactly where it was
    no_gender = {"gender": np.full(8, -1), "age": y["age"].copy()}
    no_gender["age"][1::2] = 0.3
    before = {layer: [w.numpy().copy() for w in model.get_layer(layer).weights]
              for layer in ("gender", "age", "trunk")}
    logs = model.train_on_batch(x, no_gender, return_dict=True)
    assert np.isfinite(logs["loss"]) and logs["gender_loss"] == 0.0
    for layer, moved in (("gender", False), ("age", True), ("trunk", True)):
        after = [w.numpy() for w in model.get_layer(layer).weights]
        assert any(not np.array_equal(a, b) for a, b in zip(after, before[layer])) == moved, layer


def test_multitask_model_learns_from_the_union_of_partial_rows(tmp_path):
    """Half the rows lack gender, the other half lack age: both heads still learn."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(256, 8)).astype("float32")
    gender = (x[:, 0] > 0).astype("int64")
    age = (0.5 + 0.2 * np.tanh(x[:, 1])).astype("float32")
    y = {"gender": np.where(np.arange(256) % 2 == 0, -1, gender),
         "age": np.where(np.arange(256) % 2 == 1, np.nan, age).astype("float32")}
    schemes = [GENDER, AGE_SCALED]
    model = _tiny_multitask(schemes, seed=1)
    models.compile_for(model, schemes, learning_rate=0.01)
    first = model.evaluate(x, y, verbose=0, return_dict=True)
    history = model.fit(x, y, batch_size=32, epochs=20, verbose=0)
    assert all(np.isfinite(history.history["loss"]))
    last = model.evaluate(x, y, verbose=0, return_dict=True)
    # accuracy and MAE on each head's labelled rows, checked against the predictions by hand
    out = model.predict(x, verbose=0)
    odd, even = np.arange(256) % 2 == 1, np.arange(256) % 2 == 0
    hand_accuracy = ((out["gender"][odd, 0] > 0.5) == gender[odd]).mean()
    hand_mae = np.abs(out["age"][even, 0] - age[even]).mean()
    assert last["gender_accuracy"] == pytest.approx(hand_accuracy, abs=1e-6)
    assert last["age_mae"] == pytest.approx(hand_mae, rel=1e-4)
    assert hand_accuracy > 0.9 and first["gender_loss"] > 2 * last["gender_loss"]
    assert last["age_mae"] < 0.6 * first["age_mae"]

    # the compiled model round-trips through .keras with its masked losses and metrics
    path = tmp_path / "masked.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert isinstance(reloaded.loss["gender"], losses.MaskedLoss)
    again = reloaded.evaluate(x, y, verbose=0, return_dict=True)
    for key, value in last.items():
        assert again[key] == pytest.approx(value, rel=1e-5), key
    reloaded.fit(x[:32], {k: v[:32] for k, v in y.items()}, epochs=1, verbose=0)


def test_class_weights_of_fit_compose_with_the_mask():
    """fl.train.fit(class_weight=...) feeds per-output weights (1 for a masked -1 label): the
    masked loss is the mean over labelled rows of weight * loss."""
    from faceattr_lab import pipeline, train

    schemes = [GENDER, RACE]
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 4, 3))
    features = keras.layers.Dense(6, activation="tanh")(keras.layers.Flatten()(inputs / 255.0))
    model = keras.Model(inputs, models.add_heads(features, schemes))
    models.compile_for(model, schemes)
    images = np.random.default_rng(0).integers(0, 256, (10, 4, 4, 3)).astype("uint8")
    targets = {"gender": np.array([0, 1, -1, 1, 0, -1, -1, 1, 0, 0]),
               "race": np.array([4, -1, 2, 0, -1, 1, 3, -1, 0, 2])}
    class_weight = {"gender": {0: 2.0, 1: 0.5}, "race": {0: 3.0, 2: 0.25}}
    ds = train.with_class_weights(pipeline.from_arrays(images, targets, batch_size=10),
                                  class_weight)
    x, y, w = next(iter(ds))
    predictions = model(x)
    expected = 0.0
    for scheme in schemes:
        labels = targets[scheme.output]
        table = class_weight[scheme.output]
        weights = np.array([table.get(int(c), 1.0) for c in labels])  # masked rows: anything
        expected += _head_loss_by_hand(scheme, labels, predictions[scheme.output].numpy(),
                                       weights)
    total = model.compute_loss(x=x, y=y, y_pred=predictions, sample_weight=w)
    assert float(total) == pytest.approx(expected, rel=1e-5)
