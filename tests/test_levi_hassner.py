"""Levi & Hassner's CNN (study D): Caffe's layer sizes and parameter count, LRN, tiny training.

Levi & Hassner (2015), "Age and Gender Classification using Convolutional Neural Networks",
CVPR Workshops (AMFG). Their Caffe network: conv1 96 7x7/4 (valid) -> ReLU -> max-pool 3/2 ->
LRN, conv2 256 5x5 (pad 2) -> ReLU -> max-pool 3/2 -> LRN, conv3 384 3x3 (pad 1) -> ReLU ->
max-pool 3/2, fc 512 -> ReLU -> dropout, fc 512 -> ReLU -> dropout, softmax. Caffe rounds
pooling output sizes up: out = ceil((in - 3) / 2) + 1.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from faceattr_lab import labels, models
from faceattr_lab.models import levi_hassner_cnn

GENDER = labels.get("gender")
AGE8 = labels.get("age_adience8")
AGE_GROUP = labels.get("age_fairface9")

# -- sizes at 227 px, by hand ------------------------------------------------------------------
# conv1: (227 - 7) // 4 + 1 = 220 // 4 + 1 = 56
# pool1: ceil((56 - 3) / 2) + 1 = ceil(26.5) + 1 = 28       (floor mode would give 27)
# conv2: 5x5 pad 2 keeps 28
# pool2: ceil((28 - 3) / 2) + 1 = ceil(12.5) + 1 = 14       (floor: 13)
# conv3: 3x3 pad 1 keeps 14
# pool3: ceil((14 - 3) / 2) + 1 = ceil(5.5) + 1 = 7         (floor: 6)
# flatten: 7 * 7 * 384 = 18,816
SIZES_227 = {"conv1": (56, 56, 96), "pool1": (28, 28, 96), "norm1": (28, 28, 96),
             "conv2": (28, 28, 256), "pool2": (14, 14, 256), "norm2": (14, 14, 256),
             "conv3": (14, 14, 384), "pool3": (7, 7, 384), "flatten": (18816,),
             "fc1": (512,), "fc2": (512,)}
# parameters: weights + biases per layer
CONV1 = 7 * 7 * 3 * 96 + 96        # 14,112 + 96 = 14,208
CONV2 = 5 * 5 * 96 * 256 + 256     # 614,400 + 256 = 614,656
CONV3 = 3 * 3 * 256 * 384 + 384    # 884,736 + 384 = 885,120
FC1 = 18816 * 512 + 512            # 9,633,792 + 512 = 9,634,304
FC2 = 512 * 512 + 512              # 262,144 + 512 = 262,656
AGE_HEAD = 512 * 8 + 8             # 4,096 + 8 = 4,104
GENDER_HEAD = 512 * 2 + 2          # 1,024 + 2 = 1,026
TRUNK = 14208 + 614656 + 885120 + 9634304 + 262656  # 11,410,944


def test_hand_arithmetic_is_consistent():
    assert (CONV1, CONV2, CONV3, FC1, FC2) == (14208, 614656, 885120, 9634304, 262656)
    assert CONV1 + CONV2 + CONV3 + FC1 + FC2 == TRUNK
    assert TRUNK + AGE_HEAD == 11_415_048


@pytest.mark.parametrize("schemes, heads", [
    ([AGE8], {"age": (8, 11_415_048)}),
    ([GENDER], {"gender": (2, 11_411_970)}),        # 11,410,944 + 1,026
    ([AGE8, GENDER], {"age": (8, None), "gender": (2, None)}),
], ids=["age8", "gender2", "multi-task"])
def test_caffe_sizes_and_parameters_at_227px(schemes, heads):
    model = levi_hassner_cnn.levi_hassner((227, 227, 3), schemes)
    for name, shape in SIZES_227.items():
        assert tuple(model.get_layer(name).output.shape[1:]) == shape, name
    assert model.get_layer("conv1").strides == (4, 4)
    expected_layers = {"conv1": CONV1, "conv2": CONV2, "conv3": CONV3, "fc1": FC1, "fc2": FC2}
    for name, count in expected_layers.items():
        assert model.get_layer(name).count_params() == count, name
    total = TRUNK
    for output, (classes, alone) in heads.items():
        head = model.get_layer(output)
        assert tuple(head.output.shape[1:]) == (classes,)
        assert head.count_params() == 512 * classes + classes
        total += 512 * classes + classes
        if alone is not None:
            assert total == alone
    assert set(model.output) == set(heads)
    assert model.count_params() == total
    assert models.count_params(model)["total"] == total
    if len(heads) == 2:
        assert total == 11_416_074  # 11,410,944 + 4,104 + 1,026


def _caffe_max_pool(x: np.ndarray, k: int = 3, s: int = 2) -> np.ndarray:
    """Caffe's max-pool (pad 0, ceil mode) in numpy: windows clipped at the border."""
    height, width = x.shape[1:3]
    out_h = -((k - height) // s) + 1
    out_w = -((k - width) // s) + 1
    out = np.zeros((x.shape[0], out_h, out_w, x.shape[3]), x.dtype)
    for i in range(out_h):
        for j in range(out_w):
            window = x[:, i * s:min(i * s + k, height), j * s:min(j * s + k, width)]
            out[:, i, j] = window.max(axis=(1, 2))
    return out


@pytest.mark.parametrize("height, width", [(56, 56), (14, 15), (7, 2), (9, 4)])
def test_pooling_matches_caffe_ceil_mode(height, width):
    # non-negative inputs (the pools follow a ReLU); the borders carry the largest values so a
    # missing or misplaced overhanging window shows
    rng = np.random.default_rng(height * 100 + width)
    x = rng.uniform(0, 1, (2, height, width, 3)).astype("float32")
    x[:, -1, :, :] += 5
    x[:, :, -1, :] += 5
    inputs = keras.Input((height, width, 3))
    pooled = keras.Model(inputs, levi_hassner_cnn._caffe_pool(inputs, 1))
    expected = _caffe_max_pool(x)
    got = keras.ops.convert_to_numpy(pooled(x))
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_local_response_normalization_matches_tensorflow():
    import tensorflow as tf

    inputs = np.random.default_rng(3).normal(size=(2, 5, 5, 12)).astype("float32") * 10
    layer = levi_hassner_cnn.LocalResponseNormalization(depth_radius=2, bias=1.0, alpha=1e-3,
                                                        beta=0.75)
    expected = tf.nn.local_response_normalization(inputs, depth_radius=2, bias=1.0, alpha=1e-3,
                                                  beta=0.75)
    got = keras.ops.convert_to_numpy(layer(inputs))
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-6)
    # and the formula by hand at one position: channel 0 sums channels 0..2 (radius 2)
    x = inputs[0, 0, 0]
    by_hand = x[0] / (1.0 + 1e-3 * np.sum(x[:3] ** 2)) ** 0.75
    np.testing.assert_allclose(got[0, 0, 0, 0], by_hand, rtol=1e-5)


def test_default_lrn_is_caffes_setting():
    # Caffe: local_size 5, alpha 1e-4 (divided by the window size), beta 0.75
    layer = levi_hassner_cnn.LocalResponseNormalization()
    assert (layer.depth_radius, layer.bias, layer.beta) == (2, 1.0, 0.75)
    assert layer.alpha == pytest.approx(1e-4 / 5)


@pytest.mark.parametrize("schemes", [[GENDER], [AGE_GROUP, GENDER]], ids=["single", "multi"])
def test_levi_hassner_trains_and_round_trips_at_64px(tmp_path, schemes):
    model = levi_hassner_cnn.levi_hassner((64, 64, 3), schemes, dense_units=32)
    # conv1 (64 - 7) // 4 + 1 = 15; pools 15 -> ceil(12/2)+1 = 7 -> ceil(4/2)+1 = 3 -> 1
    sizes = [model.get_layer(n).output.shape[1] for n in ("conv1", "pool1", "pool2", "pool3")]
    assert sizes == [15, 7, 3, 1]
    assert model.get_layer("fc1").count_params() == 1 * 1 * 384 * 32 + 32
    models.compile_for(model, schemes)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (4, 64, 64, 3)).astype("float32")
    targets = {s.output: rng.integers(0, s.num_classes, 4) for s in schemes}
    before_fit = [w.copy() for w in model.get_layer("conv1").get_weights()]
    history = model.fit(images, targets, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert not np.allclose(model.get_layer("conv1").get_weights()[0], before_fit[0])
    path = tmp_path / "levi_hassner.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    before, after = model.predict(images, verbose=0), reloaded.predict(images, verbose=0)
    assert set(before) == {s.output for s in schemes}
    for key in before:
        assert before[key].shape == (4, schemes[[s.output for s in schemes].index(key)]
                                     .num_classes)
        np.testing.assert_allclose(before[key].sum(axis=1), 1.0, rtol=1e-5)  # softmax
        np.testing.assert_allclose(after[key], before[key], rtol=1e-5, atol=1e-6)


def test_levi_hassner_explains_its_minimum_size():
    # stride 4: conv1 (35 - 7) // 4 + 1 = 8 -> pools 4, 2, 1; at 34 px: 7 -> 3, 1, 0
    assert levi_hassner_cnn.minimum_size(4) == 35
    # stride 2: conv1 (21 - 7) // 2 + 1 = 8 -> 4, 2, 1; at 20 px: 7 -> 3, 1, 0
    assert levi_hassner_cnn.minimum_size(2) == 21
    with pytest.raises(ValueError, match="at least 35 px.*first_stride=2.*21 px"):
        levi_hassner_cnn.levi_hassner((34, 34, 3), [GENDER])
    with pytest.raises(ValueError, match="at least 21 px"):
        levi_hassner_cnn.levi_hassner((20, 20, 3), [GENDER], first_stride=2)
    smallest = levi_hassner_cnn.levi_hassner((35, 35, 3), [GENDER], dense_units=8)
    assert tuple(smallest.get_layer("pool3").output.shape[1:]) == (1, 1, 384)
    model = levi_hassner_cnn.levi_hassner((40, 40, 3), [GENDER], first_stride=2, dense_units=8)
    assert model.output["gender"].shape == (None, 2)
    with pytest.raises(ValueError, match="first_stride"):
        levi_hassner_cnn.minimum_size(0)


# -- Levi & Hassner's over-sampled test -----------------------------------------------------------
def _tiny_model(input_shape, schemes, seed=0):
    """A position-sensitive model (Flatten -> heads), so the 10 crops predict differently."""
    from faceattr_lab.models.heads import add_heads

    keras.utils.set_random_seed(seed)
    images = keras.Input(input_shape)
    x = keras.layers.Rescaling(1 / 255)(images)
    x = keras.layers.Flatten()(x)
    return keras.Model(images, add_heads(x, schemes))


def test_predict_oversampled_averages_the_ten_crops_by_hand():
    import pandas as pd
    import tensorflow as tf

    from faceattr_lab import evaluate

    rng = np.random.default_rng(1)
    images = rng.uniform(0, 255, (5, 12, 12, 3)).astype("float32")
    truth = {"gender": np.array([0, 1, 1, 0, 1]), "age": np.array([0, 3, 7, 2, 5])}
    dataset = tf.data.Dataset.from_tensor_slices((images, truth)).batch(3)  # 3 + 2 images
    model = _tiny_model((8, 8, 3), [GENDER, AGE8])
    # by hand: corners at (0, 0), (0, 4), (4, 0), (4, 4), centre at (12 - 8) // 2 = 2, mirrors
    views = [images[:, t:t + 8, l:l + 8] for t, l in ((0, 0), (0, 4), (4, 0), (4, 4), (2, 2))]
    views += [v[:, :, ::-1] for v in views]
    outputs = [model.predict(v, verbose=0) for v in views]
    metadata = pd.DataFrame({"path": [f"/img/{i}.jpg" for i in range(5)]})
    table = evaluate.predict_oversampled(model, dataset, [GENDER, AGE8], crop=8,
                                         metadata=metadata)
    assert len(table) == 5 and table["path"].tolist() == metadata["path"].tolist()
    for scheme in (GENDER, AGE8):
        mean = np.mean([o[scheme.output] for o in outputs], axis=0)
        columns = [f"{scheme.output}_prob_{c}" for c in scheme.classes]
        np.testing.assert_allclose(table[columns].to_numpy(), mean, rtol=1e-5, atol=1e-6)
        assert table[f"{scheme.output}_pred"].tolist() == mean.argmax(axis=1).tolist()
        assert table[f"{scheme.output}_true"].tolist() == truth[scheme.output].tolist()
        centre_only = outputs[4][scheme.output]
        assert not np.allclose(mean, centre_only, atol=1e-4)  # the average is not one crop
    # centre=True: the same pass also gives the unmirrored centre crop's own predictions
    averaged, centre = evaluate.predict_oversampled(model, dataset, [GENDER, AGE8], crop=8,
                                                    metadata=metadata, centre=True)
    pd.testing.assert_frame_equal(averaged, table)
    assert centre["path"].tolist() == metadata["path"].tolist()
    for scheme in (GENDER, AGE8):
        columns = [f"{scheme.output}_prob_{c}" for c in scheme.classes]
        np.testing.assert_allclose(centre[columns].to_numpy(), outputs[4][scheme.output],
                                   rtol=1e-5, atol=1e-6)
        assert centre[f"{scheme.output}_true"].tolist() == truth[scheme.output].tolist()
    with pytest.raises(ValueError, match="larger than the images"):
        evaluate.predict_oversampled(model, dataset, [GENDER, AGE8], crop=13)


# -- cross-validation over Adience-like folds ---------------------------------------------------
@pytest.fixture
def adience_like(tmp_path):
    """32 flat-colour 8x8 PNGs in 4 subject-exclusive folds; the red channel names the row."""
    import pandas as pd
    from PIL import Image

    groups = labels.ADIENCE_AGE_GROUPS
    rows = []
    for i in range(32):
        colour = (10 + 7 * i, 240 - 6 * i, (50 + 23 * i) % 256)
        path = tmp_path / f"face{i}.png"
        Image.new("RGB", (8, 8), colour).save(path)
        fold = i // 8
        rows.append({"path": str(path), "gender": i % 2, "age": pd.NA,
                     "age_group": groups[(i * 3) % 8], "fold": fold,
                     "user_id": f"u{fold}_{i % 3}", "row": i})
    df = pd.DataFrame(rows)
    df["gender"] = df["gender"].astype("Int64")
    df["age"] = df["age"].astype("Int64")
    df["age_group"] = df["age_group"].astype("string")
    return df


def _rows_in(dataset):
    """The table rows a dataset yields, read back from each image's red channel."""
    from faceattr_lab import pipeline

    x, _ = pipeline.to_numpy(dataset)
    red = x[:, :, :, 0]
    assert np.allclose(red, red[:, :1, :1], atol=1)  # flat images stay flat (crop, flip)
    return np.round((red[:, 0, 0] - 10) / 7).astype(int).tolist()


def _small_net(input_shape, schemes):
    from faceattr_lab.models.heads import add_heads

    images = keras.Input(input_shape)
    x = keras.layers.Rescaling(1 / 255)(images)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(4, activation="relu")(x)
    return keras.Model(images, add_heads(x, schemes))


def test_cross_validate_holds_each_fold_out(adience_like, monkeypatch):
    from faceattr_lab import evaluate, experiments, train

    fed, tested = {}, []
    real_fit, real_predict = train.fit, evaluate.predict

    def recording_fit(model, train_ds, val_ds=None, **kwargs):
        fed[len(fed)] = (_rows_in(train_ds), _rows_in(val_ds) if val_ds is not None else [])
        return real_fit(model, train_ds, val_ds, **kwargs)

    def recording_predict(model, dataset, schemes, **kwargs):
        tested.append(_rows_in(dataset))
        return real_predict(model, dataset, schemes, **kwargs)

    monkeypatch.setattr(train, "fit", recording_fit)
    monkeypatch.setattr(evaluate, "predict", recording_predict)
    schemes = [GENDER, AGE8]
    cv = experiments.cross_validate(adience_like, schemes, _small_net, image_size=8, crop=6,
                                    epochs=1, batch_size=8, seed=0, val_fold="next",
                                    early_stopping=1, echo=False)
    df = adience_like
    for index, fold in enumerate(range(4)):
        val = (fold + 1) % 4
        train_rows, val_rows = fed[index]
        assert sorted(train_rows) == df.loc[~df["fold"].isin([fold, val]), "row"].tolist()
        assert sorted(val_rows) == df.loc[df["fold"] == val, "row"].tolist()
        assert tested[index] == df.loc[df["fold"] == fold, "row"].tolist()  # in table order
        predicted = cv.predictions[cv.predictions["fold"] == fold]
        assert predicted["path"].tolist() == df.loc[df["fold"] == fold, "path"].tolist()

    table = cv.table
    assert list(table.columns) == ["run", "test", "fold", "task", "metric", "value"]
    assert set(table["test"]) == {"centre crop"}  # oversample=False: the centre crop only
    assert sorted(table["fold"].unique()) == [0, 1, 2, 3]
    for fold in range(4):  # each fold's metrics recomputed with numpy from its predictions
        rows = cv.predictions[cv.predictions["fold"] == fold]
        value = table.set_index(["fold", "task", "metric"])["value"]
        gender_true = rows["gender_true"].to_numpy(int)
        gender_pred = rows["gender_pred"].to_numpy(int)
        assert value[(fold, "gender", "accuracy")] == pytest.approx(
            np.mean(gender_true == gender_pred))
        age_true, age_pred = rows["age_true"].to_numpy(int), rows["age_pred"].to_numpy(int)
        assert value[(fold, "age", "accuracy")] == pytest.approx(np.mean(age_true == age_pred))
        assert value[(fold, "age", "one_off_accuracy")] == pytest.approx(
            np.mean(np.abs(age_true - age_pred) <= 1))

    summary = cv.summary.set_index(["task", "metric"])
    assert set(summary.index) == {("gender", "accuracy"), ("age", "accuracy"),
                                  ("age", "one_off_accuracy")}
    for task, metric in summary.index:
        values = table[(table["task"] == task) & (table["metric"] == metric)]["value"]
        assert len(values) == 4
        assert summary.loc[(task, metric), "mean"] == pytest.approx(np.mean(values))
        assert summary.loc[(task, metric), "std"] == pytest.approx(np.std(values, ddof=1))
        assert summary.loc[(task, metric), "n"] == 4


def test_cross_validate_without_validation_and_oversampled(adience_like, monkeypatch):
    from faceattr_lab import evaluate, experiments, train

    fed, tested = [], []
    real_fit, real_predict = train.fit, evaluate.predict

    def recording_fit(model, train_ds, val_ds=None, **kwargs):
        assert val_ds is None
        fed.append(_rows_in(train_ds))
        return real_fit(model, train_ds, val_ds, **kwargs)

    def recording_predict(model, dataset, schemes, **kwargs):
        tested.append(_rows_in(dataset))
        assert next(iter(dataset))[0].shape[1:3] == (8, 8)  # uncropped: 10 crops made later
        return real_predict(model, dataset, schemes, **kwargs)

    monkeypatch.setattr(train, "fit", recording_fit)
    monkeypatch.setattr(evaluate, "predict", recording_predict)
    cv = experiments.cross_validate(adience_like, [GENDER], _small_net, image_size=8, crop=6,
                                    epochs=1, batch_size=8, folds=[2], oversample=True,
                                    echo=False)
    df = adience_like
    assert sorted(fed[0]) == df.loc[df["fold"] != 2, "row"].tolist()  # folds 0, 1, 3
    # one pass over the test fold for the 10 crops, one replay of its labels for the centre
    assert tested == [df.loc[df["fold"] == 2, "row"].tolist()] * 2
    assert cv.table["fold"].unique().tolist() == [2]
    assert cv.table["task"].unique().tolist() == ["gender"]
    assert sorted(set(cv.table["test"])) == ["centre crop", "over-sampled"]  # both, one pass
    assert cv.summary["n"].tolist() == [1, 1]
    by_test = cv.predictions.set_index("test")
    for test in ("centre crop", "over-sampled"):
        rows = by_test.loc[test]
        value = cv.table.set_index(["test", "metric"]).loc[(test, "accuracy"), "value"]
        assert value == pytest.approx(np.mean(rows["gender_true"].to_numpy(int)
                                              == rows["gender_pred"].to_numpy(int)))


def test_cross_validate_masks_missing_labels(adience_like, monkeypatch):
    """missing="mask": a face without gender still trains and tests the age head."""
    import pandas as pd

    from faceattr_lab import experiments, train

    df = adience_like.copy()
    unknown = [1, 4, 9, 12, 17, 30]  # rows whose gender is unknown (Adience's "u")
    df.loc[unknown, "gender"] = pd.NA
    with pytest.raises(ValueError, match="missing='mask'"):
        experiments.cross_validate(df, [GENDER, AGE8], _small_net, image_size=8, epochs=1,
                                   batch_size=8, folds=[0], echo=False)
    fed = []
    real_fit = train.fit

    def recording_fit(model, train_ds, val_ds=None, **kwargs):
        fed.append(_rows_in(train_ds))
        return real_fit(model, train_ds, val_ds, **kwargs)

    monkeypatch.setattr(train, "fit", recording_fit)
    cv = experiments.cross_validate(df, [GENDER, AGE8], _small_net, image_size=8, epochs=1,
                                    batch_size=8, folds=[0, 1], missing="mask", echo=False)
    for index, fold in enumerate((0, 1)):
        assert sorted(fed[index]) == df.loc[df["fold"] != fold, "row"].tolist()  # every row
        rows = cv.predictions[cv.predictions["fold"] == fold]
        assert len(rows) == 8
        labelled = rows["gender_true"].notna().to_numpy()
        assert (~labelled).sum() == sum(df.loc[u, "fold"] == fold for u in unknown)
        value = cv.table.set_index(["fold", "task", "metric"])["value"]
        assert value[(fold, "gender", "accuracy")] == pytest.approx(np.mean(
            rows.loc[labelled, "gender_true"].to_numpy(int)
            == rows.loc[labelled, "gender_pred"].to_numpy(int)))
        assert value[(fold, "age", "accuracy")] == pytest.approx(np.mean(
            rows["age_true"].to_numpy(int) == rows["age_pred"].to_numpy(int)))


def _dropout_net(input_shape, schemes):
    """A net with a random generator (Dropout) and an optimizer with slots (Adam)."""
    from faceattr_lab.models.heads import add_heads

    images = keras.Input(input_shape)
    x = keras.layers.Rescaling(1 / 255)(images)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(8, activation="relu")(x)
    x = keras.layers.Dropout(0.5)(x)
    return keras.Model(images, add_heads(x, schemes))


def test_cross_validate_reuses_one_model_as_if_rebuilt(adience_like):
    """One model per arm, reset between folds, gives exactly what a fresh build per fold does:
    the same predictions, fold by fold, with dropout, random crops, Adam and early stopping."""
    from faceattr_lab import experiments

    common = dict(image_size=8, crop=6, epochs=3, batch_size=8, seed=3, val_fold="next",
                  early_stopping=1, learning_rate=0.05, echo=False)
    reused = experiments.cross_validate(adience_like, [GENDER, AGE8], _dropout_net, **common)
    rebuilt = experiments.cross_validate(adience_like, [GENDER, AGE8], _dropout_net,
                                         rebuild=True, **common)
    columns = ["fold", "gender_true", "gender_pred", "age_true", "age_pred"]
    assert reused.predictions[columns].equals(rebuilt.predictions[columns])
    probabilities = [c for c in reused.predictions.select_dtypes("float").columns
                     if c.startswith(("gender_", "age_"))]
    assert len(probabilities) >= 2 + 8, probabilities  # every class's probability
    np.testing.assert_allclose(reused.predictions[probabilities].to_numpy(float),
                               rebuilt.predictions[probabilities].to_numpy(float), atol=1e-6)
    assert reused.table.equals(rebuilt.table)


def test_cross_validate_rejects_bad_arguments(adience_like):
    from faceattr_lab import experiments

    common = dict(image_size=8, epochs=1, batch_size=8, echo=False)
    with pytest.raises(ValueError, match="val_fold='next'"):
        experiments.cross_validate(adience_like, [GENDER], _small_net, early_stopping=2,
                                   **common)
    with pytest.raises(ValueError, match="among the table's folds"):
        experiments.cross_validate(adience_like, [GENDER], _small_net, folds=[7], **common)
    with pytest.raises(ValueError, match="pass crop"):
        experiments.cross_validate(adience_like, [GENDER], _small_net, oversample=True,
                                   **common)
    with pytest.raises(ValueError, match="'fold' column"):
        experiments.cross_validate(adience_like.drop(columns="fold"), [GENDER], _small_net,
                                   **common)


def test_levi_hassner_filters_set_the_three_conv_widths():
    """Narrower convolutions (lab 04's quick profile): parameters counted by hand."""
    model = levi_hassner_cnn.levi_hassner((40, 40, 3), [GENDER], first_stride=2,
                                          dense_units=16, filters=(8, 16, 24))
    by_hand = {"conv1": 7 * 7 * 3 * 8 + 8, "conv2": 5 * 5 * 8 * 16 + 16,
               "conv3": 3 * 3 * 16 * 24 + 24}
    for name, count in by_hand.items():
        assert model.get_layer(name).count_params() == count
    # 40 px, stride 2: conv1 17 px, ceil-mode pools 8, 4, 2 px: 2 * 2 * 24 inputs to fc1
    assert model.get_layer("fc1").count_params() == 2 * 2 * 24 * 16 + 16
    for bad in ((8, 16), (8, 0, 24), 8):
        with pytest.raises(ValueError, match="three positive ints"):
            levi_hassner_cnn.levi_hassner((40, 40, 3), [GENDER], first_stride=2, filters=bad)
