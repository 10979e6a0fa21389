"""Exercise self-checks: a right answer passes, a typical wrong one is caught with a reason."""

from __future__ import annotations

import math
import statistics

import keras
import numpy as np
import pytest

from faceattr_lab.course import checks

# (check, a right answer, a typical wrong answer, a word the failure message must contain)
FAIR_EDGES = [(0, "0-2"), (3, "3-9"), (10, "10-19"), (20, "20-29"), (30, "30-39"),
              (40, "40-49"), (50, "50-59"), (60, "60-69"), (70, "more than 70")]


def _left_closed(age):
    return [name for edge, name in FAIR_EDGES if age >= edge][-1]


def _right_closed(age):  # the published bug: boundary ages land one group low
    return [name for edge, name in FAIR_EDGES if age > edge or edge == 0][-1]


def _grouped_imbalance(races, mapping):
    counts = {}
    for race in races:
        if race in mapping:
            counts[mapping[race]] = counts.get(mapping[race], 0) + 1
    return max(counts.values()) / min(counts.values())


def _grouped_imbalance_with_excluded(races, mapping):  # the dropped races counted as a group
    return _grouped_imbalance(races, {**{r: "excluded" for r in races}, **mapping})


def _imbalance_ungrouped(races, mapping):  # forgets the mapping: the raw strings' ratio
    return _grouped_imbalance(races, {r: r for r in races})


def _block_features(base, layer):
    application = base.get_layer("smallvgg_application")
    inner = keras.Model(application.input, application.get_layer(layer).output)
    images = keras.Input(base.input.shape[1:])
    pooled = keras.layers.GlobalAveragePooling2D()(inner(base.get_layer("preprocess")(images)))
    return keras.Model(images, pooled)


def _block_features_unscaled(base, layer):  # forgets the backbone's preprocessing
    application = base.get_layer("smallvgg_application")
    inner = keras.Model(application.input, application.get_layer(layer).output)
    images = keras.Input(base.input.shape[1:])
    return keras.Model(images, keras.layers.GlobalAveragePooling2D()(inner(images)))


def _side(side, layers):
    for kernel, stride, padding in layers:
        side = math.ceil(side / stride) if padding == "same" else (side - kernel) // stride + 1
    return side


def _anchor_loss(z, labels, i, temperature, unit=True, self_in_denominator=False,
                 self_positive=False):
    """Khosla et al.'s L_out for one anchor in numpy (and the usual slips, by flag)."""
    z = np.asarray(z, float)
    if unit:
        z = z / np.linalg.norm(z, axis=1, keepdims=True)
    logits = z @ z[i] / temperature
    labels = np.asarray(labels)
    others = np.arange(len(z)) != i
    positive = (labels == labels[i]) & (others | self_positive)
    in_denominator = others | self_in_denominator | self_positive
    log_prob = logits - np.log(np.exp(logits[in_denominator]).sum())
    if not positive.any():
        return 0.0
    return float(-log_prob[positive].mean())


def _anchor_loss_self_in_denominator(z, labels, i, temperature):
    return _anchor_loss(z, labels, i, temperature, self_in_denominator=True)


def _anchor_loss_npairs(z, labels, i, temperature):
    return _anchor_loss(z, labels, i, temperature, self_positive=True)


def _anchor_loss_unnormalised(z, labels, i, temperature):
    return _anchor_loss(z, labels, i, temperature, unit=False)


def _anchor_loss_nan_without_positive(z, labels, i, temperature):
    if np.sum(np.asarray(labels) == labels[i]) == 1:
        return float("nan")
    return _anchor_loss(z, labels, i, temperature)


def _knn(train_x, train_y, val_x, val_y, k, metric="cosine", farthest=False):
    """k-NN accuracy with scikit-learn (the right answer) or its slips."""
    from sklearn.neighbors import NearestNeighbors

    if farthest:  # the k LEAST similar rows vote
        unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
        order = np.argsort(unit(val_x) @ unit(train_x).T, axis=1)[:, :k]
    else:
        order = NearestNeighbors(n_neighbors=k, metric=metric).fit(train_x).kneighbors(
            val_x, return_distance=False)
    votes = [np.bincount(train_y[row], minlength=3).argmax() for row in order]
    return float(np.mean(np.asarray(votes) == val_y))



def _masked_ce(labels, probabilities):
    """Cross-entropy over the labelled rows by a loop: the reference."""
    losses = [-math.log(row[y]) for y, row in zip(labels, probabilities) if y >= 0]
    return sum(losses) / len(losses) if losses else 0.0


def _masked_ce_all_rows(labels, probabilities):
    """The slip: -1 picks the last class and every row counts."""
    return sum(-math.log(row[y]) for y, row in zip(labels, probabilities)) / len(labels)


def _masked_ce_nan_when_empty(labels, probabilities):
    """The slip: the mean of no rows is NaN."""
    picked = np.array([-math.log(row[y]) for y, row in zip(labels, probabilities) if y >= 0])
    return float(picked.mean()) if picked.size else float("nan")


def _route(gender, male, female, swap=False, broadcast=True):
    is_female = (np.argmax(gender, axis=-1) == 1) != swap
    if broadcast:
        is_female = is_female.reshape((-1,) + (1,) * (np.ndim(male) - 1))
    return np.where(is_female, female, male)


def _route_soft(gender, male, female):  # weighs the experts by the gender probabilities
    weight = np.asarray(gender)[:, 1].reshape((-1,) + (1,) * (np.ndim(male) - 1))
    return (1 - weight) * male + weight * female


CASES = [
    (checks.majority_share, lambda xs: max(map(list(xs).count, xs)) / len(xs),
     lambda xs: 1 / len(set(xs)), "expected"),
    (checks.majority_share, lambda xs: max(map(list(xs).count, xs)) / len(xs),
     lambda xs: max(map(list(xs).count, xs)), "not its count"),
    (checks.majority_share, lambda xs: max(map(list(xs).count, xs)) / len(xs),
     lambda xs: list(xs).count(list(xs)[0]) / len(xs), "not the first one"),
    (checks.balanced_accuracy_from_confusion,
     lambda cm: float(np.mean(np.diag(cm) / np.sum(cm, axis=1))),
     lambda cm: float(np.trace(cm) / np.sum(cm)), "mean of each row"),
    (checks.grouped_imbalance, _grouped_imbalance, _grouped_imbalance_with_excluded,
     "not a group of their own"),
    (checks.grouped_imbalance, _grouped_imbalance, _imbalance_ungrouped, "map each race"),
    (checks.grouped_imbalance, _grouped_imbalance,
     lambda races, mapping: 1 / _grouped_imbalance(races, mapping), "other way round"),
    (checks.to_fairface_group, _left_closed, _right_closed, "right-closed"),
    (checks.conv_params, lambda k, c_in, c_out, bias: k * k * c_in * c_out + c_out * bias,
     lambda k, c_in, c_out, bias: k * k * c_in * c_out + c_out, "no bias"),
    (checks.conv_params, lambda k, c_in, c_out, bias: k * k * c_in * c_out + c_out * bias,
     lambda k, c_in, c_out, bias: k * c_in * c_out + c_out * bias, "kernel x kernel"),
    (checks.block_features, _block_features, _block_features_unscaled, "preprocess"),
    (checks.feature_side, _side, lambda side, layers: _side(side, [(k, s, "valid")
                                                                   for k, s, _ in layers]),
     "rounds up"),
    (checks.mae_to_years, lambda mae, top: mae * top, lambda mae, top: mae * 100, "max_age"),
    (checks.one_factor_configs,
     lambda base, knob, values: [{**base, knob: v} for v in values if base.get(knob) != v],
     lambda base, knob, values: [{**base, knob: v} for v in values], "skip the base"),
    (checks.mean_std, lambda xs: (statistics.mean(xs), statistics.stdev(xs)),
     lambda xs: (statistics.mean(xs), statistics.pstdev(xs)), "n - 1"),
    (checks.one_off_accuracy, lambda t, p: sum(abs(a - b) <= 1 for a, b in zip(t, p)) / len(t),
     lambda t, p: sum(abs(a - b) < 1 for a, b in zip(t, p)) / len(t), "exactly 1"),
    (checks.masked_cross_entropy, _masked_ce, _masked_ce_all_rows, "labelled faces only"),
    (checks.masked_cross_entropy, _masked_ce, _masked_ce_nan_when_empty, "return 0.0"),
    (checks.supcon_anchor_loss, _anchor_loss, _anchor_loss_self_in_denominator, "denominator"),
    (checks.supcon_anchor_loss, _anchor_loss, _anchor_loss_npairs, "npairs"),
    (checks.supcon_anchor_loss, _anchor_loss, _anchor_loss_unnormalised, "normalise"),
    (checks.supcon_anchor_loss, _anchor_loss, _anchor_loss_nan_without_positive, "no positive"),
    (checks.knn_accuracy, _knn, lambda *a: _knn(*a, metric="euclidean"), "cosine"),
    (checks.knn_accuracy, _knn, lambda *a: _knn(*a, farthest=True), "HIGHEST"),
    # lab 06: CORAL's extended binary labels, rank decoding, inconsistent faces
    (checks.coral_levels, lambda r, k: [int(r > j) for j in range(k - 1)],
     lambda r, k: [int(r >= j) for j in range(k - 1)], "ABOVE"),
    (checks.coral_levels, lambda r, k: [int(r > j) for j in range(k - 1)],
     lambda r, k: [int(r > j) for j in range(k)], "K-1 labels"),
    (checks.coral_levels, lambda r, k: [int(r > j) for j in range(k - 1)],
     lambda r, k: [int(r == j) for j in range(k - 1)], "one-hot"),
    (checks.coral_rank, lambda p: sum(x > 0.5 for x in p),
     lambda p: sum(x >= 0.5 for x in p), "P > 0.5"),
    (checks.coral_rank, lambda p: sum(x > 0.5 for x in p),
     lambda p: next((i for i, x in enumerate(p) if x <= 0.5), len(p)), "first no"),
    (checks.coral_rank, lambda p: sum(x > 0.5 for x in p),
     lambda p: max(range(len(p)), key=p.__getitem__), "index"),
    (checks.rank_inconsistent, lambda p: sum(any(b > a for a, b in zip(r, r[1:])) for r in p),
     lambda p: sum(b > a for r in p for a, b in zip(r, r[1:])), "count faces"),
    (checks.rank_inconsistent, lambda p: sum(any(b > a for a, b in zip(r, r[1:])) for r in p),
     lambda p: sum(any(b >= a for a, b in zip(r, r[1:])) for r in p), "strict rise"),
    (checks.rank_inconsistent, lambda p: sum(any(b > a for a, b in zip(r, r[1:])) for r in p),
     lambda p: sum(all(b <= a for a, b in zip(r, r[1:])) for r in p), "goes UP"),
    (checks.route_by_gender, _route, lambda g, m, f: _route(g, m, f, swap=True), "OTHER"),
    (checks.route_by_gender, _route, lambda g, m, f: (m + f) / 2, "averages"),
    (checks.route_by_gender, _route, _route_soft, "soft routing"),
    (checks.route_by_gender, _route, lambda g, m, f: _route(g, m, f, broadcast=False),
     "trailing axis"),
    (checks.expected_fusion_accuracy, lambda p, r, w: p * r + (1 - p) * w,
     lambda p, r, w: p * r, "wrongly routed"),
    (checks.expected_fusion_accuracy, lambda p, r, w: p * r + (1 - p) * w,
     lambda p, r, w: (r + w) / 2, "share of faces"),
    (checks.expected_fusion_accuracy, lambda p, r, w: p * r + (1 - p) * w,
     lambda p, r, w: p * r + (1 - p) * (1 - w), "1 - acc_wrong"),
]


@pytest.mark.parametrize("check, right, wrong, word", CASES,
                         ids=[f"{case[0].__name__}-{case[3]}" for case in CASES])
def test_check_passes_right_and_explains_wrong(check, right, wrong, word, capsys):
    assert check(right, strict=False) is True
    assert "pass" in capsys.readouterr().out
    assert check(right) is None  # strict, as in a lab: nothing echoed after "pass"
    assert check(wrong, strict=False) is False
    assert word in capsys.readouterr().out
    with pytest.raises(checks.CheckFailed, match="not yet"):
        check(wrong)


@pytest.mark.parametrize("side, layers", [
    (32, [(2, 2, "valid")] * 4), (33, [(3, 2, "same")]), (33, [(3, 2, "valid")]),
    (71, [(3, 2, "valid"), (3, 1, "valid")]), (100, [(7, 2, "same"), (3, 2, "same")])])
def test_feature_side_cases_match_keras(side, layers):
    """The hand-worked rule of the feature_side check is what Keras layers compute."""
    x = keras.Input((side, side, 1))
    y = x
    for kernel, stride, padding in layers:
        y = keras.layers.Conv2D(1, kernel, strides=stride, padding=padding)(y)
    assert y.shape[1] == _side(side, layers) == checks._feature_side(side, layers)


# ---- Lab 09 -----------------------------------------------------------------------------------

def _crop_box(box, margin, grow=2, longer=True, corner=False, sides=False):
    x, y, w, h = box
    side = (max(w, h) if longer else w) * (1 + grow * margin)
    cx, cy = (x, y) if corner else (x + w / 2, y + h / 2)
    if sides:
        return (cx - side / 2, cy - side / 2, side, side)
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


def _eye_angle(left, right, radians=False, flipped=False, atan=False):
    dx, dy = right[0] - left[0], right[1] - left[1]
    dy = -dy if flipped else dy
    angle = (math.atan(dy / dx) if dx else math.copysign(math.pi / 2, dy)) if atan \
        else math.atan2(dy, dx)
    return angle if radians else math.degrees(angle)


LAB09_CASES = [
    (checks.aligned_crop_box, _crop_box, lambda b, m: _crop_box(b, m, grow=1), "EVERY side"),
    (checks.aligned_crop_box, _crop_box, lambda b, m: _crop_box(b, m, longer=False), "LONGER"),
    (checks.aligned_crop_box, _crop_box, lambda b, m: _crop_box(b, m, corner=True), "centre"),
    (checks.aligned_crop_box, _crop_box, lambda b, m: _crop_box(b, m, sides=True), "corners"),
    (checks.aligned_crop_box, _crop_box, lambda b, m: None, "four numbers"),
    (checks.eye_angle, _eye_angle, lambda l, r: _eye_angle(l, r, radians=True), "radians"),
    (checks.eye_angle, _eye_angle, lambda l, r: _eye_angle(l, r, flipped=True), "DOWNWARDS"),
    (checks.eye_angle, _eye_angle, lambda l, r: _eye_angle(l, r, atan=True), "atan2"),
]


@pytest.mark.parametrize("check, right, wrong, word", LAB09_CASES,
                         ids=[f"{case[0].__name__}-{case[3]}" for case in LAB09_CASES])
def test_lab09_checks_pass_right_and_explain_wrong(check, right, wrong, word, capsys):
    assert check(right, strict=False) is True
    assert "pass" in capsys.readouterr().out
    assert check(right) is None
    assert check(wrong, strict=False) is False
    assert word in capsys.readouterr().out
    with pytest.raises(checks.CheckFailed, match="not yet"):
        check(wrong)


def test_lab09_checks_agree_with_the_kit():
    """The hand-worked answers of the checks are what fl.faces computes."""
    from faceattr_lab import faces

    assert checks.aligned_crop_box(faces.crop_box, strict=False) is True
    assert checks.eye_angle(faces.eye_angle, strict=False) is True


# lab 08: the expected calibration error and the largest gap between groups, each against a
# numpy/pandas reference written here, and typical wrong answers the checks must explain
def _ece(confidence, correct, bins=10, weighted=True, absolute=True, per_face=False, clip=True):
    confidence = np.asarray(confidence, float)
    correct = np.asarray(correct, float)
    if per_face:
        return float(np.mean(np.abs(correct - confidence)))
    index = np.ceil(confidence * bins).astype(int) - 1
    index = np.clip(index, 0, bins - 1) if clip else np.maximum(index, 0) + (confidence == 1)
    counts = np.bincount(index, minlength=bins)[:bins]  # unclipped 1.0 -> index bins: IndexError
    hits = np.bincount(index, weights=correct, minlength=bins)
    sure = np.bincount(index, weights=confidence, minlength=bins)
    full = counts > 0
    gaps = hits[:bins][full] / counts[full] - sure[:bins][full] / counts[full]
    if len(hits) > bins:
        raise IndexError(f"index {bins} is out of bounds for {bins} bins")
    gaps = np.abs(gaps) if absolute else gaps
    return float(np.sum(counts[full] / counts.sum() * gaps) if weighted else np.mean(gaps))


def _gap(correct, groups, min_group=20, swap=False, sign=1, counts=False, keep_small=False):
    import pandas as pd

    table = pd.DataFrame({"correct": np.asarray(correct, float), "group": list(groups)})
    stats = table.groupby("group")["correct"].agg(["mean", "size", "sum"])
    if not keep_small:
        stats = stats[stats["size"] >= min_group]
    column = "sum" if counts else "mean"
    best, worst = stats[column].idxmax(), stats[column].idxmin()
    gap = sign * float(stats.loc[best, column] - stats.loc[worst, column])
    return (worst, best, gap) if swap else (best, worst, gap)


LAB08_CASES = [
    (checks.expected_calibration_error, _ece, lambda *a: _ece(*a, weighted=False),
     "share of faces"),
    (checks.expected_calibration_error, _ece, lambda *a: _ece(*a, absolute=False),
     "absolute value"),
    (checks.expected_calibration_error, _ece, lambda *a: _ece(*a, per_face=True), "bin the faces"),
    (checks.expected_calibration_error, _ece, lambda *a: _ece(*a, clip=False), "last bin"),
    (checks.largest_group_gap, _gap, lambda *a: _gap(*a, swap=True), "worst group first"),
    (checks.largest_group_gap, _gap, lambda *a: _gap(*a, sign=-1), "best minus worst"),
    (checks.largest_group_gap, _gap, lambda *a: _gap(*a, keep_small=True), "leave out groups"),
    (checks.largest_group_gap, _gap, lambda *a: _gap(*a, counts=True), "not counts"),
]


@pytest.mark.parametrize("check, right, wrong, word", LAB08_CASES,
                         ids=[f"{case[0].__name__}-{case[3]}" for case in LAB08_CASES])
def test_lab08_check_passes_right_and_explains_wrong(check, right, wrong, word, capsys):
    assert check(right, strict=False) is True
    assert "pass" in capsys.readouterr().out
    assert check(wrong, strict=False) is False
    assert word in capsys.readouterr().out
    with pytest.raises(checks.CheckFailed, match="not yet"):
        check(wrong)


def test_lab08_ece_cases_match_the_kit():
    """The hand-worked ECE of the check equals fl.evaluate.calibration_error on the same faces."""
    import pandas as pd

    from faceattr_lab import evaluate
    from faceattr_lab.labels import Scheme

    scheme = Scheme("toy", "toy", "classification", ("a", "b", "c"), "toy")
    for confidence, correct, bins, expected in [
            ([0.95, 0.85, 0.65, 0.62], [1, 0, 1, 0], 10, 0.2925),
            ([1.0, 0.55, 0.58, 0.45, 0.35], [1, 1, 0, 0, 1], 5, 0.246)]:
        confidence = np.asarray(confidence)
        # three classes: class 0 predicted with the given confidence (the others share the
        # rest, each below it); the true class is 0 where the face is right, else 1
        table = pd.DataFrame({"toy_true": np.where(correct, 0, 1), "toy_pred": 0,
                              "toy_prob_a": confidence, "toy_prob_b": (1 - confidence) / 2,
                              "toy_prob_c": (1 - confidence) / 2})
        kit = evaluate.calibration_error(table, [scheme], bins=bins)["value"].iloc[0]
        assert kit == pytest.approx(expected) == pytest.approx(_ece(confidence, correct, bins))
