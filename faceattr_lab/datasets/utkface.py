"""UTKFace: labels in the file name, ``[age]_[gender]_[race]_[date&time].jpg``.

Two image sets share the naming: the aligned & cropped faces (one folder, ``UTKFace/``, names
ending in the dlib chip suffix ``.jpg.chip.jpg``) and the in-the-wild photos (``part1/ part2/
part3/``, plain ``.jpg``). A name whose structure is broken (a field missing or extra, a stray
space, a missing dot, a wrong suffix) is excluded with the defect it has: with a field missing
one cannot tell which, so the kit never guesses. A name with four fields where one label field
is empty or out of range keeps the image for the other labels (``<NA>`` in that column, noted
"kept without <label>: ..."); a name with no usable label is excluded under each reason. The
date&time is not a label: a 16- or 18-digit one (three real names) loads, with a note. See
datasets.md.
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
    """``(labels, None)`` for a UTKFace name whose structure is intact, else ``(None, defect)``.

    ``suffix`` is ``".jpg.chip.jpg"`` (aligned & cropped) or ``".jpg"`` (in the wild). The
    labels are ``age`` (int), ``gender`` (0 male, 1 female), ``race`` (a :data:`RACES` string)
    and ``timestamp`` (the date&time digits as written), plus ``problems``: a list of
    ``(column, reason)`` for each label field that is empty or out of range (its value is
    None), and ``notes``: oddities that do not cost a label (a date&time that is not 17
    digits). Lab 01.
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
    age, gender, race, timestamp = fields
    if not timestamp.isdigit():
        return None, (f"malformed file name: date&time {timestamp!r} is not digits"
                      if timestamp else "malformed file name: empty date&time field")
    labels = {"age": None, "gender": None, "race": None, "timestamp": timestamp,
              "problems": [], "notes": []}
    problems = labels["problems"]
    if not age:
        problems.append(("age", "malformed file name: empty age field"))
    elif not age.isdigit() or int(age) > MAX_AGE:
        problems.append(("age", f"malformed file name: age {age!r} is not 0..{MAX_AGE}"))
    else:
        labels["age"] = int(age)
    if not gender:
        problems.append(("gender", "malformed file name: empty gender field"))
    elif gender not in ("0", "1"):
        problems.append(("gender", f"malformed file name: gender code {gender!r} is not 0 or 1"))
    else:
        labels["gender"] = int(gender)
    if not race:
        problems.append(("race", "malformed file name: empty race field"))
    elif race not in ("0", "1", "2", "3", "4"):
        problems.append(("race", f"malformed file name: race code {race!r} is not 0..4"))
    else:
        labels["race"] = RACES[int(race)]
    if len(timestamp) != 17:
        labels["notes"].append(f"date&time has {len(timestamp)} digits, not 17 (not a label: "
                               "the image loads)")
    return labels, None


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
            problems, notes = labels.pop("problems"), labels.pop("notes")
            has_label = any(labels[c] is not None for c in ("age", "gender", "race"))
            if not excluded.row(path, problems, has_label):
                continue
            for note in notes:
                excluded.note(path, note)
            record = {"path": str(path), "age_group": None, **labels}
            if part is not None:
                record["part"] = part
            records.append(record)


def load_utkface(root: str | Path, verify: bool = False) -> pd.DataFrame:
    """Read UTKFace (aligned & cropped, or in the wild) into a dataset table. Lab 01.

    ``root`` is the aligned folder (``UTKFace/``), the in-the-wild folder (holding ``part1/
    part2/ part3/``), or a folder holding exactly one of them. Columns: the core columns
    (``age`` in years, ``age_group`` <NA>, ``race`` one of White, Black, Asian, Indian,
    Others), ``timestamp`` (the name's date&time digits, 17 as documented) and, in the wild,
    ``part``. Names with a broken structure are in ``df.attrs["excluded"]``; a name with one
    empty or out-of-range label field is kept with ``<NA>`` there and a "kept without ..."
    note in ``attrs["notes"]`` (the real ``53__0_20170116184028385.jpg`` keeps age and race),
    as is a 16- or 18-digit date&time (not a label). ``attrs["variant"]`` says which set.
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
