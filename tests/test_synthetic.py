"""The synthetic generator: determinism, exact layouts, label noise, atomic writes, signal."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from faceattr_lab.datasets import synthetic
from faceattr_lab.datasets.synthetic import make_synthetic, render_face, synthetic_dataset

PX = 32  # small images keep these tests fast
FF_GROUPS = ["0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70"]
FF_RACES = ["White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian",
            "Middle Eastern"]
UTK_CODE = {"White": 0, "Black": 1, "East Asian": 2, "Southeast Asian": 2, "Indian": 3,
            "Latino_Hispanic": 4, "Middle Eastern": 4}
ADIENCE_GROUPS = ["(0, 2)", "(4, 6)", "(8, 12)", "(15, 20)", "(25, 32)", "(38, 43)", "(48, 53)",
                  "(60, 100)"]
ADIENCE_HEADER = ("user_id\toriginal_image\tface_id\tage\tgender\tx\ty\tdx\tdy\ttilt_ang\t"
                  "fiducial_yaw_angle\tfiducial_score")


def manifest(root: Path) -> dict:
    return json.loads((root / "synthetic_manifest.json").read_text())


def tree_hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def ff_group(age: int) -> str:  # left-closed bins, written out by hand
    for lo, name in zip([70, 60, 50, 40, 30, 20, 10, 3, 0], reversed(FF_GROUPS)):
        if age >= lo:
            return name


@pytest.mark.parametrize("layout", ["utkface", "adience"])
def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path, layout):
    a = tree_hashes(make_synthetic(tmp_path / "a", layout, 40, seed=3, image_size=PX))
    b = tree_hashes(make_synthetic(tmp_path / "b", layout, 40, seed=3, image_size=PX))
    c = tree_hashes(make_synthetic(tmp_path / "c", layout, 40, seed=4, image_size=PX))
    assert a == b
    assert len(a) > 40
    assert a != c
    assert set(a.values()) - set(c.values())  # the images themselves change, not only names


def test_worker_count_does_not_change_the_output(tmp_path):
    one = make_synthetic(tmp_path / "one", "afad", 30, seed=1, image_size=PX, workers=1)
    two = make_synthetic(tmp_path / "two", "afad", 30, seed=1, image_size=PX, workers=2)
    assert tree_hashes(one) == tree_hashes(two)


def test_utkface_names_parse_and_defects_are_the_real_ones(tmp_path):
    root = make_synthetic(tmp_path / "utk", "utkface", 60, image_size=PX, label_noise=0)
    names = sorted(p.name for p in (root / "UTKFace").iterdir())
    assert len(names) == 60
    good = re.compile(r"^(\d{1,3})_([01])_([0-4])_(\d{16,18})\.jpg\.chip\.jpg$")
    parsed = {n: good.match(n) for n in names}
    bad = [n for n, m in parsed.items() if not m]
    assert len(bad) == 5
    assert sum(bool(re.fullmatch(r"\d+_[01]_\d{17}\.jpg\.chip\.jpg", n)) for n in bad) == 3
    assert sum(n.endswith(" .jpg.chip.jpg") for n in bad) == 1
    assert sum(bool(re.search(r"\djpg\.chip\.jpg$", n)) for n in bad) == 1
    # like the real download, one 16- and one 18-digit date&time with intact labels
    digits = sorted(len(m[4]) for m in parsed.values() if m)
    assert digits.count(16) == 1 and digits.count(18) == 1 and digits.count(17) == 53
    truth = {Path(f["file"]).name: f for f in manifest(root)["files"]}
    for name, m in parsed.items():
        if m:  # without label noise the name carries the latent truth in UTK codes
            f = truth[name]
            assert (int(m[1]), int(m[2]), int(m[3])) == (f["age"], f["gender"],
                                                         UTK_CODE[f["race"]])
    with Image.open(root / "UTKFace" / names[0]) as im:
        assert im.format == "JPEG" and im.size == (PX, PX) and im.mode == "RGB"


def test_fairface_csvs_parse_with_pandas(tmp_path):
    root = make_synthetic(tmp_path / "ff", "fairface", 100, image_size=PX, label_noise=0)
    frames = []
    for split in ("train", "val"):
        text = (root / f"fairface_label_{split}.csv").read_text()
        assert text.splitlines()[0] == "file,age,gender,race,service_test"
        df = pd.read_csv(root / f"fairface_label_{split}.csv", dtype=str)
        assert df["file"].str.fullmatch(rf"{split}/\d+\.jpg").all()
        frames.append(df)
    df = pd.concat(frames)
    assert len(df) == 100 and len(frames[1]) == 12  # the 88/12 split
    assert set(df["age"]) <= set(FF_GROUPS) and set(df["gender"]) <= {"Male", "Female"}
    assert set(df["race"]) <= set(FF_RACES) and set(df["service_test"]) <= {"True", "False"}
    missing = [f for f in df["file"] if not (root / f).is_file()]
    assert len(missing) == 2
    truth = {f["file"]: f for f in manifest(root)["files"]}
    for row in df.itertuples():
        f = truth[row.file]
        assert (row.age, row.gender, row.race) == (ff_group(f["age"]),
                                                   ["Male", "Female"][f["gender"]], f["race"])


def test_afad_tree_listing_and_thumbs(tmp_path):
    root = make_synthetic(tmp_path / "afad", "afad", 80, image_size=PX)
    base = root / "AFAD-Full"
    images = sorted(p.relative_to(base).as_posix() for p in base.rglob("*.jpg"))
    assert len(images) == 80
    pattern = re.compile(r"^(\d+)/(111|112)/(\d+)-(\d+)\.jpg$")
    ages = [int(pattern.match(p)[1]) for p in images]
    assert min(ages) >= 15 and max(ages) <= 72  # the real age folders run to 72
    assert np.mean([15 <= a <= 40 for a in ages]) > 0.85
    listing = (base / "AFAD-Full.txt").read_text().split()
    assert sorted(listing) == sorted("./" + p for p in images)
    assert (base / "README.md").is_file()
    assert len(list(base.rglob("Thumbs.db"))) == 3


def test_adience_folds_are_subject_exclusive_and_images_exist(tmp_path):
    root = make_synthetic(tmp_path / "adi", "adience", 120, image_size=PX)
    folds = []
    for k in range(5):
        path = root / f"fold_{k}_data.txt"
        assert path.read_text().splitlines()[0] == ADIENCE_HEADER
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
        folds.append(df.assign(fold=k))
    df = pd.concat(folds)
    assert len(df) == 122  # 120 images, two of them listed twice (same row, same fold)
    assert df.duplicated().sum() == 2
    keys = ["user_id", "face_id", "original_image"]
    assert df.drop_duplicates().duplicated(keys).sum() == 0  # no conflicting repeats
    df = df.drop_duplicates()
    assert df.groupby("user_id")["fold"].nunique().max() == 1
    assert df.groupby("user_id").size().max() > 1  # several faces per person
    for row in df.itertuples():
        assert (root / "faces" / row.user_id /
                f"coarse_tilt_aligned_face.{row.face_id}.{row.original_image}").is_file()
        assert (root / "aligned" / row.user_id /
                f"landmark_aligned_face.{row.face_id}.{row.original_image}").is_file()
    odd_ages = df.loc[~df["age"].isin(ADIENCE_GROUPS), "age"].tolist()
    assert sorted(odd_ages).count("None") == 3 and "(25, 23)" in odd_ages
    assert sum(a.isdigit() for a in odd_ages) == 2
    assert sorted(df.loc[~df["gender"].isin(["m", "f"]), "gender"]) == ["", "u", "u", "u"]
    neither = (df["age"] == "None") & (df["gender"] == "u")  # no usable label at all
    assert neither.sum() == 1
    people = pd.DataFrame(manifest(root)["files"]).groupby("user_id")
    assert (people[["gender", "race", "age"]].nunique() == 1).all().all()


@pytest.mark.parametrize("layout", ["utkface", "fairface", "afad", "adience"])
def test_defects_false_inserts_none(tmp_path, layout):
    root = make_synthetic(tmp_path / layout, layout, 20, image_size=PX, defects=False)
    m = manifest(root)
    assert m["defect_list"] == [] and m["n_usable"] == 20
    assert not list(root.rglob("Thumbs.db"))


def test_label_noise_rate_matches_the_manifest(tmp_path):
    root = make_synthetic(tmp_path / "utk", "utkface", 100, image_size=PX, label_noise=0.1)
    m = manifest(root)
    assert m["label_noise"] == 0.1 and m["n_noisy"] == 10
    noisy = 0
    for f in m["files"]:
        truth = {"age": f["age"], "gender": f["gender"], "race": UTK_CODE[f["race"]]}
        changed = [k for k in truth if truth[k] != f["written"][k]]
        assert changed == ([f["noise"]] if f["noise"] else [])
        noisy += bool(changed)
    assert noisy == 10


def test_interrupted_generation_leaves_no_root(tmp_path, monkeypatch):
    calls = []
    real = synthetic._render_jpeg

    def failing(task):
        calls.append(task)
        if len(calls) == 15:
            raise RuntimeError("interrupted")
        return real(task)

    monkeypatch.setattr(synthetic, "_render_jpeg", failing)
    with pytest.raises(RuntimeError, match="interrupted"):
        make_synthetic(tmp_path / "utk", "utkface", 40, image_size=PX, workers=1)
    assert not (tmp_path / "utk").exists()
    assert list(tmp_path.iterdir()) == []  # no temporary sibling left either


def test_existing_root_is_not_clobbered(tmp_path):
    root = make_synthetic(tmp_path / "x", "afad", 10, image_size=PX, defects=False)
    with pytest.raises(FileExistsError):
        make_synthetic(root, "afad", 10, image_size=PX, defects=False)


def test_bad_arguments_raise_value_error(tmp_path):
    with pytest.raises(ValueError, match="layout"):
        make_synthetic(tmp_path / "x", "celeba", 40)
    with pytest.raises(ValueError, match="n must"):
        make_synthetic(tmp_path / "x", "utkface", 5)
    with pytest.raises(ValueError, match="race"):
        render_face(0, 30, "Asian", np.random.default_rng(0))


def test_synthetic_dataset_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEATTR_LAB_DATA", str(tmp_path))
    path = synthetic_dataset("utkface", n=30, image_size=PX, seed=2)
    assert path == tmp_path / "synthetic" / "utkface-n30-px32-seed2" / "UTKFace"
    stamp = {p: p.stat().st_mtime_ns for p in path.iterdir()}
    assert synthetic_dataset("utkface", n=30, image_size=PX, seed=2) == path
    assert {p: p.stat().st_mtime_ns for p in path.iterdir()} == stamp
    # a different label-noise setting does not reuse the cached files
    synthetic_dataset("utkface", n=30, image_size=PX, seed=2, label_noise=0.1)
    assert manifest(path.parent)["label_noise"] == 0.1


def test_skin_tone_follows_race():
    def cheek(race):  # mean brightness of a patch between eye and mouth, many people
        vals = [render_face(0, 30, race, np.random.default_rng(i), 64)[34:40, 18:24].mean()
                for i in range(12)]
        return np.mean(vals)

    assert cheek("White") > cheek("Indian") + 20 > cheek("Black") + 40


def test_gender_is_learnable_from_pixels():
    from sklearn.linear_model import LogisticRegression

    def silhouette(img):  # where the picture differs from its background, on an 8x8 grid
        img = img.astype(float)
        corners = np.concatenate([img[:3, :3].reshape(-1, 3), img[:3, -3:].reshape(-1, 3)])
        fg = np.abs(img - np.median(corners, axis=0)).sum(axis=2) > 40
        return fg.reshape(8, 4, 8, 4).mean(axis=(1, 3)).ravel()

    rng = np.random.default_rng(0)
    genders = rng.integers(0, 2, 300)
    x = np.stack([silhouette(render_face(int(g), int(rng.integers(18, 60)), "White",
                                         np.random.default_rng([7, i]), 32))
                  for i, g in enumerate(genders)])
    clf = LogisticRegression(max_iter=500).fit(x[:200], genders[:200])
    assert clf.score(x[200:], genders[200:]) > 0.6  # chance is 0.5 (binomial p < 0.01)


# What each planted defect costs in the loader's reports, written out by hand: extra entries
# under attrs["excluded"] (a reason each; a row lacking two labels has two) and notes.
EXCLUDED_ENTRIES = {"race_missing": 1, "stray_space": 1, "missing_dot": 1, "missing_image": 1,
                    "thumbs_db": 1, "age_none_gender_u": 2, "duplicate_row": 1}
NOTES = {"date_16_digits": 1, "date_18_digits": 1, "age_none": 1, "age_bare_number": 1,
         "age_odd_range": 1, "gender_u": 1, "gender_empty": 1}


@pytest.mark.parametrize("layout", ["utkface", "fairface", "afad", "adience"])
def test_the_real_loaders_read_the_output(tmp_path, layout):
    datasets = pytest.importorskip("faceattr_lab.datasets")
    from faceattr_lab.datasets.common import excluded_count

    root = make_synthetic(tmp_path / layout, layout, 50, image_size=PX)
    m = manifest(root)
    loader_root = root / m["loader_root"]
    if layout == "fairface":
        frames = [datasets.load_fairface(loader_root, split=s) for s in ("train", "val")]
    else:
        frames = [getattr(datasets, f"load_{layout}")(loader_root)]
    rows = sum(map(len, frames))
    excluded = sum(excluded_count(f) for f in frames)
    entries = sum(len(f.attrs["excluded"]) for f in frames)
    notes = sum(len(f.attrs["notes"]) for f in frames)
    # (AFAD lists the images that had a Thumbs.db planted beside them as usable "thumbs_db"
    # entries, then the Thumbs.db files themselves as unusable ones: count the files)
    kinds = [d["kind"] for d in m["defect_list"] if not (d["kind"] == "thumbs_db" and d["usable"])]
    unusable = sum(not d["usable"] for d in m["defect_list"])
    assert rows == m["n_usable"] == 50 - sum(not d["usable"] and d["kind"] != "thumbs_db"
                                             for d in m["defect_list"])
    # every unusable defect and every repeated row is reported, and nothing else but AFAD's
    # two metadata files (AFAD-Full.txt, README.md), which the loader lists as excluded too
    metadata = 2 if layout == "afad" else 0
    assert excluded == unusable + kinds.count("duplicate_row") + metadata
    assert entries == sum(EXCLUDED_ENTRIES.get(k, 0) for k in kinds) + metadata
    assert notes == sum(NOTES.get(k, 0) for k in kinds)
    # per task: a kept image lacks exactly the labels the manifest says
    df = pd.concat(frames, ignore_index=True)
    for column in ("gender", "age_group"):
        lacking = sum(column in d["lacks"] for d in m["defect_list"])
        has_column = df[column].notna().any()
        if has_column:
            assert int(df[column].isna().sum()) == lacking, column


def test_an_excel_copy_of_the_synthetic_csv_reads_the_same(tmp_path):
    """Rewrite the train CSV as Excel saves it, with a folder prefix: the same table loads."""
    import warnings

    datasets = pytest.importorskip("faceattr_lab.datasets")
    root = make_synthetic(tmp_path / "ff", "fairface", 60, image_size=PX)
    csv = root / "fairface_label_train.csv"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = datasets.load_fairface(root, split="train")
    text = pd.read_csv(csv, dtype=str, keep_default_na=False)
    on_disk = text["file"].map(lambda f: (root / f).is_file())  # missing images drop out
    dates = int((text["age"].isin(["3-9", "10-19"]) & on_disk).sum())
    text["age"] = text["age"].replace({"3-9": "9-Mar", "10-19": "19-Oct"})
    text["service_test"] = text["service_test"].str.upper()
    text["file"] = "fairface/" + text["file"]
    text.to_csv(csv, index=False)
    with pytest.warns(UserWarning, match="Excel"):
        excel = datasets.load_fairface(root, split="train")
    columns = ["path", "gender", "age_group", "race", "service_test"]
    pd.testing.assert_frame_equal(excel[columns], plain[columns])
    assert len(excel) == len(plain) > 0 and dates > 0
    assert len(excel.attrs["notes"]) == dates + 2  # each date read back, plus two CSV notes
