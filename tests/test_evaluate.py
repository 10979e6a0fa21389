"""Tests for faceattr_lab.evaluate: metrics against numbers worked out by hand in the comments
on hand-made fixtures, and against the formulas written out with numpy."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from faceattr_lab import evaluate as ev


# Minimal stand-ins for faceattr_lab.labels.Scheme, following the contract in ARCHITECTURE.md.
@dataclass(frozen=True)
class Scheme:
    name: str
    output: str
    kind: str
    classes: tuple = ()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def decode(self, indices):
        return np.asarray(self.classes)[np.asarray(indices)]


@dataclass(frozen=True)
class ScaledAge(Scheme):
    """Age regressed as years / 116, as in study C."""

    def inverse(self, values):
        return np.asarray(values, dtype=float) * 116.0


GENDER = Scheme("gender", "gender", "classification", ("male", "female"))
AGE4 = Scheme("age4", "age", "classification", ("0-9", "10-29", "30-59", "60+"))
RACE3 = Scheme("race3", "race", "classification", ("A", "B", "C"))
AGE_REG = ScaledAge("age_reg", "age", "regression")
AGE_CORAL = Scheme("age_coral", "age", "ordinal", ("21", "22", "23", "24"))


@pytest.fixture
def hand_predictions():
    """Six images. gender: 5/6 right; age groups: 3/6 exact, 5/6 within one group."""
    return pd.DataFrame({
        "race": ["A", "A", "B", "B", "B", "A"],
        "gender_true": pd.array([0, 0, 1, 1, 1, 0], dtype="Int64"),
        "gender_pred": pd.array([0, 1, 1, 1, 1, 0], dtype="Int64"),
        "age_true": pd.array([0, 1, 2, 3, 3, 1], dtype="Int64"),
        "age_pred": pd.array([0, 2, 0, 3, 2, 1], dtype="Int64"),
    })


def _value(table, task, metric, **filters):
    rows = table[(table.task == task) & (table.metric == metric)]
    for column, value in filters.items():
        rows = rows[rows[column] == value]
    assert len(rows) == 1, rows
    return rows.value.iloc[0]


# ---- metrics on arrays ------------------------------------------------------------------

# Hand-made fixture: classes a b c d, "d" predicted once but never true.
#   index    0  1  2  3  4  5  6  7
#   true     a  a  a  b  b  c  c  c
#   pred     a  a  b  b  d  c  c  a
HAND_TRUE = [0, 0, 0, 1, 1, 2, 2, 2]
HAND_PRED = [0, 0, 1, 1, 3, 2, 2, 0]


def test_classification_metrics_hand_values():
    got = ev.classification_metrics(HAND_TRUE, HAND_PRED, classes=["a", "b", "c", "d"])
    assert got["accuracy"] == pytest.approx(5 / 8)  # right at 0, 1, 3, 5, 6
    # recall a 2/3, b 1/2, c 2/3; "d" has no true face, so it is not averaged in
    # (averaging it in as 0 would give 11/24)
    assert got["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 3)  # 11/18
    # precision a 2/3 (rows 0, 1, 7), b 1/2 (rows 2, 3), c 2/2, d 0/1
    # F1 = 2PR/(P+R): a 2/3, b 1/2, c 2*(2/3)/(5/3) = 4/5, d 0; macro over the 4 classes seen
    # in either array (over only a, b, c it would be 59/90)
    assert got["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 4 / 5 + 0) / 4)  # 59/120
    # rows are the truth, columns the prediction; "d" gets a row although never true
    np.testing.assert_array_equal(got["confusion_matrix"], [[2, 1, 0, 0],
                                                            [0, 1, 0, 1],
                                                            [1, 0, 2, 0],
                                                            [0, 0, 0, 0]])
    # class names instead of indices give the same numbers
    names = np.array(["a", "b", "c", "d"])
    by_name = ev.classification_metrics(names[HAND_TRUE], names[HAND_PRED], classes=names)
    for key in ("accuracy", "balanced_accuracy", "macro_f1"):
        assert by_name[key] == pytest.approx(got[key])
    np.testing.assert_array_equal(by_name["confusion_matrix"], got["confusion_matrix"])


def _numpy_classification_metrics(y_true, y_pred, k):
    """Independent reference: the formulas written out with numpy."""
    matrix = np.zeros((k, k), int)
    np.add.at(matrix, (y_true, y_pred), 1)
    true_count, pred_count, hits = matrix.sum(axis=1), matrix.sum(axis=0), np.diag(matrix)
    present = true_count > 0
    recall = np.divide(hits, true_count, out=np.zeros(k), where=true_count > 0)
    precision = np.divide(hits, pred_count, out=np.zeros(k), where=pred_count > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k),
                   where=precision + recall > 0)
    seen = present | (pred_count > 0)
    return {"accuracy": hits.sum() / len(y_true), "balanced_accuracy": recall[present].mean(),
            "macro_f1": f1[seen].mean(), "confusion_matrix": matrix}


def test_classification_metrics_match_numpy_formulas_on_random_data():
    rng = np.random.default_rng(0)
    # uneven class sizes, so balanced accuracy and accuracy differ
    y_true = rng.choice(4, 200, p=[0.55, 0.25, 0.15, 0.05])
    y_pred = np.where(rng.uniform(size=200) < 0.6, y_true, rng.integers(0, 4, 200))
    got = ev.classification_metrics(y_true, y_pred, classes=["a", "b", "c", "d"])
    expected = _numpy_classification_metrics(y_true, y_pred, 4)
    for key in ("accuracy", "balanced_accuracy", "macro_f1"):
        assert got[key] == pytest.approx(expected[key]), key
    assert abs(got["accuracy"] - got["balanced_accuracy"]) > 0.01
    np.testing.assert_array_equal(got["confusion_matrix"], expected["confusion_matrix"])


def test_confusion_matrix_keeps_unseen_classes():
    got = ev.classification_metrics([0, 0, 1], [0, 1, 1], classes=["x", "y", "z"])
    np.testing.assert_array_equal(got["confusion_matrix"], [[1, 1, 0], [0, 1, 0], [0, 0, 0]])
    # "z" is in neither array, so it does not count in the averages: recall x 1/2, y 1;
    # F1 x = 2 * 1 * (1/2) / (3/2) = 2/3, y = 2 * (1/2) * 1 / (3/2) = 2/3 (with z: 4/9)
    assert got["balanced_accuracy"] == pytest.approx((1 / 2 + 1) / 2)
    assert got["macro_f1"] == pytest.approx(2 / 3)


def test_regression_metrics_hand_values():
    # errors (pred - true) +2 -3 0 +5 0 -6: |e| sum 16, e sum -2, e^2 sum 4+9+0+25+0+36 = 74
    hand = ev.regression_metrics([20, 30, 40, 50, 60, 70], [22, 27, 40, 55, 60, 64])
    assert hand["mae"] == pytest.approx(16 / 6)
    assert hand["mean_signed_error"] == pytest.approx(-2 / 6)  # under-estimates a little
    assert hand["rmse"] == pytest.approx(math.sqrt(74 / 6))
    # all over-estimates by 1 or 3: MAE 2, signed +2 (prediction - truth, not the reverse),
    # RMSE sqrt((1 + 9) / 2) = sqrt(5) > MAE
    over = ev.regression_metrics(pd.array([10, 20], dtype="Int64"), np.array([11.0, 23.0]))
    assert over == pytest.approx({"mae": 2.0, "rmse": math.sqrt(5), "mean_signed_error": 2.0})
    with pytest.raises(ValueError):
        ev.regression_metrics([1.0, 2.0], [1.0])


def test_one_off_accuracy_hand_values():
    assert ev.one_off_accuracy([0, 1, 2, 3, 3, 1], [0, 2, 0, 3, 2, 1]) == pytest.approx(5 / 6)
    assert ev.one_off_accuracy([7, 0], [5, 2]) == 0.0
    with pytest.raises(ValueError, match="same|one prediction"):
        ev.one_off_accuracy([1, 2], [1])
    with pytest.raises(ValueError, match="indices"):
        ev.one_off_accuracy(["a"], ["b"])


def test_majority_baseline_shows_imbalance():
    train = [0] * 8 + [1] * 2
    test = [0] * 6 + [1] * 3 + [2] * 1
    got = ev.majority_baseline(train, test)
    assert got["majority"] == 0
    assert got["accuracy"] == pytest.approx(0.6)
    assert got["balanced_accuracy"] == pytest.approx(1 / 3)  # recall 1, 0, 0


# ---- tidy tables -------------------------------------------------------------------------

def test_evaluate_hand_fixture(hand_predictions):
    table = ev.evaluate(hand_predictions, [GENDER, AGE4], run="r1")
    assert list(table.columns) == ["run", "task", "metric", "value"]
    assert set(table.run) == {"r1"}
    assert _value(table, "gender", "accuracy") == pytest.approx(5 / 6)
    assert _value(table, "gender", "balanced_accuracy") == pytest.approx((2 / 3 + 1) / 2)
    # F1 male: P 1, R 2/3 -> 0.8; female: P 3/4, R 1 -> 6/7
    assert _value(table, "gender", "macro_f1") == pytest.approx((0.8 + 6 / 7) / 2)
    assert _value(table, "age", "accuracy") == pytest.approx(0.5)
    assert _value(table, "age", "one_off_accuracy") == pytest.approx(5 / 6)
    assert "one_off_accuracy" not in set(table[table.task == "gender"].metric)


def test_breakdown_hand_fixture(hand_predictions):
    table = ev.breakdown(hand_predictions, [GENDER, AGE4], by=("race", "gender"), run="r1")
    # race A = rows 0, 1, 5: gender 2/3 right, age 2/3 exact (rows 0, 5), 3/3 one-off
    assert _value(table, "gender", "accuracy", by="race", group="A") == pytest.approx(2 / 3)
    assert _value(table, "age", "accuracy", by="race", group="A") == pytest.approx(2 / 3)
    assert _value(table, "age", "one_off_accuracy", by="race", group="A") == pytest.approx(1.0)
    # race B = rows 2, 3, 4: gender 3/3, age 1/3 exact (row 3), 2/3 one-off
    assert _value(table, "gender", "accuracy", by="race", group="B") == pytest.approx(1.0)
    assert _value(table, "age", "one_off_accuracy", by="race", group="B") == pytest.approx(2 / 3)
    assert set(table[table.by == "race"].n) == {3}
    # no gender metadata column: groups come from the gender task's true names
    assert set(table[table.by == "gender"].group) == {"male", "female"}
    assert _value(table, "gender", "accuracy", by="gender", group="male") == pytest.approx(2 / 3)


def test_breakdown_names_gender_codes_and_keeps_missing(hand_predictions):
    df = hand_predictions.assign(gender=pd.array([0, 1, None, 1, 0, 0], dtype="Int64"))
    table = ev.breakdown(df, GENDER, by="gender")
    assert set(table.group) == {"male", "female", "unknown"}
    assert table.groupby("group").n.first().sum() == 6  # nobody dropped
    with pytest.raises(ValueError, match="metadata"):
        ev.breakdown(df, GENDER, by="skin_tone")


def test_confusion_is_labelled(hand_predictions):
    table = ev.confusion(hand_predictions, AGE4)
    assert list(table.index) == list(AGE4.classes) and list(table.columns) == list(AGE4.classes)
    assert table.loc["30-59", "0-9"] == 1 and table.loc["60+", "60+"] == 1
    assert table.to_numpy().sum() == 6


def test_summarize_compare_and_wide():
    seeds = [pd.DataFrame({"run": "cnn", "task": ["gender", "age"], "metric": ["accuracy", "mae"],
                           "value": [acc, mae]}) for acc, mae in [(0.8, 5), (0.9, 6), (1.0, 10)]]
    table = ev.compare(*seeds, keys=[1, 2, 3], name="seed")
    assert len(table) == 6 and list(table.seed) == [1, 1, 2, 2, 3, 3]
    summary = ev.summarize(table, by=("run", "task", "metric"), over="seed")
    gender = summary[summary.task == "gender"].iloc[0]
    assert gender["mean"] == pytest.approx(0.9) and gender["std"] == pytest.approx(0.1)
    assert gender["n"] == 3 and gender["mean ± std"] == "0.900 ± 0.100"
    age = summary[summary.task == "age"].iloc[0]
    assert age["mean"] == pytest.approx(7) and age["std"] == pytest.approx(math.sqrt(7))
    two_runs = ev.compare(table, table.assign(run="other"))
    with pytest.raises(ValueError, match="tells them apart"):
        ev.summarize(two_runs, by=("task", "metric"), over="seed")
    with pytest.raises(ValueError, match="no column"):
        ev.summarize(table, over="fold")

    runs = ev.compare({"single": seeds[0], "multi": seeds[1]})
    flat = ev.wide(runs)
    assert list(flat.index) == ["single", "multi"]
    assert list(flat.columns) == ["gender accuracy", "age mae"]
    assert flat.loc["multi", "age mae"] == 6
    by_run = ev.wide(summary, index="run", values="mean ± std")
    assert by_run.loc["cnn", "gender accuracy"] == "0.900 ± 0.100"


def test_summarize_single_value_has_no_std():
    table = pd.DataFrame({"run": ["a"], "task": ["gender"], "metric": ["accuracy"],
                          "value": [0.5]})
    summary = ev.summarize(table)
    assert summary["n"].iloc[0] == 1 and summary["mean ± std"].iloc[0] == "0.500"


# ---- predict -----------------------------------------------------------------------------

class _FakeModel:
    """Returns fixed outputs per batch: softmax gender, sigmoid-free CORAL logits, age/116."""

    def __init__(self, outputs):
        self.outputs = outputs
        self.calls = 0

    def __call__(self, images):
        out = {k: v[self.calls] for k, v in self.outputs.items()}
        self.calls += 1
        return out


def test_predict_decodes_each_kind():
    images = np.zeros((2, 4, 4, 3), "float32")
    batches = [(images, {"gender": np.array([0, 1]), "age": np.array([0.25, 0.5], "float32"),
                         "race": np.array([2, -1])}),
               (images[:1], {"gender": np.array([1]), "age": np.array([0.1], "float32"),
                             "race": np.array([0])})]
    model = _FakeModel({
        "gender": [np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([[0.7, 0.3]])],
        "age": [np.array([[0.3], [0.5]]), np.array([[0.1]])],
        "race": [np.array([[0.0, 0.0, 5.0], [5.0, 0.0, 0.0]]), np.array([[0.0, 3.0, 0.0]])],
    })
    meta = pd.DataFrame({"path": ["a.jpg", "b.jpg", "c.jpg"]}, index=[10, 11, 12])
    table = ev.predict(model, batches, [GENDER, AGE_REG, RACE3], metadata=meta)
    assert model.calls == 2 and len(table) == 3
    assert list(table.path) == ["a.jpg", "b.jpg", "c.jpg"]
    assert list(table.gender_pred) == [0, 1, 0]
    assert list(table.gender_pred_name) == ["male", "female", "male"]
    np.testing.assert_allclose(table.gender_prob_female, [0.1, 0.8, 0.3])
    np.testing.assert_allclose(table.age_true, [29.0, 58.0, 11.6], rtol=1e-6)
    np.testing.assert_allclose(table.age_pred, [34.8, 58.0, 11.6], rtol=1e-6)
    # race logits go through softmax; the -1 label is a missing label
    assert list(table.race_pred) == [2, 0, 1]
    assert table.race_true.isna().tolist() == [False, True, False]
    np.testing.assert_allclose(table[[f"race_prob_{c}" for c in "ABC"]].sum(axis=1), 1)
    with pytest.warns(UserWarning, match="1 of 3 images have no 'race' label"):
        table_metrics = ev.evaluate(table, [RACE3])
    assert _value(table_metrics, "race", "accuracy") == pytest.approx(0.5)
    assert _value(ev.evaluate(table, [AGE_REG]), "age", "mae") == pytest.approx(5.8 / 3)

    with pytest.raises(ValueError, match="metadata has 2 rows"):
        ev.predict(_FakeModel(model.outputs), batches, [GENDER, AGE_REG, RACE3],
                   metadata=meta.iloc[:2])


def test_predict_coral_ranks_and_years():
    # rank = number of sigmoid(z) > 0.5, i.e. of logits > 0
    logits = np.array([[2.0, 1.0, -1.0], [-3.0, -2.0, -1.0], [4.0, 3.0, 2.0]])
    levels = np.array([[1, 1, 0], [0, 0, 0], [1, 1, 0]])  # extended binary labels: ranks 2, 0, 2
    model = _FakeModel({"age": [logits]})
    table = ev.predict(model, [(np.zeros((3, 2, 2, 3)), {"age": levels})], AGE_CORAL)
    assert list(table.age_pred) == [2, 0, 3] and list(table.age_true) == [2, 0, 2]
    np.testing.assert_allclose(table.age_score, (1 / (1 + np.exp(-logits))).sum(axis=1))
    assert list(table.age_pred_years) == [23.0, 21.0, 24.0]
    result = ev.evaluate(table, [AGE_CORAL])
    assert set(result.metric) == {"mae", "rmse", "mean_signed_error"}
    assert _value(result, "age", "mae") == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="K-1 = 3"):
        ev.predict(_FakeModel({"age": [logits[:, :2]]}),
                   [(np.zeros((3, 2, 2, 3)), {"age": levels[:, 0]})], AGE_CORAL)


def test_predict_runs_a_keras_model_over_tf_data():
    keras = pytest.importorskip("keras")
    tf = pytest.importorskip("tensorflow")
    inputs = keras.Input((8, 8, 3))
    features = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, {
        "gender": keras.layers.Dense(2, activation="softmax", name="gender")(features),
        "age": keras.layers.Dense(3, name="age")(features),  # CORAL-shaped logits, 4 ranks
    })
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (10, 8, 8, 3)).astype("float32")
    labels = {"gender": rng.integers(0, 2, 10), "age": rng.integers(0, 4, 10)}
    dataset = tf.data.Dataset.from_tensor_slices((x, labels)).batch(4)
    table = ev.predict(model, dataset, [GENDER, AGE_CORAL])
    assert len(table) == 10
    expected = model.predict(x, verbose=0)
    np.testing.assert_array_equal(table.gender_pred, expected["gender"].argmax(axis=1))
    np.testing.assert_array_equal(table.age_pred, (expected["age"] > 0).sum(axis=1))
    np.testing.assert_array_equal(table.gender_true, labels["gender"])


def test_a_short_last_batch_is_padded_so_the_model_sees_one_shape():
    seen = []

    def model(x):
        seen.append(x.shape)
        return {"gender": np.tile([[0.9, 0.1]], (len(x), 1)) + x[:, :1, 0, 0] * 0}

    x = np.arange(5 * 2 * 2 * 3, dtype="float32").reshape(5, 2, 2, 3)
    batches = [(x[:3], {"gender": np.zeros(3, int)}), (x[3:], {"gender": np.ones(2, int)})]
    table = ev.predict(model, batches, GENDER)
    assert seen == [(3, 2, 2, 3), (3, 2, 2, 3)]
    assert len(table) == 5 and table.gender_true.tolist() == [0, 0, 0, 1, 1]


def test_features_match_one_pass_over_all_images():
    keras = pytest.importorskip("keras")
    tf = pytest.importorskip("tensorflow")
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Dense(5)(keras.layers.Flatten()(inputs)))
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (11, 8, 8, 3)).astype("float32")
    y = {"race": rng.integers(0, 5, 11)}
    feats, labels = ev.features(model, tf.data.Dataset.from_tensor_slices((x, y)).batch(4))
    reference = x.reshape(11, -1) @ model.weights[0].numpy() + model.weights[1].numpy()
    np.testing.assert_allclose(feats, reference, rtol=1e-4, atol=1e-2)
    np.testing.assert_array_equal(labels["race"], y["race"])
    with pytest.raises(ValueError, match="no batches"):
        ev.features(model, [])


def test_predict_with_the_kit_label_schemes():
    labels = pytest.importorskip("faceattr_lab.labels")
    gender, age_years, age_coral = labels.get("gender"), labels.years(116), labels.coral(21, 24)
    images = np.zeros((2, 2, 2, 3))
    table = ev.predict(lambda x: {"gender": np.array([[0.8, 0.2], [0.4, 0.6]]),
                                  "age": np.array([[0.25], [0.5]])},
                       [(images, {"gender": np.array([0, 0]), "age": np.array([0.25, 0.25])})],
                       [gender, age_years])
    assert list(table.gender_pred_name) == ["male", "female"]
    np.testing.assert_allclose(table.age_pred, [29.0, 58.0])  # decode multiplies by 116
    table = ev.predict(lambda x: {"age": np.array([[3.0, 2.0, -1.0]])},
                       [(images[:1], {"age": np.array([1])})], age_coral)
    assert table.age_pred.tolist() == [2] and table.age_pred_years.tolist() == [23.0]
    assert table.age_true_years.tolist() == [22.0]


def _knn_by_hand(train_x, train_y, val_x, val_y, k):
    """Cosine k-NN written out: the k training rows at the smallest 1 - cos, majority vote
    (a tie goes to the smallest label, as scikit-learn's argmax does)."""
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    distance = 1.0 - unit(val_x) @ unit(train_x).T
    hits = 0
    for row, truth in zip(distance, val_y):
        votes = np.bincount(train_y[np.argsort(row)[:k]], minlength=train_y.max() + 1)
        hits += int(np.argmax(votes) == truth)
    return hits / len(val_y)


def test_knn_accuracy_matches_cosine_knn_by_hand():
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(3, 6))
    train_y, val_y = rng.integers(0, 3, 60), rng.integers(0, 3, 25)
    train_x = centres[train_y] + rng.normal(scale=0.9, size=(60, 6))
    val_x = centres[val_y] + rng.normal(scale=0.9, size=(25, 6))
    for k in (1, 5, 10):
        got = ev.knn_accuracy(train_x, train_y, val_x, val_y, k=k)
        assert got == pytest.approx(_knn_by_hand(train_x, train_y, val_x, val_y, k))
    assert 0.5 < ev.knn_accuracy(train_x, train_y, val_x, val_y, k=5) <= 1.0  # separated
    # two clusters along directions: k = 1 gets every validation point right
    tiny_x = np.array([[1.0, 0.1], [1.0, -0.1], [0.1, 1.0], [-0.1, 1.0]])
    assert ev.knn_accuracy(tiny_x, [0, 0, 1, 1], [[5.0, 0.2], [0.3, 4.0]], [0, 1], k=1) == 1.0
    # cosine ignores a row's length; euclidean does not
    far_x = np.array([[4.0, 0.4], [4.0, -0.4], [0.1, 1.0], [-0.1, 1.0]])
    assert ev.knn_accuracy(far_x, [0, 0, 1, 1], [[0.6, 0.3]], [0], k=1) == 1.0
    assert ev.knn_accuracy(far_x, [0, 0, 1, 1], [[0.6, 0.3]], [0], k=1,
                           metric="euclidean") == 0.0
    # masked labels (-1) are left out of both splits
    assert ev.knn_accuracy(tiny_x, [0, -1, 1, 1], [[5.0, 0.2], [1.0, 1.0]], [0, -1], k=1) == 1.0


def test_knn_accuracy_rejects_bad_arguments():
    x = np.eye(4)
    with pytest.raises(ValueError, match="k="):
        ev.knn_accuracy(x, [0, 1, 0, 1], x, [0, 1, 0, 1], k=9)
    with pytest.raises(ValueError, match="features"):
        ev.knn_accuracy(x, [0, 1, 0], x, [0, 1, 0, 1])
    with pytest.raises(ValueError, match="same model"):
        ev.knn_accuracy(x, [0, 1, 0, 1], np.eye(3), [0, 1, 0])
