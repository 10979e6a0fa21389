"""Metrics and tidy result tables. Lab 00.

Everything here turns predictions and truths into plain pandas tables:

- ``predict(model, dataset, schemes)`` runs a model once over a ``tf.data`` dataset and returns
  one row per image with each task's true and predicted labels (``<output>_true``,
  ``<output>_pred``, plus class names, probabilities or years as the task needs).
- ``evaluate(predictions, schemes, run=...)`` gives the *tidy* table every lab shares: columns
  ``run``, ``task``, ``metric``, ``value``, one row per run x task x metric. ``breakdown`` adds
  ``by``, ``group`` and ``n`` columns for per-group (fairness) metrics.
- ``compare`` stacks tidy tables, ``summarize`` gives mean, std and n over seeds, folds or runs,
  and ``wide`` pivots a tidy table to one row per run for reading.
- Lab 08's fairness audit: ``breakdown(..., ci=0.95)`` with per-group intervals and
  intersections (``by=[("gender", "race")]``), ``group_gaps`` (the best and worst group per
  task, the gap and its interval), ``calibration`` and ``calibration_error`` (reliability bins
  and ECE, Guo et al. 2017).

Metrics come from scikit-learn wherever it has them; written here are the Adience one-off
accuracy, the per-group loop, and the vectorised bootstrap of accuracy, balanced accuracy and
ECE (``resampled_scores``: all resamples at once with ``numpy.bincount``; the tests check it
against scikit-learn and a one-resample-at-a-time loop).

What ``predict`` reads from a label scheme (``faceattr_lab.labels.Scheme``): ``output``,
``kind`` (``"classification"``, ``"regression"``, ``"ordinal"``), ``classes`` and, for years,
``decode``: ``fl.labels`` schemes decode a scaled regression target (age / 116) and an ordinal
rank (``lo + rank``) to years. Read with ``getattr`` so any scheme-like object works:

- ``inverse(values)``, when a scheme has it, wins over ``decode`` for years. Without either,
  regression values are used as they are, and ordinal ranks become years through their class
  names when those are numbers (``"21"`` -> 21.0), else stay ranks.
- ``ordered``: whether classification classes are ordered groups (one-off accuracy makes
  sense). Without it, classification schemes on the ``"age"`` output count as ordered.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from faceattr_lab.labels import KINDS, resolve

TIDY_COLUMNS = ("run", "task", "metric", "value")
BREAKDOWN_COLUMNS = ("run", "task", "by", "group", "metric", "value", "n")

# The dataset-table contract codes gender as Int64 0 male / 1 female: name the groups.
GROUP_NAMES = {"gender": {0: "male", 1: "female"}}
_MISSING_GROUP = "unknown"
_JOIN = " / "  # joins the groups of an intersection: "female / Black"


# --------------------------------------------------------------------------------------------
# Metrics on plain arrays
# --------------------------------------------------------------------------------------------

def classification_metrics(y_true, y_pred, classes: Sequence[str] | None = None) -> dict:
    """Accuracy, balanced accuracy, macro F1 and the confusion matrix (scikit-learn). Lab 01.

    ``y_true`` and ``y_pred`` are class indices (or names). Balanced accuracy is the mean recall
    over the classes present in ``y_true``; macro F1 averages over the classes present in either
    array (scikit-learn's defaults). With ``classes`` (the scheme's class names) the confusion
    matrix has one row and column per class, in that order, even for classes never seen.
    """
    y_true, y_pred = _paired_arrays(y_true, y_pred)
    labels = None
    if classes is not None:
        classes = list(classes)
        numeric = np.issubdtype(y_true.dtype, np.number) and np.issubdtype(y_pred.dtype, np.number)
        labels = list(range(len(classes))) if numeric else classes
    with warnings.catch_warnings():
        # A group may hold one class only; sklearn then warns that y_pred has extra classes.
        warnings.filterwarnings("ignore", message=".*y_pred contains classes not in y_true.*")
        warnings.filterwarnings("ignore", message=".*single label was found.*")
        return {
            "accuracy": float(skm.accuracy_score(y_true, y_pred)),
            "balanced_accuracy": float(skm.balanced_accuracy_score(y_true, y_pred)),
            "macro_f1": float(skm.f1_score(y_true, y_pred, average="macro", zero_division=0)),
            "confusion_matrix": skm.confusion_matrix(y_true, y_pred, labels=labels),
        }


def one_off_accuracy(y_true, y_pred) -> float:
    """Share of predictions within one group of the truth (Adience 1-off protocol). Lab 04.

    For ordered groups given as indices (e.g. Adience's 8 age groups 0..7), predicting group 3
    for a face in group 4 counts as right; group 2 does not (Levi & Hassner 2015).
    """
    y_true, y_pred = _paired_arrays(y_true, y_pred)
    if not (np.issubdtype(y_true.dtype, np.number) and np.issubdtype(y_pred.dtype, np.number)):
        raise ValueError("one_off_accuracy needs ordered group indices (ints), not class names; "
                         "pass the <output>_true / <output>_pred columns from predict().")
    return float(np.mean(np.abs(y_true.astype(float) - y_pred.astype(float)) <= 1))


def regression_metrics(y_true, y_pred) -> dict:
    """MAE and RMSE (scikit-learn) and the mean signed error (prediction - truth). Lab 02.

    A positive mean signed error means the model over-estimates on average (e.g. predicts
    faces older than they are); MAE alone hides that.
    """
    y_true, y_pred = _paired_arrays(y_true, y_pred)
    y_true, y_pred = y_true.astype(float), y_pred.astype(float)
    return {
        "mae": float(skm.mean_absolute_error(y_true, y_pred)),
        "rmse": float(skm.root_mean_squared_error(y_true, y_pred)),
        "mean_signed_error": float(np.mean(y_pred - y_true)),
    }


def majority_baseline(train_labels, test_labels) -> dict:
    """Accuracy of always predicting the training set's most frequent class. Lab 01.

    Uses scikit-learn's ``DummyClassifier(strategy="most_frequent")`` (ties go to the smallest
    label). On imbalanced data the accuracy looks good while the balanced accuracy is
    1 / number of classes: the gap is what imbalance does to plain accuracy.
    Returns ``{"majority": label, "accuracy": ..., "balanced_accuracy": ...}``.
    """
    from sklearn.dummy import DummyClassifier

    train = _labels_array(train_labels, "train_labels")
    test = _labels_array(test_labels, "test_labels")
    dummy = DummyClassifier(strategy="most_frequent").fit(np.zeros((len(train), 1)), train)
    predicted = dummy.predict(np.zeros((len(test), 1)))
    scores = classification_metrics(test, predicted)
    majority = dummy.classes_[np.argmax(dummy.class_prior_)]
    return {
        "majority": majority.item() if isinstance(majority, np.generic) else majority,
        "accuracy": scores["accuracy"],
        "balanced_accuracy": scores["balanced_accuracy"],
    }


def median_baseline(train_years, test_years) -> dict:
    """Error of always predicting the training split's median age. Lab 06.

    The median is the constant that minimises the mean absolute error on the training split,
    so it is the no-learning baseline for MAE (the mean is the one for squared error).
    Returns ``{"median", "mae", "rmse"}`` on ``test_years``.
    """
    train = np.asarray(train_years, dtype=float).ravel()
    test = np.asarray(test_years, dtype=float).ravel()
    if train.size == 0 or test.size == 0 or np.isnan(train).any() or np.isnan(test).any():
        raise ValueError("median_baseline needs non-empty arrays of ages without NaN; drop "
                         "unlabelled faces first.")
    median = float(np.median(train))
    return {"median": median, **{k: v for k, v in regression_metrics(
        test, np.full(test.shape, median)).items() if k != "mean_signed_error"}}


def cumulative_probabilities(class_probabilities) -> np.ndarray:
    """``P(rank > k)`` for k = 0..K-2 from per-class probabilities ``(N, K)``. Lab 06.

    ``1 - cumsum(p)[:, :-1]``: for a softmax head, the chance that the face is older than
    class ``k``; non-increasing in ``k`` whatever the probabilities, since each step removes
    a non-negative ``p_k``.
    """
    p = np.asarray(class_probabilities, dtype=float)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"pass per-class probabilities of shape (N, K >= 2), got {p.shape}.")
    return 1.0 - np.cumsum(p, axis=1)[:, :-1]


def rank_inconsistencies(probabilities, tolerance: float = 0.0) -> np.ndarray:
    """Per face, how many times ``P(rank > k)`` rises from one ``k`` to the next. Lab 06.

    ``probabilities`` is ``(N, K-1)`` (e.g. ``fl.losses.coral_probabilities`` or the sigmoids
    of an OR-CNN head). A rank-consistent face has 0: ``P(rank > k)`` must not increase with
    ``k`` (Cao, Mirjalili & Raschka 2020). A rise must exceed ``tolerance``. Count the faces
    with any rise as ``(rank_inconsistencies(p) > 0).sum()``.
    """
    p = np.asarray(probabilities, dtype=float)
    if p.ndim != 2 or p.shape[1] < 1:
        raise ValueError(f"pass cumulative probabilities of shape (N, K-1), got {p.shape}.")
    return (np.diff(p, axis=1) > tolerance).sum(axis=1)


def bootstrap_ci(values, statistic=np.mean, confidence: float = 0.95,
                 n_resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over per-face ``values``. Lab 02.

    Resamples the faces with replacement ``n_resamples`` times (``scipy.stats.bootstrap``,
    percentile method, seeded) and returns the ``(1 - confidence) / 2`` and
    ``(1 + confidence) / 2`` quantiles of the statistic: how much the figure would move on
    another test set of the same size from the same population. It says nothing about seeds.
    ``statistic`` takes an array and an ``axis`` (``np.mean`` for accuracy from 0/1 hits or
    MAE from absolute errors).
    """
    from scipy import stats

    values = np.asarray(values, dtype=float).ravel()
    if values.size < 2 or np.isnan(values).any():
        raise ValueError(f"bootstrap_ci needs at least 2 per-face values without NaN, got "
                         f"{values.size}; drop unlabelled faces first.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence}; pass a level in (0, 1), e.g. 0.95.")
    if np.all(values == values[0]):
        value = float(statistic(values, axis=0))
        return value, value  # every resample is the same sample
    result = stats.bootstrap((values,), statistic, confidence_level=confidence,
                             n_resamples=int(n_resamples), method="percentile",
                             vectorized=True, rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def paired_bootstrap(a, b, statistic=np.mean, confidence: float = 0.95,
                     n_resamples: int = 2000, seed: int = 0) -> dict:
    """Two models on the same faces: ``statistic(a) - statistic(b)`` with a paired interval. Lab 03.

    ``a[i]`` and ``b[i]`` are per-face values of two models on face ``i`` (1/0 hits for
    accuracy, absolute errors for MAE). Faces are resampled *together* (``scipy.stats.bootstrap``
    with ``paired=True``, percentile method, seeded), so a face that is hard for both models
    moves both. Returns ``difference``, ``ci_low``, ``ci_high`` and ``real`` (the interval
    excludes 0): the test for "model A beats model B on this test set".
    """
    from scipy import stats

    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape or a.size < 2 or np.isnan(a).any() or np.isnan(b).any():
        raise ValueError(f"pass two equally long per-face arrays without NaN (one value per "
                         f"face, same faces in the same order), got {a.size} and {b.size}.")
    difference = float(statistic(a, axis=0) - statistic(b, axis=0))
    if np.all(a - b == (a - b)[0]) and np.all(a == a[0]):
        low = high = difference
    else:
        result = stats.bootstrap((a, b), lambda x, y, axis=-1: statistic(x, axis=axis)
                                 - statistic(y, axis=axis), paired=True, vectorized=True,
                                 confidence_level=confidence, n_resamples=int(n_resamples),
                                 method="percentile", rng=np.random.default_rng(seed))
        low, high = (float(result.confidence_interval.low),
                     float(result.confidence_interval.high))
    return {"difference": difference, "ci_low": low, "ci_high": high,
            "real": bool(low > 0 or high < 0)}


def paired_difference(a, b, confidence: float = 0.95) -> dict:
    """Mean difference ``a - b`` over paired repeats (same seeds or folds), with a t-interval. Lab 02.

    ``a[i]`` and ``b[i]`` must come from the same seed (or fold), so the seed's luck cancels
    in each difference. Returns ``n``, ``mean``, ``std`` (of the differences, n - 1),
    ``ci_low``/``ci_high`` (Student's t interval of the mean difference, ``scipy.stats.t``),
    ``p_value`` (``scipy.stats.ttest_rel``) and ``real``: whether the interval excludes 0, the
    only case in which the lab calls the difference larger than the seed spread.
    """
    from scipy import stats

    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape or a.size < 2:
        raise ValueError(f"pass two equally long sequences of at least 2 paired results (one per "
                         f"seed or fold), got {a.size} and {b.size}.")
    diff = a - b
    mean, std, n = float(diff.mean()), float(diff.std(ddof=1)), int(diff.size)
    if std <= 1e-12 * max(1.0, abs(mean)):  # the same difference on every seed (to rounding)
        std = 0.0
        low = high = mean
        p_value = 0.0 if mean != 0 else 1.0
    else:
        half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
        low, high = mean - half, mean + half
        p_value = float(stats.ttest_rel(a, b).pvalue)
    return {"n": n, "mean": mean, "std": std, "ci_low": low, "ci_high": high,
            "p_value": p_value, "real": bool(low > 0 or high < 0)}


# --------------------------------------------------------------------------------------------
# Running a model
# --------------------------------------------------------------------------------------------

def predict(model, dataset, schemes, metadata: pd.DataFrame | None = None) -> pd.DataFrame:
    """Run ``model`` once over ``dataset``; one row per image with truth and prediction. Lab 00.

    ``dataset`` yields ``(images, {output: labels})`` batches (``fl.pipeline.make_dataset``,
    unshuffled); the model returns a dict of outputs keyed by ``scheme.output``. Columns per
    scheme, by kind:

    - classification: ``<o>_true``, ``<o>_pred`` (class indices), ``<o>_true_name``,
      ``<o>_pred_name`` and ``<o>_prob_<class>`` per class. Softmax outputs (B, K) and a single
      sigmoid unit (B, 1) for two classes both work; logits are turned into probabilities.
    - regression: ``<o>_true``, ``<o>_pred`` in years (the scheme's ``decode`` undoes its
      scaling, e.g. age / 116).
    - ordinal (CORAL logits, B x K-1): ``<o>_true``, ``<o>_pred`` ranks (predicted rank = number
      of sigmoid(z_k) > 0.5), ``<o>_score`` the expected rank (sum of the K-1 probabilities) and,
      where ranks map to years, ``<o>_true_years``, ``<o>_pred_years``.

    Negative or NaN class labels (a "missing" mask) become ``<NA>`` and are left out of the
    metrics with a warning. ``metadata`` (e.g. ``test_df[["path", "gender", "race"]]``) is a
    table aligned row by row with the dataset; its columns come first in the result, so
    ``breakdown`` can group by them.
    """
    schemes = resolve(schemes)
    outputs = {s.output: [] for s in schemes}
    truths = {s.output: [] for s in schemes}
    for out, labels in _run_batches(model, dataset):
        out = _as_output_dict(out, schemes, "model output")
        labels = _as_output_dict(labels, schemes, "dataset labels")
        for s in schemes:
            outputs[s.output].append(_to_numpy(out[s.output]))
            truths[s.output].append(_to_numpy(labels[s.output]))
    if not outputs[schemes[0].output]:
        raise ValueError("the dataset yielded no batches; check the table it was built from.")

    columns: dict[str, object] = {}
    for s in schemes:
        raw = np.concatenate(outputs[s.output], axis=0)
        truth = np.concatenate(truths[s.output], axis=0)
        columns.update(_decode_task(s, raw, truth))
    table = pd.DataFrame(columns)

    if metadata is not None:
        if not isinstance(metadata, pd.DataFrame):
            raise ValueError("metadata must be a pandas DataFrame aligned with the dataset, "
                             "e.g. test_df[['gender', 'race']].")
        if len(metadata) != len(table):
            raise ValueError(
                f"metadata has {len(metadata)} rows but the dataset yielded {len(table)} images; "
                "pass the table the dataset was built from (unshuffled, same row order).")
        clash = sorted(set(metadata.columns) & set(table.columns))
        if clash:
            raise ValueError(f"metadata columns {clash} clash with prediction columns; "
                             "rename or drop them.")
        table = pd.concat([metadata.reset_index(drop=True), table], axis=1)
    return table


def features(model, dataset) -> tuple[np.ndarray, dict]:
    """One pass of ``model`` (e.g. a frozen backbone) over ``dataset``: outputs and labels. Lab 03.

    Returns ``(features, {output: labels})`` as numpy arrays, in the dataset's order (build it
    unshuffled). Used for *feature extraction*: run a frozen backbone once, then train heads on
    the stored features. Like :func:`predict`, a short last batch is zero-padded to the first
    batch's size, so the model is traced once.
    """
    outputs, labels = [], []
    for out, batch_labels in _run_batches(model, dataset):
        if isinstance(out, Mapping):
            raise ValueError(f"the model has several outputs {list(out)}; pass a model with one "
                             "(e.g. the backbone alone) to extract features.")
        outputs.append(out)
        if not isinstance(batch_labels, Mapping):
            raise ValueError("the dataset's labels must be a dict {output: labels}; build it "
                             "with fl.pipeline.make_dataset(df, schemes, ...).")
        labels.append({k: _to_numpy(v) for k, v in batch_labels.items()})
    if not outputs:
        raise ValueError("the dataset yielded no batches; check the table it was built from.")
    return (np.concatenate(outputs, axis=0),
            {k: np.concatenate([b[k] for b in labels], axis=0) for k in labels[0]})


def knn_accuracy(train_features, train_labels, val_features, val_labels, k: int = 10,
                 metric: str = "cosine") -> float:
    """How well an embedding separates the classes: a k-NN classifier's accuracy. Lab 05.

    scikit-learn's ``KNeighborsClassifier(k, metric=metric)`` is fitted on the training rows
    and scored on the validation rows (never the reverse: a point is its own nearest
    neighbour). ``metric="cosine"`` compares directions, as SupCon does. Rows whose label is
    missing (negative or NaN, ``fl.labels`` masks) are left out.
    """
    from sklearn.neighbors import KNeighborsClassifier

    def rows(features, labels, name):
        features = np.asarray(features, dtype=float)
        labels = np.asarray(labels, dtype=float).ravel()
        if features.ndim != 2 or len(features) != len(labels):
            raise ValueError(f"{name}: pass features (N, D) and N labels, got features of shape "
                             f"{features.shape} and {len(labels)} labels.")
        keep = ~np.isnan(labels) & (labels >= 0)
        return features[keep], labels[keep].astype(int)

    train_x, train_y = rows(train_features, train_labels, "train")
    val_x, val_y = rows(val_features, val_labels, "val")
    if train_x.shape[1] != val_x.shape[1]:
        raise ValueError(f"train features have {train_x.shape[1]} columns, val features "
                         f"{val_x.shape[1]}; embed both splits with the same model.")
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= len(train_x):
        raise ValueError(f"k={k!r}; pass an int between 1 and the {len(train_x)} labelled "
                         "training rows, e.g. 10.")
    if len(val_x) == 0:
        raise ValueError("no labelled validation row to score; check val_labels.")
    model = KNeighborsClassifier(n_neighbors=int(k), metric=metric).fit(train_x, train_y)
    return float(model.score(val_x, val_y))


def predict_oversampled(model, dataset, schemes, crop=227,
                        metadata: pd.DataFrame | None = None, centre: bool = False):
    """:func:`predict` with Levi & Hassner's over-sampled test: 10 crops, averaged. Lab 04.

    Levi & Hassner (2015), "Age and Gender Classification using Convolutional Neural
    Networks", CVPR Workshops (AMFG). Each image of ``dataset`` (uncropped, e.g.
    ``fl.pipeline.make_dataset(test_df, schemes, image_size=256)``) is cut into its four
    corner crops of side ``crop``, its centre crop and their horizontal mirrors
    (``fl.pipeline.ten_crops``); the model runs on each, and every head's output is averaged
    over the 10 (softmax probabilities, regression values, CORAL logits) before it is decoded
    as :func:`predict` does. Returns the same table as :func:`predict`; with ``centre=True``
    a pair ``(over_sampled, centre_crop)``, the second from the unmirrored centre crop alone
    (the paper's "single crop" test), taken from the same pass.
    """
    averaged = _TenCropAverage(model, crop)
    over_sampled = predict(averaged, dataset, schemes, metadata=metadata)
    if not centre:
        return over_sampled
    return over_sampled, predict(_Replay(averaged.centre), dataset, schemes, metadata=metadata)


class _TenCropAverage:
    """Wraps a model: ``predict_on_batch`` runs it on the 10 crops and averages each output;
    the centre crop's own outputs are kept in ``centre``, one entry per batch."""

    def __init__(self, model, crop):
        self.model, self.crop, self.centre = model, crop, []

    def predict_on_batch(self, images):
        from faceattr_lab import pipeline

        run = getattr(self.model, "predict_on_batch", None) or self.model
        outputs = [run(view) for view in _to_numpy(pipeline.ten_crops(images, self.crop))]
        self.centre.append(outputs[pipeline.TEN_CROPS.index("centre")])
        if isinstance(outputs[0], Mapping):
            return {k: np.mean([_to_numpy(o[k]) for o in outputs], axis=0) for k in outputs[0]}
        return np.mean([_to_numpy(o) for o in outputs], axis=0)


class _Replay:
    """A stand-in model that returns stored outputs, one batch after another."""

    def __init__(self, outputs):
        self.outputs = iter(outputs)

    def predict_on_batch(self, images):
        return next(self.outputs)


def decode_outputs(scheme, raw) -> dict:
    """One head's raw outputs for a batch as ``fl.evaluate.predict`` decodes them, without
    labels: its ``<o>_pred`` (and ``<o>_prob_*``, ``<o>_score``, ``<o>_pred_years``) columns. Lab 09.
    """
    raw = np.asarray(raw)
    columns = _decode_task(scheme, raw, np.full(len(raw), np.nan))
    return {name: value for name, value in columns.items() if "_true" not in name}


def _decode_task(scheme, raw: np.ndarray, truth: np.ndarray) -> dict:
    """The prediction columns of one task from the raw model output and the batch labels."""
    o, kind = scheme.output, scheme.kind
    n = len(raw)
    if kind == "classification":
        k = _num_classes(scheme)
        probs = _class_probabilities(raw, k, o)
        true_idx = _class_indices(truth, k, o)
        pred_idx = pd.array(probs.argmax(axis=1), dtype="Int64")
        names = dict(enumerate(scheme.classes))
        cols = {
            f"{o}_true": true_idx,
            f"{o}_pred": pred_idx,
            f"{o}_true_name": pd.Series(true_idx).map(names).astype("string").array,
            f"{o}_pred_name": pd.Series(pred_idx).map(names).astype("string").array,
        }
        for i, name in enumerate(scheme.classes):
            cols[f"{o}_prob_{name}"] = probs[:, i]
        return cols
    if kind == "regression":
        values = raw.reshape(n, -1)
        if values.shape[1] != 1:
            raise ValueError(f"the {o!r} regression output has shape {raw.shape}; expected one "
                             "value per image (B, 1).")
        to_years = (getattr(scheme, "inverse", None) or getattr(scheme, "decode", None)
                    or (lambda v: v))
        true = np.asarray(truth, dtype=float).reshape(n, -1)[:, 0]
        return {
            f"{o}_true": np.asarray(to_years(true), dtype=float),
            f"{o}_pred": np.asarray(to_years(values[:, 0]), dtype=float),
        }
    if kind == "ordinal":
        k = _num_classes(scheme)
        logits = raw.reshape(n, -1)
        if logits.shape[1] != k - 1:
            raise ValueError(f"the {o!r} ordinal output has {logits.shape[1]} logits per image; "
                             f"CORAL with {k} ranks needs K-1 = {k - 1}.")
        probs = _sigmoid(logits)
        pred = (probs > 0.5).sum(axis=1)
        if truth.ndim == 2 and truth.shape[1] == k - 1:  # extended binary labels (CORAL levels)
            truth = truth.sum(axis=1)
        true = _class_indices(truth, k, o)
        cols = {
            f"{o}_true": true,
            f"{o}_pred": pd.array(pred, dtype="Int64"),
            f"{o}_score": probs.sum(axis=1),
        }
        years = _ranks_to_years(scheme)
        if years is not None:
            cols[f"{o}_true_years"] = years(true)
            cols[f"{o}_pred_years"] = years(pred)
        return cols
    raise ValueError(f"scheme {getattr(scheme, 'name', o)!r} has kind {kind!r}; "
                     f"expected one of {KINDS}.")


# --------------------------------------------------------------------------------------------
# Tidy tables
# --------------------------------------------------------------------------------------------

def evaluate(predictions: pd.DataFrame, schemes, run: str = "run",
             ci: float | None = None, n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Tidy metrics table of a ``predict`` result: run, task, metric, value. Lab 00.

    Classification: ``accuracy``, ``balanced_accuracy``, ``macro_f1`` (+ ``one_off_accuracy``
    for ordered groups such as age groups). Regression and ordinal: ``mae``, ``rmse``,
    ``mean_signed_error``, in years where the scheme maps values to years (ordinal ranks
    otherwise). ``task`` is the scheme's output (``"gender"``, ``"age"``, ``"race"``).

    ``ci=0.95`` adds ``ci_low`` and ``ci_high``: a percentile bootstrap interval over the faces
    (:func:`bootstrap_ci`) for the metrics that are a mean over faces (``accuracy``,
    ``one_off_accuracy``, ``mae``, ``rmse``, ``mean_signed_error``); the others get NaN. Lab 02.
    """
    rows = []
    for scheme in resolve(schemes):
        scores = _task_metrics(predictions, scheme)
        intervals = _task_intervals(predictions, scheme, ci, n_resamples, seed) if ci else {}
        for metric, value in scores.items():
            low, high = intervals.get(metric, (math.nan, math.nan))
            rows.append((run, scheme.output, metric, value, low, high))
    table = pd.DataFrame(rows, columns=[*TIDY_COLUMNS, "ci_low", "ci_high"])
    return table if ci else table[list(TIDY_COLUMNS)]


def _task_intervals(predictions, scheme, confidence, n_resamples, seed) -> dict:
    """Bootstrap intervals of one task's per-face metrics (see :func:`evaluate`)."""
    subset = predictions[_labelled(predictions, scheme)]
    years = scheme.kind != "classification"
    true, pred = _task_columns(subset, scheme, years=years)
    options = dict(confidence=confidence, n_resamples=n_resamples, seed=seed)
    if scheme.kind == "classification":
        intervals = {"accuracy": bootstrap_ci(true == pred, **options)}
        if _is_ordered(scheme):
            intervals["one_off_accuracy"] = bootstrap_ci(np.abs(true - pred) <= 1, **options)
        return intervals
    error = pred - true
    return {"mae": bootstrap_ci(np.abs(error), **options),
            "rmse": bootstrap_ci(error ** 2, _root_mean, **options),
            "mean_signed_error": bootstrap_ci(error, **options)}


def _root_mean(values, axis=-1):
    return np.sqrt(np.mean(values, axis=axis))


def breakdown(predictions: pd.DataFrame, schemes, by=("gender", "race"), run: str = "run",
              ci: float | None = None, n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per-group metrics (the fairness view): run, task, by, group, metric, value, n. Lab 01.

    For each attribute in ``by`` the predictions are split by that column's values and
    ``evaluate``'s metrics are computed within each group; ``n`` is the group's number of
    labelled images. ``by`` names a metadata column passed to ``predict`` (e.g. ``"race"``);
    without one, the true class names of the task on that output (``<by>_true_name``) are used.
    Gender codes 0/1 are shown as male/female and missing values as ``"unknown"``, so no image
    drops out.

    Lab 08 adds two things. An entry of ``by`` may be a tuple of columns, meaning their
    intersection: ``by=["race", ("gender", "race")]`` gives the ``by`` value ``"gender x race"``
    and groups such as ``"female / Black"``. ``ci=0.95`` adds ``ci_low`` and ``ci_high`` to the
    ``accuracy`` and ``balanced_accuracy`` rows (NaN for the other metrics): a percentile
    bootstrap over the group's faces (:func:`resampled_scores`, ``n_resamples`` resamples drawn
    with ``numpy.random.default_rng(seed)``), i.e. how much the group's figure would move on
    another test set with as many faces of that group. Small groups get wide intervals.
    """
    entries = [by] if isinstance(by, str) else list(by)
    schemes = resolve(schemes)
    if ci is not None:
        _check_ci(ci)
    rows = []
    for entry in entries:
        label, groups = _groups(predictions, entry, schemes)
        for group in sorted(groups.unique(), key=str):
            subset = predictions[(groups == group).to_numpy()]
            for scheme in schemes:
                n = int(_labelled(subset, scheme).sum())
                if n == 0:
                    continue
                intervals = {}
                if ci is not None and scheme.kind == "classification":
                    true, pred = _classification_arrays(subset, scheme)
                    intervals = {metric: _percentile(resampled, ci) for metric, resampled in
                                 resampled_scores(true, pred, n_resamples, seed).items()}
                for metric, value in _task_metrics(subset, scheme, warn=False).items():
                    low, high = intervals.get(metric, (math.nan, math.nan))
                    rows.append((run, scheme.output, label, group, metric, value, n, low, high))
    table = pd.DataFrame(rows, columns=[*BREAKDOWN_COLUMNS, "ci_low", "ci_high"])
    return table if ci is not None else table[list(BREAKDOWN_COLUMNS)]


GAP_METRICS = ("accuracy", "balanced_accuracy")
GAP_COLUMNS = ("task", "by", "metric", "best_group", "worst_group", "best", "worst", "gap",
               "ci_low", "ci_high", "n_best", "n_worst", "excludes_zero")


def group_gaps(predictions: pd.DataFrame, schemes, by, metric: str = "accuracy",
               ci: float = 0.95, n_resamples: int = 1000, seed: int = 0,
               min_group: int = 20) -> pd.DataFrame:
    """The largest gap between two groups, per task, with a bootstrap interval. Lab 08.

    For each classification task, ``metric`` (``"accuracy"`` or ``"balanced_accuracy"``) is
    computed in every group of ``by`` (a column name such as ``"race"``, or a tuple of columns
    meaning their intersection, ``("gender", "race")``; a list of those gives one row per task
    and entry). The best and the worst group give ``gap = best - worst``. Its interval
    resamples faces within each of the two groups independently (they are different faces),
    ``n_resamples`` times, and takes the percentiles of the difference; ``excludes_zero`` says
    whether the interval lies above 0.

    Groups with fewer than ``min_group`` labelled faces, and the ``"unknown"`` group of faces
    without the attribute, are left out of the best/worst choice and listed (task, by, group,
    n, reason: one dict each) in ``table.attrs["left_out"]``; ``table.attrs["too_small"]`` lists
    the small ones alone. A task with fewer than two groups left gets a row of NaN.

    Read it with care: picking the best and the worst of many groups on the same faces that
    measure them inflates the gap (a selection effect; with equal true accuracies the extremes
    still differ by chance, more so with many small groups). The interval does not correct for
    that choice, so read the gap once on the test split, or confirm it with more seeds.
    """
    if metric not in GAP_METRICS:
        raise ValueError(f"metric={metric!r}; group_gaps compares {GAP_METRICS} (the metrics "
                         "with a per-face bootstrap here); for others use breakdown().")
    _check_ci(ci)
    if not isinstance(min_group, (int, np.integer)) or min_group < 1:
        raise ValueError(f"min_group={min_group!r}; pass a positive int, e.g. 20.")
    entries = [by] if isinstance(by, (str, tuple)) else list(by)
    rows, left_out = [], []
    for entry in entries:
        for scheme in resolve(schemes):
            if scheme.kind != "classification":
                raise ValueError(f"{scheme.output!r} is a {scheme.kind} task; group_gaps needs "
                                 "classification tasks (use breakdown() for errors in years).")
            label, groups = _groups(predictions, entry, resolve(schemes))
            labelled = _labelled(predictions, scheme).to_numpy()
            true, pred = _classification_arrays(predictions, scheme)
            group_of = groups.to_numpy()[labelled]
            eligible = {}
            for group in sorted(set(group_of), key=str):
                members = group_of == group
                n = int(members.sum())
                reason = ("unknown" if _MISSING_GROUP in group.split(_JOIN)
                          else "too_small" if n < min_group else None)
                if reason:
                    left_out.append((scheme.output, label, group, n, reason))
                    continue
                value = _point_scores(true[members], pred[members])[metric]
                eligible[group] = (value, true[members], pred[members])
            if len(eligible) < 2:
                rows.append((scheme.output, label, metric, None, None, *[math.nan] * 5,
                             0, 0, False))
                continue
            best = max(eligible, key=lambda g: (eligible[g][0], str(g)))
            worst = min(eligible, key=lambda g: (eligible[g][0], str(g)))
            rng = np.random.default_rng(seed)
            high_draws = resampled_scores(*eligible[best][1:], n_resamples, rng=rng)[metric]
            low_draws = resampled_scores(*eligible[worst][1:], n_resamples, rng=rng)[metric]
            low, high = _percentile(high_draws - low_draws, ci)
            gap = eligible[best][0] - eligible[worst][0]
            rows.append((scheme.output, label, metric, best, worst, eligible[best][0],
                         eligible[worst][0], gap, low, high, eligible[best][1].size,
                         eligible[worst][1].size, bool(low > 0)))
    table = pd.DataFrame(rows, columns=list(GAP_COLUMNS))
    # plain records, not tables: pandas compares attrs when it concatenates tables
    left = [dict(zip(("task", "by", "group", "n", "reason"), row)) for row in left_out]
    table.attrs["left_out"] = left
    table.attrs["too_small"] = [row for row in left if row["reason"] == "too_small"]
    return table


def resampled_scores(true, pred, n_resamples: int = 1000, seed: int = 0, rng=None) -> dict:
    """Accuracy and balanced accuracy on ``n_resamples`` bootstrap resamples, at once. Lab 08.

    The resamples are one ``(n_resamples, n)`` matrix of face indices,
    ``rng.integers(0, n, size=(n_resamples, n))`` with ``rng = numpy.random.default_rng(seed)``
    (or the ``rng`` given), so every figure is computed for all resamples in a few numpy
    operations. Balanced accuracy is the mean, over the true classes present in the resample,
    of each class's recall (scikit-learn's ``balanced_accuracy_score``), counted with one
    ``numpy.bincount`` per resample batch. Returns ``{"accuracy": (n_resamples,) array,
    "balanced_accuracy": (n_resamples,) array}``.
    """
    true = np.asarray(true).astype(int).ravel()
    pred = np.asarray(pred).astype(int).ravel()
    if true.shape != pred.shape or true.size == 0:
        raise ValueError(f"pass equally long, non-empty true and predicted class indices, got "
                         f"{true.size} and {pred.size}.")
    if true.min() < 0 or pred.min() < 0:
        raise ValueError("class indices must be >= 0; drop unlabelled faces (-1) first.")
    if not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ValueError(f"n_resamples={n_resamples!r}; pass a positive int, e.g. 1000.")
    rng = np.random.default_rng(seed) if rng is None else rng
    index = rng.integers(0, true.size, size=(int(n_resamples), true.size))
    return _scores_of(true[index], (true == pred)[index])


def _point_scores(true, pred) -> dict:
    """Accuracy and balanced accuracy of one sample, by the same code as the resamples."""
    true = np.asarray(true).astype(int).ravel()
    hits = true == np.asarray(pred).astype(int).ravel()
    return {k: float(v[0]) for k, v in _scores_of(true[None, :], hits[None, :]).items()}


def _scores_of(true: np.ndarray, hits: np.ndarray) -> dict:
    """Accuracy and balanced accuracy per row of (R, n) true classes and 0/1 hits."""
    r, _ = true.shape
    k = int(true.max()) + 1
    keys = (np.arange(r)[:, None] * k + true).ravel()
    counts = np.bincount(keys, minlength=r * k).reshape(r, k)
    right = np.bincount(keys, weights=hits.ravel().astype(float), minlength=r * k).reshape(r, k)
    present = counts > 0
    recall = np.divide(right, counts, out=np.zeros_like(right), where=present)
    return {"accuracy": hits.mean(axis=1),
            "balanced_accuracy": recall.sum(axis=1) / present.sum(axis=1)}


def _percentile(values, ci: float) -> tuple[float, float]:
    """The percentile interval ((1 - ci) / 2, (1 + ci) / 2) of bootstrap values (numpy's
    default linear interpolation)."""
    low, high = np.quantile(np.asarray(values, dtype=float), [(1 - ci) / 2, (1 + ci) / 2])
    return float(low), float(high)


def _check_ci(ci) -> None:
    if not isinstance(ci, (float, int)) or isinstance(ci, bool) or not 0 < ci < 1:
        raise ValueError(f"ci={ci!r}; pass a confidence level in (0, 1), e.g. 0.95.")


def _classification_arrays(predictions, scheme):
    """True and predicted class indices (ints) of a classification task's labelled rows."""
    subset = predictions[_labelled(predictions, scheme)]
    true, pred = _task_columns(subset, scheme, years=False)
    return true.astype(int), pred.astype(int)


CALIBRATION_COLUMNS = ("task", "by", "group", "bin", "lower", "upper", "n", "confidence",
                       "accuracy")
CALIBRATION_ERROR_COLUMNS = ("task", "by", "group", "metric", "value", "n")


def calibration(predictions: pd.DataFrame, scheme, bins: int = 10, by=None) -> pd.DataFrame:
    """Reliability table: per confidence bin, mean confidence against accuracy. Lab 08.

    Guo, Pleiss, Sun & Weinberger (2017), "On Calibration of Modern Neural Networks", ICML.
    Each labelled face's *confidence* is its top-label probability (the largest
    ``<o>_prob_<class>`` that :func:`predict` wrote) and it is right when that class is its
    ``<o>_true``. Faces fall into ``bins`` equal-width bins on [0, 1], ``(lower, upper]``
    (the first bin also holds 0). Columns: ``task, by, group, bin, lower, upper, n,
    confidence, accuracy``, one row per non-empty bin. A calibrated model has accuracy equal
    to confidence in every bin. ``by`` (a column, or a tuple of columns for their intersection,
    as in :func:`breakdown`) gives one set of bins per group; without it ``by`` and ``group``
    are ``"all"``. Only classification schemes have class probabilities; ordinal and
    regression schemes raise ``ValueError``.
    """
    scheme = _one_scheme(scheme)
    bins = _check_bins(bins)
    frames = []
    for label, group, confidence, hits in _calibration_groups(predictions, scheme, by):
        index = _bin_index(confidence, bins)
        counts = np.bincount(index, minlength=bins)
        conf_sum = np.bincount(index, weights=confidence, minlength=bins)
        hit_sum = np.bincount(index, weights=hits.astype(float), minlength=bins)
        filled = np.flatnonzero(counts)
        frames.append(pd.DataFrame({
            "task": scheme.output, "by": label, "group": group, "bin": filled,
            "lower": filled / bins, "upper": (filled + 1) / bins, "n": counts[filled],
            "confidence": conf_sum[filled] / counts[filled],
            "accuracy": hit_sum[filled] / counts[filled]}))
    return pd.concat(frames, ignore_index=True)[list(CALIBRATION_COLUMNS)]


def calibration_error(predictions: pd.DataFrame, schemes, bins: int = 10, by=None,
                      ci: float | None = None, n_resamples: int = 1000,
                      seed: int = 0) -> pd.DataFrame:
    """Expected calibration error (ECE) per task and group, a tidy table. Lab 08.

    Columns ``task, by, group, metric, value, n`` (+ ``ci_low, ci_high`` with ``ci``).

    Guo et al. (2017): ``ECE = sum_b (n_b / N) |accuracy_b - confidence_b|`` over the
    equal-width confidence bins of :func:`calibration` (0 = calibrated; 0.05 means confidence
    and accuracy differ by 5 points on average, weighted by faces). ``metric`` is ``"ece"``.
    ``ci=0.95`` adds ``ci_low``/``ci_high``: a percentile bootstrap over the group's faces
    (``n_resamples`` index resamples from ``numpy.random.default_rng(seed)``, vectorised).
    ECE with few faces per bin is biased upwards (the |.| of noise is positive, so even a
    calibrated model scores above 0 on a small group), and the bootstrap inherits that bias:
    compare groups of similar size, and read a small group's ECE and interval as rough.
    """
    bins = _check_bins(bins)
    if ci is not None:
        _check_ci(ci)
    rows = []
    for scheme in resolve(schemes):
        for label, group, confidence, hits in _calibration_groups(predictions, scheme, by):
            index = _bin_index(confidence, bins)
            value = float(_ece(index[None, :], confidence[None, :], hits[None, :], bins)[0])
            row = [scheme.output, label, group, "ece", value, int(confidence.size)]
            if ci is not None:
                rng = np.random.default_rng(seed)
                draw = rng.integers(0, confidence.size, size=(int(n_resamples), confidence.size))
                row += list(_percentile(_ece(index[draw], confidence[draw], hits[draw], bins),
                                        ci))
            rows.append(row)
    columns = [*CALIBRATION_ERROR_COLUMNS, *(("ci_low", "ci_high") if ci is not None else ())]
    return pd.DataFrame(rows, columns=columns)


def _ece(index, confidence, hits, bins: int) -> np.ndarray:
    """ECE per row of (R, n) bin indices, confidences and 0/1 hits: sum_b |hits_b - conf_b| / n."""
    r, n = index.shape
    keys = (np.arange(r)[:, None] * bins + index).ravel()
    conf_sum = np.bincount(keys, weights=confidence.ravel(), minlength=r * bins)
    hit_sum = np.bincount(keys, weights=hits.ravel().astype(float), minlength=r * bins)
    return np.abs(hit_sum - conf_sum).reshape(r, bins).sum(axis=1) / n


def _bin_index(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Bin of each confidence: b such that b / bins < c <= (b + 1) / bins (0 goes to bin 0)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    return np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)


def _check_bins(bins) -> int:
    if not isinstance(bins, (int, np.integer)) or isinstance(bins, bool) or bins < 1:
        raise ValueError(f"bins={bins!r}; pass a positive int, e.g. 10 (Guo et al. use 15).")
    return int(bins)


def _one_scheme(scheme):
    schemes = resolve(scheme)
    if len(schemes) != 1:
        raise ValueError(f"calibration() takes one scheme, got {len(schemes)}; call it per task "
                         "or use calibration_error(predictions, schemes).")
    return schemes[0]


def _calibration_groups(predictions, scheme, by):
    """Yield ``(by label, group, confidences, hits)`` of a classification task's labelled faces."""
    if scheme.kind != "classification":
        raise ValueError(f"{scheme.output!r} is a {scheme.kind} task; calibration here needs "
                         "class probabilities (<output>_prob_<class> columns of a "
                         "classification scheme).")
    columns = [f"{scheme.output}_prob_{name}" for name in scheme.classes]
    missing = [c for c in columns if c not in predictions.columns]
    if missing:
        raise ValueError(f"predictions have no {missing} column(s); make them with "
                         f"fl.evaluate.predict(model, dataset, schemes) including "
                         f"{scheme.output!r}.")
    labelled = _labelled(predictions, scheme).to_numpy()
    probabilities = predictions.loc[labelled, columns].to_numpy(dtype=float)
    true = predictions.loc[labelled, f"{scheme.output}_true"].to_numpy(dtype=int)
    confidence = probabilities.max(axis=1)
    hits = probabilities.argmax(axis=1) == true
    if by is None:
        if confidence.size:
            yield "all", "all", confidence, hits
        return
    label, groups = _groups(predictions, by, resolve([scheme]))
    groups = groups.to_numpy()[labelled]
    for group in sorted(set(groups), key=str):
        members = groups == group
        yield label, group, confidence[members], hits[members]


def confusion(predictions: pd.DataFrame, scheme) -> pd.DataFrame:
    """Confusion matrix of one classification/ordinal task, labelled with class names. Lab 01.

    Rows are true classes (``index.name == "true"``), columns predicted classes, in the
    scheme's class order; every class gets a row and a column even when absent.
    """
    if scheme.kind == "regression":
        raise ValueError(f"{scheme.output!r} is a regression task; a confusion matrix needs "
                         "classes: use fl.plots.age_error for regression errors.")
    true, pred = _task_columns(predictions, scheme, years=False)
    classes = list(scheme.classes) or [str(i) for i in range(_num_classes(scheme))]
    matrix = skm.confusion_matrix(true.astype(int), pred.astype(int),
                                  labels=list(range(len(classes))))
    return pd.DataFrame(matrix, index=pd.Index(classes, name="true"),
                        columns=pd.Index(classes, name="predicted"))


def compare(*tables, keys: Sequence | None = None, name: str = "run") -> pd.DataFrame:
    """Stack tidy tables into one, optionally labelling each with a key. Lab 02.

    ``compare(t1, t2)`` concatenates; ``compare(t1, t2, keys=[1, 2], name="seed")`` or
    ``compare({"single": t1, "multi": t2})`` sets column ``name`` (default ``"run"``) to each
    table's key first, so ``summarize`` and ``wide`` can tell the runs apart.
    """
    if len(tables) == 1 and isinstance(tables[0], Mapping):
        if keys is not None:
            raise ValueError("pass keys either as the dict's keys or as keys=, not both.")
        keys, tables = list(tables[0].keys()), tuple(tables[0].values())
    if len(tables) == 1 and isinstance(tables[0], (list, tuple)):
        tables = tuple(tables[0])
    if not tables:
        raise ValueError("compare needs at least one table, e.g. compare(table_a, table_b).")
    if keys is not None:
        if len(keys) != len(tables):
            raise ValueError(f"got {len(keys)} keys for {len(tables)} tables; give one per table.")
        tables = [t.assign(**{name: key}) for t, key in zip(tables, keys)]
    for t in tables:
        if not isinstance(t, pd.DataFrame):
            raise ValueError(f"compare takes DataFrames from evaluate/breakdown, got {type(t)}.")
    return pd.concat(tables, ignore_index=True)


def summarize(table: pd.DataFrame, by: Sequence[str] = ("task", "metric"), over: str = "run",
              digits: int = 3) -> pd.DataFrame:
    """Mean, std (n - 1) and n of ``value`` over seeds, folds or runs, plus "mean ± std". Lab 02.

    ``over`` names the column whose values are the repeats (``"seed"``, ``"fold"``, ``"run"``);
    each combination of ``by`` columns becomes one row. Two rows sharing both the ``by`` values
    and the ``over`` value raise an error: a column telling them apart is missing from ``by``.
    """
    by = [by] if isinstance(by, str) else list(by)
    missing = [c for c in [*by, over, "value"] if c not in table.columns]
    if missing:
        raise ValueError(f"table has no column(s) {missing}; it has {list(table.columns)}. "
                         "Label repeats with compare(..., keys=[...], name='seed').")
    if over in by:
        raise ValueError(f"over={over!r} is also in by={by}; summarize over a column not in by.")
    duplicated = table.duplicated(subset=[*by, over], keep=False)
    if duplicated.any():
        example = table.loc[duplicated, [*by, over]].iloc[0].to_dict()
        raise ValueError(f"several rows share {example}; add the column that tells them apart "
                         f"(e.g. 'group' or 'run') to by=.")
    stats = (table.groupby(by, sort=False, dropna=False)["value"]
             .agg(mean="mean", std="std", n="count").reset_index())
    stats["n"] = stats["n"].astype(int)
    stats["mean ± std"] = [_format_mean_std(m, s, digits) for m, s in zip(stats["mean"],
                                                                         stats["std"])]
    return stats


def wide(table: pd.DataFrame, index: str | Sequence[str] = "run",
         columns: Sequence[str] = ("task", "metric"), values: str = "value") -> pd.DataFrame:
    """Pivot a tidy table: one row per run, one column per task and metric. Lab 02.

    Column names join the ``columns`` values with a space (``"gender accuracy"``). Use
    ``values="mean ± std"`` on a ``summarize`` result for a one-line-per-run comparison.
    Rows and columns keep the order in which they first appear.
    """
    index = [index] if isinstance(index, str) else list(index)
    columns = [columns] if isinstance(columns, str) else list(columns)
    missing = [c for c in [*index, *columns, values] if c not in table.columns]
    if missing:
        raise ValueError(f"table has no column(s) {missing}; it has {list(table.columns)}.")
    if table.duplicated(subset=[*index, *columns]).any():
        raise ValueError(f"several rows share the same {index + columns}; filter the table or "
                         "summarize it first (e.g. over seeds).")
    flat = table.assign(_column=table[columns].astype(str).agg(" ".join, axis=1))
    out = flat.pivot(index=index, columns="_column", values=values)
    out = out.reindex(index=flat.set_index(index).index.unique(),
                      columns=flat["_column"].unique())
    out.columns.name = None
    return out


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

def _task_metrics(predictions: pd.DataFrame, scheme, warn: bool = True) -> dict:
    """Metric name -> value for one task on the rows whose truth is known."""
    labelled = _labelled(predictions, scheme)
    if warn and not labelled.all():
        warnings.warn(f"{int((~labelled).sum())} of {len(labelled)} images have no "
                      f"{scheme.output!r} label and are left out of its metrics.", stacklevel=3)
    subset = predictions[labelled]
    if subset.empty:
        raise ValueError(f"no image has a {scheme.output!r} label; nothing to evaluate.")
    if scheme.kind == "classification":
        true, pred = _task_columns(subset, scheme, years=False)
        scores = classification_metrics(true.astype(int), pred.astype(int),
                                        classes=scheme.classes)
        scores.pop("confusion_matrix")
        if _is_ordered(scheme):
            scores["one_off_accuracy"] = one_off_accuracy(true.astype(int), pred.astype(int))
        return scores
    true, pred = _task_columns(subset, scheme, years=True)
    return regression_metrics(true, pred)


def _task_columns(predictions, scheme, years: bool):
    """The truth and prediction arrays of a task (years columns for ordinal when asked)."""
    o = scheme.output
    true_col, pred_col = f"{o}_true", f"{o}_pred"
    if years and f"{o}_true_years" in predictions.columns:
        true_col, pred_col = f"{o}_true_years", f"{o}_pred_years"
    missing = [c for c in (true_col, pred_col) if c not in predictions.columns]
    if missing:
        raise ValueError(f"predictions have no {missing} column(s); make them with "
                         f"fl.evaluate.predict(model, dataset, schemes) including {o!r}.")
    return (predictions[true_col].to_numpy(dtype=float, na_value=np.nan),
            predictions[pred_col].to_numpy(dtype=float, na_value=np.nan))


def _labelled(predictions, scheme) -> pd.Series:
    column = f"{scheme.output}_true"
    if column not in predictions.columns:
        raise ValueError(f"predictions have no {column!r} column; make them with "
                         "fl.evaluate.predict(model, dataset, schemes).")
    return predictions[column].notna()


def _group_column(predictions: pd.DataFrame, attribute: str, schemes) -> pd.Series:
    task = {s.output: s for s in schemes}.get(attribute)
    if attribute in predictions.columns:
        values = predictions[attribute]
    elif f"{attribute}_true_name" in predictions.columns:
        values = predictions[f"{attribute}_true_name"]
    elif (task is not None and task.kind == "classification"
          and f"{attribute}_true" in predictions.columns):
        values = predictions[f"{attribute}_true"].map(dict(enumerate(task.classes)))
    else:
        raise ValueError(f"cannot break down by {attribute!r}: no such column. Pass "
                         f"metadata=test_df[[{attribute!r}]] to predict(), or predict the "
                         f"{attribute!r} task.")
    names = GROUP_NAMES.get(attribute, {})
    return values.map(lambda v: _MISSING_GROUP if _isna(v) else str(names.get(v, v)))


def _groups(predictions: pd.DataFrame, entry, schemes) -> tuple[str, pd.Series]:
    """``(label, group per row)`` for one ``by`` entry: a column, or a tuple of columns whose
    intersection is named ``"female / Black"`` under the label ``"gender x race"``."""
    if isinstance(entry, str):
        return entry, _group_column(predictions, entry, schemes)
    columns = tuple(entry) if isinstance(entry, (tuple, list)) else ()
    if not columns or not all(isinstance(c, str) for c in columns):
        raise ValueError(f"by entry {entry!r}; pass a column name ('race') or a tuple of "
                         "column names for their intersection (('gender', 'race')).")
    if len(columns) == 1:
        return columns[0], _group_column(predictions, columns[0], schemes)
    parts = [_group_column(predictions, c, schemes) for c in columns]
    joined = parts[0].str.cat(parts[1:], sep=_JOIN)
    return " x ".join(columns), joined


def _is_ordered(scheme) -> bool:
    ordered = getattr(scheme, "ordered", None)
    if ordered is None:
        ordered = scheme.output == "age"
    return bool(ordered) and _num_classes(scheme) > 2


def _num_classes(scheme) -> int:
    k = getattr(scheme, "num_classes", None)
    return int(k) if k is not None else len(scheme.classes)


def _class_probabilities(raw: np.ndarray, k: int, output: str) -> np.ndarray:
    raw = raw.reshape(len(raw), -1).astype(float)
    if raw.shape[1] == 1 and k == 2:  # one sigmoid unit: P(class 1)
        p = raw[:, 0]
        if p.min() < 0 or p.max() > 1:
            p = _sigmoid(p)
        return np.stack([1 - p, p], axis=1)
    if raw.shape[1] != k:
        raise ValueError(f"the {output!r} output has {raw.shape[1]} values per image but the "
                         f"scheme has {k} classes; use the same scheme for model and evaluation.")
    is_probability = (raw.min() >= 0 and raw.max() <= 1
                      and np.allclose(raw.sum(axis=1), 1, atol=1e-3))
    if is_probability:
        return raw
    shifted = np.exp(raw - raw.max(axis=1, keepdims=True))  # logits -> softmax
    return shifted / shifted.sum(axis=1, keepdims=True)


def _class_indices(truth: np.ndarray, k: int, output: str):
    truth = np.asarray(truth)
    if truth.ndim == 2 and truth.shape[1] == k and k > 1:  # one-hot labels
        truth = truth.argmax(axis=1)
    truth = truth.reshape(len(truth), -1)
    if truth.shape[1] != 1:
        raise ValueError(f"the {output!r} labels have shape {truth.shape}; expected one class "
                         "index per image.")
    values = truth[:, 0].astype(float)
    missing = np.isnan(values) | (values < 0)
    if (values[~missing] >= k).any():
        raise ValueError(f"the {output!r} labels contain indices >= {k}; the dataset and the "
                         "scheme disagree on the classes.")
    result = pd.array(np.where(missing, 0, values).astype(int), dtype="Int64")
    result[missing] = pd.NA
    return result


def _ranks_to_years(scheme):
    """A function rank -> years for an ordinal scheme, or None when ranks have no years."""
    convert = getattr(scheme, "inverse", None) or getattr(scheme, "decode", None)
    if convert is not None:
        try:
            probe = np.asarray(convert(np.arange(min(2, _num_classes(scheme)))), dtype=float)
        except (TypeError, ValueError):
            convert = None  # decode gives names that are not years
        else:
            if probe.ndim != 1:
                convert = None
    if convert is None:
        try:
            table = np.array([float(c) for c in scheme.classes])
        except (TypeError, ValueError):
            return None
        if len(table) == 0:
            return None
        convert = table.__getitem__

    def years(ranks):
        ranks = pd.array(ranks, dtype="Int64")
        known = ~pd.isna(ranks)
        out = np.full(len(ranks), np.nan)
        out[known] = np.asarray(convert(np.asarray(ranks[known], dtype=int)), dtype=float)
        return out
    return years


def _as_output_dict(value, schemes, what: str) -> dict:
    outputs = [s.output for s in schemes]
    if isinstance(value, Mapping):
        missing = [o for o in outputs if o not in value]
        if missing:
            raise ValueError(f"{what} has keys {list(value)} but the schemes need {missing}; "
                             "pass the schemes the model was built with.")
        return value
    if len(schemes) == 1:
        return {outputs[0]: value}
    raise ValueError(f"{what} is not a dict keyed by output; with several schemes "
                     f"({outputs}) it must be {{output: values}}.")


def _paired_arrays(y_true, y_pred):
    y_true = _labels_array(y_true, "y_true")
    y_pred = _labels_array(y_pred, "y_pred")
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} values but y_pred has {len(y_pred)}; "
                         "pass one prediction per image.")
    return y_true, y_pred


def _labels_array(values, name: str) -> np.ndarray:
    if isinstance(values, (pd.Series, pd.Index, pd.api.extensions.ExtensionArray)):
        if values.isna().any():
            raise ValueError(f"{name} contains missing values; drop those rows first.")
        values = values.to_numpy()
    values = np.asarray(values)
    if values.ndim != 1:
        values = values.reshape(len(values), -1)
        if values.shape[1] != 1:
            raise ValueError(f"{name} has shape {values.shape}; pass one label per image "
                             "(class indices, not one-hot rows).")
        values = values[:, 0]
    if len(values) == 0:
        raise ValueError(f"{name} is empty; there is nothing to score.")
    if values.dtype.kind == "f" and np.isnan(values).any():
        raise ValueError(f"{name} contains NaN; drop those rows first.")
    return values


def _run_batches(model, dataset):
    """Yield ``(model outputs, labels)`` per ``(images, labels)`` batch, outputs as numpy.

    A short last batch is zero-padded to the first batch's size before the model sees it and
    the padding is cut from the outputs, so the model is traced for one batch shape only.
    """
    run = getattr(model, "predict_on_batch", None) or model
    full = None
    for batch in _batches(dataset):
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError("the dataset must yield (images, labels) batches; build it with "
                             "fl.pipeline.make_dataset(df, schemes, ...).")
        images, labels = batch[0], batch[1]
        n = _batch_size(images)
        full = full or n
        out = run(_pad_batch(images, full))
        if isinstance(out, Mapping):
            yield {name: _to_numpy(value)[:n] for name, value in out.items()}, labels
        else:
            yield _to_numpy(out)[:n], labels


def _batches(dataset):
    """Iterate a pipeline; a file that cannot be decoded stops it with the file's name."""
    import tensorflow as tf

    from faceattr_lab import pipeline

    iterator = iter(dataset)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except tf.errors.InvalidArgumentError as error:
            explained = pipeline.explain_decode_error(error, dataset)
            if explained is None:
                raise
            raise explained from error
        yield batch


def _batch_size(images) -> int:
    first = images if not isinstance(images, (Mapping, list, tuple)) else \
        next(iter(images.values() if isinstance(images, Mapping) else images))
    return int(first.shape[0])


def _pad_batch(images, size: int):
    """Zero-pad a short (last) batch to ``size`` rows. A Keras model in inference mode treats
    each row on its own, so the real rows' outputs do not change; the model sees one batch
    shape and its predict function is traced once, not twice (seconds per call on a CPU)."""
    def pad(x):
        x = _to_numpy(x)
        if x.shape[0] >= size:
            return x
        return np.concatenate([x, np.zeros((size - x.shape[0], *x.shape[1:]), x.dtype)])

    if isinstance(images, Mapping):
        return {k: pad(v) for k, v in images.items()}
    if isinstance(images, (list, tuple)):
        return type(images)(pad(v) for v in images)
    return pad(images)


def _to_numpy(value) -> np.ndarray:
    if hasattr(value, "numpy"):
        return np.asarray(value.numpy())
    return np.asarray(value)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


def _isna(value) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _format_mean_std(mean: float, std: float, digits: int) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "nan"
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


__all__ = ["TIDY_COLUMNS", "BREAKDOWN_COLUMNS", "GROUP_NAMES", "classification_metrics",
           "one_off_accuracy", "regression_metrics", "majority_baseline", "median_baseline",
           "cumulative_probabilities", "rank_inconsistencies", "bootstrap_ci",
           "paired_bootstrap", "paired_difference", "predict", "features", "knn_accuracy",
           "predict_oversampled",
           "evaluate", "breakdown", "group_gaps", "resampled_scores", "GAP_METRICS",
           "GAP_COLUMNS", "calibration", "calibration_error", "CALIBRATION_COLUMNS",
           "CALIBRATION_ERROR_COLUMNS", "confusion", "compare", "summarize", "wide"]
