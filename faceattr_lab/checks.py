"""Self-checks for the labs' exercises: each says "pass" or exactly what is off. Lab 00.

A check calls the student's function on hand-made cases whose answers are written out here,
independently of the kit's own code, and prints "pass" or one line per problem. In a lab
(``strict=True``) an unsolved exercise raises :class:`CheckFailed`, so "Run all" stops there,
except in a kernel that ``fl.grader.grade`` started; the grader passes ``strict=False`` and gets
``True`` or ``False`` back.
"""

from __future__ import annotations


class CheckFailed(AssertionError):
    """Raised by a self-check with ``strict=True`` when the exercise is not solved yet."""


def _verdict(name: str, problems: list[str], strict: bool) -> bool | None:
    from faceattr_lab.grader import grading

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
    """Check lab 00's ``majority_share(labels)`` on hand-made label lists. Lab 00."""
    cases = [([0, 0, 1], 2 / 3), (["a"], 1.0), ([1, 2, 3, 3], 0.5), ([5, 5, 5, 5], 1.0)]
    problems = []
    for labels, expected in cases:
        got = fn(labels)
        if not _close(got, expected):
            problems.append(f"majority_share({labels}) returned {got!r}, expected {expected:.4f}.")
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


def four_race_counts(fn, strict: bool = True) -> bool | None:
    """Check lab 01's ``four_race_counts(races)`` (FairFace's 4-race grouping). Lab 01."""
    zero = {"White": 0, "Black": 0, "Asian": 0, "Indian": 0, "excluded": 0}
    cases = [
        (["White", "East Asian", "Southeast Asian", "Indian", "Black", "Latino_Hispanic",
          "Middle Eastern", "East Asian"],
         {"White": 1, "Black": 1, "Asian": 3, "Indian": 1, "excluded": 2}),
        ([], dict(zero)),
        (["Middle Eastern", "Middle Eastern"], {**zero, "excluded": 2}),
        (["Southeast Asian"], {**zero, "Asian": 1}),
    ]
    problems = []
    for races, expected in cases:
        try:
            got = fn(races)
        except Exception as error:
            problems.append(f"four_race_counts({races}) raised {type(error).__name__}: {error}.")
            continue
        got = {str(k): int(v) for k, v in dict(got).items()} if hasattr(got, "items") else got
        if got != expected:
            problems.append(f"four_race_counts({races}) returned {got!r}, expected "
                            f"{expected!r}.")
    return _verdict("four_race_counts", problems, strict)


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

def head_params(fn, strict: bool = True) -> bool | None:
    """Check lab 03's ``head_params(feature_dim, class_counts)``: trainable parameters of
    softmax heads on a frozen backbone, counted by hand ((d + 1) * k per head). Lab 03."""
    cases = [((1280, [2, 9, 5]), 20496), ((512, [2]), 1026), ((2048, [2, 9, 5]), 32784),
             ((1, [3, 3]), 12)]
    problems = []
    for (dim, counts), expected in cases:
        try:
            got = fn(dim, counts)
        except Exception as error:  # a student's bug is reported, not raised
            problems.append(f"head_params({dim}, {counts}) raised {error!r}.")
            continue
        if got != expected:
            problems.append(f"head_params({dim}, {counts}) returned {got!r}, expected {expected} "
                            "(each Dense head has d*k weights and k biases).")
    return _verdict("head_params", problems, strict)


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


__all__ = ["CheckFailed", "majority_share",
           "balanced_accuracy_from_confusion", "four_race_counts", "to_fairface_group",
           "head_params", "fine_tune_step", "min_input_size",
           "mae_to_years", "one_factor_configs", "mean_std"]
