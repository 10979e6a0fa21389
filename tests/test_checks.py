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


def _four(races):
    out = {"White": 0, "Black": 0, "Asian": 0, "Indian": 0, "excluded": 0}
    for race in races:
        key = "Asian" if race in ("East Asian", "Southeast Asian") else race
        out[key if key in out else "excluded"] += 1
    return out


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
    (checks.balanced_accuracy_from_confusion,
     lambda cm: float(np.mean(np.diag(cm) / np.sum(cm, axis=1))),
     lambda cm: float(np.trace(cm) / np.sum(cm)), "mean of each row"),
    (checks.four_race_counts, _four, lambda races: {"White": len(races)}, "expected"),
    (checks.to_fairface_group, _left_closed, _right_closed, "right-closed"),
    (checks.head_params, lambda d, ks: sum((d + 1) * k for k in ks),
     lambda d, ks: sum(d * k for k in ks), "biases"),
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
                         ids=[case[0].__name__ for case in CASES])
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
