"""Label schemes: a dataset table's raw labels -> class indices, targets or ranks; age bins. Lab 01.

A :class:`Scheme` names one task as a model sees it: which table column it reads, which head
(``output``) it trains, its ``kind`` (``"classification"``, ``"regression"`` or ``"ordinal"``)
and its ``classes``. ``scheme.encode(df)`` turns a dataset table (see ARCHITECTURE.md) into a
numpy array once, and raises on any row it cannot encode; ``select(df, schemes)`` keeps the
rows every scheme covers and reports the others with a reason, so nothing is dropped silently.

Multi-task training on the union of the rows (issue #9): ``select(df, schemes, require="any")``
keeps every row at least one scheme covers, and ``scheme.encode(df, missing="mask")`` encodes a
row the scheme cannot cover as the mask value (:data:`MASK_INDEX` = -1 for classification and
ordinal schemes, NaN for regression) so that ``fl.losses.MaskedLoss`` leaves it out of that
head's loss. Values a scheme has never heard of still raise.

Age bins are LEFT-CLOSED: age 20 belongs to ``"20-29"`` and age 70 to ``"more than 70"``.
``pandas.cut`` is right-closed by default; a published study put every boundary age one bin
too low by forgetting ``right=False``. Here bins are ``pandas.Interval`` objects built with
``closed="left"``, so the choice is written down once.

Import this module without TensorFlow: it needs only numpy and pandas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

KINDS = ("classification", "regression", "ordinal")
MISSING = ("raise", "mask")
REQUIRE = ("all", "any")
# The label of a row a scheme cannot encode, with ``encode(df, missing="mask")``: -1 for class
# indices and ranks, NaN for regression targets. ``fl.losses.MaskedLoss`` skips such rows.
MASK_INDEX = -1

FAIRFACE_RACES = ("White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian",
                  "Indian", "Middle Eastern")
UTK_RACES = ("White", "Black", "Asian", "Indian", "Others")
FAIRFACE_AGE_GROUPS = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69",
                       "more than 70")
ADIENCE_AGE_GROUPS = ("(0, 2)", "(4, 6)", "(8, 12)", "(15, 20)", "(25, 32)", "(38, 43)",
                      "(48, 53)", "(60, 100)")


@dataclass(frozen=True)
class Scheme:
    """One task's labels: raw table values -> class indices (or targets, or ranks). Lab 01.

    Fields: ``name`` (e.g. ``"race_utk5"``), ``output`` (model head and label-dict key),
    ``kind``, ``classes`` (empty for regression), ``column`` (the table column read first),
    ``mapping`` (raw value -> class name, as pairs), ``excluded`` (raw values the scheme knows
    but does not cover, with the reason, as pairs), ``bins`` (half-open ``[lo, hi)`` year
    ranges, one per class, for age schemes that can bin years), ``years_column`` (read where
    ``column`` is missing or ``<NA>``), ``scale`` (regression: targets are years / scale),
    ``lo``/``hi`` (ordinal: the year range of rank 0 and the last rank) and ``description``.
    Build new ones with :func:`coral` or :func:`years`; the named ones live in ``SCHEMES``.
    """

    name: str
    output: str
    kind: str
    classes: tuple[str, ...]
    column: str
    mapping: tuple[tuple[object, str], ...] = ()
    excluded: tuple[tuple[object, str], ...] = ()
    bins: tuple[tuple[float, float], ...] = ()
    years_column: str | None = None
    scale: float | None = None
    lo: int | None = None
    hi: int | None = None
    description: str = field(default="", compare=False)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Scheme kind must be one of {KINDS}, got {self.kind!r}.")
        if self.bins and len(self.bins) != len(self.classes):
            raise ValueError(f"Scheme {self.name!r} needs one bin per class: "
                             f"{len(self.bins)} bins for {len(self.classes)} classes.")
        unknown = {c for _, c in self.mapping} - set(self.classes)
        if unknown:
            raise ValueError(f"Scheme {self.name!r} maps to names outside its classes: "
                             f"{sorted(unknown)}; add them to classes or fix the mapping.")

    @property
    def num_classes(self) -> int:
        """Number of classes (ranks for ordinal; 1 for regression's single target). Lab 01."""
        return len(self.classes) if self.kind != "regression" else 1

    @cached_property
    def _index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.classes)}

    @cached_property
    def _mapping(self) -> dict:
        return dict(self.mapping)

    @cached_property
    def _excluded(self) -> dict:
        return dict(self.excluded)

    # -- resolving rows ------------------------------------------------------------------
    def _resolve(self, df: pd.DataFrame) -> tuple[np.ndarray, pd.Series, dict]:
        """Per row: the encoded value, the reason it cannot be encoded (or <NA>), unknowns."""
        if self.kind == "classification":
            return self._resolve_classes(df)
        return self._resolve_years(df)

    def _resolve_classes(self, df):
        n = len(df)
        codes = np.full(n, -1, dtype=np.int64)
        reasons = pd.Series(pd.NA, index=df.index, dtype="string")
        unknown: dict = {}
        has_column = self.column in df.columns
        has_years = bool(self.bins) and self.years_column in df.columns
        if not has_column and not has_years:
            wanted = self.column + (f" or {self.years_column}" if self.bins else "")
            raise ValueError(f"Scheme {self.name!r} needs a {wanted!r} column; the table has "
                             f"{list(df.columns)}. Load it with fl.datasets.load(...).")
        raw = df[self.column] if has_column else pd.Series(pd.NA, index=df.index, dtype=object)
        present = raw.notna().to_numpy()
        for value in pd.unique(raw[present]):
            rows = present & (raw == value).fillna(False).to_numpy(dtype=bool)
            key = value.item() if isinstance(value, np.generic) else value
            if key in self._mapping:
                codes[rows] = self._index[self._mapping[key]]
            elif key in self._excluded:
                reasons[rows] = f"{self.name}: {self.column} {key!r} {self._excluded[key]}"
            else:
                unknown[key] = int(rows.sum())
                reasons[rows] = f"{self.name}: unknown {self.column} value {key!r}"
        missing = ~present
        if has_years and missing.any():
            groups = age_group(df[self.years_column][missing], self)
            binned = groups.notna().to_numpy()
            rows = np.flatnonzero(missing)
            codes[rows[binned]] = [self._index[g] for g in groups[binned]]
            years = df[self.years_column][missing]
            for row, year, ok in zip(rows, years, binned):
                if ok:
                    continue
                reasons.iloc[row] = (f"{self.name}: missing {self.column} and "
                                     f"{self.years_column}" if pd.isna(year) else
                                     f"{self.name}: age {int(year)} is outside its bins")
        elif missing.any():
            reasons[missing] = f"{self.name}: missing {self.column}"
        return codes, reasons, unknown

    def _resolve_years(self, df):
        if "age" not in df.columns and self.column not in df.columns:
            raise ValueError(f"Scheme {self.name!r} needs ages in years (column "
                             f"{self.column!r}); this table has {list(df.columns)}. Tables "
                             "with age groups only (FairFace, Adience) need a binned scheme "
                             "such as 'age_fairface9'.")
        ages = _check_years(df[self.column])
        reasons = pd.Series(pd.NA, index=df.index, dtype="string")
        missing = ages.isna().to_numpy()
        reasons[missing] = f"{self.name}: missing {self.column} (years)"
        values = ages.astype("float64").to_numpy(na_value=np.nan)
        if self.kind == "ordinal":
            outside = ~missing & ((values < self.lo) | (values > self.hi))
            reasons[outside] = [f"{self.name}: age {int(v)} outside {self.lo}..{self.hi}"
                                for v in values[outside]]
            encoded = np.where(np.isnan(values), -1, values - self.lo).astype(np.int64)
        else:
            encoded = values.astype(np.float32)
            if self.scale is not None:
                outside = ~missing & (values > self.scale)
                reasons[outside] = [f"{self.name}: age {int(v)} above max age {self.scale:g}"
                                    for v in values[outside]]
                encoded = (values / self.scale).astype(np.float32)
        return encoded, reasons, {}

    # -- public API ------------------------------------------------------------------------
    def mask(self, df: pd.DataFrame) -> np.ndarray:
        """Boolean array: True for the rows this scheme can encode. Lab 01.

        Raises ``ValueError`` on values the scheme has never heard of (a wrong scheme or a
        typo), because excluding those would hide a bug.
        """
        _, reasons, unknown = self._resolve(df)
        if unknown:
            raise ValueError(self._unknown_message(unknown))
        return reasons.isna().to_numpy()

    def exclusions(self, df: pd.DataFrame) -> pd.DataFrame:
        """The rows this scheme cannot encode: columns ``file``, ``reason``. Lab 01."""
        keep = self.mask(df)
        _, reasons, _ = self._resolve(df)
        return _excluded_table(df, ~keep, reasons)

    def encode(self, df: pd.DataFrame, missing: str = "raise") -> np.ndarray:
        """Encode every row: int64 class indices / int64 ranks / float32 targets. Lab 01.

        ``missing="raise"`` (default) raises ``ValueError`` naming the values it cannot encode
        and how many rows hold them; drop such rows first with ``fl.labels.select(df,
        [scheme])`` (which reports them). ``missing="mask"`` encodes each such row (a missing
        label, an excluded value, an age outside the scheme's bins or range: the rows
        :meth:`exclusions` lists) as the mask value instead: :data:`MASK_INDEX` (-1) for
        classification and ordinal schemes, NaN for regression; ``fl.losses.MaskedLoss``
        leaves those rows out of this head's loss (issue #9). Values the scheme has never
        heard of raise in both modes.
        """
        if missing not in MISSING:
            raise ValueError(f"missing={missing!r}; pass 'raise' (every row must have a label) "
                             "or 'mask' (rows without one get the mask value -1 / NaN).")
        encoded, reasons, unknown = self._resolve(df)
        if unknown:
            raise ValueError(self._unknown_message(unknown))
        bad = reasons.dropna()
        if missing == "mask":
            encoded = encoded.copy()
            encoded[reasons.notna().to_numpy()] = (np.nan if self.kind == "regression"
                                                   else MASK_INDEX)
            return encoded
        if len(bad):
            counts = bad.value_counts()
            listed = "; ".join(f"{reason} ({count} rows)" for reason, count in
                               counts.head(8).items())
            more = f"; and {len(counts) - 8} more reasons" if len(counts) > 8 else ""
            raise ValueError(f"Scheme {self.name!r} cannot encode {len(bad)} of {len(df)} "
                             f"rows: {listed}{more}. Keep the rows it covers with "
                             f"fl.labels.select(df, [{self.name!r}]), which also reports "
                             "the excluded rows with their reasons, or pass "
                             "missing='mask' to encode them as the mask value for a "
                             "multi-task model (fl.losses.MaskedLoss).")
        return encoded

    def decode(self, indices) -> np.ndarray:
        """Invert ``encode``: class names; years for regression and ordinal schemes. Lab 01.

        Regression targets are multiplied back by ``scale`` (floats); ordinal ranks become
        ``lo + rank`` years (ints).
        """
        values = np.asarray(indices)
        if self.kind == "regression":
            values = values.astype(np.float64)
            return values * self.scale if self.scale is not None else values
        if not np.issubdtype(values.dtype, np.integer):
            if not np.all(np.equal(np.mod(values, 1), 0)):
                raise ValueError(f"decode needs integer class indices for {self.name!r}; "
                                 "take argmax of probabilities first (np.argmax(p, axis=-1)).")
            values = values.astype(np.int64)
        if values.size and (values.min() < 0 or values.max() >= self.num_classes):
            raise ValueError(f"Indices for {self.name!r} must lie in 0..{self.num_classes - 1},"
                             f" got {values.min()}..{values.max()}.")
        if self.kind == "ordinal":
            return values + self.lo
        return np.asarray(self.classes, dtype=object)[values]

    def _unknown_message(self, unknown: dict) -> str:
        listed = ", ".join(f"{v!r} ({n} rows)" for v, n in list(unknown.items())[:10])
        known = sorted(map(str, [*self._mapping, *self._excluded]))
        return (f"Scheme {self.name!r} does not know {self.column} values {listed}. It "
                f"accepts {known}. Pick the scheme that matches the dataset (see "
                "fl.labels.SCHEMES) or fix the values in the table; nothing is mapped by "
                "guesswork.")


def _excluded_table(df: pd.DataFrame, rows: np.ndarray, reasons: pd.Series) -> pd.DataFrame:
    files = df["path"] if "path" in df.columns else pd.Series(df.index.astype(str), df.index)
    return pd.DataFrame({"file": files[rows].astype(str).to_numpy(),
                         "reason": reasons[rows].astype(str).to_numpy()},
                        index=df.index[rows])


def _check_years(ages) -> pd.Series:
    """Ages as a pandas Series; raise on negative or non-integer values."""
    series = ages if isinstance(ages, pd.Series) else pd.Series(ages)
    if not (pd.api.types.is_numeric_dtype(series) or series.isna().all()):
        raise ValueError(f"Ages must be numbers of years, got dtype {series.dtype}; convert "
                         "the column with pd.to_numeric first.")
    values = series.astype("float64").to_numpy(na_value=np.nan)
    known = values[~np.isnan(values)]
    if (known < 0).any():
        raise ValueError(f"Ages must be non-negative, got {sorted(set(known[known < 0]))[:5]}; "
                         "fix or drop those rows.")
    if (known != np.floor(known)).any():
        odd = sorted(set(known[known != np.floor(known)]))[:5]
        raise ValueError(f"Ages must be whole years, got {odd}; round them deliberately "
                         "(e.g. np.floor) before binning.")
    return series


def age_group(ages, scheme: Scheme | str) -> pd.Series:
    """Map ages in years to the scheme's group names with LEFT-CLOSED bins. Lab 01.

    ``age_group([2, 3, 20, 70], "age_fairface9")`` gives ``0-2, 3-9, 20-29, more than 70``.
    Ages no bin covers (e.g. 3 under ``age_adience8``, whose groups have gaps) and missing
    ages give ``<NA>``. Negative or non-integer ages raise ``ValueError``.
    """
    scheme = get(scheme) if isinstance(scheme, str) else scheme
    if not scheme.bins:
        raise ValueError(f"Scheme {scheme.name!r} has no age bins; use one of "
                         f"{[s for s, v in SCHEMES.items() if v.bins]}.")
    series = _check_years(ages)
    bins = pd.IntervalIndex.from_tuples(list(scheme.bins), closed="left")
    codes = pd.cut(series.astype("float64"), bins).cat.codes.to_numpy()
    names = np.asarray(scheme.classes, dtype=object)[codes]
    return pd.Series(np.where(codes >= 0, names, pd.NA), index=series.index, dtype="string")


def select(df: pd.DataFrame, schemes, require: str = "all"
           ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep the rows the schemes can encode; report the others with a reason. Lab 01.

    Returns ``(kept, excluded)``. ``require="all"`` (default) keeps the rows EVERY scheme
    covers; ``require="any"`` keeps the rows AT LEAST ONE scheme covers (a multi-task model
    learns each head from its labelled rows: encode the others with
    ``scheme.encode(df, missing="mask")`` or ``fl.pipeline.make_dataset(..., missing="mask")``).
    ``kept`` is ``df`` restricted to those rows (attrs kept). ``excluded`` has one row per
    scheme and image the scheme cannot encode, indexed like ``df``, with columns ``file``,
    ``reason``, ``scheme`` (the scheme's name) and ``kept`` (True where the image stays in
    ``kept`` because another scheme labels it, so only this head masks it; always False with
    ``require="all"``). ``excluded[~excluded.kept]`` lists the dropped images and
    ``excluded.reason.value_counts()`` summarises. Unknown values raise.
    """
    if require not in REQUIRE:
        raise ValueError(f"require={require!r}; pass 'all' (rows every scheme labels) or "
                         "'any' (rows at least one scheme labels, for masked multi-task "
                         "training).")
    schemes = resolve(schemes)
    covered = [scheme.mask(df) for scheme in schemes]
    keep = (np.logical_and.reduce(covered) if require == "all"
            else np.logical_or.reduce(covered))
    tables = []
    for scheme, rows in zip(schemes, covered):
        _, reasons, _ = scheme._resolve(df)
        table = _excluded_table(df, ~rows, reasons)
        table["scheme"] = pd.Series(getattr(scheme, "name", scheme.output), index=table.index,
                                    dtype=object)
        table["kept"] = keep[~rows]
        tables.append(table)
    excluded = pd.concat(tables)
    kept = df[keep].copy()
    kept.attrs = dict(df.attrs)
    return kept, excluded


def resolve(schemes) -> list[Scheme]:
    """A scheme, a name, or a list or dict of them -> a list of schemes with distinct outputs. Lab 02.

    The one place the kit normalises schemes (models, pipeline and evaluation all call it).
    Names go through :func:`get`; any object with ``output`` and ``kind`` (a ``Scheme``, or a
    scheme-like object of your own) passes as it is. Raises ``ValueError`` for an empty list,
    an unknown kind, or two schemes sharing an output head.
    """
    if isinstance(schemes, (str, Scheme)) or _scheme_like(schemes):
        schemes = [schemes]
    elif isinstance(schemes, dict):
        schemes = list(schemes.values())
    result = [get(s) if isinstance(s, str) else s for s in schemes]
    if not result:
        raise ValueError("give at least one label scheme, e.g. [fl.labels.get('gender')].")
    for s in result:
        if not _scheme_like(s):
            raise ValueError(f"Expected a Scheme or a scheme name, got {s!r}; see "
                             "fl.labels.SCHEMES.")
        if s.kind not in KINDS:
            raise ValueError(f"scheme {getattr(s, 'name', s.output)!r} has kind {s.kind!r}; "
                             f"expected one of {KINDS}.")
    outputs = [s.output for s in result]
    if len(set(outputs)) != len(outputs):
        raise ValueError(f"Two schemes share an output head: {outputs}; pick one scheme per "
                         "task (gender, age, race).")
    return result


def _scheme_like(value) -> bool:
    return hasattr(value, "output") and hasattr(value, "kind")


# -- builders --------------------------------------------------------------------------------
def _identity(names) -> tuple[tuple[str, str], ...]:
    return tuple((n, n) for n in names)


def _left_closed(edges) -> tuple[tuple[float, float], ...]:
    """[e0, e1), [e1, e2), ..., [e_last, inf) from the left edges."""
    uppers = [*edges[1:], math.inf]
    return tuple((float(lo), float(hi)) for lo, hi in zip(edges, uppers))


def years(max_age: float | None = None) -> Scheme:
    """Age in years as a regression target, optionally scaled to [0, 1] by ``max_age``. Lab 02.

    The custom-CNN study scales UTKFace ages by 116 (its oldest face) and regresses with MSE;
    ``scheme.decode(predictions)`` turns the scaled predictions back into years. Rows older
    than ``max_age`` are excluded with a reason.
    """
    if max_age is not None and not max_age > 0:
        raise ValueError(f"max_age must be positive (e.g. 116 for UTKFace), got {max_age!r}.")
    name = "age_years" if max_age is None else f"age_years_{max_age:g}"
    text = "age in years" + ("" if max_age is None else f", divided by {max_age:g}")
    return Scheme(name, "age", "regression", (), "age", scale=max_age, description=text)


def coral(lo: int, hi: int) -> Scheme:
    """Ordinal ranks over ages ``lo..hi`` for CORAL (Cao, Mirjalili & Raschka 2020). Lab 06.

    Age ``lo`` is rank 0 and ``hi`` rank ``hi - lo``; ``coral(21, 60)`` is the UTKFace
    protocol (40 ranks), ``coral(15, 40)`` AFAD's (26). Rows outside the range are excluded
    with a reason by :func:`select`.
    """
    if not (isinstance(lo, (int, np.integer)) and isinstance(hi, (int, np.integer))):
        raise ValueError(f"coral(lo, hi) needs whole years, got {lo!r}, {hi!r}; e.g. coral(21, 60).")
    if not 0 <= lo < hi:
        raise ValueError(f"coral(lo, hi) needs 0 <= lo < hi, got {lo}, {hi}; e.g. coral(21, 60).")
    return Scheme(f"coral_{lo}_{hi}", "age", "ordinal", tuple(str(a) for a in range(lo, hi + 1)),
                  "age", lo=int(lo), hi=int(hi),
                  description=f"CORAL ranks: age {lo} -> 0 ... age {hi} -> {hi - lo}")


def year_classes(lo: int, hi: int) -> Scheme:
    """One class per year ``lo..hi``, for a softmax head with cross-entropy. Lab 06.

    The cross-entropy baseline of Cao, Mirjalili & Raschka (2020): as many classes as
    :func:`coral` has ranks, but the loss ignores their order (class ``i`` is age ``lo + i``).
    Rows outside the range are excluded with a reason by :func:`select`.
    """
    if not (isinstance(lo, (int, np.integer)) and isinstance(hi, (int, np.integer))):
        raise ValueError(f"year_classes(lo, hi) needs whole years, got {lo!r}, {hi!r}; "
                         "e.g. year_classes(21, 60).")
    if not 0 <= lo < hi:
        raise ValueError(f"year_classes(lo, hi) needs 0 <= lo < hi, got {lo}, {hi}; "
                         "e.g. year_classes(21, 60).")
    ages = range(int(lo), int(hi) + 1)
    return Scheme(f"age_classes_{lo}_{hi}", "age", "classification", tuple(str(a) for a in ages),
                  "age_group", bins=tuple((float(a), float(a + 1)) for a in ages),
                  years_column="age", lo=int(lo), hi=int(hi),
                  description=f"one class per year {lo}..{hi} (class i = age {lo} + i)")


def _schemes() -> dict[str, Scheme]:
    other = "is not one of the four races (White, Black, Asian, Indian)"
    schemes = [
        Scheme("gender", "gender", "classification", ("male", "female"), "gender",
               mapping=((0, "male"), (1, "female")),
               description="table gender 0 = male, 1 = female"),
        Scheme("race_utk5", "race", "classification", UTK_RACES, "race",
               mapping=_identity(UTK_RACES),
               description="UTKFace's five races; FairFace tables use race_fairface5"),
        Scheme("race_fairface7", "race", "classification", FAIRFACE_RACES, "race",
               mapping=_identity(FAIRFACE_RACES), description="FairFace's seven races as written"),
        Scheme("race_fairface4", "race", "classification", ("White", "Black", "Asian", "Indian"),
               "race",
               mapping=(*_identity(("White", "Black", "Indian")), ("East Asian", "Asian"),
                        ("Southeast Asian", "Asian"), ("Asian", "Asian")),
               excluded=(("Latino_Hispanic", other), ("Middle Eastern", other),
                         ("Others", other)),
               description="White, Black, Asian (East + Southeast), Indian; others excluded"),
        Scheme("race_fairface5", "race", "classification", UTK_RACES, "race",
               mapping=(*_identity(UTK_RACES), ("East Asian", "Asian"),
                        ("Southeast Asian", "Asian"), ("Latino_Hispanic", "Others"),
                        ("Middle Eastern", "Others")),
               description="SupCon study: FairFace grouped like UTKFace (accepts both)"),
        years(),
        years(116),
        Scheme("age_fairface9", "age", "classification", FAIRFACE_AGE_GROUPS, "age_group",
               mapping=_identity(FAIRFACE_AGE_GROUPS),
               bins=_left_closed([0, 3, 10, 20, 30, 40, 50, 60, 70]), years_column="age",
               description="FairFace's 9 age groups; years binned left-closed"),
        # Adience groups have gaps (3, 7, 13-14, 21-24, 33-37, 44-47, 54-59, over 100). The rule
        # for years: a year belongs to the group whose closed range holds it; years in a gap
        # belong to no group and are excluded with a reason, never pushed to a neighbour.
        Scheme("age_adience8", "age", "classification", ADIENCE_AGE_GROUPS, "age_group",
               mapping=_identity(ADIENCE_AGE_GROUPS),
               bins=((0, 3), (4, 7), (8, 13), (15, 21), (25, 33), (38, 44), (48, 54), (60, 101)),
               years_column="age",
               description="Adience's 8 groups; years only inside a group's closed range"),
        Scheme("age_afad7", "age", "classification", FAIRFACE_AGE_GROUPS[2:], "age_group",
               mapping=_identity(FAIRFACE_AGE_GROUPS[2:]),
               excluded=(("0-2", "is under 10: not one of AFAD's 7 populated bins"),
                         ("3-9", "is under 10: not one of AFAD's 7 populated bins")),
               bins=_left_closed([10, 20, 30, 40, 50, 60, 70]), years_column="age",
               description="SupCon study: FairFace bins 10-19 ... more than 70 (AFAD)"),
        coral(21, 60),
        coral(15, 40),
    ]
    return {s.name: s for s in schemes}


SCHEMES: dict[str, Scheme] = _schemes()


def get(name: str) -> Scheme:
    """The named scheme from ``SCHEMES`` (e.g. ``"race_utk5"``, ``"age_fairface9"``). Lab 01.

    ``"coral_LO_HI"``, ``"age_classes_LO_HI"`` and ``"age_years_MAX"`` names are built on
    demand.
    """
    if isinstance(name, Scheme):
        return name
    if name in SCHEMES:
        return SCHEMES[name]
    parts = str(name).split("_")
    if parts[0] == "coral" and len(parts) == 3 and all(p.isdigit() for p in parts[1:]):
        return coral(int(parts[1]), int(parts[2]))
    if parts[:2] == ["age", "classes"] and len(parts) == 4 and all(p.isdigit() for p in parts[2:]):
        return year_classes(int(parts[2]), int(parts[3]))
    if str(name).startswith("age_years_"):
        try:
            return years(float(str(name)[len("age_years_"):]))
        except ValueError:
            pass
    raise ValueError(f"Unknown label scheme {name!r}; choose one of {sorted(SCHEMES)} or build "
                     "one with fl.labels.coral(lo, hi) / fl.labels.years(max_age).")


__all__ = ["Scheme", "SCHEMES", "KINDS", "MASK_INDEX", "MISSING", "REQUIRE", "get", "resolve",
           "select", "age_group", "coral", "year_classes", "years", "FAIRFACE_RACES", "UTK_RACES",
           "FAIRFACE_AGE_GROUPS", "ADIENCE_AGE_GROUPS"]
