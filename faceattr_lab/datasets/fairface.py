"""FairFace: images in ``train/`` and ``val/``, labels in ``fairface_label_<split>.csv``.

Both image sets (padding 0.25 and 1.25) unpack to the same layout. The CSV's ``file`` column
already carries the split prefix (``train/9.jpg``). Category strings are kept exactly as the
authors wrote them; a string outside the documented sets is excluded, not mapped. See
datasets.md.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pandas as pd

from faceattr_lab.datasets.common import Exclusions, build_table, find_root, is_image_name

SPLITS = ("train", "val")
AGE_GROUPS = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69",
              "more than 70")
GENDERS = {"Male": 0, "Female": 1}
RACES = ("White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian",
         "Middle Eastern")
REQUIRED_COLUMNS = ("file", "age", "gender", "race")
SERVICE_TEST = {"True": True, "False": False}
EXPECTED = ("a folder holding train/, val/, fairface_label_train.csv and "
            "fairface_label_val.csv (either padding, 0.25 or 1.25)")


def _label_file(root: Path, split: str) -> Path:
    return root / f"fairface_label_{split}.csv"


def _is_layout(folder: Path) -> bool:
    return any(_label_file(folder, s).is_file() and (folder / s).is_dir() for s in SPLITS)


def load_fairface(root: str | Path, split: str = "train", verify: bool = False) -> pd.DataFrame:
    """Read one FairFace split (``"train"`` or ``"val"``) into a dataset table. Lab 01.

    ``root`` holds ``train/``, ``val/`` and the two label CSVs (or is the parent of such a
    folder). Columns: the core columns (``age`` <NA>, ``age_group`` one of the nine groups
    as written, e.g. ``"more than 70"``; ``race`` one of the seven strings as written),
    ``split`` and ``service_test`` (boolean, <NA> where the CSV has none). Rows with an
    unknown category string or a missing image, and images no row lists, are in
    ``df.attrs["excluded"]``. ``verify=True`` also opens every image.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}; FairFace's test part "
                         "was never released, so use 'val' as the test set.")
    root = find_root(root, "fairface", _is_layout, EXPECTED)
    labels, images = _label_file(root, split), root / split
    if not labels.is_file() or not images.is_dir():
        raise ValueError(f"fairface: {root} has no {labels.name} and {split}/ for split "
                         f"{split!r}. Expected {EXPECTED}. See datasets.md.")
    table = pd.read_csv(labels, dtype=str, keep_default_na=False)
    table.columns = [c.strip() for c in table.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"fairface: {labels} lacks the column(s) {missing}; expected the "
                         f"header file,age,gender,race,service_test. See datasets.md.")
    if "service_test" not in table.columns:
        table["service_test"] = ""

    with os.scandir(images) as entries:
        on_disk = {e.name: e.is_file() and is_image_name(e.name) for e in entries}
    excluded = Exclusions(root)
    records: list[dict] = []
    listed: set[str] = set()
    for row in table.itertuples(index=False):
        file = row.file.strip()
        relative = PurePosixPath(file)
        reason = None
        if file in listed:
            reason = "duplicate row for the same file"
        elif relative.parts[:1] != (split,) or len(relative.parts) != 2:
            reason = f"file not under {split}/"
        elif row.age not in AGE_GROUPS:
            reason = f"unknown age group {row.age!r}"
        elif row.gender not in GENDERS:
            reason = f"unknown gender {row.gender!r}"
        elif row.race not in RACES:
            reason = f"unknown race {row.race!r}"
        elif not on_disk.get(relative.name, False):
            reason = "image missing"
        listed.add(file)
        if reason:
            excluded.add(file, reason)
            continue
        records.append({"path": str(root.joinpath(*relative.parts)), "gender": GENDERS[row.gender],
                        "age": None, "age_group": row.age, "race": row.race, "split": split,
                        "service_test": SERVICE_TEST.get(row.service_test.strip())})

    for name, is_image in sorted(on_disk.items()):
        if f"{split}/{name}" in listed:
            continue
        if is_image:
            excluded.add(images / name, f"image not listed in {labels.name}")
        else:
            excluded.add_entry(images / name)
    return build_table("fairface", root, records, {"split": "string", "service_test": "boolean"},
                       excluded, verify=verify, split=split)


__all__ = ["AGE_GROUPS", "RACES", "load_fairface"]
