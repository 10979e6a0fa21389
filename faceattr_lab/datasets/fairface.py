"""FairFace: images in ``train/`` and ``val/``, labels in ``fairface_label_<split>.csv``.

Both image sets (padding 0.25 and 1.25) unpack to the same layout. The CSV's ``file`` column
already carries the split prefix (``train/9.jpg``); course copies that prefix it with a folder
(``fairface/val/1.jpg``) are read too. Category strings are kept exactly as the authors wrote
them; a string outside the documented sets is not mapped: that label is ``<NA>`` and the row
stays for its other labels (noted), or is excluded when no label is left.

Copies that went through Excel write ``service_test`` as ``TRUE``/``FALSE`` (read
case-insensitively) and turn the age groups ``3-9`` and ``10-19`` into the dates ``9-Mar`` and
``19-Oct``; those two forms can only come from those groups, so they are read back, each with
a note naming Excel. Any other date-like age cell is reported with Excel named as the likely
cause. See datasets.md.
"""

from __future__ import annotations

import os
import re
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
SERVICE_TEST = {"true": True, "false": False}  # compared case-insensitively
#: The dates Excel makes of two age groups (as it displays them, d-mmm), and the group each
#: can only have come from.
EXCEL_DATES = {"9-mar": "3-9", "19-oct": "10-19"}
EXCEL = "the CSV probably went through Excel, which turns 3-9 and 10-19 into dates"
_MONTHS = "(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*"
_DATE = re.compile("|".join((
    rf"\d{{1,2}}[-/ ]{_MONTHS}([-/ ]\d{{2,4}})?",    # 9-Mar, 19-Oct-2021
    rf"{_MONTHS}[-/ ]\d{{1,4}}",                     # Mar-09, Oct-2019
    r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}( \d{1,2}:\d{2}(:\d{2})?)?",  # 2021-03-09, 3/9/2021
)), re.IGNORECASE)
DUPLICATE_ROW = "duplicate row (same file and labels as an earlier row)"
CONFLICTING_ROW = ("repeated row for a file with different labels (the file's own entry says "
                   "which)")
EXPECTED = ("a folder holding train/, val/, fairface_label_train.csv and "
            "fairface_label_val.csv (either padding, 0.25 or 1.25)")


def _label_file(root: Path, split: str) -> Path:
    return root / f"fairface_label_{split}.csv"


def _is_layout(folder: Path) -> bool:
    return any(_label_file(folder, s).is_file() and (folder / s).is_dir() for s in SPLITS)


def load_fairface(root: str | Path, split: str = "both", verify: bool = False) -> pd.DataFrame:
    """Read FairFace's two official splits (``split="both"``), or one (``"train"``, ``"val"``),
    into a dataset table. Lab 01.

    With both, ``fl.pipeline.split`` keeps the official split: the official val becomes the
    test part (the test part was never released) and validation is carved from train. The
    two splits' exclusions and notes are kept together in ``df.attrs``.

    ``root`` holds ``train/``, ``val/`` and the two label CSVs (or is the parent of such a
    folder). Columns: the core columns (``age`` <NA>, ``age_group`` one of the nine groups
    as written, e.g. ``"more than 70"``; ``race`` one of the seven strings as written),
    ``split`` and ``service_test`` (boolean, ``True``/``False`` in any case, <NA> where the
    CSV has none). A row with an unknown or empty category string keeps its other labels
    (``<NA>`` in that column, a "kept without ..." note in ``df.attrs["notes"]``); rows with
    no usable label or a missing image, rows listing a file outside ``<split>/``, repeated
    rows (``file`` = ``fairface_label_<split>.csv line <n>``) and images no row lists are in
    ``df.attrs["excluded"]``. A ``file`` with a folder prefix (``fairface/val/1.jpg``) is
    read as ``val/1.jpg``; Excel's ``TRUE``/``FALSE`` and its dates ``9-Mar``/``19-Oct``
    (for ``3-9``/``10-19``) are read back with a note naming Excel. ``verify=True`` also
    opens every image.
    """
    if split == "both":
        return _load_both(root, verify)
    if split not in SPLITS:
        raise ValueError(f"split must be 'both' or one of {SPLITS}, got {split!r}; FairFace's "
                         "test part was never released, so use 'val' as the test set.")
    root = find_root(root, "fairface", _is_layout, EXPECTED)
    labels, images = _label_file(root, split), root / split
    if not labels.is_file() or not images.is_dir():
        raise ValueError(f"fairface: {root} has no {labels.name} and {split}/ for split "
                         f"{split!r}. Expected {EXPECTED}. See datasets.md.")
    table = pd.read_csv(labels, dtype=str, keep_default_na=False, skip_blank_lines=False)
    table.columns = [c.strip() for c in table.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"fairface: {labels} lacks the column(s) {missing}; expected the "
                         f"header file,age,gender,race,service_test. See datasets.md.")
    if "service_test" not in table.columns:
        table["service_test"] = ""
    table = table[list(REQUIRED_COLUMNS) + ["service_test"]].copy()
    for column in ("file", "service_test"):
        table[column] = table[column].str.strip()

    with os.scandir(images) as entries:
        on_disk = {e.name: e.is_file() and is_image_name(e.name) for e in entries}
    excluded = Exclusions(root)
    rows: dict[str, list[dict]] = {}  # split/name -> its rows, in file order
    prefixed, excel_booleans = [], 0
    for index, row in enumerate(table.to_dict("records")):
        if not any(row.values()):
            continue
        row["line"] = f"{labels.name} line {index + 2}"  # the header is line 1
        parts = PurePosixPath(row["file"].replace("\\", "/")).parts
        if len(parts) < 2 or parts[-2] != split:
            excluded.add(row["file"], f"file not under {split}/")
            continue
        if len(parts) > 2:
            prefixed.append(row["file"])
        excel_booleans += row["service_test"] in ("TRUE", "FALSE")
        rows.setdefault(f"{split}/{parts[-1]}", []).append(row)
    if prefixed:
        excluded.note(labels.name, f"file column carries a folder prefix before {split}/ "
                                   f"(e.g. {prefixed[0]!r}) in {len(prefixed)} rows; read "
                                   f"as {split}/<name>")
    if excel_booleans:
        excluded.note(labels.name, "service_test written TRUE/FALSE: the CSV probably went "
                                   "through Excel; read case-insensitively")

    records: list[dict] = []
    for relative, repeats in rows.items():
        first, differ = repeats[0], set()
        for again in repeats[1:]:
            fields = [f for f in ("age", "gender", "race", "service_test")
                      if again[f] != first[f]]
            differ.update(fields)
            excluded.add(again["line"], CONFLICTING_ROW if fields else DUPLICATE_ROW)
        problems, notes, fatal = [], [], []
        labels_ = {}
        for column, key, allowed in (("age_group", "age", AGE_GROUPS),
                                     ("gender", "gender", GENDERS), ("race", "race", RACES)):
            value = first[key]
            labels_[column] = None
            if key in differ:
                problems.append((column, f"conflicting rows for one file: different {key}"))
            elif value in allowed:
                labels_[column] = value
            elif key == "age" and value.lower() in EXCEL_DATES:
                labels_[column] = EXCEL_DATES[value.lower()]
                notes.append(f"age group {value!r} read as {labels_[column]!r} ({EXCEL})")
            elif not value:
                problems.append((column, f"{key} missing (empty)"))
            elif key == "age" and _DATE.fullmatch(value):
                problems.append((column, f"unknown age group {value!r} ({EXCEL})"))
            else:
                name = "age group" if key == "age" else key
                problems.append((column, f"unknown {name} {value!r}"))
        service = first["service_test"]
        service_test = SERVICE_TEST.get(service.lower())
        if "service_test" in differ:
            service_test = None
            notes.append("conflicting rows for one file: different service_test (<NA>)")
        elif service and service_test is None:
            notes.append(f"service_test {service!r} is not True or False (<NA>)")
        if not on_disk.get(relative.split("/")[1], False):
            fatal.append("image missing")
        has_label = any(v is not None for v in labels_.values())
        # a row is reported by its CSV string when excluded, by its image path when kept
        if not excluded.row(first["file"] if fatal or not has_label else relative, problems,
                            has_label, fatal):
            continue
        for note in notes:
            excluded.note(relative, note)
        gender = labels_["gender"]
        records.append({"path": str(root.joinpath(*relative.split("/"))),
                        "gender": None if gender is None else GENDERS[gender], "age": None,
                        "age_group": labels_["age_group"], "race": labels_["race"],
                        "split": split, "service_test": service_test})

    listed = set(rows)
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


def _load_both(root, verify: bool) -> pd.DataFrame:
    """Both official splits in one table: rows, exclusions and notes of train, then val."""
    import warnings

    from faceattr_lab.datasets.common import DatasetWarning, summary

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)  # one summary line, for both
        parts = [load_fairface(root, split, verify) for split in SPLITS]
    df = pd.concat(parts, ignore_index=True)
    df.attrs = {**parts[0].attrs, "split": "both",
                **{key: pd.concat([part.attrs[key] for part in parts], ignore_index=True)
                   for key in ("excluded", "notes")}}
    warnings.warn(summary(df), DatasetWarning, stacklevel=3)
    return df
