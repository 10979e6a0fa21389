"""Adience: Levi & Hassner's five subject-exclusive folds, ``fold_<k>_data.txt``.

Each fold file is tab-separated (header ``user_id original_image face_id age gender x y dx dy
tilt_ang fiducial_yaw_angle fiducial_score``); an image lives at
``faces/<user_id>/coarse_tilt_aligned_face.<face_id>.<original_image>`` or
``aligned/<user_id>/landmark_aligned_face.<face_id>.<original_image>``.

Age cells hold one of eight group strings such as ``(25, 32)``, but also ``None``, bare numbers
(``35``) and odd ranges (``(27, 32)``). By default the kit keeps the eight groups plus the
``(25, 23)`` -> ``(25, 32)`` typo fix and excludes the rest, counted; ``age_mapping`` makes any
further mapping an explicit choice. Cells are split on tabs only and never evaluated.

Levi & Hassner select rows per task: their age lists hold every image with one of the 8 groups,
whatever its gender; their gender lists every image with ``m`` or ``f``, whatever its age. So the
table keeps every image with at least one of the two (``<NA>`` in the other, noted "kept without
..."), and excludes only rows with neither, under both reasons. The fold files repeat 114 rows
(same image, labels and fold): each image is one row, each repeat is reported as a duplicate,
and repeats that disagree are reported as conflicts, never silently resolved. See datasets.md.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from faceattr_lab.datasets.common import Exclusions, build_table, find_root

AGE_GROUPS = ("(0, 2)", "(4, 6)", "(8, 12)", "(15, 20)", "(25, 32)", "(38, 43)", "(48, 53)",
              "(60, 100)")
#: The one correction applied by default: ``(25, 23)`` is a typo for ``(25, 32)``.
TYPO_FIXES = {"(25, 23)": "(25, 32)"}
GENDERS = {"m": 0, "f": 1}
FOLDS = (0, 1, 2, 3, 4)
IMAGE_VARIANTS = {"faces": "coarse_tilt_aligned_face", "aligned": "landmark_aligned_face"}
AGE_MAPPINGS = (None, "nearest")
_RANGE = re.compile(r"\((\d+), *(\d+)\)")
_BOUNDS = {group: tuple(int(x) for x in _RANGE.fullmatch(group).groups()) for group in AGE_GROUPS}
EXPECTED = ("a folder holding fold_0_data.txt .. fold_4_data.txt (tab-separated) and the "
            "image folder faces/ (coarse_tilt_aligned_face.*) or aligned/ "
            "(landmark_aligned_face.*)")


def _fold_file(root: Path, fold: int) -> Path:
    return root / f"fold_{fold}_data.txt"


def _is_layout(folder: Path) -> bool:
    return any(_fold_file(folder, k).is_file() for k in FOLDS)


def nearest_group(age: str) -> str | None:
    """The group ``age_mapping="nearest"`` assigns to a bare age or an odd range, else None.

    A bare age goes to the group whose range contains it, else to the group whose nearer end
    is closest (ties: the group whose middle is closer, then the younger group): ``13`` ->
    ``(8, 12)``, ``23`` -> ``(25, 32)``, ``35`` -> ``(38, 43)``. A range goes to the group it
    overlaps most in whole years (ties and no overlap: as for its middle age):
    ``(27, 32)`` -> ``(25, 32)``, ``(8, 23)`` -> ``(15, 20)``. Lab 04.
    """
    age = age.strip()
    if age.isdigit():
        return _nearest_to(float(age))
    match = _RANGE.fullmatch(age)
    if match is None:
        return None
    lo, hi = sorted(int(x) for x in match.groups())
    overlaps = {g: min(hi, b) - max(lo, a) + 1 for g, (a, b) in _BOUNDS.items()}
    best = max(overlaps.values())
    if best <= 0:
        return _nearest_to((lo + hi) / 2)
    tied = [g for g in AGE_GROUPS if overlaps[g] == best]
    return tied[0] if len(tied) == 1 else _nearest_to((lo + hi) / 2, among=tied)


def _nearest_to(age: float, among: Iterable[str] = AGE_GROUPS) -> str:
    def key(group):
        a, b = _BOUNDS[group]
        gap = 0.0 if a <= age <= b else min(abs(age - a), abs(age - b))
        return gap, abs(age - (a + b) / 2), a

    return min(among, key=key)


def _age_reason(age: str) -> str:
    if age in ("", "None"):
        return f"age missing ({age!r})"
    if age.isdigit():
        return "age is a bare number, not one of the 8 groups"
    if _RANGE.fullmatch(age):
        return "age range is not one of the 8 groups"
    return f"unreadable age {age!r}"


#: Reasons for repeated rows of one image (``file`` is ``fold_<k>_data.txt line <n>``).
DUPLICATE_ROW = "duplicate row (same image, labels and fold as an earlier row)"
CONFLICTING_ROW = ("repeated row for an image with different labels or fold (the image's own "
                   "entry says which)")


def _gender_reason(gender: str) -> str:
    if gender == "u":
        return "gender unknown ('u')"
    if gender == "":
        return "gender missing (empty)"
    return f"unknown gender {gender!r}"


def _resolve_mapping(age_mapping) -> dict[str, str | None] | None:
    if age_mapping is None or age_mapping == "nearest":
        return None
    if not isinstance(age_mapping, Mapping):
        raise ValueError(f"age_mapping must be None (the 8 groups plus the (25, 23) typo fix), "
                         f"'nearest', or a dict from age string to one of {AGE_GROUPS}; got "
                         f"{age_mapping!r}.")
    bad = {k: v for k, v in age_mapping.items() if v is not None and v not in AGE_GROUPS}
    if bad:
        raise ValueError(f"age_mapping values must be one of {AGE_GROUPS} (or None to exclude); "
                         f"got {bad}.")
    return dict(age_mapping)


def _folds(folds) -> tuple[int, ...]:
    if folds is None:
        return FOLDS
    chosen = (folds,) if isinstance(folds, int) else tuple(folds)
    if not chosen or any(not isinstance(k, int) or k not in FOLDS for k in chosen):
        raise ValueError(f"folds must be None (all five) or fold numbers from {FOLDS}, "
                         f"e.g. folds=[0, 1, 2, 3]; got {folds!r}.")
    return tuple(sorted(set(chosen)))


def load_adience(root: str | Path, folds=None, images: str = "faces", age_mapping=None,
                 verify: bool = False) -> pd.DataFrame:
    """Read Adience's fold files into a dataset table. Lab 04.

    ``root`` holds ``fold_0_data.txt`` .. ``fold_4_data.txt`` and ``faces/`` or ``aligned/``
    (``images`` picks which). ``folds`` selects folds (default all five). Columns: the core
    columns (``age`` <NA>, ``age_group`` one of :data:`AGE_GROUPS` or <NA>, ``gender`` 0/1
    or <NA>, ``race`` <NA>: Adience labels no race), ``fold``, ``user_id``, ``face_id``,
    ``original_image`` and ``age_raw`` (the cell as written). One row per image.

    ``age_mapping``: ``None`` (default) keeps the 8 groups and fixes the typo ``(25, 23)``;
    ``None`` ages, bare numbers and odd ranges are excluded and counted. ``"nearest"`` also
    maps bare numbers and odd ranges with :func:`nearest_group`; a dict maps age strings of
    your choice to groups (``None`` value: no age group). Public repositories disagree on
    these mappings, so any mapping is your documented choice.

    Partial labels, as in Levi & Hassner's per-task lists: a row whose age cell gives no group
    is kept with ``age_group`` <NA> when its gender is ``m``/``f``, and a row with gender
    ``u`` or empty is kept with ``gender`` <NA> when it has a group; each such row has a note
    ``"kept without age group: ..."`` / ``"kept without gender: ..."`` in
    ``df.attrs["notes"]``. Rows with neither label are excluded under both reasons, rows whose
    image is missing under "image missing". A repeated row (same image, labels and fold) is
    excluded as a duplicate (``file`` = ``fold_<k>_data.txt line <n>``); repeats that disagree
    are reported as conflicts: different folds exclude the image (the other fold files are
    read for this even when ``folds`` leaves them out), a different age or gender cell leaves
    that label <NA>. ``verify=True`` also opens every image.
    """
    if images not in IMAGE_VARIANTS:
        raise ValueError(f"images must be one of {tuple(IMAGE_VARIANTS)}, got {images!r}.")
    mapping = _resolve_mapping(age_mapping)
    chosen = _folds(folds)
    root = find_root(root, "adience", _is_layout, EXPECTED)
    missing = [_fold_file(root, k).name for k in chosen if not _fold_file(root, k).is_file()]
    if missing:
        raise ValueError(f"adience: {root} lacks {', '.join(missing)}. Expected {EXPECTED}. "
                         "See datasets.md.")
    if not (root / images).is_dir():
        raise ValueError(f"adience: {root} has no {images}/ folder. Expected {EXPECTED}; pass "
                         f"images='faces' or images='aligned' to match your download. "
                         "See datasets.md.")
    prefix = IMAGE_VARIANTS[images]
    excluded = Exclusions(root)
    images_rows: dict[str, list[dict]] = {}  # image path -> its rows, in file order
    # other folds are read too, only to catch an image listed in a chosen and another fold
    others = [k for k in FOLDS if k not in chosen and _fold_file(root, k).is_file()]
    for fold in (*chosen, *others):
        fold_file = _fold_file(root, fold)
        with fold_file.open(newline="", encoding="utf-8") as handle:
            rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = [name.strip() for name in next(rows, [])]
            needed = ("user_id", "original_image", "face_id", "age", "gender")
            if any(name not in header for name in needed):
                if fold in others:
                    continue
                raise ValueError(f"adience: {fold_file} has header {header}; expected the "
                                 f"tab-separated columns {' '.join(needed)} ... See datasets.md.")
            where = {name: header.index(name) for name in needed}
            for line, row in enumerate(rows, start=2):
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) <= max(where.values()):
                    if fold in chosen:
                        excluded.add(f"{fold_file.name} line {line}",
                                     f"malformed row ({len(row)} tab-separated fields)")
                    continue
                cell = {name: row[i].strip() for name, i in where.items()}
                key = Path(images, cell["user_id"],
                           f"{prefix}.{cell['face_id']}.{cell['original_image']}").as_posix()
                if fold in chosen or key in images_rows:
                    images_rows.setdefault(key, []).append(
                        {**cell, "fold": fold, "line": f"{fold_file.name} line {line}"})

    records: list[dict] = []
    for relative, rows in images_rows.items():
        folds_listed = {row["fold"] for row in rows}
        rows = [row for row in rows if row["fold"] in chosen]
        first, differ = rows[0], set()
        for again in rows[1:]:
            fields = [f for f in ("age", "gender", "fold") if again[f] != first[f]]
            differ.update(fields)
            excluded.add(again["line"], CONFLICTING_ROW if fields else DUPLICATE_ROW)
        problems, fatal = [], []
        if len(folds_listed) > 1:
            fatal.append("conflicting rows for one image: listed in different folds")
        group = None
        if "age" in differ:
            problems.append(("age_group", "conflicting rows for one image: different age cells"))
        else:
            group = _group(first["age"], age_mapping, mapping)
            if group is None:
                problems.append(("age_group", _age_reason(first["age"])))
        gender = None
        if "gender" in differ:
            problems.append(("gender", "conflicting rows for one image: different gender cells"))
        elif first["gender"] in GENDERS:
            gender = GENDERS[first["gender"]]
        else:
            problems.append(("gender", _gender_reason(first["gender"])))
        has_label = group is not None or gender is not None
        if not fatal and not (root / relative).is_file():
            fatal.append("image missing")
        if not excluded.row(relative, problems, has_label, fatal):
            continue
        records.append({
            "path": str(root / relative), "gender": gender, "age": None, "age_group": group,
            "race": None, "fold": first["fold"], "user_id": first["user_id"],
            "face_id": first["face_id"], "original_image": first["original_image"],
            "age_raw": first["age"] if "age" not in differ else None})
    own = {"fold": "Int64", "user_id": "string", "face_id": "string",
           "original_image": "string", "age_raw": "string"}
    return build_table("adience", root, records, own, excluded, verify=verify, images=images,
                       folds=list(chosen), age_mapping=age_mapping if isinstance(
                           age_mapping, (str, type(None))) else "custom")


def _group(age: str, age_mapping, mapping: dict | None) -> str | None:
    """The age group for one cell under the chosen mapping, or None (no usable age group)."""
    if mapping is not None and age in mapping:
        return mapping[age]
    if age in AGE_GROUPS:
        return age
    if age in TYPO_FIXES:
        return TYPO_FIXES[age]
    if age_mapping == "nearest":
        return nearest_group(age)
    return None


__all__ = ["AGE_GROUPS", "load_adience", "nearest_group"]
