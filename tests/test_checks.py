"""Exercise self-checks: a right answer passes, a typical wrong one is caught with a reason."""

from __future__ import annotations

import math
import statistics

import keras
import numpy as np
import pytest

from faceattr_lab import checks

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
