"""UTKFace: labels in the file name, ``[age]_[gender]_[race]_[date&time].jpg``.

Two image sets share the naming: the aligned & cropped faces (one folder, ``UTKFace/``, names
ending in the dlib chip suffix ``.jpg.chip.jpg``) and the in-the-wild photos (``part1/ part2/
part3/``, plain ``.jpg``). A name that does not match the pattern exactly is excluded with the
defect it has; the kit never guesses the missing field. See datasets.md.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from faceattr_lab.datasets.common import Exclusions, build_table, find_root, is_image_name

#: UTKFace race codes 0..4, in order.
RACES = ("White", "Black", "Asian", "Indian", "Others")
GENDERS = ("male", "female")
MAX_AGE = 116
ALIGNED_SUFFIX = ".jpg.chip.jpg"
WILD_SUFFIX = ".jpg"
WILD_PARTS = ("part1", "part2", "part3")
FIELDS = ("age", "gender", "race", "date&time")
EXPECTED = ("either the aligned & cropped folder (UTKFace/, files like "
            "36_0_1_20170117163203851.jpg.chip.jpg) or the in-the-wild folder holding "
            "part1/ part2/ part3/ (files like 36_0_1_20170117163203851.jpg)")


def _is_aligned(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        return any(e.name.endswith(".chip.jpg") and e.is_file() for e in entries)


def _is_wild(folder: Path) -> bool:
    return any((folder / part).is_dir() for part in WILD_PARTS)


def parse_name(name: str, suffix: str) -> tuple[dict | None, str | None]:
    """``(labels, None)`` for a well-formed UTKFace file name, else ``(None, defect)``.

    ``suffix`` is ``".jpg.chip.jpg"`` (aligned & cropped) or ``".jpg"`` (in the wild). The
    labels are ``age`` (int), ``gender`` (0 male, 1 female), ``race`` (a :data:`RACES` string)
    and ``timestamp`` (the 17-digit date&time string). Lab 01.
    """
    if name != name.strip() or re.search(r"\s", name):
        return None, "malformed file name: stray whitespace"
    if not name.endswith(suffix):
        bare = suffix.lstrip(".")
        if name.endswith(bare):
            return None, f"malformed file name: missing dot before {bare}"
        return None, f"malformed file name: does not end in {suffix}"
    fields = name[: -len(suffix)].split("_")
    if len(fields) < len(FIELDS):
        return None, "malformed file name: a field is missing (expected age_gender_race_date&time)"
    if len(fields) > len(FIELDS):
        return None, "malformed file name: too many fields (expected age_gender_race_date&time)"
    for field, value in zip(FIELDS, fields):
        if not value:
            return None, f"malformed file name: empty {field} field"
    age, gender, race, timestamp = fields
    if not age.isdigit() or int(age) > MAX_AGE:
        return None, f"malformed file name: age {age!r} is not 0..{MAX_AGE}"
    if gender not in ("0", "1"):
        return None, f"malformed file name: gender code {gender!r} is not 0 or 1"
    if race not in ("0", "1", "2", "3", "4"):
        return None, f"malformed file name: race code {race!r} is not 0..4"
    if not (timestamp.isdigit() and len(timestamp) == 17):
        return None, f"malformed file name: date&time {timestamp!r} is not 17 digits"
    return {"age": int(age), "gender": int(gender), "race": RACES[int(race)],
            "timestamp": timestamp}, None


def _read_folder(folder: Path, suffix: str, excluded: Exclusions, part: str | None,
                 records: list[dict]) -> None:
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            path = folder / entry.name
            if not entry.is_file() or not is_image_name(entry.name):
                excluded.add_entry(path)
                continue
            labels, defect = parse_name(entry.name, suffix)
            if defect:
                excluded.add(path, defect)
                continue
            record = {"path": str(path), "age_group": None, **labels}
            if part is not None:
                record["part"] = part
            records.append(record)


def load_utkface(root: str | Path, verify: bool = False) -> pd.DataFrame:
    """Read UTKFace (aligned & cropped, or in the wild) into a dataset table. Lab 01.

    ``root`` is the aligned folder (``UTKFace/``), the in-the-wild folder (holding ``part1/
    part2/ part3/``), or a folder holding exactly one of them. Columns: the core columns
    (``age`` in years, ``age_group`` <NA>, ``race`` one of White, Black, Asian, Indian,
    Others), ``timestamp`` (the name's 17-digit date&time) and, in the wild, ``part``.
    Malformed names are in ``df.attrs["excluded"]``; ``attrs["variant"]`` says which set.
    ``verify=True`` also opens every image (see ``verify_images``).
    """
    root = find_root(root, "utkface", lambda p: _is_aligned(p) or _is_wild(p), EXPECTED)
    excluded = Exclusions(root)
    records: list[dict] = []
    own = {"timestamp": "string"}
    if _is_wild(root) and not _is_aligned(root):
        variant = "in_the_wild"
        own["part"] = "string"
        with os.scandir(root) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.name not in WILD_PARTS or not entry.is_dir():
                    excluded.add(root / entry.name, "outside part1/ part2/ part3/")
        for part in WILD_PARTS:
            if (root / part).is_dir():
                _read_folder(root / part, WILD_SUFFIX, excluded, part, records)
    else:
        variant = "aligned"
        _read_folder(root, ALIGNED_SUFFIX, excluded, None, records)
    return build_table("utkface", root, records, own, excluded, verify=verify, variant=variant)


__all__ = ["RACES", "load_utkface", "parse_name"]
