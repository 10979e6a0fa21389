"""From a dataset table to batches: splits, the tf.data pipeline, augmentation, class weights. Lab 02.

``split`` cuts a table into train / val / test (seeded, stratified, subject-exclusive when asked,
official splits where a dataset has them); ``make_dataset`` turns one part into a
``tf.data.Dataset`` of ``(images, {scheme.output: labels})`` with images float32
``(B, H, W, 3)`` in [0, 255] (models normalise inside themselves, see ARCHITECTURE.md).

The pipeline decodes in parallel (``num_parallel_calls=AUTOTUNE``), keeps resized images as
uint8 (four times less memory when cached), shuffles file paths before decoding (so a full
shuffle costs nothing), augments whole batches with Keras preprocessing layers and prefetches.
``fl.benchmarks.pipeline_throughput()`` measures it against the studies' PIL loop.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import tensorflow as tf
import keras

from faceattr_lab import labels as labels_mod

AUTOTUNE = tf.data.AUTOTUNE
SPLITS = ("train", "val", "test")
# Images kept in a shuffle buffer after caching; paths are shuffled in full when not caching.
CACHED_SHUFFLE_BUFFER = 4096


# -- splits ----------------------------------------------------------------------------------
def _strata(df: pd.DataFrame, stratify) -> np.ndarray | None:
    """One label per row combining the stratify columns; strata too small to split merged."""
    if stratify is None:
        return None
    columns = [stratify] if isinstance(stratify, str) else list(stratify)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"Cannot stratify on {missing}: the table has {list(df.columns)}. "
                         "Pass stratify=None or existing columns, e.g. stratify=['gender', 'race'].")
    key = df[columns[0]].astype("string").fillna("<NA>")
    for column in columns[1:]:
        key = key + "|" + df[column].astype("string").fillna("<NA>")
    key = key.to_numpy(dtype=object)
    values, counts = np.unique(key, return_counts=True)
    rare = set(values[counts < 3])  # a stratum needs a member in train, val and test
    return np.array(["<rare>" if k in rare else k for k in key], dtype=object)


def _cut(index: np.ndarray, fraction: float, strata, groups, seed: int):
    """Split ``index`` into (rest, part) with about ``fraction`` of rows (of groups) in part."""
    if fraction <= 0 or len(index) == 0:
        return index, index[:0]
    from sklearn.model_selection import (GroupShuffleSplit, StratifiedGroupKFold,
                                         train_test_split)

    if groups is None:
        y = None if strata is None else strata
        if y is not None and len(set(y)) == 1:
            y = None
        try:
            rest, part = train_test_split(index, test_size=fraction, random_state=seed,
                                          stratify=y)
        except ValueError as error:  # too few rows per stratum for this fraction
            warnings.warn(f"Stratified split impossible ({error}); splitting without strata.",
                          stacklevel=3)
            rest, part = train_test_split(index, test_size=fraction, random_state=seed)
        return np.sort(rest), np.sort(part)
    if strata is None:
        splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        rest, part = next(splitter.split(index, groups=groups))
    else:
        n_splits = max(2, round(1 / fraction))
        if len(set(groups)) < n_splits:
            raise ValueError(f"Only {len(set(groups))} groups for a {fraction:.0%} subject-"
                             "exclusive split; lower the fraction or pass groups=None.")
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        rest, part = next(splitter.split(index, strata, groups))
    return np.sort(index[rest]), np.sort(index[part])


def _is_official_fairface(df: pd.DataFrame) -> bool:
    if "split" not in df.columns:
        return False
    values = set(df["split"].dropna().astype(str))
    return df.attrs.get("dataset") == "fairface" or (bool(values) and values <= {"train", "val"})


def split(df: pd.DataFrame, seed: int = 0, val_fraction: float = 0.15,
          test_fraction: float = 0.15, stratify="gender", groups: str | None = None,
          official: bool | None = None) -> dict[str, pd.DataFrame]:
    """Split a table into ``{"train", "val", "test"}`` DataFrames; every row lands in one. Lab 02.

    - Seeded (same seed, same split) and stratified on ``stratify`` (a column or a list of
      columns combined, e.g. ``["gender", "race"]``; ``None`` for a plain random split).
      Strata with fewer than 3 rows are pooled so that small tables still split.
    - ``groups="user_id"`` (or AFAD's ``"subject"``) makes the split subject-exclusive:
      scikit-learn's ``StratifiedGroupKFold`` (``GroupShuffleSplit`` without strata) keeps all of
      a subject's images in one part, so fractions are approximate.
    - FairFace has an official split and its test part was never released: on a FairFace table
      (``attrs["dataset"] == "fairface"`` or a ``split`` column of train/val) the official
      **val becomes the test part** and validation is carved from official train
      (``val_fraction`` of the official train rows); ``test_fraction`` is ignored. The studies
      reported their validation accuracy as test accuracy; this keeps the two apart. Pass
      ``official=False`` to ignore the official split. Each part's ``attrs["split_note"]`` says
      which rule was used.
    - Adience uses its 5 folds: see :func:`adience_folds`.
    """
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= value < 1:
            raise ValueError(f"{name} must lie in [0, 1), got {value!r}; e.g. 0.15.")
    if groups is not None and groups not in df.columns:
        raise ValueError(f"groups={groups!r} is not a column; the table has {list(df.columns)}.")
    use_official = _is_official_fairface(df) if official is None else official
    if use_official and "split" not in df.columns:
        raise ValueError("official=True needs a 'split' column (FairFace's train/val); pass "
                         "official=None to decide from the table.")
    index = np.arange(len(df))
    strata = _strata(df, stratify)
    group_values = None if groups is None else df[groups].astype(str).to_numpy()
    sub = (lambda a, i: None if a is None else a[i])

    if use_official:
        official_split = df["split"].astype(str).to_numpy()
        unknown = set(official_split) - {"train", "val"}
        if unknown:
            raise ValueError(f"FairFace 'split' values must be train/val, got {sorted(unknown)};"
                             " pass official=False to split at random instead.")
        test = index[official_split == "val"]
        pool = index[official_split == "train"]
        train, val = _cut(pool, val_fraction, sub(strata, pool), sub(group_values, pool), seed)
        note = ("FairFace official split: official val used as TEST; validation carved "
                f"({val_fraction:.0%}) from official train")
    else:
        if val_fraction + test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must be below 1, got "
                             f"{val_fraction + test_fraction}.")
        pool, test = _cut(index, test_fraction, strata, group_values, seed)
        rest_fraction = val_fraction / (1 - test_fraction)
        train, val = _cut(pool, rest_fraction, sub(strata, pool), sub(group_values, pool),
                          seed + 1)
        note = (f"random split (seed {seed}), stratified on {stratify}" +
                (f", subject-exclusive by {groups}" if groups else ""))
    return _parts(df, {"train": train, "val": val, "test": test}, note)


def _parts(df: pd.DataFrame, positions: dict, note: str) -> dict[str, pd.DataFrame]:
    parts = {}
    for name, rows in positions.items():
        part = df.iloc[np.sort(rows)].copy()
        part.attrs = {**df.attrs, "split": name, "split_note": note}
        parts[name] = part
    return parts


def adience_folds(df: pd.DataFrame, test_fold: int, val_fold: int | None = None
                  ) -> dict[str, pd.DataFrame]:
    """Adience's 5-fold protocol: one fold is test, optionally one validation, rest train. Lab 04.

    The folds are subject-exclusive (Levi & Hassner); this checks that no ``user_id`` spans
    two folds. With ``val_fold=None`` the "val" part is empty, as in the paper; pass e.g.
    ``val_fold=(test_fold + 1) % 5`` to early-stop on a held-out fold. Average the metrics of
    ``test_fold = 0..4`` for the protocol's figure.
    """
    if "fold" not in df.columns:
        raise ValueError("adience_folds needs a 'fold' column; load the table with "
                         "fl.datasets.load('adience').")
    folds = sorted(int(f) for f in df["fold"].dropna().unique())
    for name, fold in (("test_fold", test_fold), ("val_fold", val_fold)):
        if fold is not None and fold not in folds:
            raise ValueError(f"{name} must be one of the table's folds {folds}, got {fold!r}.")
    if val_fold is not None and val_fold == test_fold:
        raise ValueError("val_fold must differ from test_fold, e.g. (test_fold + 1) % 5.")
    if "user_id" in df.columns:
        spans = df.groupby("user_id")["fold"].nunique()
        if (spans > 1).any():
            raise ValueError(f"user_id(s) {list(spans[spans > 1].index[:5])} appear in several "
                             "folds; Adience folds must be subject-exclusive.")
    fold = df["fold"].to_numpy()
    index = np.arange(len(df))
    test = index[fold == test_fold]
    val = index[fold == val_fold] if val_fold is not None else index[:0]
    train = index[(fold != test_fold) & ((fold != val_fold) if val_fold is not None else True)]
    note = f"Adience 5-fold protocol: test fold {test_fold}, val fold {val_fold}"
    return _parts(df, {"train": train, "val": val, "test": test}, note)


# -- images ----------------------------------------------------------------------------------
def _size(image_size) -> tuple[int, int]:
    size = (image_size, image_size) if isinstance(image_size, (int, np.integer)) else image_size
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"image_size must be a positive int or (height, width), got {image_size!r}.")
    return size


def decode_and_resize(path, size: tuple[int, int]):
    """Read one file -> uint8 ``(H, W, 3)``: any JPEG/PNG/BMP/GIF, grayscale or RGBA. Lab 02.

    ``tf.io.decode_image`` looks at the bytes, not the file name, so a PNG saved as ``.jpg``
    loads; ``channels=3`` turns grayscale into RGB and drops alpha. A JPEG at least twice the
    target size is decoded at 1/2, 1/4 or 1/8 scale by libjpeg itself (``decode_jpeg(ratio=)``,
    what PIL's ``Image.draft`` does): the DCT-domain downscale is much cheaper than decoding
    every pixel and never goes below the target size. Resizing is bilinear with
    anti-aliasing, rounded back to uint8.
    """
    contents = tf.io.read_file(path)

    def any_format():
        return tf.io.decode_image(contents, channels=3, expand_animations=False)

    def jpeg():
        shape = tf.io.extract_jpeg_shape(contents)
        factor = tf.minimum(shape[0] // size[0], shape[1] // size[1])
        # ratio 1, 2, 4 or 8: the largest power of two that still covers the target size
        branch = tf.reduce_sum(tf.cast(factor >= tf.constant([2, 4, 8]), tf.int32))
        return tf.switch_case(branch, [
            any_format,
            lambda: tf.io.decode_jpeg(contents, channels=3, ratio=2),
            lambda: tf.io.decode_jpeg(contents, channels=3, ratio=4),
            lambda: tf.io.decode_jpeg(contents, channels=3, ratio=8),
        ])

    image = tf.cond(tf.io.is_jpeg(contents), jpeg, any_format)
    image = tf.ensure_shape(image, [None, None, 3])
    image = tf.image.resize(image, size, method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def load_images(paths, image_size) -> np.ndarray:
    """Load image files into one float32 array ``(N, H, W, 3)`` in [0, 255]. Lab 02.

    The same decoding as :func:`make_dataset`, for small tests and plots.
    """
    size = _size(image_size)
    paths = [str(p) for p in paths]
    if not paths:
        return np.zeros((0, *size, 3), np.float32)
    ds = (tf.data.Dataset.from_tensor_slices(paths)
          .map(lambda p: decode_and_resize(p, size), num_parallel_calls=AUTOTUNE)
          .batch(256))
    return np.concatenate([b.numpy() for b in ds]).astype(np.float32)


def augmentation(crop: bool = True, flip: bool = True, brightness: float = 0.2,
                 contrast: float = 0.2, rotation: float = 0.05, seed: int = 0
                 ) -> keras.Sequential:
    """Random crop (zoom + shift), horizontal flip, brightness, contrast, rotation. Lab 02.

    Keras preprocessing layers on [0, 255] images (``value_range=(0, 255)``), each seeded from
    ``seed``; pass ``0`` (or ``False``) to leave one out. They act only when called with
    ``training=True``, which :func:`make_dataset` does for training batches.
    """
    layers = []
    if crop:  # a random crop of up to 10% per side, re-scaled to the input size
        layers += [keras.layers.RandomZoom((-0.1, 0.0), fill_mode="reflect", seed=seed),
                   keras.layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=seed + 1)]
    if flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed + 2))
    if brightness:
        layers.append(keras.layers.RandomBrightness(brightness, value_range=(0, 255),
                                                    seed=seed + 3))
    if contrast:
        layers.append(keras.layers.RandomContrast(contrast, value_range=(0, 255), seed=seed + 4))
    if rotation:
        layers.append(keras.layers.RandomRotation(rotation, fill_mode="reflect", seed=seed + 5))
    if not layers:
        raise ValueError("augmentation() with every transform off does nothing; pass "
                         "augment=None to make_dataset instead.")
    return keras.Sequential(layers, name="augmentation")


def make_dataset(df: pd.DataFrame, schemes, image_size, batch_size: int = 64,
                 training: bool = False, augment=None, cache=False, shuffle_seed: int = 0,
                 drop_remainder: bool = False, sample_weights: bool = False) -> tf.data.Dataset:
    """A ``tf.data.Dataset`` of ``(images, {scheme.output: labels})`` from a table. Lab 02.

    - ``schemes``: a Scheme, a name, or a list (one per head); labels are encoded once with
      ``scheme.encode`` (filter rows first with ``fl.labels.select``).
    - images: float32 ``(B, H, W, 3)`` in [0, 255], decoded in parallel from ``df.path``.
    - ``training=True`` shuffles (seeded by ``shuffle_seed``, a new order each epoch) and
      applies ``augment``: ``True`` for :func:`augmentation` ``(seed=shuffle_seed)``, or any
      Keras layer / callable on a batch. ``augment`` without ``training`` raises.
    - ``cache``: ``False``, ``True`` (memory) or a file path prefix (``ds.cache(path)``):
      decoded, resized uint8 images are kept after the first epoch.
    - ``sample_weights=True`` adds a third element, ``{output: weight}`` with balanced
      per-sample weights for each classification head (see :func:`sample_weights`).
    """
    schemes = labels_mod.resolve(schemes)
    size = _size(image_size)
    if not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    if augment is not None and augment is not False and not training:
        raise ValueError("augment only applies to training data; pass training=True, or "
                         "augment=None for validation and test sets.")
    if "path" not in df.columns:
        raise ValueError("make_dataset needs a 'path' column (see ARCHITECTURE.md).")
    if len(df) == 0:
        raise ValueError("make_dataset got an empty table; check the split or select() output.")
    targets = {s.output: s.encode(df) for s in schemes}
    elements = (df["path"].astype(str).to_numpy(), targets)
    if sample_weights:
        elements = (*elements, _sample_weights(targets, schemes))
    ds = tf.data.Dataset.from_tensor_slices(elements)

    if training and not cache:  # shuffling paths is free: shuffle everything before decoding
        ds = ds.shuffle(len(df), seed=shuffle_seed, reshuffle_each_iteration=True)
    ds = ds.map(lambda path, *rest: (decode_and_resize(path, size), *rest),
                num_parallel_calls=AUTOTUNE)
    if cache:
        ds = ds.cache(cache if isinstance(cache, str) else "")
        if training:
            ds = ds.shuffle(min(len(df), CACHED_SHUFFLE_BUFFER), seed=shuffle_seed,
                            reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE)

    if augment is True:
        augment = augmentation(seed=shuffle_seed)
    if augment:
        def to_float(images, *rest):
            return (augment(tf.cast(images, tf.float32), training=True), *rest)
    else:
        def to_float(images, *rest):
            return (tf.cast(images, tf.float32), *rest)
    return ds.map(to_float, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def to_numpy(ds: tf.data.Dataset) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Gather a (small) dataset into ``(images, {output: labels})`` numpy arrays. Lab 02."""
    images, labels = [], {}
    for batch in ds:
        x, y = batch[0], batch[1]
        images.append(x.numpy())
        for key, value in y.items():
            labels.setdefault(key, []).append(value.numpy())
    if not images:
        raise ValueError("to_numpy got an empty dataset.")
    return np.concatenate(images), {k: np.concatenate(v) for k, v in labels.items()}


# -- class weights ---------------------------------------------------------------------------
def class_weights(labels) -> dict[int, float]:
    """Balanced class weights ``n / (k * count)`` for ``model.fit(class_weight=...)``. Lab 02.

    scikit-learn's ``compute_class_weight("balanced")`` over the classes present in
    ``labels`` (int class indices). Keras accepts ``class_weight`` for single-output models
    only; for several heads use :func:`sample_weights`.
    """
    from sklearn.utils.class_weight import compute_class_weight

    y = np.asarray(labels).ravel()
    if y.size == 0:
        raise ValueError("class_weights needs at least one label.")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"class_weights needs int class indices, got dtype {y.dtype}; encode "
                         "them with scheme.encode(df).")
    classes = np.unique(y)
    weights = compute_class_weight("balanced", classes=classes, y=y)
    return {int(c): float(w) for c, w in zip(classes, weights)}


def sample_weights(df: pd.DataFrame, schemes) -> dict[str, np.ndarray]:
    """Per-task balanced sample weights ``{output: (N,) float32}`` for multi-head fits. Lab 04.

    Each classification head gets ``n / (k * count[class])`` per row (scikit-learn's
    ``compute_sample_weight("balanced")``); regression and ordinal heads get ones. Pass them to
    ``make_dataset(..., sample_weights=True)`` or to ``model.fit(sample_weight=...)``.
    """
    schemes = labels_mod.resolve(schemes)
    return _sample_weights({s.output: s.encode(df) for s in schemes}, schemes)


def _sample_weights(targets: dict, schemes) -> dict[str, np.ndarray]:
    from sklearn.utils.class_weight import compute_sample_weight

    weights = {}
    for scheme in schemes:
        y = targets[scheme.output]
        if scheme.kind == "classification":
            weights[scheme.output] = compute_sample_weight("balanced", y).astype(np.float32)
        else:
            weights[scheme.output] = np.ones(len(y), np.float32)
    return weights


__all__ = ["split", "adience_folds", "make_dataset", "augmentation", "decode_and_resize",
           "load_images", "to_numpy", "class_weights", "sample_weights", "SPLITS"]
