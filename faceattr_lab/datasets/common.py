"""What every dataset loader shares: the table's columns, exclusion reports, image checks.

A loader walks its dataset's own layout, collects one record per usable image and one
``(file, reason)`` pair per thing it did not load, and hands both to :func:`build_table`, which
makes the DataFrame described in ARCHITECTURE.md, optionally opens every image
(:func:`verify_images`) and warns one summary line. ``load(name)`` picks the loader by name.

Partial labels (issue #9): a row is kept when it has at least one usable label (gender, age or
age group, race), with ``<NA>`` in the label columns it lacks, so that each task can use every
image that carries its label. Two report tables live in ``df.attrs``:

- ``excluded`` (columns ``file``, ``reason``): everything not loaded. A row that fails for
  several reasons (no age group *and* no gender) is listed once per reason, so the per-reason
  counts may sum to more than the rows excluded; :func:`excluded_count` counts distinct entries
  (``file`` names each row uniquely: an image path, or ``<label file> line <n>`` for a row that
  is not an image, such as a duplicate row).
- ``notes`` (columns ``file``, ``note``): images kept but flagged. A label the row lacks is noted
  as ``"kept without <label>: <reason>"`` (:data:`KEPT_WITHOUT`), e.g. ``"kept without gender:
  gender unknown ('u')"``; the same reason without the prefix is what ``excluded`` says for a
  row that lacks every label. :func:`exclusion_report` lists both kinds, with ``kept``.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

#: Columns every dataset table starts with, in this order.
CORE_COLUMNS = ("path", "gender", "age", "age_group", "race")
#: Their dtypes; a dataset's own columns follow.
CORE_DTYPES = {"path": object, "gender": "Int64", "age": "Int64", "age_group": "string",
               "race": "string"}
#: File suffixes read as images (lower case).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
#: Real datasets ``load`` knows; ``"synthetic"`` writes any of their layouts.
REAL_DATASETS = ("utkface", "fairface", "afad", "adience")
DOCS_HINT = "See datasets.md at the top of the faceattr-lab repository for each dataset's layout."
#: Prefix of the note for a label a kept row lacks: ``KEPT_WITHOUT.format(label="gender")``.
KEPT_WITHOUT = "kept without {label}: "
#: How notes and reasons name each label column.
LABEL_NAMES = {"gender": "gender", "age": "age", "age_group": "age group", "race": "race"}


class DatasetWarning(UserWarning):
    """The one-line summary a loader emits: what it loaded and what it excluded, and why."""


class ReportTable(pd.DataFrame):
    """A small read-only report kept in ``df.attrs`` (``excluded``, ``notes``).

    pandas copies ``attrs`` into every derived frame and, in ``pd.concat``, compares the inputs'
    attrs with ``==``; a plain DataFrame there makes ``pd.concat([train, val])`` raise "truth
    value of a DataFrame is ambiguous". This subclass compares as a whole (``==`` is
    :meth:`pandas.DataFrame.equals`), so concatenating two tables of one dataset just works.
    Use ``.eq()`` for element-wise comparison.
    """

    @property
    def _constructor(self):
        return ReportTable

    def __eq__(self, other):
        return isinstance(other, pd.DataFrame) and self.equals(other)

    def __ne__(self, other):
        return not self.__eq__(other)

    __hash__ = None


def _report(rows: Iterable[tuple[str, str]], value: str) -> ReportTable:
    rows = list(rows)
    return ReportTable({"file": pd.Series([r[0] for r in rows], dtype=object),
                        value: pd.Series([r[1] for r in rows], dtype=object)})


class Exclusions:
    """Collects ``(file, reason)`` for everything a loader skips; ``file`` is relative to root.

    Also collects ``(file, note)`` for images kept with a note (``notes``): labels a kept row
    lacks (see :meth:`row`) and oddities that do not stop an image from loading.
    """

    def __init__(self, root: Path):
        self.root = root
        self.rows: list[tuple[str, str]] = []
        self.notes: list[tuple[str, str]] = []

    def _name(self, file: str | Path) -> str:
        if isinstance(file, Path):
            try:
                return file.relative_to(self.root).as_posix()
            except ValueError:
                return file.as_posix()
        return str(file)

    def add(self, file: str | Path, reason: str) -> None:
        """Record one skipped file (a path under the root, or a label file's own string)."""
        self.rows.append((self._name(file), reason))

    def note(self, file: str | Path, note: str) -> None:
        """Record a note on a kept image (or on a label file as a whole)."""
        self.notes.append((self._name(file), note))

    def row(self, file: str | Path, problems: Iterable[tuple[str, str]], has_label: bool,
            fatal: Iterable[str] = ()) -> bool:
        """Report one row's problems; True when the row belongs in the table.

        ``problems`` pairs each label column the row lacks (``gender``, ``age``,
        ``age_group``, ``race``) with the reason; ``has_label`` says whether any label is
        usable; ``fatal`` lists reasons that stop the row whatever its labels (image missing,
        conflicting folds). A row with a fatal reason or no usable label is excluded under
        every reason it fails; otherwise each problem becomes the note
        ``"kept without <label>: <reason>"``.
        """
        problems, fatal = list(problems), list(fatal)
        if fatal or not has_label:
            for reason in [*fatal, *(reason for _, reason in problems)]:
                self.add(file, reason)
            return False
        for label, reason in problems:
            self.note(file, kept_without(label, reason))
        return True

    def add_entry(self, path: Path) -> None:
        """Record a folder entry that is not an image, with the matching reason."""
        self.add(path, non_image_reason(path))


def kept_without(label: str, reason: str) -> str:
    """The note for a kept row that lacks ``label``: ``"kept without gender: <reason>"``."""
    return KEPT_WITHOUT.format(label=LABEL_NAMES.get(label, label)) + reason


def excluded_count(df: pd.DataFrame) -> int:
    """How many rows or files a table did not load: distinct ``file`` entries of its report.

    ``len(df.attrs["excluded"])`` counts reasons instead: a row lacking both age and gender is
    listed under both. Lab 01.
    """
    excluded = df.attrs.get("excluded")
    return 0 if excluded is None or not len(excluded) else int(excluded["file"].nunique())


def non_image_reason(path: Path) -> str:
    """Why a folder entry is not loaded: Thumbs.db, folder, hidden file, not an image. Lab 01."""
    if path.name.lower() == "thumbs.db":
        return "Thumbs.db (Windows thumbnail cache)"
    if path.is_dir():
        return "unexpected folder"
    if path.name.startswith("."):
        return "hidden file"
    return "not an image"


def is_image_name(name: str) -> bool:
    """True for a file name with an image suffix (``.jpg``, ``.jpeg``, ``.png``). Lab 01."""
    return Path(name).suffix.lower() in IMAGE_SUFFIXES and not name.startswith(".")


def layout_error(dataset: str, root: Path, expected: str) -> ValueError:
    """The ValueError for a missing root or a folder without the expected layout. Lab 01."""
    if not root.exists():
        problem = f"{dataset}: the folder {root} does not exist."
    else:
        problem = f"{dataset}: {root} does not hold the {dataset} layout."
    return ValueError(f"{problem} Expected {expected}. Pass root= the folder that holds it "
                      f"(or its parent). {DOCS_HINT}")


def find_root(root: str | Path, dataset: str, is_layout: Callable[[Path], bool],
              expected: str) -> Path:
    """``root`` itself if it holds the layout, else the one sub-folder of it that does.

    Raises ValueError naming the expected layout when neither is found, or naming the
    candidates when several sub-folders hold it (pass one of them as ``root``). Lab 01.
    """
    root = Path(root).expanduser().resolve()
    if root.is_dir():
        if is_layout(root):
            return root
        candidates = sorted(p for p in root.iterdir() if p.is_dir() and is_layout(p))
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            names = ", ".join(p.name for p in candidates)
            raise ValueError(f"{dataset}: {root} holds several copies of the layout ({names}); "
                             f"pass root= the one you want. {DOCS_HINT}")
    raise layout_error(dataset, root, expected)


def build_table(dataset: str, root: Path, records: list[dict], own_columns: dict[str, str],
                excluded: Exclusions, verify: bool = False, **attrs) -> pd.DataFrame:
    """The dataset table from per-image records: core columns, own columns, attrs, summary.

    ``own_columns`` maps each dataset-specific column to its dtype; a label a record lacks
    (None) becomes ``<NA>``. ``excluded.rows`` and ``excluded.notes`` become
    ``attrs["excluded"]`` and ``attrs["notes"]``. With ``verify=True`` every image is opened
    (:func:`verify_images`) before the one-line summary is warned. Lab 01.
    """
    dtypes = {**CORE_DTYPES, **own_columns}
    columns = {name: pd.Series([r.get(name) for r in records], dtype=object)
               for name in dtypes}
    df = pd.DataFrame(columns)
    for name, dtype in dtypes.items():
        if dtype is not object:
            df[name] = df[name].astype(dtype)
    df.attrs = {"dataset": dataset, "layout": dataset, "root": str(root),
                "excluded": _report(excluded.rows, "reason"),
                "notes": _report(excluded.notes, "note"), **attrs}
    if verify:
        df = _verify(df)
    warnings.warn(summary(df), DatasetWarning, stacklevel=3)
    return df


def summary(df: pd.DataFrame) -> str:
    """One line: "<dataset>: loaded N images; excluded K: reason (count), ...". Lab 01.

    K counts rows (or files) not loaded; a row that fails for several reasons counts under
    each, and the line then says how many reasons were counted. Notes follow as "kept with a
    note: ...".
    """
    name = df.attrs.get("dataset", "dataset")
    excluded = df.attrs.get("excluded")
    line = f"{name}: loaded {len(df)} images"
    if excluded is not None and len(excluded):
        counts = Counter(excluded["reason"])
        parts = ", ".join(f"{reason} ({n})" for reason, n in counts.most_common())
        rows = excluded_count(df)
        several = ("" if rows == len(excluded) else
                   f" ({len(excluded)} reasons; a row counts under each reason it fails)")
        line += f"; excluded {rows}{several}: {parts}"
    else:
        line += "; excluded 0"
    notes = df.attrs.get("notes")
    if notes is not None and len(notes):
        counts = Counter(notes["note"])
        line += "; kept with a note: " + ", ".join(f"{n_} ({n})" for n_, n in
                                                   counts.most_common())
    return line


def exclusion_report(df: pd.DataFrame) -> pd.DataFrame:
    """A table of why images were not loaded: columns ``reason``, ``count``, ``kept``. Lab 01.

    Excluded rows and files have ``kept=False`` (a row lacking several labels counts under
    each reason). Images kept but flagged have ``kept=True``: a label the row lacks
    (``"kept without gender: gender unknown ('u')"``: the row is in the table for the other
    tasks, ``<NA>`` in that column), a name or label file oddity that is not a label (a
    UTKFace date&time of 16 or 18 digits, a FairFace CSV saved by Excel), and what
    :func:`verify_images` flags (grayscale, PNG saved as .jpg). Sorted by count, largest
    first within each kind.
    """
    rows = []
    for key, column, kept in (("excluded", "reason", False), ("notes", "note", True)):
        table = df.attrs.get(key)
        if table is not None and len(table):
            for reason, n in Counter(table[column]).items():
                rows.append({"reason": reason, "count": n, "kept": kept})
    report = pd.DataFrame(rows, columns=["reason", "count", "kept"])
    report = report.astype({"count": "int64", "kept": bool})
    return report.sort_values(["kept", "count"], ascending=[True, False], ignore_index=True)


# --- opening every image --------------------------------------------------------------------

def _check_image(path: str) -> tuple[str | None, list[str]]:
    """``(reason to exclude or None, notes)`` for one image file, decoding it fully."""
    from PIL import Image, UnidentifiedImageError

    notes = []
    try:
        with Image.open(path) as image:
            if image.format != "JPEG" and Path(path).suffix.lower() in (".jpg", ".jpeg"):
                notes.append(f"{image.format or 'non-JPEG'} saved as {Path(path).suffix}")
            if image.mode != "RGB":
                kind = "grayscale" if image.mode in ("L", "LA", "I", "I;16", "1") else image.mode
                notes.append(f"{kind} image (loads as RGB)")
            if image.format == "JPEG":
                # Decoding at 1/8 scale reads the whole entropy-coded stream (so truncation
                # still shows) at a fraction of the cost of a full decode.
                image.draft(image.mode, (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
    except UnidentifiedImageError:
        return "unreadable image (not an image PIL can open)", notes
    except (OSError, SyntaxError, ValueError) as error:
        if "truncated" in str(error):
            return "truncated image", notes
        return f"unreadable image ({type(error).__name__})", notes
    return None, notes


def _verify(df: pd.DataFrame) -> pd.DataFrame:
    paths = df["path"].tolist()
    workers = min(8, (os.cpu_count() or 1) + 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(_check_image, paths, chunksize=64))
    root = Path(df.attrs.get("root", "/"))

    def relative(path: str) -> str:
        try:
            return Path(path).relative_to(root).as_posix()
        except ValueError:
            return path

    bad = [(relative(p), reason) for p, (reason, _) in zip(paths, results) if reason]
    notes = [(relative(p), note) for p, (_, ns) in zip(paths, results) for note in ns]
    keep = [reason is None for reason, _ in results]
    attrs = dict(df.attrs)
    out = df.loc[keep].reset_index(drop=True)
    out.attrs = attrs
    # a label an undecodable image lacked is now one more reason it is excluded
    bad_files = {file for file, _ in bad}
    old_notes, lacked = [], []
    for file, note in zip(attrs["notes"]["file"], attrs["notes"]["note"]):
        prefix = next((KEPT_WITHOUT.format(label=name) for name in LABEL_NAMES.values()
                       if note.startswith(KEPT_WITHOUT.format(label=name))), None)
        if file in bad_files and prefix:
            lacked.append((file, note[len(prefix):]))
        else:
            old_notes.append((file, note))
    out.attrs["excluded"] = _report(list(zip(attrs["excluded"]["file"],
                                             attrs["excluded"]["reason"])) + bad + lacked,
                                    "reason")
    out.attrs["notes"] = _report(old_notes + notes, "note")
    out.attrs["verified"] = True
    return out


def verify_images(df: pd.DataFrame) -> pd.DataFrame:
    """Open every image with PIL; drop unreadable and truncated ones, note non-RGB ones. Lab 01.

    Returns a new table without the images that fail to decode (added to
    ``attrs["excluded"]`` as "truncated image" or "unreadable image ..."). Grayscale images and
    PNGs saved as ``.jpg`` load fine as RGB, so they stay and are listed in ``attrs["notes"]``
    (and in :func:`exclusion_report` with ``kept=True``). Warns the updated summary line.
    Same as passing ``verify=True`` to a loader.
    """
    if "path" not in df.columns:
        raise ValueError("verify_images needs a dataset table with a 'path' column; pass the "
                         "DataFrame a fl.datasets.load_* function returned.")
    df = df.copy()
    df.attrs.setdefault("excluded", _report([], "reason"))
    df.attrs.setdefault("notes", _report([], "note"))
    out = _verify(df)
    warnings.warn(summary(out), DatasetWarning, stacklevel=2)
    return out


# --- load by name ---------------------------------------------------------------------------

def _loader(name: str):
    import importlib

    module = importlib.import_module(f"faceattr_lab.datasets.{name}")
    return getattr(module, f"load_{name}")


def load(name: str, root: str | Path | None = None, **kwargs) -> pd.DataFrame:
    """Load a dataset table by name: "synthetic", "utkface", "fairface", "afad", "adience". Lab 00.

    A real dataset is read from ``root``, by default ``fl.config.data_dir() / name`` (the
    layout may sit one folder down, e.g. ``data/utkface/UTKFace``); ``kwargs`` go to its
    loader (e.g. ``split="val"`` for FairFace, ``folds=[0]`` for Adience).

    ``load("synthetic", layout="utkface", n=3000, image_size=64, seed=0)`` writes (once, then
    reuses) a synthetic stand-in in that dataset's real layout and reads it with the real
    loader; other ``kwargs`` go to that loader. The table's ``attrs["dataset"]`` is
    ``"synthetic"`` and ``attrs["layout"]`` the layout it imitates.
    """
    from faceattr_lab import config

    if name not in config.DATASETS:
        raise ValueError(f"dataset must be one of {config.DATASETS}, got {name!r}.")
    if name == "synthetic":
        return _load_synthetic(root=root, **kwargs)
    if root is None:
        root = config.data_dir() / name
        if not root.is_dir():
            raise ValueError(f"{name}: no copy found at {root}. Put the dataset there (the data "
                             f"folder is ${config.DATA_ENV} or ~/faceattr_lab_data) or pass "
                             f"root=. {DOCS_HINT}")
    return _loader(name)(root, **kwargs)


def _load_synthetic(layout: str = "utkface", n: int = 3000, image_size: int = 64, seed: int = 0,
                    root: str | Path | None = None, **kwargs) -> pd.DataFrame:
    import inspect

    if layout not in REAL_DATASETS:
        raise ValueError(f"layout must be one of {REAL_DATASETS}, got {layout!r}.")
    if root is not None:
        raise ValueError("load('synthetic') writes its own folder; leave root out (it lives "
                         "under the data folder) or load the real layout with load(layout, root).")
    from faceattr_lab.datasets.synthetic import synthetic_dataset

    # keyword arguments the generator takes (e.g. label_noise) go to it, the rest to the loader
    generator_keys = set(inspect.signature(synthetic_dataset).parameters)
    generator_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in generator_keys}
    path = synthetic_dataset(layout=layout, n=n, image_size=image_size, seed=seed,
                             **generator_kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DatasetWarning)
        df = _loader(layout)(path, **kwargs)
    df.attrs["dataset"] = "synthetic"
    df.attrs["layout"] = layout
    for warning in caught:
        if issubclass(warning.category, DatasetWarning):
            warnings.warn(summary(df).replace("synthetic:", f"synthetic ({layout} layout):", 1),
                          DatasetWarning, stacklevel=3)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                   warning.lineno)
    return df


__all__ = ["CORE_COLUMNS", "DatasetWarning", "KEPT_WITHOUT", "ReportTable", "excluded_count",
           "exclusion_report", "kept_without", "load", "summary", "verify_images"]
