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


def check_table(df, root: Path, rows: dict, excluded: dict, own: dict):
    """The table holds exactly ``rows`` (relative path -> core labels) and ``excluded``."""
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
    assert got == rows
    table = df.attrs["excluded"]
    assert list(table.columns) == ["file", "reason"]
    assert dict(zip(table["file"], table["reason"])) == excluded
    assert len(table) == len(excluded)


# --- UTKFace ------------------------------------------------------------------------------

UTK_ALIGNED_GOOD = {
    "36_0_1_20170117163203851.jpg.chip.jpg": (0, 36, NA, "Black", "20170117163203851"),
    "1_1_4_20161221193016140.jpg.chip.jpg": (1, 1, NA, "Others", "20161221193016140"),
    "116_1_0_20170120134639935.jpg.chip.jpg": (1, 116, NA, "White", "20170120134639935"),
    "25_0_2_20170116174525125.jpg.chip.jpg": (0, 25, NA, "Asian", "20170116174525125"),
    "0_1_3_20170119180056362.jpg.chip.jpg": (1, 0, NA, "Indian", "20170119180056362"),
}
MISSING_FIELD = "malformed file name: a field is missing (expected age_gender_race_date&time)"
UTK_ALIGNED_BAD = {
    "39_1_20170116174525125.jpg.chip.jpg": MISSING_FIELD,
    "61_1_20170109142408075.jpg.chip.jpg": MISSING_FIELD,
    "61_1_20170109150557335.jpg.chip.jpg": MISSING_FIELD,
    "24_0_1_20170116220224657 .jpg.chip.jpg": "malformed file name: stray whitespace",
    "55_0_0_20170116232725357jpg.chip.jpg": "malformed file name: missing dot before jpg.chip.jpg",
    "117_0_0_20170116232725357.jpg.chip.jpg": "malformed file name: age '117' is not 0..116",
    "30_0_5_20170116232725357.jpg.chip.jpg": "malformed file name: race code '5' is not 0..4",
    "30_0_1_2017011623.jpg.chip.jpg":
        "malformed file name: date&time '2017011623' is not 17 digits",
    "30_0_1_20170116232725357.jpg": "malformed file name: does not end in .jpg.chip.jpg",
}


def make_utk_aligned(root: Path) -> Path:
    for name in (*UTK_ALIGNED_GOOD, *UTK_ALIGNED_BAD):
        write_jpeg(root / name)
    write_text(root / "Thumbs.db", "cache")
    write_text(root / "list.txt", "not an image")
    return root


UTK_WILD_GOOD = {
    "part1/26_1_0_20170116184028385.jpg": (1, 26, NA, "White", "20170116184028385", "part1"),
    "part2/8_0_2_20161219140623097.jpg": (0, 8, NA, "Asian", "20161219140623097", "part2"),
    "part3/70_0_3_20170109150557335.jpg": (0, 70, NA, "Indian", "20170109150557335", "part3"),
}
UTK_WILD_BAD = {
    "part1/53__0_20170116184028385.jpg": "malformed file name: empty gender field",
    "part2/61_3_20170109150557335.jpg": MISSING_FIELD,
    "part3/40_2_1_20170109150557335.jpg": "malformed file name: gender code '2' is not 0 or 1",
}


def make_utk_wild(root: Path) -> Path:
    for name in (*UTK_WILD_GOOD, *UTK_WILD_BAD):
        write_jpeg(root / name)
    write_text(root / "readme.txt", "in the wild")
    return root


def test_utkface_aligned_labels_and_every_defect(tmp_path):
    root = make_utk_aligned(tmp_path / "UTKFace")
    df, line = load_quietly(load_utkface, root)
    rows = {name: labels for name, labels in UTK_ALIGNED_GOOD.items()}
    excluded = {**UTK_ALIGNED_BAD, "Thumbs.db": "Thumbs.db (Windows thumbnail cache)",
                "list.txt": "not an image"}
    check_table(df, root.resolve(), rows, excluded, {"timestamp": "string"})
    assert df.attrs["dataset"] == "utkface" and df.attrs["variant"] == "aligned"
    assert line.startswith("utkface: loaded 5 images; excluded 11: ")
    assert f"{MISSING_FIELD} (3)" in line


def test_utkface_in_the_wild_and_parent_folder(tmp_path):
    root = make_utk_wild(tmp_path / "utkface" / "in_the_wild")
    df, _ = load_quietly(load_utkface, tmp_path / "utkface")  # one level up is found
    excluded = {**UTK_WILD_BAD, "readme.txt": "outside part1/ part2/ part3/"}
    check_table(df, root.resolve(), UTK_WILD_GOOD, excluded,
                {"timestamp": "string", "part": "string"})
    assert df.attrs["variant"] == "in_the_wild"


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
"""
FAIRFACE_VAL_CSV = """file,age,gender,race,service_test
val/1.jpg,0-2,Female,Indian,False
val/2.jpg,60-69,Male,Middle Eastern,True
"""


def make_fairface(root: Path) -> Path:
    for name in ("1", "2", "3", "4", "5", "6", "8", "9"):  # 7 is listed but missing
        write_jpeg(root / "train" / f"{name}.jpg")
    for name in ("1", "2"):
        write_jpeg(root / "val" / f"{name}.jpg")
    write_text(root / "train" / "Thumbs.db", "cache")
    write_text(root / "fairface_label_train.csv", FAIRFACE_TRAIN_CSV)
    write_text(root / "fairface_label_val.csv", FAIRFACE_VAL_CSV)
    return root


def test_fairface_train_labels_and_every_defect(tmp_path):
    root = make_fairface(tmp_path / "fairface-img-margin025-trainval")
    df, line = load_quietly(load_fairface, root)
    rows = {
        "train/1.jpg": (0, NA, "10-19", "White", "train", True),
        "train/2.jpg": (1, NA, "more than 70", "East Asian", "train", False),
        "train/3.jpg": (1, NA, "20-29", "Latino_Hispanic", "train", True),
        "train/8.jpg": (0, NA, "3-9", "Southeast Asian", "train", NA),
    }
    excluded = {
        "train/4.jpg": "unknown age group '70+'",
        "train/5.jpg": "unknown gender 'male'",
        "train/6.jpg": "unknown race 'Asian'",
        "train/7.jpg": "image missing",
        "val/1.jpg": "file not under train/",
        "train/9.jpg": "image not listed in fairface_label_train.csv",
        "train/Thumbs.db": "Thumbs.db (Windows thumbnail cache)",
    }
    check_table(df, root.resolve(), rows, excluded, {"split": "string", "service_test": "boolean"})
    assert line.startswith("fairface: loaded 4 images; excluded 7: ")


def test_fairface_val_split_and_concat(tmp_path):
    root = make_fairface(tmp_path / "ff")
    val, _ = load_quietly(load_fairface, tmp_path, split="val")
    rows = {"val/1.jpg": (1, NA, "0-2", "Indian", "val", False),
            "val/2.jpg": (0, NA, "60-69", "Middle Eastern", "val", True)}
    check_table(val, root.resolve(), rows, {}, {"split": "string", "service_test": "boolean"})
    train, _ = load_quietly(load_fairface, root)
    both = pd.concat([train, val], ignore_index=True)  # attrs hold tables: must not raise
    assert len(both) == 6
    with pytest.raises(ValueError, match="'val' as the test set"):
        load_fairface(root, split="test")


# --- AFAD ---------------------------------------------------------------------------------

def make_afad(root: Path) -> Path:
    for name in ("15/111/638660-1.jpg", "15/112/512-2.jpg", "40/111/77-1.jpg",
                 "75/112/1234567-3.jpg", "other/111/5-1.jpg", "20/113/6-1.jpg",
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
            "75/112/1234567-3.jpg": (1, 75, NA, NA, "1234567-3")}
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
# (fold, user_id, original_image, face_id, age, gender, image on disk?)
ADIENCE_ROWS = [
    (0, "30601258@N03", "10399646885_67c7d20df9_o.jpg", "1", "(25, 32)", "f", True),
    (0, "30601258@N03", "10424815813_e94629b1ec_o.jpg", "2", "(0, 2)", "m", True),
    (0, "30601258@N03", "10437979845_5985be4b26_o.jpg", "3", "(25, 23)", "f", True),
    (0, "30601258@N03", "a_o.jpg", "4", "None", "m", True),
    (0, "30601258@N03", "b_o.jpg", "5", "35", "m", True),
    (0, "30601258@N03", "c_o.jpg", "6", "(27, 32)", "f", True),
    (1, "7153718@N04", "d_o.jpg", "7", "(60, 100)", "u", True),
    (1, "7153718@N04", "e_o.jpg", "8", "(38, 43)", "", True),
    (1, "7153718@N04", "f_o.jpg", "9", "(8, 12)", "f", False),
    (1, "7153718@N04", "g_o.jpg", "10", "(38, 48)", "m", True),
    (1, "7153718@N04", "h_o.jpg", "11", "(8, 23)", "f", True),
    (1, "7153718@N04", "i_o.jpg", "12", "(38, 42)", "m", True),
    (1, "7153718@N04", "j_o.jpg", "13", "13", "f", True),
    (2, "8187011@N06", "k_o.jpg", "14", "(4, 6)", "m", True),
    (3, "10044155@N06", "l_o.jpg", "15", "(15, 20)", "f", True),
    (4, "101515718@N03", "m_o.jpg", "16", "(48, 53)", "m", True),
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


def adience_expected(variant: str, groups: dict[str, str]):
    """Rows and exclusions for the fixture when ``groups`` maps the loadable age cells."""
    rows, excluded = {}, {}
    bare = "age is a bare number, not one of the 8 groups"
    reasons = {"None": "age missing ('None')", "35": bare, "13": bare}
    for fold, user, image, face, age, gender, on_disk in ADIENCE_ROWS:
        file = adience_image(variant, user, image, face)
        if age not in groups:
            excluded[file] = reasons.get(age, "age range is not one of the 8 groups")
        elif gender == "u":
            excluded[file] = "gender unknown ('u')"
        elif gender == "":
            excluded[file] = "gender missing (empty)"
        elif not on_disk:
            excluded[file] = "image missing"
        else:
            rows[file] = ({"m": 0, "f": 1}[gender], NA, groups[age], NA, fold, user, face, image,
                          age)
    return rows, excluded


EIGHT = {g: g for g in ("(0, 2)", "(4, 6)", "(8, 12)", "(15, 20)", "(25, 32)", "(38, 43)",
                        "(48, 53)", "(60, 100)")}


@pytest.mark.parametrize("variant", ["faces", "aligned"])
def test_adience_default_keeps_eight_groups_and_typo_fix(tmp_path, variant):
    root = make_adience(tmp_path / "adience")
    df, line = load_quietly(load_adience, root, images=variant)
    rows, excluded = adience_expected(variant, {**EIGHT, "(25, 23)": "(25, 32)"})
    assert len(rows) == 6 and len(excluded) == 10
    check_table(df, root.resolve(), rows, excluded, ADIENCE_OWN)
    assert line.startswith("adience: loaded 6 images; excluded 10: ")
    assert "age range is not one of the 8 groups (4)" in line


def test_adience_nearest_mapping_and_folds(tmp_path):
    root = make_adience(tmp_path / "adience")
    nearest = {**EIGHT, "(25, 23)": "(25, 32)", "35": "(38, 43)", "13": "(8, 12)",
               "(27, 32)": "(25, 32)", "(38, 48)": "(38, 43)", "(8, 23)": "(15, 20)",
               "(38, 42)": "(38, 43)"}
    df, _ = load_quietly(load_adience, root, age_mapping="nearest")
    rows, excluded = adience_expected("faces", nearest)
    check_table(df, root.resolve(), rows, excluded, ADIENCE_OWN)

    custom, _ = load_quietly(load_adience, root, folds=[0], age_mapping={"35": "(25, 32)"})
    assert sorted(custom["age_raw"]) == ["(0, 2)", "(25, 23)", "(25, 32)", "35"]
    assert set(custom["fold"]) == {0}
    assert custom.loc[custom["age_raw"] == "35", "age_group"].item() == "(25, 32)"
    with pytest.raises(ValueError, match="folds must be"):
        load_adience(root, folds=[5])
    with pytest.raises(ValueError, match="age_mapping"):
        load_adience(root, age_mapping="round")


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
    expected = Counter({**UTK_ALIGNED_BAD, "Thumbs.db": "Thumbs.db (Windows thumbnail cache)",
                        "list.txt": "not an image"}.values())
    assert dict(zip(report["reason"], report["count"])) == dict(expected)
    assert report["count"].iloc[0] == 3 and not report["kept"].any()


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
    assert len(df) == len(UTK_ALIGNED_GOOD)
    make_adience(tmp_path / "adience")
    df, _ = load_quietly(load, "adience", folds=[2])
    assert df["age_group"].tolist() == ["(4, 6)"]
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
    if layout == "fairface":  # the default split is train
        files = [f for f in files if f.startswith("train/")]
    assert len(df) == len([f for f in files if f not in unusable])
