"""From a dataset table to batches: splits, the tf.data pipeline, augmentation, class weights. Lab 02.

``split`` cuts a table into train / val / test (seeded, stratified, subject-exclusive when asked,
official splits where a dataset has them); ``make_dataset`` turns one part into a
``tf.data.Dataset`` of ``(images, {scheme.output: labels})`` with images float32
``(B, H, W, 3)`` in [0, 255] (models normalise inside themselves, see ARCHITECTURE.md).

The pipeline decodes in parallel (``num_parallel_calls=AUTOTUNE``), keeps resized images as
uint8 (four times less memory when cached), shuffles file paths before decoding (so a full
shuffle costs nothing), augments whole batches with stateless seeded ops (the same seeds give
the same batches; see :class:`Augmentation`) and prefetches. Lab 04 adds Levi & Hassner's
crops: ``make_dataset(..., image_size=256, crop=227)`` and :func:`ten_crops`.
``fl.benchmarks.pipeline_throughput()`` measures it against the studies' PIL loop.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import tensorflow as tf

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


# The image files behind each dataset make_dataset built (by id, dropped with the dataset), so
# a decoding error deep inside tf.data can be traced back to the file that caused it.
_FILES: dict[int, list[str]] = {}
_DECODE_ERROR = re.compile(r"jpeg|png|gif|bmp|decode|uncompress|image file format|"
                           r"image data|corrupt", re.IGNORECASE)


def _remember_files(ds, paths: list[str]) -> None:
    import weakref

    _FILES[id(ds)] = paths
    weakref.finalize(ds, _FILES.pop, id(ds), None)


def unreadable_files(paths, workers: int = 8) -> list[str]:
    """The files among ``paths`` that TensorFlow cannot decode (the pipeline's own decoder). Lab 01.

    Decodes each file eagerly with :func:`decode_and_resize`, so it finds exactly the files a
    ``tf.data`` pipeline would stop on (a truncated or corrupt JPEG, a non-image).
    """
    from concurrent.futures import ThreadPoolExecutor

    def fails(path: str) -> bool:
        try:
            decode_and_resize(tf.constant(path), (8, 8))
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError,
                tf.errors.DataLossError):
            return True
        return False

    paths = [str(p) for p in paths]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        flags = list(pool.map(fails, paths))
    return [path for path, bad in zip(paths, flags) if bad]


def explain_decode_error(error: Exception, *datasets) -> ValueError | None:
    """A ``ValueError`` naming the files behind a TensorFlow decoding error, or None. Lab 01.

    ``datasets`` are the pipelines the error came from (built by :func:`make_dataset`, which
    remembers their files). Returns None when ``error`` is not about decoding an image or the
    files are unknown; callers then re-raise the original error. ``fl.train.fit`` and
    ``fl.evaluate.predict`` call it, so a corrupt JPEG met in training stops with its name.
    """
    if not _DECODE_ERROR.search(str(error)):
        return None
    files = [path for ds in datasets if ds is not None for path in _FILES.get(id(ds), [])]
    if not files:
        return None
    bad = unreadable_files(list(dict.fromkeys(files)))
    if not bad:
        return None
    listed = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
    return ValueError(
        f"TensorFlow could not decode {len(bad)} image file(s): {listed}. Exclude them with a "
        "reason before training: run `faceattr-lab data verify NAME`, or load the table with "
        "verify=True (fl.datasets.verify_images(df)), then rebuild the pipeline.")


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


# Salts that give each random draw of an element its own stateless seed ``(element seed, salt)``.
_CROP_SALT, _FLIP_SALT, _AUGMENT_SALT = 1, 2, 3
_MAX_SEED = np.iinfo(np.int64).max


class Augmentation:
    """Random crop (zoom + shift), horizontal flip, brightness, contrast, rotation. Lab 02.

    A callable on float32 image batches ``(B, H, W, 3)`` in [0, 255], built by
    :func:`augmentation`. Every draw is a stateless TensorFlow op
    (``tf.random.stateless_uniform``) seeded from one int64 seed per image: ``aug(images,
    seeds=s)`` with ``s`` of shape ``(B,)`` always gives the same result for the same ``s``,
    whatever the batch or the thread. :func:`make_dataset` passes per-image seeds drawn from
    ``tf.data.Dataset.random(shuffle_seed, rerandomize_each_iteration=True)``: the same seeds
    give the same batches, each new iterator (epoch) new draws, and a resumed ``fl.train.fit``
    (which re-creates as many iterators as the interrupted run) replays them. Called without
    ``seeds`` (e.g. by ``fl.train.two_views``) it draws
    them from its own ``tf.random.Generator`` seeded with ``seed``. ``training=False`` returns
    the images unchanged.
    """

    def __init__(self, crop: bool = True, flip: bool = True, brightness: float = 0.2,
                 contrast: float = 0.2, rotation: float = 0.05, seed: int = 0):
        for name, value in (("brightness", brightness), ("contrast", contrast),
                            ("rotation", rotation)):
            if not 0 <= float(value) < 1:
                raise ValueError(f"{name}={value!r}; pass a fraction in [0, 1), e.g. 0.2, or 0 "
                                 "to leave it out.")
        if not (crop or flip or brightness or contrast or rotation):
            raise ValueError("augmentation() with every transform off does nothing; pass "
                             "augment=None to make_dataset instead.")
        self.crop, self.flip = bool(crop), bool(flip)
        self.brightness, self.contrast = float(brightness), float(contrast)
        self.rotation, self.seed = float(rotation), int(seed)
        # created here, not inside a traced tf.data function (which cannot create variables)
        self._generator = tf.random.Generator.from_seed(self.seed)

    def __repr__(self):
        return (f"Augmentation(crop={self.crop}, flip={self.flip}, brightness={self.brightness},"
                f" contrast={self.contrast}, rotation={self.rotation}, seed={self.seed})")

    def _draw_seeds(self, count):
        return self._generator.uniform([count], maxval=_MAX_SEED, dtype=tf.int64)

    def __call__(self, images, training: bool = True, seeds=None):
        if not training:
            return images
        images = tf.convert_to_tensor(images, tf.float32)
        if seeds is None:
            seeds = self._draw_seeds(tf.shape(images)[0])
        seeds = tf.cast(tf.reshape(seeds, [-1]), tf.int64)
        # 7 uniform numbers in [0, 1) per image, from its own seed
        u = tf.map_fn(lambda s: tf.random.stateless_uniform(
            [7], seed=tf.stack([s, tf.constant(_AUGMENT_SALT, tf.int64)])), seeds,
            fn_output_signature=tf.float32)
        shape = tf.shape(images)
        height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
        zoom = 1.0 - 0.1 * u[:, 0] if self.crop else tf.ones_like(u[:, 0])
        shift_x = (0.2 * u[:, 1] - 0.1) * width if self.crop else tf.zeros_like(u[:, 1])
        shift_y = (0.2 * u[:, 2] - 0.1) * height if self.crop else tf.zeros_like(u[:, 2])
        angle = (2 * u[:, 3] - 1) * self.rotation * 2 * np.pi
        if self.crop or self.rotation:
            images = _affine(images, zoom, angle, shift_x, shift_y)
        if self.flip:
            images = tf.where((u[:, 4] < 0.5)[:, None, None, None], images[:, :, ::-1, :],
                              images)
        if self.brightness:
            images = images + ((2 * u[:, 5] - 1) * self.brightness * 255.0)[:, None, None, None]
            images = tf.clip_by_value(images, 0.0, 255.0)
        if self.contrast:
            factor = (1 + (2 * u[:, 6] - 1) * self.contrast)[:, None, None, None]
            mean = tf.reduce_mean(images, axis=(1, 2), keepdims=True)
            images = tf.clip_by_value((images - mean) * factor + mean, 0.0, 255.0)
        return images


def _affine(images, zoom, angle, shift_x, shift_y):
    """Sample each image at ``centre + zoom * R(angle) (p - centre) - shift`` (reflect fill).

    ``zoom`` < 1 magnifies (a random crop scaled back to the input size), ``shift`` moves the
    content by that many pixels; one bilinear resampling for zoom, shift and rotation.
    """
    shape = tf.shape(images)
    cy = (tf.cast(shape[1], tf.float32) - 1) / 2
    cx = (tf.cast(shape[2], tf.float32) - 1) / 2
    cos, sin = zoom * tf.cos(angle), zoom * tf.sin(angle)
    zero = tf.zeros_like(zoom)
    transforms = tf.stack([cos, -sin, cx - cos * cx + sin * cy - shift_x,
                           sin, cos, cy - sin * cx - cos * cy - shift_y, zero, zero], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=shape[1:3],
        fill_value=tf.constant(0.0), interpolation="BILINEAR", fill_mode="REFLECT")


def augmentation(crop: bool = True, flip: bool = True, brightness: float = 0.2,
                 contrast: float = 0.2, rotation: float = 0.05, seed: int = 0) -> Augmentation:
    """Random crop (zoom + shift), horizontal flip, brightness, contrast, rotation. Lab 02.

    Returns an :class:`Augmentation`, a callable on [0, 255] image batches made of stateless
    seeded ops (reproducible, see the class). Per image: ``crop`` zooms in by up to 10% and
    shifts by up to 10% per side, ``flip`` mirrors with probability 1/2, ``brightness`` adds up
    to +-that fraction of 255, ``contrast`` scales the distance to the image's mean by a factor
    in ``1 +- contrast``, ``rotation`` turns by up to +-that fraction of a full turn (reflected
    borders, clipped to [0, 255]); pass ``0`` (or ``False``) to leave one out. ``seed`` seeds
    calls made without per-image seeds; :func:`make_dataset` passes its own.
    """
    return Augmentation(crop=crop, flip=flip, brightness=brightness, contrast=contrast,
                        rotation=rotation, seed=seed)



# -- oversampling to a size (study B's gender experts) ---------------------------------------
def _oversample_positions(n: int, size: int, seed: int) -> np.ndarray:
    """Positions ``0..n-1`` once each, in order, then ``size - n`` repeats spread evenly."""
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool):
        raise ValueError(f"size must be an int, got {size!r}; e.g. len(train_table).")
    if n == 0:
        raise ValueError("nothing to oversample: the table is empty; check the split.")
    if size < n:
        raise ValueError(f"size={size} is below the {n} rows given; oversampling only grows a "
                         "table: pass size >= the number of rows (or sample it instead).")
    repeats, extra = divmod(int(size), n)
    rng = np.random.default_rng(seed)
    copies = [np.arange(n)] * (repeats - 1) + [np.sort(rng.choice(n, extra, replace=False))]
    return np.concatenate([np.arange(n), *copies]).astype(np.int64)


def oversample(df: pd.DataFrame, size: int, seed: int = 0) -> pd.DataFrame:
    """``df`` grown to ``size`` rows by repeating its rows as evenly as possible. Lab 07.

    Study B trained each gender's expert on that gender's faces "augmented back to full size".
    The first ``len(df)`` rows are ``df`` itself, in order; then every row is repeated so that
    each appears floor(size / n) or ceil(size / n) times in all (which rows get the extra
    copy is drawn at random, seeded). Column ``copy`` counts the repeat (0: the original).
    Train on it with ``make_dataset(..., training=True, augment=...)`` so that the copies are
    augmented (anew each epoch); :func:`augment_to_size` does the same for images in memory.
    """
    positions = _oversample_positions(len(df), size, seed)
    grown = df.iloc[positions].copy()
    grown["copy"] = pd.Series(positions).groupby(positions).cumcount().to_numpy()
    return grown


def augment_to_size(images: np.ndarray, targets: dict, size: int, augment=None,
                    seed: int = 0) -> tuple[np.ndarray, dict, np.ndarray]:
    """Images in memory grown to ``size`` rows with augmented copies (study B's experts). Lab 07.

    ``images``: uint8 ``(N, H, W, 3)``; ``targets``: ``{output: labels}`` of those N images.
    The first N rows returned are the originals, unchanged; the ``size - N`` extra rows are
    copies chosen as :func:`oversample` chooses them, each augmented once, with its own seed,
    by ``augment`` (default: :func:`augmentation` with study B's random crop, flip and
    brightness 0.2, no contrast or rotation; or any callable on a float32 batch). Returns
    ``(images, targets, source)``: uint8 images, the labels of each row and ``source``, the
    original position of each row. Same ``seed``, same copies and augmentations.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be (N, H, W, 3), got shape {images.shape}.")
    if any(len(y) != len(images) for y in targets.values()):
        raise ValueError("every target needs one label per image; got lengths "
                         f"{ {k: len(v) for k, v in targets.items()} } for {len(images)} images.")
    source = _oversample_positions(len(images), size, seed)
    if augment is None:
        augment = augmentation(crop=True, flip=True, brightness=0.2, contrast=0.0,
                               rotation=0.0, seed=seed)
    copies = images[source[len(images):]].astype(np.float32)
    seeds = np.random.default_rng([seed, 1]).integers(0, _MAX_SEED, len(copies))
    augmented = []
    for start in range(0, len(copies), 256):  # in batches: bounded memory
        batch = copies[start:start + 256]
        if isinstance(augment, Augmentation):
            out = augment(batch, seeds=seeds[start:start + 256])
        else:
            out = augment(batch, training=True)
        augmented.append(np.asarray(out, dtype=np.float32))
    grown = images if not len(copies) else np.concatenate(
        [images, np.clip(np.round(np.concatenate(augmented)), 0, 255).astype(images.dtype)])
    return grown, {k: np.asarray(v)[source] for k, v in targets.items()}, source


# -- crops (Levi & Hassner's protocol) -------------------------------------------------------
TEN_CROPS = ("top_left", "top_right", "bottom_left", "bottom_right", "centre",
             "top_left_mirror", "top_right_mirror", "bottom_left_mirror",
             "bottom_right_mirror", "centre_mirror")


def _crop_size(crop, size: tuple[int, int]) -> tuple[int, int]:
    """``crop`` as (height, width), checked to fit in images of ``size``."""
    crop = _size(crop)
    if crop[0] > size[0] or crop[1] > size[1]:
        raise ValueError(f"crop={crop} is larger than the images {size}; pass a crop no larger "
                         "than image_size, e.g. image_size=256, crop=227.")
    return crop


def ten_crops(images, crop):
    """The 10 crops of Levi & Hassner's over-sampled test: ``(10, B, h, w, C)``. Lab 04.

    Levi & Hassner (2015), "Age and Gender Classification using Convolutional Neural Networks",
    CVPR Workshops (AMFG): the four corner crops and the centre crop of each image, then their
    horizontal mirrors, in the order of :data:`TEN_CROPS` (Caffe's ``oversample``). The centre
    crop starts at ``((H - h) // 2, (W - w) // 2)``. ``images`` is a batch ``(B, H, W, C)`` (or
    one image ``(H, W, C)``, giving ``(10, h, w, C)``); ``crop`` an int or ``(h, w)``.
    """
    images = tf.convert_to_tensor(images)
    if images.shape.rank not in (3, 4) or None in images.shape[-3:-1]:
        raise ValueError(f"ten_crops needs images (B, H, W, C) or (H, W, C) of known size, got "
                         f"shape {images.shape}.")
    height, width = int(images.shape[-3]), int(images.shape[-2])
    h, w = _crop_size(crop, (height, width))
    tops = (0, 0, height - h, height - h, (height - h) // 2)
    lefts = (0, width - w, 0, width - w, (width - w) // 2)
    crops = [images[..., t:t + h, l:l + w, :] for t, l in zip(tops, lefts)]
    crops += [c[..., ::-1, :] for c in crops]
    return tf.stack(crops)


def _centre_crop(image, crop: tuple[int, int]):
    top = (tf.shape(image)[0] - crop[0]) // 2
    left = (tf.shape(image)[1] - crop[1]) // 2
    return image[top:top + crop[0], left:left + crop[1], :]


def _random_crop_and_flip(image, crop: tuple[int, int], seed):
    """A random ``crop`` of one image (every offset equally likely), mirrored half the time;
    stateless, from the image's int64 ``seed``."""
    image = tf.image.stateless_random_crop(
        image, [crop[0], crop[1], 3], seed=tf.stack([seed, tf.constant(_CROP_SALT, tf.int64)]))
    return tf.image.stateless_random_flip_left_right(
        image, seed=tf.stack([seed, tf.constant(_FLIP_SALT, tf.int64)]))


def make_dataset(df: pd.DataFrame, schemes, image_size, batch_size: int = 64,
                 training: bool = False, augment=None, cache=False, shuffle_seed: int = 0,
                 drop_remainder: bool = False, sample_weights: bool = False, crop=None,
                 missing: str = "raise") -> tf.data.Dataset:
    """A ``tf.data.Dataset`` of ``(images, {scheme.output: labels})`` from a table. Lab 02.

    - ``schemes``: a Scheme, a name, or a list (one per head); labels are encoded once with
      ``scheme.encode`` (filter rows first with ``fl.labels.select``).
    - ``missing``: ``"raise"`` (default) refuses a row a scheme cannot encode (a missing
      label, an excluded value), naming the rows and the fix. ``"mask"`` keeps it and gives it
      the mask value for that head (``scheme.encode(df, missing="mask")``: -1 for
      classification and ordinal, NaN for regression), which ``fl.models.compile_for``'s
      masked losses and metrics leave out: a multi-task model then learns each head from its
      labelled rows (use with ``fl.labels.select(df, schemes, require="any")``, which reports
      which rows lack which label). Never automatic: a table with missing labels raises until
      you choose. A head with no labelled row at all warns.
    - images: float32 ``(B, H, W, 3)`` in [0, 255], decoded in parallel from ``df.path``.
    - ``training=True`` shuffles (seeded by ``shuffle_seed``, a new order each epoch) and
      applies ``augment``: ``True`` for :func:`augmentation` ``(seed=shuffle_seed)``, or any
      Keras layer / callable on a batch. ``augment`` without ``training`` raises.
      Augmentation and random crops are reproducible: each image gets an int64 seed from
      ``tf.data.Dataset.random(shuffle_seed, rerandomize_each_iteration=True)``, so the same
      seeds give the same batches, each epoch (iterator) new draws, and a resumed
      ``fl.train.fit`` the draws of the run it resumes. A callable of your own is called
      as it is, one batch at a time: its draws are as reproducible as it makes them.
    - ``crop`` (an int or ``(h, w)``, Lab 04): images are resized to ``image_size`` and then
      cropped, Levi & Hassner's protocol (``image_size=256, crop=227``): with ``training`` a
      random crop (any offset equally likely) mirrored half the time, without it the centre
      crop. For their over-sampled test use ``fl.evaluate.predict_oversampled`` on uncropped
      batches (:func:`ten_crops`).
    - ``cache``: ``False``, ``True`` (memory) or a file path prefix (``ds.cache(path)``):
      decoded, resized uint8 images are kept after the first epoch.
    - ``sample_weights=True`` adds a third element, ``{output: weight}`` with balanced
      per-sample weights for each classification head (see :func:`sample_weights`; 0 for a
      masked row).
    """
    schemes = labels_mod.resolve(schemes)
    if missing not in labels_mod.MISSING:
        raise ValueError(f"missing={missing!r}; pass 'raise' (every row needs every label) or "
                         "'mask' (rows without a head's label get the mask value -1 / NaN).")
    size = _size(image_size)
    if not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    if augment is not None and augment is not False and not training:
        raise ValueError("augment only applies to training data; pass training=True, or "
                         "augment=None for validation and test sets.")
    crop_size = None if crop is None else _crop_size(crop, size)
    if "path" not in df.columns:
        raise ValueError("make_dataset needs a 'path' column (see ARCHITECTURE.md).")
    if len(df) == 0:
        raise ValueError("make_dataset got an empty table; check the split or select() output.")
    targets = _encode(df, schemes, missing)
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
    ds = _crop_batch_augment(ds, batch_size, training, augment, shuffle_seed, crop_size,
                             drop_remainder)
    _remember_files(ds, df["path"].astype(str).tolist())
    return ds


def from_arrays(images: np.ndarray, targets: dict, batch_size: int, training: bool = False,
                augment=None, shuffle_seed: int = 0) -> tf.data.Dataset:
    """:func:`make_dataset` for images already in memory (uint8 ``(N, H, W, 3)``). Lab 02.

    ``targets`` is ``{output: labels}`` (``scheme.encode`` of each scheme). Labels encoded with
    ``scheme.encode(df, missing="mask")`` carry their mask values (-1, NaN) through as they
    are, for ``compile_for``'s masked losses. Same contract and options as
    :func:`make_dataset`: ``training=True`` shuffles (seeded, a new order each epoch) and
    applies ``augment`` with the same reproducible per-image seeds. Used by
    ``fl.experiments.run_grid``, which decodes each split once for a whole grid.
    """
    if not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    if augment is not None and augment is not False and not training:
        raise ValueError("augment only applies to training data; pass training=True, or "
                         "augment=None for validation and test sets.")
    if len(images) == 0:
        raise ValueError("from_arrays got no images; check the split.")
    ds = tf.data.Dataset.from_tensor_slices((images, targets))
    if training:
        ds = ds.shuffle(len(images), seed=shuffle_seed, reshuffle_each_iteration=True)
    return _crop_batch_augment(ds, batch_size, training, augment, shuffle_seed, None, False)


def _encode(df: pd.DataFrame, schemes, missing: str) -> dict[str, np.ndarray]:
    """``{output: encoded labels}``; with ``missing="mask"``, warn for a head with no label."""
    targets = {s.output: s.encode(df, missing=missing) for s in schemes}
    if missing == "mask":
        empty = [output for output, y in targets.items() if not _labelled(y).any()]
        if empty:
            warnings.warn(f"no row of this table has a label for head(s) {empty}; they learn "
                          "nothing from it (their masked loss is 0).", stacklevel=3)
    return targets


def _labelled(y: np.ndarray) -> np.ndarray:
    """True where an encoded label is present (not -1 / NaN)."""
    y = np.asarray(y)
    return ~np.isnan(y) if y.dtype.kind == "f" else y >= 0


def _crop_batch_augment(ds, batch_size, training, augment, shuffle_seed, crop_size,
                        drop_remainder):
    """The shared tail of the pipelines: per-image seeds, crop, batch, float32, augment."""
    if augment is True:
        augment = augmentation(seed=shuffle_seed)
    # one seed per image, drawn anew by each iterator, for the random crop and augmentation
    seeded = training and (crop_size is not None or isinstance(augment, Augmentation))
    if seeded:  # stateless draws: a pure function of (global seed, shuffle_seed, iterator)
        seeds = tf.data.Dataset.random(seed=shuffle_seed, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip((ds, seeds)).map(lambda element, seed: (*element, seed))
    if crop_size is not None and training:
        ds = ds.map(lambda image, *rest: (_random_crop_and_flip(image, crop_size, rest[-1]),
                                          *rest), num_parallel_calls=AUTOTUNE)
    elif crop_size is not None:
        ds = ds.map(lambda image, *rest: (_centre_crop(image, crop_size), *rest),
                    num_parallel_calls=AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE)

    def to_float(images, *rest):
        seeds = None
        if seeded:
            rest, seeds = rest[:-1], rest[-1]
        images = tf.cast(images, tf.float32)
        if isinstance(augment, Augmentation):
            images = augment(images, seeds=seeds)
        elif augment:
            images = augment(images, training=True)
        return (images, *rest)

    # the kit's augmentation is stateless and runs in parallel; any other callable in order
    parallel = AUTOTUNE if not augment or isinstance(augment, Augmentation) else None
    return ds.map(to_float, num_parallel_calls=parallel).prefetch(AUTOTUNE)


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
    ``labels`` (int class indices); masked labels (-1, see ``scheme.encode(df,
    missing="mask")``) are left out of the counts. Keras accepts ``class_weight`` for
    single-output models only; for several heads use :func:`sample_weights`.
    """
    from sklearn.utils.class_weight import compute_class_weight

    y = np.asarray(labels).ravel()
    if y.size == 0:
        raise ValueError("class_weights needs at least one label.")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"class_weights needs int class indices, got dtype {y.dtype}; encode "
                         "them with scheme.encode(df).")
    y = y[y >= 0]
    if y.size == 0:
        raise ValueError("class_weights got only masked labels (-1); nothing to count.")
    classes = np.unique(y)
    weights = compute_class_weight("balanced", classes=classes, y=y)
    return {int(c): float(w) for c, w in zip(classes, weights)}


def sample_weights(df: pd.DataFrame, schemes, missing: str = "raise"
                   ) -> dict[str, np.ndarray]:
    """Per-task balanced sample weights ``{output: (N,) float32}`` for multi-head fits. Lab 04.

    Each classification head gets ``n / (k * count[class])`` per row (scikit-learn's
    ``compute_sample_weight("balanced")``); regression and ordinal heads get ones. Pass them to
    ``make_dataset(..., sample_weights=True)`` or to ``model.fit(sample_weight=...)``. With
    ``missing="mask"`` a row without a head's label weighs 0 for that head and the balanced
    counts run over the labelled rows only.
    """
    schemes = labels_mod.resolve(schemes)
    return _sample_weights(_encode(df, schemes, missing), schemes)


def _sample_weights(targets: dict, schemes) -> dict[str, np.ndarray]:
    from sklearn.utils.class_weight import compute_sample_weight

    weights = {}
    for scheme in schemes:
        y = np.asarray(targets[scheme.output])
        labelled = _labelled(y)
        w = np.zeros(len(y), np.float32)   # a masked row weighs 0
        if scheme.kind == "classification" and labelled.any():
            w[labelled] = compute_sample_weight("balanced", y[labelled])
        else:
            w[labelled] = 1.0
        weights[scheme.output] = w
    return weights


__all__ = ["split", "adience_folds", "make_dataset", "from_arrays", "augmentation", "Augmentation",
           "ten_crops", "TEN_CROPS", "unreadable_files", "explain_decode_error",
           "decode_and_resize", "load_images", "to_numpy",
           "class_weights", "sample_weights", "SPLITS", "oversample", "augment_to_size"]
