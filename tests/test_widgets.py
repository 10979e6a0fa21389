"""The ipywidgets panels, built and driven headlessly on tiny hand-made and synthetic tables."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from faceattr_lab import widgets


@pytest.fixture
def faces(tmp_path):
    """Twelve hand-made 32 px JPEGs with known labels (UTKFace-like: years, races)."""
    rows = []
    genders = [0, 1, 0, 1, 0, 1, 0, 1, 0, 1, pd.NA, 0]
    ages = [3, 20, 25, 29, 30, 41, 55, 70, 19, 20, 33, pd.NA]
    races = ["White", "Black", "Asian", "White", "Indian", "White", "Black", "Asian",
             "Others", "White", "Black", pd.NA]
    rng = np.random.default_rng(0)
    for i, (g, a, r) in enumerate(zip(genders, ages, races)):
        path = tmp_path / f"face{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
        rows.append({"path": str(path), "gender": g, "age": a, "age_group": pd.NA, "race": r})
    df = pd.DataFrame(rows).astype({"gender": "Int64", "age": "Int64", "age_group": "string",
                                    "race": "string"})
    return df


def test_filter_faces_matches_a_pandas_filter(faces):
    got = widgets.filter_faces(faces, gender=["female"], race=["White", "Black"],
                               age_range=(20, 45))
    expected = faces[(faces.gender == 1).fillna(False) & faces.race.isin(["White", "Black"])
                     .fillna(False) & faces.age.between(20, 45).fillna(False)]
    assert list(got.index) == list(expected.index) == [1, 3, 5, 9]
    # "unknown" selects the missing values; an empty selection does not filter
    assert list(widgets.filter_faces(faces, gender=["unknown"]).index) == [10]
    assert list(widgets.filter_faces(faces, race=["unknown"]).index) == [11]
    assert len(widgets.filter_faces(faces, gender=(), race=None)) == len(faces)
    with pytest.raises(ValueError, match="low <= high"):
        widgets.filter_faces(faces, age_range=(50, 20))


def test_face_browser_update_counts_the_matching_faces(faces):
    panel = widgets.face_browser(faces, n=4, image_size=32)
    assert set(panel.filters) == {"gender", "race", "age"}  # no age groups in this table
    assert panel.filters["gender"].options == ("male", "female", "unknown")
    assert panel.count.value == f"{len(faces)} of {len(faces)} faces match"

    panel.filters["race"].value = ("White", "Asian")  # observe() calls update()
    panel.filters["age"].value = (18, 40)
    expected = faces[faces.race.isin(["White", "Asian"]).fillna(False)
                     & (faces.age >= 18).fillna(False) & (faces.age <= 40).fillna(False)]
    panel.update()
    assert len(panel.selection()) == len(expected) == 3
    assert panel.count.value == f"3 of {len(faces)} faces match"

    panel.filters["gender"].value = ("unknown",)
    panel.update()
    assert panel.count.value == f"0 of {len(faces)} faces match"


def test_face_browser_offers_age_groups_in_order(tmp_path):
    from faceattr_lab.datasets import make_synthetic
    from faceattr_lab.datasets.fairface import load_fairface

    root = make_synthetic(tmp_path / "ff", "fairface", n=40, seed=1, image_size=32, workers=1)
    with pytest.warns(Warning):
        df = load_fairface(root, split="train")
    panel = widgets.face_browser(df, n=6, image_size=32)
    options = list(panel.filters["age_group"].options)
    from faceattr_lab.labels import FAIRFACE_AGE_GROUPS

    assert options == [g for g in FAIRFACE_AGE_GROUPS if g in set(df.age_group)]
    choice = options[:2]
    panel.filters["age_group"].value = tuple(choice)
    panel.update()
    assert panel.count.value == f"{df.age_group.isin(choice).sum()} of {len(df)} faces match"


def test_face_browser_rejects_bad_arguments(faces):
    with pytest.raises(ValueError, match="path"):
        widgets.face_browser(pd.DataFrame({"x": [1]}))
    with pytest.raises(ValueError, match="n must"):
        widgets.face_browser(faces, n=0)


def test_train_knobs_and_playground(faces, tmp_path):
    schemes = ["gender"]
    table = faces.dropna(subset=["gender"])
    knobs = {"conv_filters": (8, 16), "dense_units": 16, "epochs": 1, "batch_size": 8,
             "optimizer": "rmsprop", "augment": True}
    metrics, history = widgets.train_knobs(knobs, table, table, schemes, image_size=32,
                                           max_images=8)
    assert set(metrics.columns) >= {"run", "task", "metric", "value"}
    accuracy = metrics[(metrics.metric == "accuracy") & (metrics.task == "gender")]
    assert len(accuracy) == 1
    assert set(metrics.metric) == {"accuracy", "balanced_accuracy", "macro_f1"}
    # scored on the 11 validation faces with a gender (6 male, 5 female), not on the 8
    # training faces: a right male and b right female give accuracy (a + b) / 11, balanced
    # accuracy (a/6 + b/5) / 2 and F1 = 2TP / (2TP + FP + FN) per class
    value = dict(zip(metrics.metric, metrics.value))
    fits = [(a, b) for a in range(7) for b in range(6)
            if np.isclose(value["accuracy"], (a + b) / 11)
            and np.isclose(value["balanced_accuracy"], (a / 6 + b / 5) / 2)]
    assert len(fits) == 1, value
    a, b = fits[0]
    f1_male, f1_female = 2 * a / (2 * a + (5 - b) + (6 - a)), 2 * b / (2 * b + (6 - a) + (5 - b))
    assert value["macro_f1"] == pytest.approx((f1_male + f1_female) / 2)
    assert set(metrics.run) == {"8-16 bn_relu d16 p0.5 rmsprop aug e1"}  # default dropout 0.5
    assert len(history.history["loss"]) == 1 and len(history.history["val_loss"]) == 1
    with pytest.raises(ValueError, match="unknown knob"):
        widgets.train_knobs({"filters": 3}, table, table, schemes)
    with pytest.raises(ValueError, match="bn_order"):
        widgets.train_knobs({"bn_order": "relu_first"}, table, table, schemes)

    panel = widgets.cnn_playground(table, table, schemes, image_size=32, max_images=8)
    panel.controls["conv_filters"].value = "2 blocks: 16-32"
    panel.controls["dropout"].value = 0.3
    panel.controls["epochs"].value = 1
    knob_values = panel.knobs()
    assert knob_values["conv_filters"] == (16, 32)
    assert knob_values["dropout"] == pytest.approx(0.3)
    assert widgets.knobs_label(knob_values).startswith("16-32 bn_relu d128 p0.3 adam")
    # the seed is a control too: a repeat under another seed is named apart
    assert knob_values["seed"] == 0 and widgets.knobs_label(knob_values).endswith("e1")
    panel.controls["seed"].value = 3
    assert panel.knobs()["seed"] == 3
    assert widgets.knobs_label(panel.knobs()).endswith("e1 s3")
    with pytest.raises(ValueError, match="seed"):
        widgets.knobs_label({"seed": -1})
