"""Self-checks for the labs' exercises: each says "pass" or exactly what is off. Lab 00.

A check calls the student's function on hand-made cases whose answers are written out here,
independently of the kit's own code, and prints "pass" or one line per problem. In a lab
(``strict=True``) an unsolved exercise raises :class:`CheckFailed`, so "Run all" stops there,
except in a kernel that the grader started (:func:`grading`); the grader passes ``strict=False``
and gets ``True`` or ``False`` back.
"""

from __future__ import annotations

import os

GRADING_ENV = "FACEATTR_LAB_GRADING"


def grading() -> bool:
    """True inside a kernel that the grader started (checks then never raise). Lab 00."""
    return os.environ.get(GRADING_ENV, "").strip().lower() in ("1", "true", "yes")


class CheckFailed(AssertionError):
    """Raised by a self-check with ``strict=True`` when the exercise is not solved yet."""


def _verdict(name: str, problems: list[str], strict: bool) -> bool | None:
    if problems:
        text = f"{name}: not yet. " + " ".join(problems)
        if strict and not grading():  # the grader runs every cell and records every check
            raise CheckFailed(text)
        print(text)
        return False
    print(f"{name}: pass")
    return None if strict else True  # None: a lab cell ending in the check echoes nothing


def _close(a, b, tol: float = 1e-6) -> bool:
    try:
        return abs(float(a) - float(b)) <= tol
    except (TypeError, ValueError):
        return False


def majority_share(fn, strict: bool = True) -> bool | None:
    """Check lab 00's ``majority_share(labels)`` on hand-made label lists. Lab 00.

    The answer is the share of the most common value: its count over the number of labels.
    """
    cases = [([0, 0, 1], 2 / 3), (["a"], 1.0), ([1, 2, 3, 3], 0.5), ([5, 5, 5, 5], 1.0),
             (["20-29", "3-9", "20-29", "60-69", "20-29"], 0.6), ([2, 1, 1, 1, 0, 0], 0.5)]
    problems = []
    for labels, expected in cases:
        try:
            got = fn(labels)
        except Exception as error:  # report, do not crash the student's notebook
            problems.append(f"majority_share({labels}) raised {type(error).__name__}: {error}.")
            continue
        if _close(got, expected):
            continue
        top = max(labels, key=labels.count)  # the most common value (hand cases: no ties)
        hint = ("return its share (count / number of labels), not its count"
                if _close(got, labels.count(top))
                else "return the share of the most common value, not the value itself"
                if got == top
                else "that is chance, 1 / (number of classes); count the most common value"
                if _close(got, 1 / len(set(labels)))
                else "count the most common value, not the first one"
                if _close(got, labels.count(labels[0]) / len(labels))
                else "divide the most common value's count by the number of labels")
        problems.append(f"majority_share({labels}) returned {got!r}, expected {expected:.4f} "
                        f"({hint}).")
    return _verdict("majority_share", problems, strict)


def balanced_accuracy_from_confusion(fn, strict: bool = True) -> bool | None:
    """Check lab 01's ``balanced_accuracy_from_confusion(cm)`` on hand-computed matrices. Lab 01.

    Rows of ``cm`` are true classes, columns predictions; the answer is the mean recall.
    """
    cases = [
        ([[8, 2], [1, 9]], 0.85),                        # recalls 0.8 and 0.9
        ([[50, 0, 0], [10, 0, 0], [5, 0, 0]], 1 / 3),    # always the majority: 1/k
        ([[3, 1, 0], [0, 2, 2], [1, 0, 4]], (3 / 4 + 2 / 4 + 4 / 5) / 3),
        ([[90, 10], [30, 70]], 0.8),                     # accuracy 0.8 too; balanced 0.8
        ([[99, 1], [9, 1]], (0.99 + 0.1) / 2),           # accuracy 0.909, balanced 0.545
    ]
    problems = []
    for cm, expected in cases:
        try:
            got = fn(cm)
        except Exception as error:  # report, do not crash the student's notebook
            problems.append(f"balanced_accuracy_from_confusion({cm}) raised "
                            f"{type(error).__name__}: {error}.")
            continue
        if not _close(got, expected):
            problems.append(f"balanced_accuracy_from_confusion({cm}) returned {got!r}, "
                            f"expected {expected:.4f} (the mean of each row's diagonal share).")
    return _verdict("balanced_accuracy_from_confusion", problems, strict)


_SEVEN = ("White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian",
          "Middle Eastern")
_FIVE = {"White": "White", "Black": "Black", "Indian": "Indian", "East Asian": "Asian",
         "Southeast Asian": "Asian", "Latino_Hispanic": "Others", "Middle Eastern": "Others"}
_FOUR = {"White": "White", "Black": "Black", "Indian": "Indian", "East Asian": "Asian",
         "Southeast Asian": "Asian"}


def grouped_imbalance(fn, strict: bool = True) -> bool | None:
    """Check lab 01's ``grouped_imbalance(races, mapping)``: the imbalance ratio (largest group
    count / smallest) after mapping FairFace race strings to groups; strings the mapping does
    not name are left out, as a scheme excludes them. Lab 01.
    """
    even = [race for race in _SEVEN for _ in range(10)]  # seven groups of 10 faces
    seven = {race: race for race in _SEVEN}
    names = {id(seven): "the 7-group mapping", id(_FIVE): "the 5-group mapping",
             id(_FOUR): "the 4-group mapping"}
    cases = [
        (even, seven, 1.0),
        (even, _FIVE, 2.0),  # Asian 20, Others 20, the rest 10: merging creates imbalance
        (even, _FOUR, 2.0),  # Asian 20, the rest 10; Latino_Hispanic and Middle Eastern out
        (["White"] * 4 + ["Black"] * 2 + ["Middle Eastern"], _FOUR, 2.0),  # White 4, Black 2
        (["White"] * 3 + ["East Asian"] + ["Southeast Asian"] * 2, _FOUR, 1.0),  # 3 and 3
        (["White"] * 3 + ["Black"] * 3 + ["Latino_Hispanic", "Middle Eastern"], _FOUR, 1.0),
        (["Indian"] * 2 + ["Latino_Hispanic"] * 3 + ["Middle Eastern"] * 3 + ["Black"] * 4,
         _FIVE, 3.0),  # Others 6, Black 4, Indian 2
    ]
    problems = []
    for races, mapping, expected in cases:
        counts = {r: races.count(r) for r in dict.fromkeys(races)}
        shown = (f"grouped_imbalance([{', '.join(f'{n} x {r!r}' for r, n in counts.items())}], "
                 f"{names[id(mapping)]})")
        try:
            got = fn(list(races), dict(mapping))
        except Exception as error:
            problems.append(f"{shown} raised {type(error).__name__}: {error}.")
            continue
        if _close(got, expected):
            continue
        groups = {}
        for race, n in counts.items():
            if race in mapping:
                groups[mapping[race]] = groups.get(mapping[race], 0) + n
        left_out = sum(n for race, n in counts.items() if race not in mapping)
        with_left_out = [*groups.values(), left_out]
        hint = ("leave out the races the mapping does not name (the scheme excludes them); "
                "they are not a group of their own"
                if left_out and _close(got, max(with_left_out) / min(with_left_out))
                else "map each race string to its group first, then count the groups"
                if _close(got, max(counts.values()) / min(counts.values()))
                else "divide the largest group's count by the smallest's, not the other way round"
                if _close(got, 1 / expected)
                else "count the faces per group, then divide the largest count by the smallest")
        problems.append(f"{shown} returned {got!r}, expected {expected:.4f} ({hint}).")
    return _verdict("grouped_imbalance", problems, strict)


def to_fairface_group(fn, strict: bool = True) -> bool | None:
    """Check lab 01's ``to_fairface_group(age)``: left-closed bins at every boundary. Lab 01."""
    table = {0: "0-2", 2: "0-2", 3: "3-9", 9: "3-9", 10: "10-19", 19: "10-19", 20: "20-29",
             29: "20-29", 30: "30-39", 39: "30-39", 40: "40-49", 49: "40-49", 50: "50-59",
             59: "50-59", 60: "60-69", 69: "60-69", 70: "more than 70", 95: "more than 70"}
    problems = []
    for age, expected in table.items():
        try:
            got = fn(age)
        except Exception as error:
            problems.append(f"to_fairface_group({age}) raised {type(error).__name__}: {error}.")
            continue
        if got != expected:
            hint = " (a right-closed bin puts boundary ages one group low)" if age in (
                3, 10, 20, 30, 40, 50, 60, 70) else ""
            problems.append(f"to_fairface_group({age}) returned {got!r}, expected "
                            f"{expected!r}{hint}.")
    return _verdict("to_fairface_group", problems, strict)


# ---------------------------------------------------------------------------------------------
# Lab 03: transfer learning
# ---------------------------------------------------------------------------------------------

def conv_params(fn, strict: bool = True) -> bool | None:
    """Check lab 03's ``conv_params(kernel, c_in, c_out, use_bias)``: the parameters of one
    ``Conv2D`` with a square kernel, counted by hand (kernel² · c_in · c_out, + c_out biases). Lab 03.
    """
    cases = [((3, 3, 32, False), 864), ((3, 128, 256, False), 294912), ((1, 64, 10, True), 650),
             ((5, 3, 16, True), 1216), ((3, 256, 256, False), 589824)]
    problems = []
    for args, expected in cases:
        try:
            got = fn(*args)
        except Exception as error:  # a student's bug is reported, not raised
            problems.append(f"conv_params{args} raised {error!r}.")
            continue
        if got != expected:
            kernel, c_in, c_out, use_bias = args
            hint = ("a kernel is kernel x kernel wide, over every input channel"
                    if got in (kernel * c_in * c_out, kernel * c_in * c_out + c_out * use_bias)
                    else "no bias without use_bias" if got == expected + c_out
                    else "one bias per output channel" if use_bias and got == expected - c_out
                    else "count kernel * kernel * c_in weights per output channel")
            problems.append(f"conv_params{args} returned {got!r}, expected {expected} ({hint}).")
    return _verdict("conv_params", problems, strict)


def block_features(fn, strict: bool = True) -> bool | None:
    """Check lab 03's ``block_features(backbone, layer_name)`` on a random SmallVGG. Lab 03.

    The answer must be a model taking [0, 255] images to the global average of the named inner
    layer's feature map: the reference here scales the images to [-1, 1] by hand (SmallVGG's
    "tf" preprocessing), runs the inner application up to that layer and averages in numpy.
    """
    import keras
    import numpy as np

    from faceattr_lab.models.backbones import backbone

    keras.utils.set_random_seed(0)
    base = backbone("SmallVGG", (32, 32, 3), weights=None)
    application = base.get_layer("smallvgg_application")
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    problems = []
    for layer, width in (("block2_pool", 64), ("block3_relu2", 128)):
        inner = keras.Model(application.input, application.get_layer(layer).output)
        expected = inner.predict(images / 127.5 - 1.0, verbose=0).mean(axis=(1, 2))
        try:
            got = np.asarray(fn(base, layer).predict(images, verbose=0))
        except Exception as error:
            problems.append(f"block_features(backbone, {layer!r}) raised {error!r}; the layer "
                            "lives in the nested application: backbone.get_layer("
                            "'smallvgg_application').get_layer(name).")
            break
        if got.ndim != 2:
            problems.append(f"{layer}: the output has shape {got.shape}; pool the feature map "
                            "to one vector per image (GlobalAveragePooling2D).")
        elif got.shape[-1] != width:
            problems.append(f"{layer}: {got.shape[-1]} features, expected {width}: take the "
                            "named layer's output, not the backbone's top.")
        elif not np.allclose(got, expected, rtol=1e-4, atol=1e-4):
            problems.append(f"{layer}: the features differ from the layer's pooled output; does "
                            "your model still scale the images like the backbone (its "
                            "'preprocess' layer) before the application's layers?")
    return _verdict("block_features", problems, strict)


def _feature_side(side: int, layers) -> int:
    for kernel, stride, padding in layers:
        side = -(-side // stride) if padding == "same" else (side - kernel) // stride + 1
    return side


def feature_side(fn, strict: bool = True) -> bool | None:
    """Check lab 03's ``feature_side(side, layers)`` on hand-worked stacks. Lab 03.

    ``layers`` is a list of ``(kernel, stride, padding)``; "same" keeps ceil(side / stride),
    "valid" keeps floor((side - kernel) / stride) + 1 (as Keras computes them).
    """
    cases = [
        (32, [(2, 2, "valid")] * 4, 2),  # SmallVGG's four pools
        (16, [(2, 2, "valid")] * 4, 1),
        (33, [(3, 2, "same")], 17),  # "same" rounds up
        (33, [(3, 2, "valid")], 16),
        (71, [(3, 2, "valid"), (3, 1, "valid")], 33),  # Xception's stem
        (100, [(7, 2, "same"), (3, 2, "same")], 25),  # ResNet's stem
        (75, [(3, 2, "valid"), (3, 1, "valid"), (3, 1, "same"), (3, 2, "valid")], 17),
    ]
    problems = []
    for side, layers, expected in cases:
        assert _feature_side(side, layers) == expected  # the cases are worked by hand
        try:
            got = fn(side, layers)
        except Exception as error:
            problems.append(f"feature_side({side}, {layers}) raised {error!r}.")
            break
        if got != expected:
            kinds = {padding for _, _, padding in layers}
            hint = ("'same' padding rounds up: ceil(side / stride)" if "same" in kinds
                    else "'valid' padding drops the border: floor((side - kernel) / stride) + 1")
            problems.append(f"feature_side({side}, {layers}) = {got!r}, expected {expected}: "
                            f"{hint}.")
    return _verdict("feature_side", problems, strict)


def mae_to_years(fn, strict: bool = True) -> bool | None:
    """Check lab 02's ``mae_to_years(mae, max_age)``: an MAE on the [0, 1] scale in years. Lab 02."""
    cases = [((0.0673, 116), 7.8068), ((0.0549, 116), 6.3684), ((0.1, 100), 10.0),
             ((0.0, 116), 0.0)]
    problems = []
    for (mae, max_age), expected in cases:
        got = fn(mae, max_age)
        if not _close(got, expected, tol=1e-3):
            problems.append(f"mae_to_years({mae}, {max_age}) returned {got!r}, expected "
                            f"{expected} (the targets were years / max_age).")
    return _verdict("mae_to_years", problems, strict)


def one_factor_configs(fn, strict: bool = True) -> bool | None:
    """Check lab 02's ``one_factor_configs(base, knob, values)``: one variant per new value. Lab 02."""
    base = {"dropout": 0.5, "dense_units": 512}
    cases = [
        (("dense_units", [256, 1024]),
         [{"dropout": 0.5, "dense_units": 256}, {"dropout": 0.5, "dense_units": 1024}]),
        (("dropout", [0.4, 0.5, 0.6]),
         [{"dropout": 0.4, "dense_units": 512}, {"dropout": 0.6, "dense_units": 512}]),
        (("kernel_size", [5]), [{"dropout": 0.5, "dense_units": 512, "kernel_size": 5}]),
    ]
    problems = []
    for (knob, values), expected in cases:
        original = dict(base)
        got = fn(base, knob, values)
        if base != original:
            problems.append(f"one_factor_configs changed the base dict to {base}; copy it.")
            break
        if [dict(c) for c in got] != expected:
            problems.append(f"one_factor_configs(base, {knob!r}, {values}) returned {got!r}, "
                            f"expected {expected!r} (skip the base's own value).")
    return _verdict("one_factor_configs", problems, strict)


def mean_std(fn, strict: bool = True) -> bool | None:
    """Check lab 02's ``mean_std(values)``: mean and sample std (n - 1) of seed results. Lab 02."""
    cases = [([0.90, 0.92, 0.94], (0.92, 0.02)), ([1.0, 2.0, 3.0, 4.0], (2.5, 1.2909944)),
             ([5.0, 5.0], (5.0, 0.0))]
    problems = []
    for values, (mean, std) in cases:
        got = fn(values)
        try:
            got_mean, got_std = got
        except (TypeError, ValueError):
            problems.append(f"mean_std({values}) returned {got!r}; return a (mean, std) pair.")
            continue
        if not _close(got_mean, mean, 1e-6):
            problems.append(f"mean_std({values}) gave mean {got_mean!r}, expected {mean}.")
        if not _close(got_std, std, 1e-6):
            hint = " (divide by n - 1, not n)" if len(values) > 2 or std else ""
            problems.append(f"mean_std({values}) gave std {got_std!r}, expected {std}{hint}.")
    return _verdict("mean_std", problems, strict)


# ---------------------------------------------------------------------------------------------
# Lab 04: single-task vs multi-task
# ---------------------------------------------------------------------------------------------

def one_off_accuracy(fn, strict: bool = True) -> bool | None:
    """Check lab 04's ``one_off(y_true, y_pred)``: share within one age group. Lab 04."""
    cases = [(([0, 3, 7, 4], [0, 3, 7, 4]), 1.0),   # all exact
             (([2, 2, 2, 2], [1, 3, 0, 4]), 0.5),   # one below, one above, two off by 2
             (([5, 0, 7], [4, 1, 6]), 1.0),         # every one off by exactly one
             (([0, 7, 3, 3, 6], [7, 0, 5, 1, 6]), 0.2)]
    problems = []
    for (truth, predicted), expected in cases:
        got = fn(list(truth), list(predicted))
        if not _close(got, expected):
            problems.append(f"one_off({truth}, {predicted}) returned {got!r}, expected "
                            f"{expected} (a difference of exactly 1, either way, counts).")
    return _verdict("one_off_accuracy", problems, strict)


_PROBS = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.25, 0.25, 0.5], [0.6, 0.3, 0.1]]


def masked_cross_entropy(fn, strict: bool = True) -> bool | None:
    """Check lab 04's ``masked_cross_entropy(y_true, probabilities)``: -1 marks no label. Lab 04."""
    import math

    cases = [([0, 1, 2, 0], (-math.log(0.7) - math.log(0.8) - math.log(0.5) - math.log(0.6)) / 4),
             ([0, -1, 2, -1], (-math.log(0.7) - math.log(0.5)) / 2),
             ([-1, 1, -1, -1], -math.log(0.8)),
             ([-1, -1, -1, -1], 0.0)]
    problems = []
    for labels, expected in cases:
        try:
            got = fn(list(labels), [list(row) for row in _PROBS])
        except Exception as error:  # noqa: BLE001 - say what went wrong, do not crash the lab
            problems.append(f"masked_cross_entropy({labels}, ...) raised "
                            f"{type(error).__name__}: {error}.")
            continue
        if got is None or not _close(got, expected, tol=1e-6):
            hint = (" With no labelled face return 0.0." if expected == 0.0
                    else " Average over the labelled faces only (y_true >= 0).")
            problems.append(f"masked_cross_entropy({labels}, ...) returned {got!r}, expected "
                            f"{expected:.6f}.{hint}")
    return _verdict("masked_cross_entropy", problems, strict)


# ---------------------------------------------------------------------------------------------
# Lab 05: supervised contrastive learning
# ---------------------------------------------------------------------------------------------

# A tiny batch worked by hand: five 2-D projections (not unit length) and their labels.
_SUPCON_Z = [[2.0, 0.0], [0.6, 0.8], [0.0, 3.0], [-1.0, 1.0], [0.5, -0.5]]
_SUPCON_LABELS = [0, 0, 1, 1, 2]


def _anchor_loss(z, labels, i: int, temperature: float) -> float:
    """Khosla et al.'s L_out for anchor ``i`` of one view, by loops: unit rows, positives the
    other rows with its label, the denominator every row but the anchor; 0 with no positive."""
    import math

    unit = [[v / math.sqrt(sum(x * x for x in row)) for v in row] for row in z]
    logit = [sum(a * b for a, b in zip(unit[i], row)) / temperature for row in unit]
    others = [a for a in range(len(z)) if a != i]
    positives = [p for p in others if labels[p] == labels[i]]
    if not positives:
        return 0.0
    log_denominator = math.log(sum(math.exp(logit[a]) for a in others))
    return -sum(logit[p] - log_denominator for p in positives) / len(positives)


def supcon_anchor_loss(fn, strict: bool = True) -> bool | None:
    """Check lab 05's ``anchor_loss(z, labels, i, temperature)``: one anchor's SupCon loss. Lab 05.

    Khosla et al. (2020), eq. 2 (L_out), one view: rows L2-normalised; the positives P(i) are
    the other rows with anchor i's label; each positive's log-probability is its logit
    ``z_i . z_p / temperature`` minus the log of the sum of exp(logits) over every row except
    ``i``; the loss is minus their mean, and 0 for an anchor with no positive. The answers are
    worked out here with plain loops, not with ``fl.losses``.
    """
    import math

    problems = []
    for i, temperature in ((0, 0.1), (1, 0.5), (2, 0.1), (3, 1.0), (4, 0.1)):
        expected = _anchor_loss(_SUPCON_Z, _SUPCON_LABELS, i, temperature)
        call = f"anchor_loss(z, labels, i={i}, temperature={temperature})"
        try:
            got = float(fn([list(r) for r in _SUPCON_Z], list(_SUPCON_LABELS), i, temperature))
        except Exception as error:  # report, do not crash the student's notebook
            problems.append(f"{call} raised {type(error).__name__}: {error}.")
            continue
        if _close(got, expected, 1e-4):
            continue
        # the usual slips, each computed the same careful way
        unit = [[v / math.sqrt(sum(x * x for x in row)) for v in row] for row in _SUPCON_Z]
        logit = [sum(a * b for a, b in zip(unit[i], row)) / temperature for row in unit]
        raw = [sum(a * b for a, b in zip(_SUPCON_Z[i], row)) / temperature for row in _SUPCON_Z]
        same = [p for p in range(len(logit)) if _SUPCON_LABELS[p] == _SUPCON_LABELS[i]]
        positives = [p for p in same if p != i]
        every = math.log(sum(math.exp(v) for v in logit))
        if not positives:
            hint = "an anchor with no positive contributes 0 (guard the division by |P(i)|)"
        elif _close(got, -sum(logit[p] - every for p in same) / len(same), 1e-4):
            hint = ("the anchor is not its own positive, nor in the denominator: that is the "
                    "npairs form, not Khosla et al.'s")
        elif _close(got, -sum(logit[p] - every for p in positives) / len(positives), 1e-4):
            hint = "leave the anchor itself out of the denominator (sum over a != i)"
        elif _close(got, _anchor_loss(_SUPCON_Z, _SUPCON_LABELS, i, temperature)
                    * len(positives), 1e-4):
            hint = "average over the positives (divide by |P(i)|), do not sum"
        elif _close(got, -sum(raw[p] - math.log(sum(math.exp(raw[a]) for a in range(len(raw))
                                                     if a != i)) for p in positives)
                    / len(positives), 1e-4):
            hint = "L2-normalise each row first: the logits are cosines over the temperature"
        elif _close(got, expected * temperature / 0.07, 1e-4):
            hint = "leave out the temperature / 0.07 factor here; the kit adds it afterwards"
        else:
            hint = ("minus the mean, over the positives p, of logit(i, p) minus the log of the "
                    "sum of exp(logit(i, a)) over every a != i")
        problems.append(f"{call} returned {got!r}, expected {expected:.4f} ({hint}).")
    return _verdict("supcon_anchor_loss", problems, strict)


def _knn_cases():
    """Hand-made embeddings whose rows vary in length, so cosine and euclidean k-NN differ."""
    import numpy as np

    rng = np.random.default_rng(5)
    directions = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    train_y, val_y = np.repeat([0, 1, 2], 8), np.tile([0, 1, 2], 5)
    lengths = rng.uniform(0.2, 5.0, 24 + 15)[:, None]
    noise = rng.normal(scale=0.35, size=(39, 3))
    points = (np.concatenate([directions[train_y], directions[val_y]]) + noise) * lengths
    return points[:24], train_y, points[24:], val_y


def _knn_reference(train_x, train_y, val_x, val_y, k, metric="cosine", nearest=True) -> float:
    import numpy as np

    if metric == "cosine":
        unit_train = train_x / np.linalg.norm(train_x, axis=1, keepdims=True)
        unit_val = val_x / np.linalg.norm(val_x, axis=1, keepdims=True)
        distance = 1.0 - unit_val @ unit_train.T
    else:
        distance = np.linalg.norm(val_x[:, None, :] - train_x[None, :, :], axis=-1)
    hits = 0
    for row, truth in zip(distance, val_y):
        order = np.argsort(row) if nearest else np.argsort(row)[::-1]
        votes = np.bincount(train_y[order[:k]], minlength=3)
        hits += int(np.argmax(votes) == truth)  # a tie goes to the smallest label
    return hits / len(val_y)


def knn_accuracy(fn, strict: bool = True) -> bool | None:
    """Check lab 05's ``knn_accuracy(train_x, train_y, val_x, val_y, k)`` by hand. Lab 05.

    Cosine k-NN: for each validation row, the k training rows with the highest cosine
    similarity vote (a tie goes to the smallest label); the answer is the share of validation
    rows whose vote is their label. The hand-made rows differ in length, so a euclidean
    distance gives other answers.
    """
    import numpy as np

    train_x, train_y, val_x, val_y = _knn_cases()
    problems = []
    for k in (1, 3, 5):
        expected = _knn_reference(train_x, train_y, val_x, val_y, k)
        try:
            got = float(fn(train_x.copy(), train_y.copy(), val_x.copy(), val_y.copy(), k))
        except Exception as error:
            problems.append(f"knn_accuracy(..., k={k}) raised {type(error).__name__}: {error}.")
            continue
        if _close(got, expected, 1e-9):
            continue
        if _close(got, _knn_reference(train_x, train_y, val_x, val_y, k, "euclidean"), 1e-9):
            hint = ("that is the euclidean distance; compare directions: divide each row by its "
                    "length (cosine similarity)")
        elif _close(got, _knn_reference(train_x, train_y, val_x, val_y, k, nearest=False), 1e-9):
            hint = "the nearest rows have the HIGHEST cosine (the smallest distance)"
        elif _close(got, float(np.mean(val_y == np.bincount(train_y).argmax())), 1e-9):
            hint = "that is the majority class; let each row's own k neighbours vote"
        else:
            hint = ("for each validation row take the k training rows of highest cosine "
                    "similarity, predict their most common label, and score the share right")
        problems.append(f"knn_accuracy(..., k={k}) returned {got!r}, expected {expected:.4f} "
                        f"({hint}).")
    return _verdict("knn_accuracy", problems, strict)


def route_by_gender(fn, strict: bool = True) -> bool | None:
    """Check lab 07's ``route(gender_probabilities, male_output, female_output)``. Lab 07.

    Study B's routing: per face, the female expert's output where the gender classifier's
    most probable class is 1 (female), else the male expert's; hand-made faces, outputs of
    one and two dimensions.
    """
    gender = [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.45, 0.55], [0.3, 0.7]]
    male_1d, female_1d = [10, 11, 12, 13, 14], [20, 21, 22, 23, 24]
    male_2d = [[1.0, 0.0, 0.0], [0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.5, 0.5, 0.0], [0.2, 0.2, 0.6]]
    female_2d = [[0.0, 0.0, 1.0], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4], [0.0, 0.9, 0.1],
                 [0.4, 0.4, 0.2]]
    import numpy as np

    female = [False, True, False, True, True]  # argmax of each row of gender, by hand
    cases = [(male_1d, female_1d, [20 + i if f else 10 + i for i, f in enumerate(female)]),
             (male_2d, female_2d, [fe if f else ma for ma, fe, f in
                                   zip(male_2d, female_2d, female)])]
    problems = []
    for male, female_out, expected in cases:
        shape = "1-D" if not isinstance(male[0], list) else "2-D"
        try:
            got = np.asarray(fn(np.asarray(gender), np.asarray(male, float),
                                np.asarray(female_out, float)), dtype=float)
        except Exception as error:  # a student's bug is reported, not raised
            problems.append(f"route(...) with {shape} expert outputs raised "
                            f"{type(error).__name__}: {error} (a mask of shape (B,) needs a "
                            "trailing axis, e.g. mask[:, None], to pick whole rows).")
            continue
        expected = np.asarray(expected, dtype=float)
        if got.shape == expected.shape and np.allclose(got, expected):
            continue
        swapped = np.where(np.asarray(female).reshape((-1,) + (1,) * (expected.ndim - 1)),
                           np.asarray(male, float), np.asarray(female_out, float))
        mean = (np.asarray(male, float) + np.asarray(female_out, float)) / 2
        probabilities = np.asarray(gender)[:, 1].reshape((-1,) + (1,) * (expected.ndim - 1))
        soft = (1 - probabilities) * np.asarray(male, float) + probabilities * np.asarray(
            female_out, float)
        hint = ("you gave each face the OTHER gender's expert: class 1 is female"
                if got.shape == swapped.shape and np.allclose(got, swapped)
                else "that averages the two experts; route each face to ONE of them"
                if got.shape == mean.shape and np.allclose(got, mean)
                else "that weighs the experts by the gender probabilities (soft routing); "
                     "study B sends each face to the expert of its most probable gender"
                if got.shape == soft.shape and np.allclose(got, soft)
                else f"expected shape {expected.shape}, got {got.shape}"
                if got.shape != expected.shape
                else "pick, per face, the female expert's output where argmax(gender) == 1")
        problems.append(f"route(...) with {shape} expert outputs returned {got.tolist()}, "
                        f"expected {expected.tolist()} ({hint}).")
    return _verdict("route_by_gender", problems, strict)


def expected_fusion_accuracy(fn, strict: bool = True) -> bool | None:
    """Check lab 07's ``expected_accuracy(p, acc_right, acc_wrong)``. Lab 07.

    A face is routed right with probability ``p`` (the gender accuracy), and then the experts
    are right with probability ``acc_right``; routed wrong, with ``acc_wrong``. The fusion's
    accuracy is ``p * acc_right + (1 - p) * acc_wrong`` (total probability).
    """
    cases = [((0.9, 0.6, 0.3), 0.57), ((1.0, 0.55, 0.1), 0.55), ((0.5, 0.8, 0.4), 0.6),
             ((0.95, 0.5, 0.5), 0.5), ((0.8, 0.7, 0.2), 0.6)]
    problems = []
    for (p, right, wrong), expected in cases:
        try:
            got = fn(p, right, wrong)
        except Exception as error:  # a student's bug is reported, not raised
            problems.append(f"expected_accuracy{(p, right, wrong)} raised "
                            f"{type(error).__name__}: {error}.")
            continue
        if _close(got, expected):
            continue
        hint = ("the wrongly routed faces count too: add (1 - p) * acc_wrong"
                if _close(got, p * right)
                else "weigh each group by its share of faces, p and 1 - p, not equally"
                if _close(got, (right + wrong) / 2)
                else "acc_wrong is already the experts' accuracy on those faces: do not "
                     "take 1 - acc_wrong" if _close(got, p * right + (1 - p) * (1 - wrong))
                else "multiply: the faces routed right and then classified right are "
                     "p * acc_right, not p + acc_right" if _close(got, min(1.0, p + right))
                else "add the two groups: p * acc_right + (1 - p) * acc_wrong")
        problems.append(f"expected_accuracy{(p, right, wrong)} returned {got!r}, expected "
                        f"{expected:.4f} ({hint}).")
    return _verdict("expected_fusion_accuracy", problems, strict)


def coral_levels(fn, strict: bool = True) -> bool | None:
    """Check lab 06's ``extended_levels(rank, num_classes)``: CORAL's K-1 binary labels. Lab 06.

    Rank ``r`` of ``K`` ranks gives ``[1] * r + [0] * (K - 1 - r)``: task ``k`` asks "is the
    rank above k?".
    """
    cases = [(2, 5, [1, 1, 0, 0]), (3, 7, [1, 1, 1, 0, 0, 0]), (0, 5, [0, 0, 0, 0]),
             (4, 5, [1, 1, 1, 1]), (1, 2, [1]), (0, 2, [0])]
    problems = []
    for rank, k, expected in cases:
        try:
            got = [int(v) for v in fn(rank, k)]
        except Exception as error:  # report, do not crash the student's notebook
            problems.append(f"extended_levels({rank}, {k}) raised {type(error).__name__}: "
                            f"{error}.")
            continue
        if got == expected:
            continue
        hint = ("give K-1 labels, one per threshold k = 0..K-2, not K"
                if len(got) == k else
                "label k is 1 when the rank is ABOVE k (rank > k), not at or above it"
                if got == [1 if rank >= j else 0 for j in range(k - 1)] else
                "that is one-hot; CORAL's labels are 1 for every threshold below the rank"
                if sum(got) <= 1 and len(got) == k - 1 else
                "the ones come first: [1] * rank + [0] * (K - 1 - rank)")
        problems.append(f"extended_levels({rank}, {k}) returned {got}, expected {expected} "
                        f"({hint}).")
        break
    return _verdict("coral_levels", problems, strict)


def coral_rank(fn, strict: bool = True) -> bool | None:
    """Check lab 06's ``predicted_rank(probabilities)``: how many P(rank > k) exceed 0.5. Lab 06."""
    cases = [([0.9, 0.8, 0.3, 0.1], 2), ([0.2, 0.1], 0), ([0.99, 0.98, 0.7], 3),
             ([0.6, 0.4, 0.7, 0.2], 2), ([0.5, 0.2], 0)]
    problems = []
    for probabilities, expected in cases:
        try:
            got = fn(list(probabilities))
        except Exception as error:  # report, do not crash the student's notebook
            problems.append(f"predicted_rank({probabilities}) raised {type(error).__name__}: "
                            f"{error}.")
            continue
        if _close(got, expected):
            continue
        first_no = next((i for i, p in enumerate(probabilities) if p <= 0.5),
                        len(probabilities))
        hint = ("0.5 itself is not a yes: count P > 0.5"
                if _close(got, sum(p >= 0.5 for p in probabilities)) else
                "count every task answered yes (P > 0.5), not only those before the first no"
                if _close(got, first_no) and first_no != expected else
                "that is an index of the largest probability; count the yes answers instead"
                if _close(got, max(range(len(probabilities)), key=probabilities.__getitem__))
                else "count how many probabilities exceed 0.5")
        problems.append(f"predicted_rank({probabilities}) returned {got!r}, expected {expected} "
                        f"({hint}).")
    return _verdict("coral_rank", problems, strict)


def rank_inconsistent(fn, strict: bool = True) -> bool | None:
    """Check lab 06's ``count_inconsistent(probabilities)``: faces whose P(rank > k) rises. Lab 06.

    A face (row) is inconsistent when some ``P(rank > k + 1) > P(rank > k)``; equal neighbours
    are consistent.
    """
    cases = [
        ([[0.9, 0.7, 0.2], [0.8, 0.9, 0.1], [0.6, 0.6, 0.6]], 1),  # a tie is not a rise
        ([[0.2, 0.4, 0.6, 0.8]], 1),                               # three rises, one face
        ([[0.9, 0.1], [0.3, 0.2], [0.5, 0.4]], 0),
        ([[0.9, 0.95, 0.99], [0.1, 0.2, 0.05], [0.7, 0.6, 0.65], [0.9, 0.8, 0.7]], 3),
    ]
    problems = []
    for probabilities, expected in cases:
        try:
            got = fn([list(row) for row in probabilities])
        except Exception as error:  # report, do not crash the student's notebook
            problems.append(f"count_inconsistent({probabilities}) raised "
                            f"{type(error).__name__}: {error}.")
            continue
        if _close(got, expected):
            continue
        rises = sum(b > a for row in probabilities for a, b in zip(row, row[1:]))
        ties = sum(1 for row in probabilities if any(b >= a for a, b in zip(row, row[1:])))
        hint = ("count faces, not rises: a face with several rises counts once"
                if _close(got, rises) else
                "equal neighbours are consistent: only a strict rise (>) counts"
                if _close(got, ties) else
                "count the rows where P(rank > k) goes UP from some k to k + 1"
                if _close(got, len(probabilities) - expected) else
                "a face is inconsistent when any later probability exceeds the one before it")
        problems.append(f"count_inconsistent({probabilities}) returned {got!r}, expected "
                        f"{expected} ({hint}).")
    return _verdict("rank_inconsistent", problems, strict)


__all__ = ["GRADING_ENV", "grading", "CheckFailed", "majority_share",
           "balanced_accuracy_from_confusion", "grouped_imbalance", "to_fairface_group",
           "conv_params", "block_features", "feature_side",
           "mae_to_years", "one_factor_configs", "mean_std",
           "supcon_anchor_loss", "knn_accuracy",
           "route_by_gender", "expected_fusion_accuracy",
           "coral_levels", "coral_rank", "rank_inconsistent"]


# ---- Lab 09: faces in the wild -----------------------------------------------------------------

def _four(values):
    try:
        numbers = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == 4 else None


def aligned_crop_box(fn, strict: bool = True) -> bool | None:
    """Check lab 09's ``crop_box(box, margin)``: the square cut around a face box. Lab 09.

    The square is centred on the box ``(x, y, w, h)``; its side is the box's longer side
    times ``1 + 2 * margin``; the answer is ``(left, top, right, bottom)``.
    """
    # (box, margin, expected), worked out by hand
    cases = [((40, 40, 20, 20), 0.25, (35, 35, 65, 65)),
             ((100, 50, 80, 120), 0.25, (50, 20, 230, 200)),   # tall box: side 120 * 1.5
             ((10, 20, 60, 40), 0.5, (-20, -20, 100, 100)),      # wide box, beyond the photo
             ((0, 0, 10, 10), 0.0, (0, 0, 10, 10))]
    problems = []
    for box, margin, expected in cases:
        try:
            got = _four(fn(box, margin))
        except Exception as error:  # report, do not crash the student's notebook
            problems.append(f"crop_box({box}, {margin}) raised {type(error).__name__}: {error}.")
            continue
        if got is not None and all(_close(a, b) for a, b in zip(got, expected)):
            continue
        x, y, w, h = box
        once = max(w, h) * (1 + margin) / 2
        centre = (x + w / 2, y + h / 2)
        hint = ("no answer: return four numbers (left, top, right, bottom)" if got is None else
                "the margin goes on EVERY side: the side grows by 1 + 2 * margin, not 1 + margin"
                if all(_close(a, b) for a, b in zip(got, (centre[0] - once, centre[1] - once,
                                                         centre[0] + once, centre[1] + once)))
                else "return corners (left, top, right, bottom), not (x, y, side, side)"
                if _close(got[2], expected[2] - expected[0]) and w == h else
                "use the box's LONGER side: the crop is square"
                if not _close(got[2] - got[0], got[3] - got[1]) or
                _close(got[2] - got[0], min(w, h) * (1 + 2 * margin)) and w != h else
                "centre the square on the box's centre (x + w / 2, y + h / 2), not its corner"
                if _close(got[2] - got[0], expected[2] - expected[0]) else
                "side = max(w, h) * (1 + 2 * margin), centred on the box")
        problems.append(f"crop_box({box}, {margin}) returned {got}, expected "
                        f"{tuple(float(v) for v in expected)} ({hint}).")
    return _verdict("aligned_crop_box", problems, strict)


def eye_angle(fn, strict: bool = True) -> bool | None:
    """Check lab 09's ``eye_angle(left_eye, right_eye)`` in degrees. Lab 09.

    Image coordinates (y grows downwards); the angle of the line from the left eye to the right
    eye, positive when the right eye is lower: ``degrees(atan2(ry - ly, rx - lx))``.
    """
    # (left eye, right eye, expected degrees), worked out by hand
    cases = [((0, 0), (10, 0), 0.0), ((0, 0), (10, 10), 45.0), ((10, 20), (20, 10), -45.0),
             ((204, 100), (245, 102), 2.7928), ((0, 0), (0, 5), 90.0),
             ((10, 0), (0, 10), 135.0)]  # the "right" eye left of the left one: a mirrored face
    problems = []
    for left, right, expected in cases:
        try:
            got = fn(left, right)
        except Exception as error:  # report, do not crash the student's notebook
            problems.append(f"eye_angle({left}, {right}) raised {type(error).__name__}: "
                            f"{error}.")
            continue
        if _close(got, expected, 1e-3):
            continue
        radians = expected * 3.141592653589793 / 180
        hint = ("that is in radians: convert with math.degrees" if _close(got, radians, 1e-4)
                else "the sign is flipped: y grows DOWNWARDS, so use ry - ly"
                if _close(got, -expected, 1e-3) else
                "use atan2(dy, dx), not atan(dy / dx): it keeps the quadrant and survives dx = 0"
                if abs(expected) > 90 else
                "dy first: atan2(ry - ly, rx - lx)"
                if _close(got, 90 - expected, 1e-3) else
                "the angle of the line from the left to the right eye: "
                "degrees(atan2(ry - ly, rx - lx))")
        problems.append(f"eye_angle({left}, {right}) returned {got!r}, expected "
                        f"{expected} ({hint}).")
    return _verdict("eye_angle", problems, strict)


__all__ += ["aligned_crop_box", "eye_angle"]


# ---------------------------------------------------------------------------------------------
# Lab 08: a fairness audit
# ---------------------------------------------------------------------------------------------

def expected_calibration_error(fn, strict: bool = True) -> bool | None:
    """Check lab 08's ``expected_calibration_error(confidence, correct, bins)``. Lab 08.

    Guo et al. (2017)'s ECE: equal-width bins on [0, 1], each closed on the right (the first
    also holds 0, a confidence of 1.0 lands in the last), and the sum over non-empty bins of
    ``n_b / N * |accuracy_b - confidence_b|``. Hand-worked cases, no face on a bin edge but 1.0.
    """
    cases = [
        # bins (0.9, 1]: 1 face right at 0.95; (0.8, 0.9]: 1 wrong at 0.85; (0.6, 0.7]: 0.65
        # right and 0.62 wrong -> 1/4 * 0.05 + 1/4 * 0.85 + 2/4 * |0.5 - 0.635| = 0.2925
        (([0.95, 0.85, 0.65, 0.62], [1, 0, 1, 0], 10), 0.2925),
        # 5 bins of 0.2: 1.0 right (last bin, gap 0); 0.55, 0.58, 0.45 -> (0.4, 0.6], 1 of 3
        # right, mean 0.52667; 0.35 right -> 3/5 * 0.19333 + 1/5 * 0.65 = 0.246
        (([1.0, 0.55, 0.58, 0.45, 0.35], [1, 1, 0, 0, 1], 5), 0.246),
        (([0.75, 0.75, 0.75, 0.75], [1, 1, 1, 0], 10), 0.0),        # calibrated: 3 of 4 at 0.75
        (([0.99, 0.99, 0.99, 0.99, 0.99], [1, 0, 1, 0, 1], 10), 0.39),  # over-confident
    ]
    problems = []
    for (confidence, correct, bins), expected in cases:
        call = f"expected_calibration_error({confidence}, {correct}, bins={bins})"
        try:
            got = fn(list(confidence), list(correct), bins)
        except Exception as error:  # report, do not crash the student's notebook
            hint = (" (a confidence of 1.0 belongs in the last bin: clip the index to bins - 1)"
                    if isinstance(error, IndexError) else "")
            problems.append(f"{call} raised {type(error).__name__}: {error}{hint}.")
            continue
        if _close(got, expected, 1e-4):
            continue
        per_bin = _ece_terms(confidence, correct, bins)
        hint = ("weigh each bin by its share of faces n_b / N; you averaged the bins equally"
                if _close(got, sum(abs(a - c) for _, a, c in per_bin) / len(per_bin), 1e-4)
                else "take the absolute value of accuracy - confidence in each bin"
                if _close(got, sum(n * (a - c) for n, a, c in per_bin) / len(correct), 1e-4)
                or _close(got, sum(n * (c - a) for n, a, c in per_bin) / len(correct), 1e-4)
                else "bin the faces first: compare each bin's accuracy with its mean "
                     "confidence, not each face's 0/1 with its confidence"
                if _close(got, sum(abs(k - c) for k, c in zip(correct, confidence))
                          / len(correct), 1e-4)
                else "sum n_b / N * |accuracy_b - confidence_b| over the non-empty bins")
        problems.append(f"{call} returned {got!r}, expected {expected:.4f} ({hint}).")
    return _verdict("expected_calibration_error", problems, strict)


def _ece_terms(confidence, correct, bins) -> list[tuple[int, float, float]]:
    """(faces, accuracy, mean confidence) of each non-empty right-closed bin, by hand."""
    import math

    members: dict[int, list[int]] = {}
    for i, c in enumerate(confidence):
        b = min(max(math.ceil(c * bins) - 1, 0), bins - 1)
        members.setdefault(b, []).append(i)
    return [(len(m), sum(correct[i] for i in m) / len(m), sum(confidence[i] for i in m) / len(m))
            for _, m in sorted(members.items())]


def largest_group_gap(fn, strict: bool = True) -> bool | None:
    """Check lab 08's ``largest_gap(correct, groups, min_group)``. Lab 08.

    The answer is ``(best_group, worst_group, best accuracy - worst accuracy)`` over the groups
    with at least ``min_group`` faces (a group of exactly ``min_group`` counts).
    """
    def faces(spec):  # [(group, faces, right)] -> (correct, groups)
        correct, groups = [], []
        for group, n, right in spec:
            correct += [1] * right + [0] * (n - right)
            groups += [group] * n
        return correct, groups

    cases = [
        # A 9/10, B 5/10, C 0/3 (too small), D 6/8 -> A best, B worst, 0.9 - 0.5
        ([("A", 10, 9), ("B", 10, 5), ("C", 3, 0), ("D", 8, 6)], 5, ("A", "B", 0.4)),
        # x 3/6, y 5/5 (exactly min_group: kept), z 1/4 (too small)
        ([("x", 6, 3), ("y", 5, 5), ("z", 4, 1)], 5, ("y", "x", 0.5)),
        ([("female / Black", 20, 12), ("male / White", 30, 27), ("female / White", 25, 20)],
         20, ("male / White", "female / Black", 0.3)),
    ]
    problems = []
    for spec, min_group, expected in cases:
        correct, groups = faces(spec)
        call = f"largest_gap(..., min_group={min_group}) on groups {[(g, n) for g, n, _ in spec]}"
        try:
            got = tuple(fn(list(correct), list(groups), min_group))
        except Exception as error:  # report, do not crash the student's notebook
            problems.append(f"{call} raised {type(error).__name__}: {error}.")
            continue
        if (len(got) == 3 and got[:2] == expected[:2] and _close(got[2], expected[2], 1e-9)):
            continue
        rates = {g: r / n for g, n, r in spec}
        everyone = (max(rates, key=rates.get), min(rates, key=rates.get))
        hint = ("return (best group, worst group, gap): you gave the worst group first"
                if len(got) == 3 and got[:2] == expected[1::-1]
                else "the gap is best minus worst, a positive number"
                if len(got) == 3 and _close(got[2], -expected[2], 1e-9)
                else f"leave out groups with fewer than min_group={min_group} faces (a group "
                     f"of exactly {min_group} stays)"
                if len(got) == 3 and tuple(got[:2]) == everyone and everyone != expected[:2]
                else "compare accuracies (right / faces), not counts of right answers"
                if len(got) == 3 and not _close(got[2], expected[2], 1e-9) and got[2] > 1
                else "return a tuple (best_group, worst_group, gap)")
        problems.append(f"{call} returned {got!r}, expected {expected!r} ({hint}).")
    return _verdict("largest_group_gap", problems, strict)


__all__ += ["expected_calibration_error", "largest_group_gap"]
