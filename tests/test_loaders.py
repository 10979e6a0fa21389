"""The four real-dataset loaders, on hand-made copies of each layout with every known defect.

Each fixture writes tiny real JPEGs with PIL under tmp_path, in the exact layout and with the
exact defective names / rows that datasets.md lists; the expected labels and reasons below are
written by hand, independently of the loaders.
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from faceattr_lab.datasets import (exclusion_report, load, load_adience, load_afad,
                                   load_fairface, load_utkface, verify_images)
from faceattr_lab.datasets.common import CORE_COLUMNS, DatasetWarning

NA = None


def write_jpeg(path: Path, size: int = 8, mode: str = "RGB", fmt: str = "JPEG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    shape = (size, size, 3) if mode == "RGB" else (size, size)
    Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(path, fmt)
    return path


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def load_quietly(loader, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = loader(*args, **kwargs)
    lines = [str(w.message) for w in caught if issubclass(w.category, DatasetWarning)]
    assert len(lines) == 1, lines
    return df, lines[0]


def pairs(expected: dict) -> list[tuple[str, str]]:
    """``{file: reason or (reason, ...)}`` -> sorted ``(file, reason)`` pairs."""
    return sorted((file, reason) for file, reasons in expected.items()
                  for reason in ((reasons,) if isinstance(reasons, str) else reasons))


def check_table(df, root: Path, rows: dict, excluded: dict, own: dict, notes: dict | None = None):
    """The table holds exactly ``rows`` (relative path -> core labels), ``excluded`` and ``notes``.

    ``excluded`` and ``notes`` map a file to one reason / note or a tuple of them (a row that
    fails for several reasons is listed once per reason).
    """
    assert tuple(df.columns[:5]) == CORE_COLUMNS
    assert list(df.columns[5:]) == list(own)
    assert str(df["gender"].dtype) == "Int64" and str(df["age"].dtype) == "Int64"
    assert isinstance(df["age_group"].dtype, pd.StringDtype)
    assert isinstance(df["race"].dtype, pd.StringDtype)
    for column, dtype in own.items():
        assert str(df[column].dtype) == dtype, column
    got = {}
    for record in df.to_dict("records"):
        path = Path(record["path"])
        assert path.is_absolute() and path.is_file()
        got[path.relative_to(root).as_posix()] = tuple(
            None if pd.isna(record[c]) else record[c] for c in (*CORE_COLUMNS[1:], *own))
    assert len(got) == len(df)  # one row per image
    assert got == rows
    table = df.attrs["excluded"]
    assert list(table.columns) == ["file", "reason"]
    assert sorted(zip(table["file"], table["reason"])) == pairs(excluded)
    table = df.attrs["notes"]
    assert list(table.columns) == ["file", "note"]
    assert sorted(zip(table["file"], table["note"])) == pairs(notes or {})


# --- UTKFace ------------------------------------------------------------------------------

UTK_ALIGNED_GOOD = {
    "36_0_1_20170117163203851.jpg.chip.jpg": (0, 36, NA, "Black", "20170117163203851"),
    "1_1_4_20161221193016140.jpg.chip.jpg": (1, 1, NA, "Others", "20161221193016140"),
    "116_1_0_20170120134639935.jpg.chip.jpg": (1, 116, NA, "White", "20170120134639935"),
    "25_0_2_20170116174525125.jpg.chip.jpg": (0, 25, NA, "Asian", "20170116174525125"),
    "0_1_3_20170119180056362.jpg.chip.jpg": (1, 0, NA, "Indian", "20170119180056362"),
}
# the three real names with intact labels but a 16- or 18-digit date&time: kept, with a note
UTK_LONG_DATES = {
    "14_0_0_2017011022340900.jpg.chip.jpg": (0, 14, NA, "White", "2017011022340900"),
    "28_1_2_201701161846515488.jpg.chip.jpg": (1, 28, NA, "Asian", "201701161846515488"),
    "38_0_1_201701162330572788.jpg.chip.jpg": (0, 38, NA, "Black", "201701162330572788"),
}
DIGITS = "date&time has {} digits, not 17 (not a label: the image loads)"
UTK_LONG_DATE_NOTES = {
    "14_0_0_2017011022340900.jpg.chip.jpg": DIGITS.format(16),
    "28_1_2_201701161846515488.jpg.chip.jpg": DIGITS.format(18),
    "38_0_1_201701162330572788.jpg.chip.jpg": DIGITS.format(18),
}
# four intact fields, one label unusable: kept with <NA> there and a "kept without" note
UTK_ALIGNED_PARTIAL = {
    "117_0_0_20170116232725357.jpg.chip.jpg": (0, NA, NA, "White", "20170116232725357"),
    "30_0_5_20170116232725357.jpg.chip.jpg": (0, 30, NA, NA, "20170116232725357"),
    "30_0_1_2017011623.jpg.chip.jpg": (0, 30, NA, "Black", "2017011623"),
}
UTK_ALIGNED_PARTIAL_NOTES = {
    "117_0_0_20170116232725357.jpg.chip.jpg":
        "kept without age: malformed file name: age '117' is not 0..116",
    "30_0_5_20170116232725357.jpg.chip.jpg":
        "kept without race: malformed file name: race code '5' is not 0..4",
    "30_0_1_2017011623.jpg.chip.jpg": DIGITS.format(10),
}
MISSING_FIELD = "malformed file name: a field is missing (expected age_gender_race_date&time)"
UTK_ALIGNED_BAD = {
    "39_1_20170116174525125.jpg.chip.jpg": MISSING_FIELD,
    "61_1_20170109142408075.jpg.chip.jpg": MISSING_FIELD,
    "61_1_20170109150557335.jpg.chip.jpg": MISSING_FIELD,
    "24_0_1_20170116220224657 .jpg.chip.jpg": "malformed file name: stray whitespace",
    "55_0_0_20170116232725357jpg.chip.jpg": "malformed file name: missing dot before jpg.chip.jpg",
    "30_0_1_20170116232725357.jpg": "malformed file name: does not end in .jpg.chip.jpg",
    # no usable label at all: excluded under each of its three reasons
    "200_2_7_20170116232725357.jpg.chip.jpg": (
        "malformed file name: age '200' is not 0..116",
        "malformed file name: gender code '2' is not 0 or 1",
        "malformed file name: race code '7' is not 0..4"),
}


def make_utk_aligned(root: Path) -> Path:
    for name in (*UTK_ALIGNED_GOOD, *UTK_LONG_DATES, *UTK_ALIGNED_PARTIAL, *UTK_ALIGNED_BAD):
        write_jpeg(root / name)
    write_text(root / "Thumbs.db", "cache")
    write_text(root / "list.txt", "not an image")
    return root


UTK_WILD_GOOD = {
    "part1/26_1_0_20170116184028385.jpg": (1, 26, NA, "White", "20170116184028385", "part1"),
    "part2/8_0_2_20161219140623097.jpg": (0, 8, NA, "Asian", "20161219140623097", "part2"),
    "part3/70_0_3_20170109150557335.jpg": (0, 70, NA, "Indian", "20170109150557335", "part3"),
    # the real 53__0_...: gender empty, age and race intact
    "part1/53__0_20170116184028385.jpg": (NA, 53, NA, "White", "20170116184028385", "part1"),
    "part3/40_2_1_20170109150557335.jpg": (NA, 40, NA, "Black", "20170109150557335", "part3"),
}
UTK_WILD_NOTES = {
    "part1/53__0_20170116184028385.jpg": "kept without gender: malformed file name: empty "
                                         "gender field",
    "part3/40_2_1_20170109150557335.jpg": "kept without gender: malformed file name: gender "
                                          "code '2' is not 0 or 1",
}
UTK_WILD_BAD = {
    "part2/61_3_20170109150557335.jpg": MISSING_FIELD,  # which field is missing? not guessed
}


def make_utk_wild(root: Path) -> Path:
    for name in (*UTK_WILD_GOOD, *UTK_WILD_BAD):
        write_jpeg(root / name)
    write_text(root / "readme.txt", "in the wild")
    return root


def test_utkface_aligned_labels_and_every_defect(tmp_path):
    root = make_utk_aligned(tmp_path / "UTKFace")
    df, line = load_quietly(load_utkface, root)
    rows = {**UTK_ALIGNED_GOOD, **UTK_LONG_DATES, **UTK_ALIGNED_PARTIAL}
    excluded = {**UTK_ALIGNED_BAD, "Thumbs.db": "Thumbs.db (Windows thumbnail cache)",
                "list.txt": "not an image"}
    notes = {**UTK_LONG_DATE_NOTES, **UTK_ALIGNED_PARTIAL_NOTES}
    check_table(df, root.resolve(), rows, excluded, {"timestamp": "string"}, notes)
    assert df.attrs["dataset"] == "utkface" and df.attrs["variant"] == "aligned"
    # 5 + 3 + 3 loaded; 9 files excluded, one of them under three reasons
    assert line.startswith("utkface: loaded 11 images; excluded 9 (11 reasons; ")
    assert f"{MISSING_FIELD} (3)" in line and "kept with a note: " in line
    assert f"{DIGITS.format(18)} (2)" in line


def test_utkface_real_defect_list_counts():
    """The real aligned set's 8 odd names: 5 excluded, 3 loaded with a note (datasets.md)."""
    from faceattr_lab.datasets.utkface import parse_name

    real_bad = ["39_1_20170116174525125.jpg.chip.jpg", "61_1_20170109142408075.jpg.chip.jpg",
                "61_1_20170109150557335.jpg.chip.jpg", "24_0_1_20170116220224657 .jpg.chip.jpg",
                "55_0_0_20170116232725357jpg.chip.jpg"]
    for name in real_bad:
        labels, defect = parse_name(name, ".jpg.chip.jpg")
        assert labels is None and defect.startswith("malformed file name: ")
    for name, expected in UTK_LONG_DATES.items():
        labels, defect = parse_name(name, ".jpg.chip.jpg")
        assert defect is None and labels["problems"] == []
        assert (labels["gender"], labels["age"], labels["race"], labels["timestamp"]) == (
            expected[0], expected[1], expected[3], expected[4])
        assert labels["notes"] == [UTK_LONG_DATE_NOTES[name]]


def test_utkface_in_the_wild_and_parent_folder(tmp_path):
    root = make_utk_wild(tmp_path / "utkface" / "in_the_wild")
    df, _ = load_quietly(load_utkface, tmp_path / "utkface")  # one level up is found
    excluded = {**UTK_WILD_BAD, "readme.txt": "outside part1/ part2/ part3/"}
    check_table(df, root.resolve(), UTK_WILD_GOOD, excluded,
                {"timestamp": "string", "part": "string"}, UTK_WILD_NOTES)
    assert df.attrs["variant"] == "in_the_wild"
    assert int(df["gender"].isna().sum()) == 2 and int(df["age"].isna().sum()) == 0


def test_utkface_two_copies_side_by_side_must_be_chosen(tmp_path):
    make_utk_aligned(tmp_path / "UTKFace")
    make_utk_wild(tmp_path / "wild")
    with pytest.raises(ValueError, match="several copies.*UTKFace, wild"):
        load_utkface(tmp_path)


# --- FairFace -----------------------------------------------------------------------------

FAIRFACE_TRAIN_CSV = """file,age,gender,race,service_test
train/1.jpg,10-19,Male,White,True
train/2.jpg,more than 70,Female,East Asian,False
train/3.jpg,20-29,Female,Latino_Hispanic,True
train/4.jpg,70+,Male,Black,False
train/5.jpg,30-39,male,Indian,True
train/6.jpg,40-49,Female,Asian,True
train/7.jpg,50-59,Male,Middle Eastern,True
train/8.jpg,3-9,Male,Southeast Asian,
val/1.jpg,0-2,Female,Indian,False
train/10.jpg,70+,male,Asian,True
train/1.jpg,10-19,Male,White,True
train/3.jpg,20-29,Male,Latino_Hispanic,True
train/11.jpg,20-29,Female,White,yes
"""
FAIRFACE_VAL_CSV = """file,age,gender,race,service_test
val/1.jpg,0-2,Female,Indian,False
val/2.jpg,60-69,Male,Middle Eastern,True
"""
# the same kind of rows after a trip through Excel, with a folder prefix on every file
FAIRFACE_VAL_EXCEL_CSV = """file,age,gender,race,service_test
fairface/val/1.jpg,0-2,Female,Indian,FALSE
fairface/val/2.jpg,9-Mar,Male,Middle Eastern,TRUE
fairface/val/3.jpg,19-Oct,Female,White,TRUE
fairface/val/4.jpg,3/9/2021,Male,Black,FALSE
fairface/val/5.jpg,19-Sep,female,Asian,TRUE
"""


def make_fairface(root: Path) -> Path:
    for name in ("1", "2", "3", "4", "5", "6", "8", "9", "10", "11"):  # 7 is listed but missing
        write_jpeg(root / "train" / f"{name}.jpg")
    for name in ("1", "2"):
        write_jpeg(root / "val" / f"{name}.jpg")
    write_text(root / "train" / "Thumbs.db", "cache")
    write_text(root / "fairface_label_train.csv", FAIRFACE_TRAIN_CSV)
    write_text(root / "fairface_label_val.csv", FAIRFACE_VAL_CSV)
    return root


FAIRFACE_OWN = {"split": "string", "service_test": "boolean"}


def test_fairface_train_labels_and_every_defect(tmp_path):
    root = make_fairface(tmp_path / "fairface-img-margin025-trainval")
    df, line = load_quietly(load_fairface, root, split="train")
    rows = {
        "train/1.jpg": (0, NA, "10-19", "White", "train", True),
        "train/2.jpg": (1, NA, "more than 70", "East Asian", "train", False),
        # line 13 repeats train/3.jpg with gender Male: the gender conflicts, the rest stays
        "train/3.jpg": (NA, NA, "20-29", "Latino_Hispanic", "train", True),
        "train/4.jpg": (0, NA, NA, "Black", "train", False),
        "train/5.jpg": (NA, NA, "30-39", "Indian", "train", True),
        "train/6.jpg": (1, NA, "40-49", NA, "train", True),
        "train/8.jpg": (0, NA, "3-9", "Southeast Asian", "train", NA),
        "train/11.jpg": (1, NA, "20-29", "White", "train", NA),
    }
    excluded = {
        "train/7.jpg": "image missing",
        "val/1.jpg": "file not under train/",
        # no usable label: listed under each of its three reasons
        "train/10.jpg": ("unknown age group '70+'", "unknown gender 'male'",
                         "unknown race 'Asian'"),
        "fairface_label_train.csv line 12":
            "duplicate row (same file and labels as an earlier row)",
        "fairface_label_train.csv line 13": "repeated row for a file with different labels "
                                            "(the file's own entry says which)",
        "train/9.jpg": "image not listed in fairface_label_train.csv",
        "train/Thumbs.db": "Thumbs.db (Windows thumbnail cache)",
    }
    notes = {
        "train/3.jpg": "kept without gender: conflicting rows for one file: different gender",
        "train/4.jpg": "kept without age group: unknown age group '70+'",
        "train/5.jpg": "kept without gender: unknown gender 'male'",
        "train/6.jpg": "kept without race: unknown race 'Asian'",
        "train/11.jpg": "service_test 'yes' is not True or False (<NA>)",
    }
    check_table(df, root.resolve(), rows, excluded, FAIRFACE_OWN, notes)
    assert line.startswith("fairface: loaded 8 images; excluded 7 (9 reasons; ")
    # per task: rows with each label (what a task-masked pipeline will use)
    assert df[["gender", "age_group", "race"]].notna().sum().to_dict() == {
        "gender": 6, "age_group": 7, "race": 7}


def test_fairface_excel_copy_and_folder_prefix(tmp_path):
    root = make_fairface(tmp_path / "ff")
    for name in ("3", "4", "5"):
        write_jpeg(root / "val" / f"{name}.jpg")
    write_text(root / "fairface_label_val.csv", FAIRFACE_VAL_EXCEL_CSV)
    df, line = load_quietly(load_fairface, root, split="val")
    excel = "the CSV probably went through Excel, which turns 3-9 and 10-19 into dates"
    rows = {
        "val/1.jpg": (1, NA, "0-2", "Indian", "val", False),
        "val/2.jpg": (0, NA, "3-9", "Middle Eastern", "val", True),
        "val/3.jpg": (1, NA, "10-19", "White", "val", True),
        "val/4.jpg": (0, NA, NA, "Black", "val", False),
    }
    excluded = {"fairface/val/5.jpg": (f"unknown age group '19-Sep' ({excel})",
                                       "unknown gender 'female'", "unknown race 'Asian'")}
    notes = {
        "fairface_label_val.csv": (
            "file column carries a folder prefix before val/ (e.g. 'fairface/val/1.jpg') in 5 "
            "rows; read as val/<name>",
            "service_test written TRUE/FALSE: the CSV probably went through Excel; read "
            "case-insensitively"),
        "val/2.jpg": f"age group '9-Mar' read as '3-9' ({excel})",
        "val/3.jpg": f"age group '19-Oct' read as '10-19' ({excel})",
        "val/4.jpg": f"kept without age group: unknown age group '3/9/2021' ({excel})",
    }
    check_table(df, root.resolve(), rows, excluded, FAIRFACE_OWN, notes)
    assert line.startswith("fairface: loaded 4 images; excluded 1 (3 reasons; ")
    assert "went through Excel" in line
    report = exclusion_report(df)
    assert report.loc[report["kept"], "count"].sum() == 5
    assert report.loc[~report["kept"], "count"].sum() == 3


def test_fairface_val_split_and_concat(tmp_path):
    root = make_fairface(tmp_path / "ff")
    val, _ = load_quietly(load_fairface, tmp_path, split="val")
    rows = {"val/1.jpg": (1, NA, "0-2", "Indian", "val", False),
            "val/2.jpg": (0, NA, "60-69", "Middle Eastern", "val", True)}
    check_table(val, root.resolve(), rows, {}, FAIRFACE_OWN)
    train, _ = load_quietly(load_fairface, root, split="train")
    both = pd.concat([train, val], ignore_index=True)  # attrs hold tables: must not raise
    assert len(both) == 10
    with pytest.raises(ValueError, match="'val' as the test set"):
        load_fairface(root, split="test")


def test_fairface_loads_both_official_splits_by_default(tmp_path):
    """The default table holds train and val, every exclusion and note of both, and
    fl.pipeline.split makes the official val its test part."""
    from faceattr_lab import pipeline

    root = make_fairface(tmp_path / "ff")
    train, _ = load_quietly(load_fairface, root, split="train")
    val, _ = load_quietly(load_fairface, root, split="val")
    df, line = load_quietly(load_fairface, root)
    assert df["path"].tolist() == train["path"].tolist() + val["path"].tolist()
    assert df["split"].tolist() == ["train"] * 8 + ["val"] * 2
    assert line.startswith("fairface: loaded 10 images; excluded 7 (9 reasons; ")
    for key in ("excluded", "notes"):
        assert len(df.attrs[key]) == len(train.attrs[key]) + len(val.attrs[key])
    assert df.attrs["split"] == "both"
    parts = pipeline.split(df, seed=0, stratify=None)
    assert sorted(parts["test"]["path"]) == sorted(val["path"])
    assert sorted([*parts["train"]["path"], *parts["val"]["path"]]) == sorted(train["path"])


# --- AFAD ---------------------------------------------------------------------------------

def make_afad(root: Path) -> Path:
    for name in ("15/111/638660-1.jpg", "15/112/512-2.jpg", "40/111/77-1.jpg",
                 "72/112/1234567-3.jpg", "other/111/5-1.jpg", "20/113/6-1.jpg",
                 "15/111/thumb_638660.jpg"):
        write_jpeg(root / name)
    write_text(root / "README.md", "# AFAD")
    write_text(root / "AFAD-Full.txt", "./15/111/638660-1.jpg\n./15/112/512-2.jpg\n")
    write_text(root / "15" / "111" / "Thumbs.db", "cache")
    write_text(root / "15" / "111" / "list.txt", "text")
    write_text(root / "20" / "Thumbs.db", "cache")
    return root


def test_afad_labels_and_every_defect(tmp_path):
    root = make_afad(tmp_path / "AFAD-Full")
    df, line = load_quietly(load_afad, root)
    rows = {"15/111/638660-1.jpg": (0, 15, NA, NA, "638660-1"),
            "15/112/512-2.jpg": (1, 15, NA, NA, "512-2"),
            "40/111/77-1.jpg": (0, 40, NA, NA, "77-1"),
            "72/112/1234567-3.jpg": (1, 72, NA, NA, "1234567-3")}
    excluded = {
        "README.md": "dataset metadata file (README.md, AFAD-Full.txt)",
        "AFAD-Full.txt": "dataset metadata file (README.md, AFAD-Full.txt)",
        "other": "not an age folder (non-numeric entry)",
        "20/113": "not a gender folder (111 or 112)",
        "20/Thumbs.db": "Thumbs.db (Windows thumbnail cache)",
        "15/111/Thumbs.db": "Thumbs.db (Windows thumbnail cache)",
        "15/111/list.txt": "not an image",
        "15/111/thumb_638660.jpg": "file name not <id>-<k>.jpg (thumbnail or stray file)",
    }
    check_table(df, root.resolve(), rows, excluded, {"image_id": "string"})
    assert line.startswith("afad: loaded 4 images; excluded 8: ")


# --- Adience ------------------------------------------------------------------------------

ADIENCE_HEADER = ("user_id\toriginal_image\tface_id\tage\tgender\tx\ty\tdx\tdy\ttilt_ang\t"
                  "fiducial_yaw_angle\tfiducial_score")
U0, U1, U2, U3, U4, U5 = ("30601258@N03", "7153718@N04", "8187011@N06", "10044155@N06",
                          "101515718@N03", "99999999@N00")
# (fold, user_id, original_image, face_id, age, gender, image on disk?), in file order;
# each fold file's first data row is its line 2
ADIENCE_ROWS = [
    (0, U0, "10399646885_67c7d20df9_o.jpg", "1", "(25, 32)", "f", True),  # fold 0 line 2
    (0, U0, "10424815813_e94629b1ec_o.jpg", "2", "(0, 2)", "m", True),    # line 3
    (0, U0, "10437979845_5985be4b26_o.jpg", "3", "(25, 23)", "f", True),  # line 4: typo fix
    (0, U0, "a_o.jpg", "4", "None", "m", True),                           # line 5: gender only
    (0, U0, "b_o.jpg", "5", "35", "m", True),                             # line 6: gender only
    (0, U0, "c_o.jpg", "6", "(27, 32)", "f", True),                       # line 7: gender only
    (0, U0, "a_o.jpg", "4", "None", "m", True),                           # line 8: repeats 5
    (1, U1, "d_o.jpg", "7", "(60, 100)", "u", True),                      # fold 1 line 2
    (1, U1, "e_o.jpg", "8", "(38, 43)", "", True),                        # line 3
    (1, U1, "f_o.jpg", "9", "(8, 12)", "f", False),                       # line 4: no image
    (1, U1, "g_o.jpg", "10", "(38, 48)", "m", True),                      # line 5
    (1, U1, "h_o.jpg", "11", "(8, 23)", "f", True),                       # line 6
    (1, U1, "i_o.jpg", "12", "(38, 42)", "m", True),                      # line 7
    (1, U1, "j_o.jpg", "13", "13", "f", True),                            # line 8
    (2, U2, "k_o.jpg", "14", "(4, 6)", "m", True),                        # fold 2 line 2
    (2, U2, "n_o.jpg", "17", "None", "u", True),                          # line 3: neither
    (2, U2, "o_o.jpg", "18", "45", "", True),                             # line 4: neither
    (2, U2, "n_o.jpg", "17", "None", "u", True),                          # line 5: repeats 3
    (3, U3, "l_o.jpg", "15", "(15, 20)", "f", True),                      # fold 3 line 2
    (3, U3, "l_o.jpg", "15", "(15, 20)", "f", True),                      # line 3: repeats 2
    (3, U5, "q_o.jpg", "20", "(25, 32)", "m", True),                      # line 4
    (4, U4, "m_o.jpg", "16", "(48, 53)", "m", True),                      # fold 4 line 2
    (4, U4, "p_o.jpg", "19", "(60, 100)", "m", True),                     # line 3
    (4, U4, "p_o.jpg", "19", "(60, 100)", "f", True),                     # line 4: gender differs
    (4, U5, "q_o.jpg", "20", "(25, 32)", "m", True),                      # line 5: fold differs
]


def adience_image(variant: str, user: str, image: str, face: str) -> str:
    prefix = {"faces": "coarse_tilt_aligned_face", "aligned": "landmark_aligned_face"}[variant]
    return f"{variant}/{user}/{prefix}.{face}.{image}"


def make_adience(root: Path) -> Path:
    lines = {k: [ADIENCE_HEADER] for k in range(5)}
    for fold, user, image, face, age, gender, on_disk in ADIENCE_ROWS:
        lines[fold].append("\t".join([user, image, face, age, gender, "301", "105", "640",
                                      "641", "0", "94", "1"]))
        if on_disk:
            for variant in ("faces", "aligned"):
                write_jpeg(root / adience_image(variant, user, image, face))
    for fold, text in lines.items():
        write_text(root / f"fold_{fold}_data.txt", "\n".join(text) + "\n")
    return root


ADIENCE_OWN = {"fold": "Int64", "user_id": "string", "face_id": "string",
               "original_image": "string", "age_raw": "string"}
BARE = "age is a bare number, not one of the 8 groups"
ODD = "age range is not one of the 8 groups"
DUPLICATE = "duplicate row (same image, labels and fold as an earlier row)"
CONFLICT = ("repeated row for an image with different labels or fold (the image's own entry "
            "says which)")
NO_AGE, NO_GENDER = "kept without age group: ", "kept without gender: "


def adience_default(variant: str):
    """Rows, exclusions and notes of the fixture under the default mapping, written by hand."""
    def f(user, image, face):
        return adience_image(variant, user, image, face)

    rows = {
        f(U0, "10399646885_67c7d20df9_o.jpg", "1"): (1, NA, "(25, 32)", NA, 0, U0, "1",
                                                     "10399646885_67c7d20df9_o.jpg", "(25, 32)"),
        f(U0, "10424815813_e94629b1ec_o.jpg", "2"): (0, NA, "(0, 2)", NA, 0, U0, "2",
                                                     "10424815813_e94629b1ec_o.jpg", "(0, 2)"),
        f(U0, "10437979845_5985be4b26_o.jpg", "3"): (1, NA, "(25, 32)", NA, 0, U0, "3",
                                                     "10437979845_5985be4b26_o.jpg", "(25, 23)"),
        f(U0, "a_o.jpg", "4"): (0, NA, NA, NA, 0, U0, "4", "a_o.jpg", "None"),
        f(U0, "b_o.jpg", "5"): (0, NA, NA, NA, 0, U0, "5", "b_o.jpg", "35"),
        f(U0, "c_o.jpg", "6"): (1, NA, NA, NA, 0, U0, "6", "c_o.jpg", "(27, 32)"),
        f(U1, "d_o.jpg", "7"): (NA, NA, "(60, 100)", NA, 1, U1, "7", "d_o.jpg", "(60, 100)"),
        f(U1, "e_o.jpg", "8"): (NA, NA, "(38, 43)", NA, 1, U1, "8", "e_o.jpg", "(38, 43)"),
        f(U1, "g_o.jpg", "10"): (0, NA, NA, NA, 1, U1, "10", "g_o.jpg", "(38, 48)"),
        f(U1, "h_o.jpg", "11"): (1, NA, NA, NA, 1, U1, "11", "h_o.jpg", "(8, 23)"),
        f(U1, "i_o.jpg", "12"): (0, NA, NA, NA, 1, U1, "12", "i_o.jpg", "(38, 42)"),
        f(U1, "j_o.jpg", "13"): (1, NA, NA, NA, 1, U1, "13", "j_o.jpg", "13"),
        f(U2, "k_o.jpg", "14"): (0, NA, "(4, 6)", NA, 2, U2, "14", "k_o.jpg", "(4, 6)"),
        f(U3, "l_o.jpg", "15"): (1, NA, "(15, 20)", NA, 3, U3, "15", "l_o.jpg", "(15, 20)"),
        f(U4, "m_o.jpg", "16"): (0, NA, "(48, 53)", NA, 4, U4, "16", "m_o.jpg", "(48, 53)"),
        f(U4, "p_o.jpg", "19"): (NA, NA, "(60, 100)", NA, 4, U4, "19", "p_o.jpg", "(60, 100)"),
    }
    excluded = {
        f(U1, "f_o.jpg", "9"): "image missing",
        f(U2, "n_o.jpg", "17"): ("age missing ('None')", "gender unknown ('u')"),
        f(U2, "o_o.jpg", "18"): (BARE, "gender missing (empty)"),
        "fold_0_data.txt line 8": DUPLICATE,
        "fold_2_data.txt line 5": DUPLICATE,
        "fold_3_data.txt line 3": DUPLICATE,
        "fold_4_data.txt line 4": CONFLICT,
        "fold_4_data.txt line 5": CONFLICT,
        f(U5, "q_o.jpg", "20"): "conflicting rows for one image: listed in different folds",
    }
    notes = {
        f(U0, "a_o.jpg", "4"): NO_AGE + "age missing ('None')",
        f(U0, "b_o.jpg", "5"): NO_AGE + BARE,
        f(U0, "c_o.jpg", "6"): NO_AGE + ODD,
        f(U1, "d_o.jpg", "7"): NO_GENDER + "gender unknown ('u')",
        f(U1, "e_o.jpg", "8"): NO_GENDER + "gender missing (empty)",
        f(U1, "g_o.jpg", "10"): NO_AGE + ODD,
        f(U1, "h_o.jpg", "11"): NO_AGE + ODD,
        f(U1, "i_o.jpg", "12"): NO_AGE + ODD,
        f(U1, "j_o.jpg", "13"): NO_AGE + BARE,
        f(U4, "p_o.jpg", "19"): NO_GENDER + "conflicting rows for one image: different gender "
                                            "cells",
    }
    return rows, excluded, notes


def per_fold(df) -> dict[int, tuple[int, int, int]]:
    """fold -> (rows, rows with an age group, rows with a gender)."""
    return {int(fold): (len(part), int(part["age_group"].notna().sum()),
                        int(part["gender"].notna().sum()))
            for fold, part in df.groupby("fold")}


@pytest.mark.parametrize("variant", ["faces", "aligned"])
def test_adience_keeps_each_task_s_images_and_reports_the_rest(tmp_path, variant):
    root = make_adience(tmp_path / "adience")
    df, line = load_quietly(load_adience, root, images=variant)
    rows, excluded, notes = adience_default(variant)
    check_table(df, root.resolve(), rows, excluded, ADIENCE_OWN, notes)
    # counted by hand from ADIENCE_ROWS: (rows, with an age group, with m/f) per fold
    assert per_fold(df) == {0: (6, 3, 6), 1: (6, 2, 4), 2: (1, 1, 1), 3: (1, 1, 1),
                            4: (2, 2, 1)}
    assert df["path"].is_unique  # one row per image, though 5 rows repeat an earlier one
    # 9 rows not loaded (3 of them duplicates, 2 conflicting repeats); n_o and o_o lack both
    # labels and count under both reasons
    assert line.startswith("adience: loaded 16 images; excluded 9 (11 reasons; ")
    assert f"{DUPLICATE} (3)" in line and f"{NO_AGE}{ODD} (4)" in line
    report = exclusion_report(df)
    counts = dict(zip(zip(report["reason"], report["kept"]), report["count"]))
    assert counts[("age missing ('None')", False)] == 1
    assert counts[("gender unknown ('u')", False)] == 1
    assert counts[(NO_AGE + "age missing ('None')", True)] == 1  # a_o, repeated, noted once
    assert counts[(NO_GENDER + "gender unknown ('u')", True)] == 1
    assert report.loc[report["kept"], "count"].sum() == 10


def test_adience_lone_fold_still_sees_an_image_listed_in_another(tmp_path):
    root = make_adience(tmp_path / "adience")
    df, _ = load_quietly(load_adience, root, folds=[4])
    got = sorted(zip(df.attrs["excluded"]["file"], df.attrs["excluded"]["reason"]))
    # q_o.jpg is listed in fold 3 too; p_o.jpg's second row disagrees on gender
    assert got == [("faces/99999999@N00/coarse_tilt_aligned_face.20.q_o.jpg",
                    "conflicting rows for one image: listed in different folds"),
                   ("fold_4_data.txt line 4", CONFLICT)]
    assert per_fold(df) == {4: (2, 2, 1)}


def test_adience_nearest_mapping_and_folds(tmp_path):
    root = make_adience(tmp_path / "adience")
    df, _ = load_quietly(load_adience, root, age_mapping="nearest")
    # by hand: 35 -> (38, 43), 13 -> (8, 12), 45 -> (38, 43), (27, 32) -> (25, 32),
    # (38, 48) -> (38, 43), (8, 23) -> (15, 20), (38, 42) -> (38, 43); None stays unusable
    groups = dict(zip(df["original_image"], df["age_group"]))
    assert {k: groups[k] for k in ("b_o.jpg", "j_o.jpg", "o_o.jpg", "c_o.jpg", "g_o.jpg",
                                   "h_o.jpg", "i_o.jpg")} == {
        "b_o.jpg": "(38, 43)", "j_o.jpg": "(8, 12)", "o_o.jpg": "(38, 43)",
        "c_o.jpg": "(25, 32)", "g_o.jpg": "(38, 43)", "h_o.jpg": "(15, 20)",
        "i_o.jpg": "(38, 43)"}
    assert pd.isna(groups["a_o.jpg"]) and "n_o.jpg" not in groups
    # o_o.jpg (45, empty gender) now has an age group: kept for age only
    assert per_fold(df) == {0: (6, 5, 6), 1: (6, 6, 4), 2: (2, 2, 1), 3: (1, 1, 1),
                            4: (2, 2, 1)}

    custom, _ = load_quietly(load_adience, root, folds=[0], age_mapping={"35": "(25, 32)"})
    assert sorted(custom["age_raw"]) == ["(0, 2)", "(25, 23)", "(25, 32)", "(27, 32)", "35",
                                         "None"]
    assert set(custom["fold"]) == {0}
    assert custom.loc[custom["age_raw"] == "35", "age_group"].item() == "(25, 32)"
    assert int(custom["age_group"].notna().sum()) == 4
    with pytest.raises(ValueError, match="folds must be"):
        load_adience(root, folds=[5])
    with pytest.raises(ValueError, match="age_mapping"):
        load_adience(root, age_mapping="round")


def test_verify_turns_a_kept_row_s_missing_label_into_a_reason(tmp_path):
    root = make_adience(tmp_path / "adience")
    broken = root / adience_image("faces", U1, "d_o.jpg", "7")  # kept without gender
    broken.write_bytes(b"garbage" * 40)
    df, _ = load_quietly(load_adience, root, verify=True)
    excluded = sorted(r for f, r in zip(df.attrs["excluded"]["file"],
                                        df.attrs["excluded"]["reason"]) if "d_o.jpg" in f)
    assert excluded == ["gender unknown ('u')", "unreadable image (not an image PIL can open)"]
    assert not df.attrs["notes"]["file"].str.contains("d_o.jpg").any()
    assert len(df) == 15


# --- image checks, reports, errors, load() -------------------------------------------------

def test_verify_images_drops_broken_and_notes_odd_ones(tmp_path):
    root = tmp_path / "UTKFace"
    good = write_jpeg(root / "30_0_0_20170116232725357.jpg.chip.jpg", size=64)
    full = write_jpeg(root / "31_0_0_20170116232725357.jpg.chip.jpg", size=64).read_bytes()
    (root / "31_0_0_20170116232725357.jpg.chip.jpg").write_bytes(full[: len(full) // 2])
    (root / "32_1_1_20170116232725357.jpg.chip.jpg").write_bytes(b"garbage" * 40)
    write_jpeg(root / "33_1_2_20170116232725357.jpg.chip.jpg", mode="L")
    write_jpeg(root / "34_0_3_20170116232725357.jpg.chip.jpg", fmt="PNG")

    plain, _ = load_quietly(load_utkface, root)
    assert len(plain) == 5
    checked, line = load_quietly(verify_images, plain)
    assert sorted(Path(p).name[:2] for p in checked["path"]) == ["30", "33", "34"]
    excluded = dict(zip(checked.attrs["excluded"]["file"], checked.attrs["excluded"]["reason"]))
    assert excluded == {"31_0_0_20170116232725357.jpg.chip.jpg": "truncated image",
                        "32_1_1_20170116232725357.jpg.chip.jpg":
                            "unreadable image (not an image PIL can open)"}
    notes = dict(zip(checked.attrs["notes"]["file"], checked.attrs["notes"]["note"]))
    assert notes == {"33_1_2_20170116232725357.jpg.chip.jpg": "grayscale image (loads as RGB)",
                     "34_0_3_20170116232725357.jpg.chip.jpg": "PNG saved as .jpg"}
    assert "excluded 2" in line and "kept with a note" in line
    assert good.exists()

    verified, _ = load_quietly(load_utkface, root, verify=True)
    assert verified["path"].tolist() == checked["path"].tolist()
    report = exclusion_report(verified)
    assert report.to_dict("records") == [
        {"reason": "truncated image", "count": 1, "kept": False},
        {"reason": "unreadable image (not an image PIL can open)", "count": 1, "kept": False},
        {"reason": "grayscale image (loads as RGB)", "count": 1, "kept": True},
        {"reason": "PNG saved as .jpg", "count": 1, "kept": True},
    ]


def test_exclusion_report_counts(tmp_path):
    df, _ = load_quietly(load_utkface, make_utk_aligned(tmp_path / "UTKFace"))
    report = exclusion_report(df)
    excluded = {**UTK_ALIGNED_BAD, "Thumbs.db": "Thumbs.db (Windows thumbnail cache)",
                "list.txt": "not an image"}
    expected = {(reason, False): n for reason, n in Counter(r for _, r in pairs(excluded)).items()}
    notes = {**UTK_LONG_DATE_NOTES, **UTK_ALIGNED_PARTIAL_NOTES}
    expected.update({(note, True): n for note, n in Counter(notes.values()).items()})
    assert dict(zip(zip(report["reason"], report["kept"]), report["count"])) == expected
    assert report["count"].iloc[0] == 3 and not report["kept"].iloc[0]
    assert list(report["kept"]) == sorted(report["kept"])  # excluded first, then kept
    assert report.loc[report["kept"], "count"].sum() == 6


@pytest.mark.parametrize("loader, expected", [
    (load_utkface, "part1/ part2/ part3/"),
    (load_fairface, "fairface_label_train.csv"),
    (load_afad, "111/ (male) and 112/"),
    (load_adience, "fold_0_data.txt .. fold_4_data.txt"),
])
def test_missing_root_and_wrong_layout_say_what_is_expected(tmp_path, loader, expected):
    with pytest.raises(ValueError, match="does not exist") as missing:
        loader(tmp_path / "nowhere")
    assert expected in str(missing.value) and "datasets.md" in str(missing.value)
    write_jpeg(tmp_path / "wrong" / "photo.jpg")
    with pytest.raises(ValueError, match="does not hold the") as wrong:
        loader(tmp_path / "wrong")
    assert expected in str(wrong.value) and "datasets.md" in str(wrong.value)


def test_adience_without_chosen_image_folder(tmp_path):
    root = make_adience(tmp_path / "adience")
    for path in sorted((root / "aligned").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (root / "aligned").rmdir()
    with pytest.raises(ValueError, match="no aligned/ folder"):
        load_adience(root, images="aligned")


def test_load_by_name_finds_layout_one_level_down(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEATTR_LAB_DATA", str(tmp_path))
    make_utk_aligned(tmp_path / "utkface" / "UTKFace")
    df, _ = load_quietly(load, "utkface")
    assert len(df) == len(UTK_ALIGNED_GOOD) + len(UTK_LONG_DATES) + len(UTK_ALIGNED_PARTIAL)
    make_adience(tmp_path / "adience")
    df, _ = load_quietly(load, "adience", folds=[2])
    assert df["age_group"].tolist() == ["(4, 6)"]  # n_o.jpg and o_o.jpg lack both labels
    with pytest.raises(ValueError, match="no copy found"):
        load("afad")
    with pytest.raises(ValueError, match="dataset must be one of"):
        load("imdb")


@pytest.mark.parametrize("layout", ["utkface", "fairface", "afad", "adience"])
def test_load_synthetic_reads_the_generated_layout(tmp_path, monkeypatch, layout):
    import json

    monkeypatch.setenv("FACEATTR_LAB_DATA", str(tmp_path))
    df, line = load_quietly(load, "synthetic", layout=layout, n=40, image_size=32, seed=1)
    assert df.attrs["dataset"] == "synthetic" and df.attrs["layout"] == layout
    assert line.startswith(f"synthetic ({layout} layout): loaded {len(df)} images")
    assert tuple(df.columns[:5]) == CORE_COLUMNS
    manifest = json.loads(next(tmp_path.rglob("synthetic_manifest.json")).read_text())
    # the generator's own record of what it wrote and which of its defects make a row unusable
    unusable = {d["file"] for d in manifest["defect_list"] if not d["usable"]}
    files = [f["file"] for f in manifest["files"]]
    if layout == "fairface":  # the default reads both official splits, train and val
        assert set(df["split"]) == {"train", "val"}
    assert len(df) == len([f for f in files if f not in unusable])
