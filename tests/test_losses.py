"""SupCon and CORAL losses against independent numpy implementations (explicit loops)."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from faceattr_lab import losses
from faceattr_lab.models.heads import CoralOutput


# ------------------------------------------------------------------ independent references
def _normalise(v):
    return v / np.linalg.norm(v)


def _anchors(labels, features):
    """Every (normalised view, label) pair, view-major, as the losses order them."""
    labels = np.asarray(labels).reshape(-1)
    features = np.asarray(features, dtype=np.float64)
    if features.ndim == 2:
        features = features[:, None, :]
    batch, views, _ = features.shape
    return [(_normalise(features[i, v]), labels[i]) for v in range(views) for i in range(batch)]


def supcon_reference(labels, features, temperature, base_temperature):
    """Khosla et al. eq. 2 (L_out), one anchor at a time, in float64."""
    anchors = _anchors(labels, features)
    total = 0.0
    for a, (z_a, y_a) in enumerate(anchors):
        others = [b for b in range(len(anchors)) if b != a]
        log_denominator = math.log(sum(math.exp(z_a @ anchors[b][0] / temperature)
                                       for b in others))
        positives = [p for p in others if anchors[p][1] == y_a]
        if not positives:
            continue  # no positive: contributes 0, but still counts in the mean below
        mean_log_prob = sum(z_a @ anchors[p][0] / temperature - log_denominator
                            for p in positives) / len(positives)
        total += -(temperature / base_temperature) * mean_log_prob
    return total / len(anchors)


def npairs_reference(labels, features, temperature):
    """Softmax cross-entropy per row of f f^T / tau against the normalised same-label row."""
    anchors = _anchors(labels, features)
    total = 0.0
    for z_a, y_a in anchors:
        row = [z_a @ z_b / temperature for z_b, _ in anchors]
        log_sum = math.log(sum(math.exp(r) for r in row))
        same = [b for b, (_, y_b) in enumerate(anchors) if y_b == y_a]  # the anchor included
        total += -sum((row[b] - log_sum) / len(same) for b in same)
    return total / len(anchors)


def coral_reference(ranks, logits, importance=None):
    ranks = np.asarray(ranks).reshape(-1)
    logits = np.asarray(logits, dtype=np.float64)
    k_tasks = logits.shape[1]
    importance = np.ones(k_tasks) if importance is None else np.asarray(importance)
    total = 0.0
    for i in range(len(ranks)):
        for k in range(k_tasks):
            z, y = logits[i, k], float(ranks[i] > k)
            log_sig = -math.log1p(math.exp(-z))
            total -= importance[k] * (log_sig * y + (log_sig - z) * (1 - y))
    return total / len(ranks)


# ------------------------------------------------------------------ SupCon
def _inputs(seed, batch=12, views=1, dim=8, n_classes=3, singletons=True):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, size=batch)
    if singletons:  # two labels that occur exactly once in the batch
        labels[:2] = [n_classes, n_classes + 1]
    shape = (batch, dim) if views == 1 else (batch, views, dim)
    return labels, rng.normal(size=shape).astype("float32")


@pytest.mark.parametrize("views", [1, 2])
@pytest.mark.parametrize("label_rank", [1, 2])
@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_supcon_matches_numpy(views, label_rank, temperature):
    labels, features = _inputs(seed=views * 10 + label_rank, views=views)
    expected = supcon_reference(labels, features, temperature, 0.07)
    y = labels if label_rank == 1 else labels.reshape(-1, 1)
    got = float(losses.supcon_loss(y, features, temperature=temperature))
    assert np.isfinite(got)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("views", [1, 2])
@pytest.mark.parametrize("label_rank", [1, 2])
def test_npairs_matches_numpy(views, label_rank):
    labels, features = _inputs(seed=views + label_rank, views=views)
    expected = npairs_reference(labels, features, 0.1)
    y = labels if label_rank == 1 else labels.reshape(-1, 1)
    got = float(losses.supcon_loss(y, features, temperature=0.1, variant="npairs"))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_supcon_anchor_without_positive_contributes_zero():
    labels, features = _inputs(seed=3, views=1)
    per_sample = np.asarray(losses.supcon_per_sample(labels, features))
    assert np.all(np.isfinite(per_sample))
    assert per_sample[0] == 0.0 and per_sample[1] == 0.0      # the two singleton labels
    assert np.all(per_sample[2:] > 0)
    # All labels distinct: no positive anywhere, loss exactly 0, not NaN.
    assert float(losses.supcon_loss(np.arange(5), features[:5])) == 0.0
    # A batch of one sample.
    assert float(losses.supcon_loss([0], features[:1])) == 0.0
    # With two views a singleton's other view is its positive.
    labels2, features2 = _inputs(seed=3, views=2)
    assert np.all(np.asarray(losses.supcon_per_sample(labels2, features2)) > 0)


def test_supcon_stable_at_tiny_temperature_and_gradient_finite():
    labels, features = _inputs(seed=5, views=2)
    features = tf.Variable(features)
    for variant in losses.SUPCON_VARIANTS:
        with tf.GradientTape() as tape:
            value = losses.supcon_loss(labels, features, temperature=0.005, variant=variant)
        grad = tape.gradient(value, features)
        assert np.isfinite(float(value))
        assert np.all(np.isfinite(grad.numpy())) and np.any(grad.numpy() != 0)


def test_supcon_two_views_equal_doubled_batch():
    labels, features = _inputs(seed=7, views=2)
    stacked = np.concatenate([features[:, 0], features[:, 1]])
    for variant in losses.SUPCON_VARIANTS:
        np.testing.assert_allclose(
            float(losses.supcon_loss(labels, features, variant=variant)),
            float(losses.supcon_loss(np.tile(labels, 2), stacked, variant=variant)), rtol=1e-6)


def test_supcon_loss_class_and_multitask_compile():
    labels, features = _inputs(seed=11)
    loss = losses.SupConLoss(temperature=0.2)
    np.testing.assert_allclose(float(loss(labels, features)),
                               supcon_reference(labels, features, 0.2, 0.07), rtol=1e-5)
    restored = losses.SupConLoss.from_config(loss.get_config())
    assert restored.temperature == 0.2 and restored.variant == "supcon"

    loss_dict, weights = losses.supcon_losses(["gender", "race"], weights=0.1)
    assert weights == {"gender": 0.1, "race": 0.1}
    inputs = keras.Input((6,))
    model = keras.Model(inputs, {"gender": keras.layers.Dense(4, name="gender")(inputs),
                                 "race": keras.layers.Dense(4, name="race")(inputs)})
    model.compile("adam", loss=loss_dict, loss_weights=weights)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 6)).astype("float32")
    y = {"gender": rng.integers(0, 2, 16), "race": rng.integers(0, 3, 16)}
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    # the compiled total is 0.1 * SupCon(gender) + 0.1 * SupCon(race) at temperature 0.1
    out = model.predict(x, verbose=0)
    expected = sum(0.1 * supcon_reference(y[name], out[name], 0.1, 0.07) for name in y)
    got = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)["loss"]
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    with pytest.raises(ValueError, match="variant"):
        losses.SupConLoss(variant="triplet")
    with pytest.raises(ValueError, match="no entry"):
        losses.supcon_losses(["gender", "race"], weights={"gender": 0.1})


# ------------------------------------------------------------------ CORAL
def test_coral_levels_and_loss_match_numpy():
    rng = np.random.default_rng(0)
    ranks = rng.integers(0, 6, size=20)
    logits = rng.normal(scale=3, size=(20, 5)).astype("float32")
    levels = np.asarray(losses.coral_levels(ranks, 6))
    assert levels.shape == (20, 5)
    for i, rank in enumerate(ranks):
        np.testing.assert_array_equal(levels[i], [1.0] * rank + [0.0] * (5 - rank))
    np.testing.assert_allclose(float(losses.coral_loss(ranks, logits)),
                               coral_reference(ranks, logits), rtol=1e-5)
    importance = rng.uniform(0.2, 2.0, size=5)
    np.testing.assert_allclose(float(losses.coral_loss(ranks.reshape(-1, 1), logits, importance)),
                               coral_reference(ranks, logits, importance), rtol=1e-5)
    np.testing.assert_allclose(float(losses.CoralLoss(importance)(ranks, logits)),
                               coral_reference(ranks, logits, importance), rtol=1e-5)
    with pytest.raises(ValueError, match="importance"):
        losses.coral_loss(ranks, logits, importance=[1.0, 2.0])


def test_coral_predict_counts_probabilities_above_half():
    logits = np.array([[2.0, 1.0, -0.5, -3.0], [-1.0, -2.0, -3.0, -4.0], [5.0, 4.0, 3.0, 0.1],
                       [0.3, -0.2, 0.4, -1.0]], dtype="float32")
    by_hand = [2, 0, 4, 2]  # counts of sigmoid(z) > 0.5, i.e. of z > 0, per row
    np.testing.assert_array_equal(np.asarray(losses.coral_predict(logits)), by_hand)
    np.testing.assert_allclose(np.asarray(losses.coral_probabilities(logits)),
                               1 / (1 + np.exp(-logits)), rtol=1e-6)


def test_coral_head_is_rank_consistent_and_training_sorts_biases():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    num_classes = 5
    # Toy ordinal problem: rank = quantised noisy projection of the features.
    x = rng.normal(size=(512, 4)).astype("float32")
    score = x @ np.array([1.0, -0.5, 0.8, 0.3]) + rng.normal(scale=0.3, size=512)
    ranks = np.digitize(score, np.quantile(score, [0.2, 0.4, 0.6, 0.8]))
    inputs = keras.Input((4,))
    logits = keras.layers.Dense(8, activation="relu")(inputs)
    head = CoralOutput(num_classes)
    model = keras.Model(inputs, head(logits))
    # Rank consistency: with sorted (non-increasing) biases, P(rank > k) never increases in k.
    biases = [w for w in head.weights if tuple(w.shape) == (num_classes - 1,)][0]
    biases.assign(np.sort(rng.normal(size=num_classes - 1))[::-1].astype("float32"))
    probs = np.asarray(losses.coral_probabilities(model.predict(x[:64] * 10, verbose=0)))
    assert np.all(np.diff(probs, axis=1) <= 1e-7)

    biases.assign(rng.normal(size=num_classes - 1).astype("float32"))  # start unsorted
    model.compile(keras.optimizers.Adam(0.05), loss=losses.CoralLoss())
    model.fit(x, ranks, epochs=15, batch_size=64, verbose=0)
    learned = np.asarray(biases.numpy())
    assert np.all(np.diff(learned) < 0), learned            # sorted, as the theorem says
    predicted = np.asarray(losses.coral_predict(model.predict(x, verbose=0)))
    assert np.mean(np.abs(predicted - ranks)) < 0.6


# ------------------------------------------------------------------ masked losses (issue #9)
def _per_row_reference(kind, labels, outputs):
    """Per-row base loss in float64, by hand: softmax / sigmoid cross-entropy, squared error,
    CORAL (the numpy reference above, one row at a time)."""
    rows = []
    for y, out in zip(labels, np.asarray(outputs, dtype=np.float64)):
        if kind == "softmax":
            rows.append(-math.log(out[int(y)]))
        elif kind == "sigmoid":
            rows.append(-(y * math.log(out[0]) + (1 - y) * math.log(1 - out[0])))
        elif kind == "mse":
            rows.append((out[0] - y) ** 2)
        else:
            rows.append(coral_reference([y], out[None, :]))
    return np.array(rows)


def _masked_reference(kind, labels, outputs, weights=None):
    """sum over labelled rows of weight * loss / number of labelled rows (0 if none)."""
    labels = np.asarray(labels, dtype=np.float64)
    labelled = ~np.isnan(labels) & ((labels >= 0) if kind != "mse" else True)
    if not labelled.any():
        return 0.0
    weights = np.ones(len(labels)) if weights is None else np.asarray(weights, np.float64)
    per_row = _per_row_reference(kind, labels[labelled], np.asarray(outputs)[labelled])
    return float((weights[labelled] * per_row).sum() / labelled.sum())


MASKED_CASES = {  # kind -> (base loss, scheme kind, labels with missing ones, model outputs)
    "softmax": (keras.losses.SparseCategoricalCrossentropy, "classification",
                np.array([0, -1, 2, 1, -1, 2]),
                np.array([[.6, .3, .1], [.2, .2, .6], [.1, .1, .8], [.3, .4, .3], [.9, .05, .05],
                          [.25, .25, .5]], "float32")),
    "sigmoid": (keras.losses.BinaryCrossentropy, "classification",
                np.array([1, -1, 0, 0, 1, -1]),
                np.array([[.8], [.4], [.3], [.6], [.55], [.1]], "float32")),
    "mse": (keras.losses.MeanSquaredError, "regression",
            np.array([0.5, np.nan, 0.2, -0.3, np.nan, 0.9], "float32"),  # -0.3 is a target
            np.array([[.1], [.7], [.25], [0.], [.4], [1.]], "float32")),
    "coral": (losses.CoralLoss, "ordinal",
              np.array([0, 3, -1, 2, 1, -1]),
              np.array([[.5, -.2, -1.], [2., 1., .3], [0., 0., 0.], [1., .2, -.5],
                        [.3, -.1, -.7], [5., 5., 5.]], "float32")),
}
WEIGHTS = np.array([2.0, 7.0, 0.5, 1.0, 3.0, 1.5], "float32")


@pytest.mark.parametrize("case", sorted(MASKED_CASES))
@pytest.mark.parametrize("weighted", [False, True])
def test_masked_loss_is_the_mean_over_labelled_rows(case, weighted):
    base, kind, labels, outputs = MASKED_CASES[case]
    loss = losses.masked(base(), kind)
    weights = WEIGHTS if weighted else None
    expected = _masked_reference(case, labels, outputs, weights)
    assert float(loss(labels, outputs, sample_weight=weights)) == pytest.approx(expected,
                                                                                rel=1e-5)
    # (B, 1) labels and weights are the same rows
    column = None if weights is None else weights[:, None]
    assert float(loss(labels[:, None], outputs, sample_weight=column)) == pytest.approx(
        expected, rel=1e-5)
    # with nothing missing it is the plain Keras loss (weights included)
    full = np.flatnonzero(_labelled_numpy(kind, labels))
    plain = base()(labels[full], outputs[full],
                   sample_weight=None if weights is None else weights[full])
    assert float(loss(labels[full], outputs[full],
                      sample_weight=None if weights is None else weights[full])) \
        == pytest.approx(float(plain), rel=1e-5)


def _labelled_numpy(kind, labels):
    labels = np.asarray(labels, np.float64)
    return ~np.isnan(labels) & ((labels >= 0) if kind != "regression" else True)


@pytest.mark.parametrize("case", sorted(MASKED_CASES))
def test_masked_loss_without_labels_is_zero_with_finite_gradients(case):
    base, kind, labels, outputs = MASKED_CASES[case]
    missing = np.full(len(labels), np.nan if kind == "regression" else -1,
                      labels.dtype if kind == "regression" else np.int64)
    loss = losses.MaskedLoss(base(), kind)
    for y in (missing, labels):  # no label at all, then some labels missing
        prediction = tf.Variable(outputs)
        with tf.GradientTape() as tape:
            value = loss(y, prediction, sample_weight=WEIGHTS)
        gradient = tape.gradient(value, prediction).numpy()
        assert np.isfinite(float(value)) and np.isfinite(gradient).all()
        # a row without a label gets no gradient at all
        np.testing.assert_array_equal(gradient[~_labelled_numpy(kind, y)], 0.0)
    assert float(loss(missing, outputs)) == 0.0


def test_masked_loss_serialises_and_rejects_bad_arguments():
    loss = losses.MaskedLoss(losses.CoralLoss(importance=[1.0, 2.0, 0.5]), "ordinal")
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(again, losses.MaskedLoss) and again.kind == "ordinal"
    assert isinstance(again.loss, losses.CoralLoss) and again.loss.importance == [1.0, 2.0, 0.5]
    _, _, labels, outputs = MASKED_CASES["coral"]
    assert float(again(labels, outputs)) == pytest.approx(float(loss(labels, outputs)))
    mse = keras.losses.deserialize(keras.losses.serialize(
        losses.masked(keras.losses.MeanSquaredError(), "regression")))
    assert float(mse(np.array([1.0, np.nan]), np.array([[3.0], [0.0]]))) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="kind"):
        losses.masked(keras.losses.MeanSquaredError(), "years")
    with pytest.raises(ValueError, match="masked already"):
        losses.masked(loss, "ordinal")
    with pytest.raises(ValueError, match="keras.losses.Loss instance"):
        losses.MaskedLoss("mse", "regression")
