"""AFAD-Full: labels in the folders, ``AFAD-Full/<age>/<111|112>/<id>-<k>.jpg``.

111 is male and 112 female; age folders run from 15 to 72. The root also holds ``README.md``
and the list file ``AFAD-Full.txt``; folders hold ``Thumbs.db`` and stray small files.
Everything that is not an age folder, a gender folder or an ``<id>-<k>.jpg`` image is excluded
with its reason. The authors' 164,432 images for ages 15..40 count the 14 ``Thumbs.db`` files
in those folders: the real images aged 15..40 number 164,418 (100,745 male / 63,673 female),
and ``AFAD-Full.txt`` lists 165,501 images aged 15..72. Every image has both labels (age and
gender come from its folders), so no row is partial. See datasets.md.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from faceattr_lab.datasets.common import (Exclusions, build_table, find_root, is_image_name,
                                         non_image_reason)

GENDER_FOLDERS = {"111": 0, "112": 1}
METADATA_FILES = ("README.md", "AFAD-Full.txt")
IMAGE_NAME = re.compile(r"(\d+-\d+)\.jpg", re.IGNORECASE)
EXPECTED = ("AFAD-Full/ holding age folders (15/ ... 72/), each with 111/ (male) and 112/ "
            "(female) folders of <id>-<k>.jpg images, plus README.md and AFAD-Full.txt")


def _is_layout(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        ages = [e.name for e in entries if e.is_dir() and e.name.isdigit()]
    return any((folder / age / g).is_dir() for age in ages[:20] for g in GENDER_FOLDERS)


def _sorted_entries(folder: Path) -> list[os.DirEntry]:
    with os.scandir(folder) as entries:
        return sorted(entries, key=lambda e: e.name)


def load_afad(root: str | Path, verify: bool = False) -> pd.DataFrame:
    """Read AFAD-Full into a dataset table. Lab 01.

    ``root`` is ``AFAD-Full/`` (or its parent). Columns: the core columns (``age`` in years
    from the age folder, ``age_group`` <NA>, ``race`` <NA>: AFAD labels no race, and the kit
    does not assume one) and ``image_id`` (the file name's ``<id>-<k>``; AFAD documents no
    subject identity, so none is claimed). README.md, AFAD-Full.txt, Thumbs.db, non-numeric
    folders and non-images are in ``df.attrs["excluded"]``. ``verify=True`` also opens
    every image.
    """
    root = find_root(root, "afad", _is_layout, EXPECTED)
    excluded = Exclusions(root)
    records: list[dict] = []
    for age_entry in _sorted_entries(root):
        age_dir = root / age_entry.name
        if age_entry.name in METADATA_FILES:
            excluded.add(age_dir, "dataset metadata file (README.md, AFAD-Full.txt)")
            continue
        if not (age_entry.is_dir() and age_entry.name.isdigit()):
            excluded.add(age_dir, "not an age folder (non-numeric entry)" if age_entry.is_dir()
                         else _misplaced(age_dir))
            continue
        for gender_entry in _sorted_entries(age_dir):
            gender_dir = age_dir / gender_entry.name
            if not (gender_entry.is_dir() and gender_entry.name in GENDER_FOLDERS):
                excluded.add(gender_dir, "not a gender folder (111 or 112)"
                             if gender_entry.is_dir() else _misplaced(gender_dir))
                continue
            gender = GENDER_FOLDERS[gender_entry.name]
            for entry in _sorted_entries(gender_dir):
                path = gender_dir / entry.name
                if not entry.is_file() or not is_image_name(entry.name):
                    excluded.add_entry(path)
                    continue
                match = IMAGE_NAME.fullmatch(entry.name)
                if match is None:
                    excluded.add(path, "file name not <id>-<k>.jpg (thumbnail or stray file)")
                    continue
                records.append({"path": str(path), "gender": gender,
                                "age": int(age_entry.name), "age_group": None, "race": None,
                                "image_id": match.group(1)})
    return build_table("afad", root, records, {"image_id": "string"}, excluded, verify=verify)


def _misplaced(path: Path) -> str:
    """Why a file above the gender folders is skipped."""
    if is_image_name(path.name):
        return "image outside the <age>/<111|112>/ folders"
    return non_image_reason(path)


__all__ = ["load_afad"]
