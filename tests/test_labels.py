"""Label schemes against hand-written tables: every bin boundary, every grouping, every error."""

import numpy as np
import pandas as pd
import pytest

from faceattr_lab import labels as L

# Every boundary of every binned scheme, written by hand (age in years -> group or None).
FAIRFACE9 = {0: "0-2", 2: "0-2", 3: "3-9", 9: "3-9", 10: "10-19", 19: "10-19", 20: "20-29",
             29: "20-29", 30: "30-39", 39: "30-39", 40: "40-49", 49: "40-49", 50: "50-59",
             59: "50-59", 60: "60-69", 69: "60-69", 70: "more than 70", 116: "more than 70"}
AFAD7 = {0: None, 9: None, 10: "10-19", 19: "10-19", 20: "20-29", 29: "20-29", 30: "30-39",
         39: "30-39", 40: "40-49", 49: "40-49", 50: "50-59", 59: "50-59", 60: "60-69",
         69: "60-69", 70: "more than 70", 75: "more than 70"}
ADIENCE8 = {0: "(0, 2)", 2: "(0, 2)", 3: None, 4: "(4, 6)", 6: "(4, 6)", 7: None,
            8: "(8, 12)", 12: "(8, 12)", 13: None, 14: None, 15: "(15, 20)", 20: "(15, 20)",
            21: None, 24: None, 25: "(25, 32)", 32: "(25, 32)", 33: None, 37: None,
            38: "(38, 43)", 43: "(38, 43)", 44: None, 47: None, 48: "(48, 53)", 53: "(48, 53)",
            54: None, 59: None, 60: "(60, 100)", 100: "(60, 100)", 101: None}


@pytest.mark.parametrize("name, table", [("age_fairface9", FAIRFACE9), ("age_afad7", AFAD7),
                                         ("age_adience8", ADIENCE8)])
def test_age_group_pins_every_boundary(name, table):
    got = L.age_group(list(table), name)
    expected = [np.nan if g is None else g for g in table.values()]
    assert [None if pd.isna(g) else g for g in got] == list(table.values()), expected


def test_age_group_rejects_negative_and_fractional_ages_and_keeps_missing():
    with pytest.raises(ValueError, match="non-negative"):
        L.age_group([5, -1], "age_fairface9")
    with pytest.raises(ValueError, match="whole years"):
        L.age_group([20.5], "age_fairface9")
    assert L.age_group(pd.array([20, pd.NA], dtype="Int64"), "age_fairface9").isna().tolist() \
        == [False, True]
    with pytest.raises(ValueError, match="no age bins"):
        L.age_group([20], "gender")


def table(**columns):
    n = len(next(iter(columns.values())))
    return pd.DataFrame({"path": [f"/img/{i}.jpg" for i in range(n)], **columns})


def test_gender_encodes_int_column_and_decodes_names():
    df = table(gender=pd.array([0, 1, 1, 0], dtype="Int64"))
    scheme = L.get("gender")
    assert scheme.encode(df).tolist() == [0, 1, 1, 0]
    assert scheme.decode([1, 0]).tolist() == ["female", "male"]
    assert scheme.num_classes == 2 and scheme.output == "gender"


def test_race_groupings_by_hand():
    ff = ["White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian",
          "Middle Eastern"]
    df = table(race=pd.array(ff, dtype="string"))
    assert L.get("race_fairface7").encode(df).tolist() == [0, 1, 2, 3, 4, 5, 6]
    # race_fairface5: White, Black, Asian, Indian, Others
    assert L.get("race_fairface5").encode(df).tolist() == [0, 1, 4, 2, 2, 3, 4]
    four = L.get("race_fairface4")
    assert four.classes == ("White", "Black", "Asian", "Indian")
    assert four.mask(df).tolist() == [True, True, False, True, True, True, False]
    kept, excluded = L.select(df, [four])
    assert four.encode(kept).tolist() == [0, 1, 2, 2, 3]
    assert excluded["file"].tolist() == ["/img/2.jpg", "/img/6.jpg"]
    assert excluded["reason"].str.contains("race_fairface4").all()
    with pytest.raises(ValueError, match="Latino_Hispanic"):
        four.encode(df)
    utk = table(race=pd.array(list(L.UTK_RACES), dtype="string"))
    assert L.get("race_utk5").encode(utk).tolist() == [0, 1, 2, 3, 4]
    assert L.get("race_fairface5").encode(utk).tolist() == [0, 1, 2, 3, 4]


def test_unknown_values_raise_and_name_the_value():
    df = table(race=pd.array(["White", "East Asian", "Martian"], dtype="string"))
    with pytest.raises(ValueError, match="'Martian'.*race_fairface5|race_fairface5.*'Martian'"):
        L.get("race_fairface5").encode(df)
    with pytest.raises(ValueError, match="East Asian"):
        L.get("race_utk5").encode(df)
    with pytest.raises(ValueError, match="Martian"):  # select does not hide unknown values
        L.select(df, ["race_fairface5"])
    with pytest.raises(ValueError, match="70\\+"):  # the predict script's string is not FairFace's
        L.get("age_fairface9").encode(table(age_group=pd.array(["70+"], dtype="string")))


def test_fairface9_prefers_group_strings_and_bins_years_otherwise():
    df = table(age=pd.array([pd.NA, 20, 70, 2, 3], dtype="Int64"),
               age_group=pd.array(["10-19", pd.NA, pd.NA, pd.NA, pd.NA], dtype="string"))
    assert L.get("age_fairface9").encode(df).tolist() == [2, 3, 8, 0, 1]


def test_afad7_excludes_children_with_reason():
    df = table(age=pd.array([9, 10, 70, pd.NA], dtype="Int64"))
    kept, excluded = L.select(df, ["age_afad7"])
    assert L.get("age_afad7").encode(kept).tolist() == [0, 6]
    assert excluded["file"].tolist() == ["/img/0.jpg", "/img/3.jpg"]
    strings = table(age_group=pd.array(["3-9", "10-19"], dtype="string"))
    assert L.get("age_afad7").mask(strings).tolist() == [False, True]


def test_adience_strings_and_years_in_gaps():
    df = table(age_group=pd.array(["(0, 2)", "(60, 100)", pd.NA], dtype="string"),
               age=pd.array([pd.NA, pd.NA, 3], dtype="Int64"))
    scheme = L.get("age_adience8")
    assert scheme.mask(df).tolist() == [True, True, False]
    _, excluded = L.select(df, [scheme])
    assert "outside its bins" in excluded["reason"].iloc[0]
    with pytest.raises(ValueError, match="\\(25, 23\\)"):
        scheme.encode(table(age_group=pd.array(["(25, 23)"], dtype="string")))


def test_coral_ranks_and_exclusions():
    scheme = L.coral(21, 60)
    assert scheme.kind == "ordinal" and scheme.num_classes == 40
    df = table(age=pd.array([20, 21, 40, 60, 61], dtype="Int64"))
    kept, excluded = L.select(df, [scheme])
    ranks = scheme.encode(kept)
    assert ranks.tolist() == [0, 19, 39]
    assert scheme.decode(ranks).tolist() == [21, 40, 60]
    assert excluded["reason"].tolist() == ["coral_21_60: age 20 outside 21..60",
                                           "coral_21_60: age 61 outside 21..60"]
    assert L.get("coral_15_40") == L.coral(15, 40)
    with pytest.raises(ValueError, match="lo < hi"):
        L.coral(60, 21)


def test_years_regression_scaling_and_inverse():
    df = table(age=pd.array([0, 58, 116], dtype="Int64"))
    scaled = L.years(116)
    np.testing.assert_allclose(scaled.encode(df), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(scaled.decode(np.array([0.25])), [29.0])
    years = L.get("age_years").encode(df)  # unscaled: the years themselves, as float32
    assert years.dtype == np.float32 and years.tolist() == [0.0, 58.0, 116.0]
    assert not L.years(100).mask(df)[2]
    with pytest.raises(ValueError, match="age groups only"):
        L.get("age_years").encode(table(age_group=pd.array(["20-29"], dtype="string")))


def test_registry_and_argument_errors():
    expected = {"gender", "race_utk5", "race_fairface7", "race_fairface4", "race_fairface5",
                "age_years", "age_fairface9", "age_adience8", "age_afad7"}
    assert expected <= set(L.SCHEMES)
    with pytest.raises(ValueError, match="choose one of"):
        L.get("race_nine")
    with pytest.raises(ValueError, match="share an output"):
        L.resolve(["race_utk5", "race_fairface7"])
    with pytest.raises(ValueError, match="argmax"):
        L.get("gender").decode([0.3])
    with pytest.raises(ValueError, match="needs a 'gender' column"):
        L.get("gender").encode(table(race=["White"]))


# --- issue #9: every image with the label a task needs ------------------------------------------
def _partial_table():
    """An Adience-like table: some rows lack gender, some lack an age group, two lack both."""
    return table(gender=pd.array([0, pd.NA, 1, pd.NA, pd.NA, 1], dtype="Int64"),
                 age_group=pd.array(["(25, 32)", "(0, 2)", pd.NA, pd.NA, pd.NA, pd.NA],
                                    dtype="string"),
                 age=pd.array([pd.NA, pd.NA, pd.NA, pd.NA, 3, 40], dtype="Int64"))


def test_select_any_keeps_rows_with_some_label_and_reports_each_scheme():
    df = _partial_table()
    kept, excluded = L.select(df, ["gender", "age_adience8"], require="any")
    # by hand: row 3 has nothing, row 4 only an age (3) in an Adience gap
    assert kept["path"].tolist() == ["/img/0.jpg", "/img/1.jpg", "/img/2.jpg", "/img/5.jpg"]
    assert list(excluded.columns) == ["file", "reason", "scheme", "kept"]
    rows = list(zip(excluded["file"], excluded["scheme"], excluded["reason"], excluded["kept"]))
    assert rows == [
        ("/img/1.jpg", "gender", "gender: missing gender", True),
        ("/img/3.jpg", "gender", "gender: missing gender", False),
        ("/img/4.jpg", "gender", "gender: missing gender", False),
        ("/img/2.jpg", "age_adience8", "age_adience8: missing age_group and age", True),
        ("/img/3.jpg", "age_adience8", "age_adience8: missing age_group and age", False),
        ("/img/4.jpg", "age_adience8", "age_adience8: age 3 is outside its bins", False),
    ]
    assert excluded.index.tolist() == [1, 3, 4, 2, 3, 4]  # aligned with df's index
    assert sorted(set(excluded.loc[~excluded["kept"], "file"])) == ["/img/3.jpg", "/img/4.jpg"]
    # "all" (the default) keeps rows 0 and 5 only and reports the same rows, all dropped
    kept_all, excluded_all = L.select(df, ["gender", "age_adience8"])
    assert kept_all["path"].tolist() == ["/img/0.jpg", "/img/5.jpg"]
    assert excluded_all["file"].tolist() == excluded["file"].tolist()
    assert not excluded_all["kept"].any()
    with pytest.raises(ValueError, match="'all'.*'any'"):
        L.select(df, ["gender"], require="some")


def test_encode_missing_mask_values_by_hand():
    df = _partial_table()
    kept, _ = L.select(df, ["gender", "age_adience8"], require="any")
    assert L.MASK_INDEX == -1
    gender = L.get("gender").encode(kept, missing="mask")
    assert gender.dtype == np.int64 and gender.tolist() == [0, -1, 1, 1]
    # (25, 32) is group 4, (0, 2) group 0, age 40 lies in (38, 43): group 5
    assert L.get("age_adience8").encode(kept, missing="mask").tolist() == [4, 0, -1, 5]
    with pytest.raises(ValueError, match="missing='mask'"):
        L.get("gender").encode(kept)  # the default still refuses
    # excluded values and ages outside a range are masked too
    races = table(race=pd.array(["White", "Latino_Hispanic", pd.NA, "East Asian"],
                                dtype="string"))
    assert L.get("race_fairface4").encode(races, missing="mask").tolist() == [0, -1, -1, 2]
    ages = table(age=pd.array([20, 21, pd.NA, 60, 61], dtype="Int64"))
    assert L.coral(21, 60).encode(ages, missing="mask").tolist() == [-1, 0, -1, 39, -1]
    scaled = L.years(116).encode(table(age=pd.array([58, pd.NA, 120], dtype="Int64")),
                                 missing="mask")
    assert scaled.dtype == np.float32
    np.testing.assert_array_equal(scaled, [0.5, np.nan, np.nan])
    # unknown values still raise; a wrong mode names the two modes
    with pytest.raises(ValueError, match="Martian"):
        L.get("race_fairface7").encode(table(race=pd.array(["Martian"], dtype="string")),
                                       missing="mask")
    with pytest.raises(ValueError, match="'raise'.*'mask'"):
        L.get("gender").encode(kept, missing="drop")
