"""Experiment grids and seed repeats: one model per configuration and seed, one tidy table. Lab 02.

A *configuration* is a plain dict of knobs (``{"bn_order": "relu_bn", "dropout": 0.6}``);
:func:`ablation_configs` builds the one-factor-at-a-time grid of an ablation study from a base
configuration, and :func:`run_grid` trains and tests every configuration under every seed and
returns the tidy table the labs share (``run``, ``seed``, ``task``, ``metric``, ``value``, plus
``params`` and ``seconds_per_epoch``), ready for ``fl.evaluate.summarize``/``wide`` and
``fl.plots.compare_runs``.

Images are decoded once per split and kept in memory (uint8), so a grid of a dozen small runs
spends its time training, not reading JPEGs.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

# The knobs a configuration may set, with the values used when it does not set them.
# Model knobs go to the build function; the rest decide compiling, data and training.
MODEL_KNOBS = dict(conv_filters=(32, 64, 128), kernel_size=3, bn_order="bn_relu",
                   dense_units=512, dropout=0.5, age_activation=None, global_pool=False)
TRAIN_KNOBS = dict(optimizer="adam", learning_rate=1e-3, loss_weights=None, augment=False,
                   separate=False)
DEFAULT_KNOBS = {**MODEL_KNOBS, **TRAIN_KNOBS}

GRID_COLUMNS = ("run", "seed", "task", "metric", "value", "params", "seconds_per_epoch")

EVAL_BATCH = 512  # images per batch when validating and testing

_IMAGE_CACHE: dict[tuple, np.ndarray] = {}
_IMAGE_CACHE_SIZE = 8


def config_name(knob: str, value) -> str:
    """Short run name for one changed knob: ``"dropout=0.6"``, ``"conv_filters=32-64"``. Lab 02."""
    if isinstance(value, (tuple, list)):
        value = "-".join(str(v) for v in value)
    return f"{knob}={value}"


def ablation_configs(base: dict, base_name: str = "base", **variations) -> dict[str, dict]:
    """The one-factor-at-a-time grid: the base configuration, then one knob changed at a time. Lab 02.

    ``ablation_configs({"dropout": 0.5}, dropout=[0.4, 0.6], optimizer=["rmsprop"])`` gives
    ``{"base": {...}, "dropout=0.4": {...}, "dropout=0.6": {...}, "optimizer=rmsprop": {...}}``;
    each variant is the base with one knob replaced. A value equal to the base's own is
    skipped (the base already covers it). Knobs must be known to :data:`DEFAULT_KNOBS`.
    """
    if not isinstance(base, dict):
        raise ValueError(f"base must be a dict of knobs, got {type(base).__name__}.")
    _check_knobs(base, "base")
    _check_knobs(variations, "variations")
    configs = {base_name: dict(base)}
    for knob, values in variations.items():
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
            raise ValueError(f"{knob}={values!r}: pass a list of values to try, e.g. "
                             f"{knob}=[{values!r}].")
        for value in values:
            if _same(value, base.get(knob, DEFAULT_KNOBS[knob])):
                continue
            configs[config_name(knob, value)] = {**base, knob: value}
    return configs


def build_custom_cnn(knobs: dict, schemes, input_shape):
    """Build study C's custom CNN (``fl.models.custom_cnn``) from a configuration's knobs. Lab 02."""
    from faceattr_lab import models

    model_knobs = {k: knobs.get(k, v) for k, v in MODEL_KNOBS.items()}
    model_knobs["conv_filters"] = tuple(model_knobs["conv_filters"])
    return models.custom_cnn(input_shape, schemes, **model_knobs)


def load_arrays(df: pd.DataFrame, schemes, image_size) -> tuple[np.ndarray, dict]:
    """Decoded uint8 images ``(N, H, W, 3)`` and ``{output: labels}`` of a table. Lab 02.

    Images are decoded by ``fl.pipeline.load_images`` (the pipeline's own decoding) once per
    (files, size) and kept in memory, so later grids on the same split reuse them.
    """
    from faceattr_lab import labels as labels_mod
    from faceattr_lab import pipeline

    if len(df) == 0:
        raise ValueError("got an empty table; check the split or fl.labels.select output.")
    schemes = labels_mod.resolve(schemes)
    targets = {s.output: s.encode(df) for s in schemes}
    size = (image_size, image_size) if np.isscalar(image_size) else tuple(image_size)
    key = (tuple(df["path"].astype(str)), size)
    if key not in _IMAGE_CACHE:
        while len(_IMAGE_CACHE) >= _IMAGE_CACHE_SIZE:
            _IMAGE_CACHE.pop(next(iter(_IMAGE_CACHE)))
        images = pipeline.load_images(df["path"], size)
        _IMAGE_CACHE[key] = np.clip(np.round(images), 0, 255).astype(np.uint8)
    return _IMAGE_CACHE[key], targets


def array_dataset(images: np.ndarray, targets: dict, batch_size: int, training: bool = False,
                  seed: int = 0, augment=False):
    """A ``tf.data`` pipeline over in-memory images: float32 [0, 255] batches, labels dict. Lab 02.

    ``training=True`` reshuffles each epoch (seeded) and applies ``augment`` (``True`` for
    ``fl.pipeline.augmentation(seed=seed)``, or a Keras layer); the same contract as
    ``fl.pipeline.make_dataset``.
    """
    import tensorflow as tf

    from faceattr_lab import pipeline

    if augment and not training:
        raise ValueError("augment only applies to training data; pass training=True.")
    ds = tf.data.Dataset.from_tensor_slices((images, targets))
    if training:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    layer = pipeline.augmentation(seed=seed) if augment is True else augment
    if layer:
        # one call at a time: the augmentation layers draw from a seeded state, in order
        ds = ds.map(lambda x, y: (layer(tf.cast(x, tf.float32), training=True), y))
    else:
        ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def run_grid(configs: dict, train_df: pd.DataFrame, val_df: pd.DataFrame | None,
             test_df: pd.DataFrame, schemes, image_size, *, epochs: int, batch_size: int,
             seeds=(0,), build_fn=None, loss_weights: dict | None = None,
             output_dir: str | Path | None = None, early_stopping: int | None = 5,
             deterministic: bool = False, echo: bool = True) -> pd.DataFrame:
    """Train and test every configuration under every seed; return one tidy table. Lab 02.

    For each configuration (a dict of knobs, see :data:`DEFAULT_KNOBS`) and seed:
    ``fl.set_seed(seed)``, build the model with ``build_fn(knobs, schemes, input_shape)``
    (default :func:`build_custom_cnn`), compile it with ``fl.models.compile_for`` (the knobs
    ``optimizer``, ``learning_rate``, ``loss_weights``, else ``loss_weights``), train it with
    ``fl.train.fit`` (augmented when the knob ``augment`` is on; early stopping on the
    validation loss), then test it on ``test_df``: ``fl.evaluate`` metrics per task (age in
    years), plus each head's test ``loss`` (age: MSE on the scheme's scale) and the weighted
    total under task ``"all"``, the figure study C compares.

    ``separate=True`` trains one network per task and merges their rows into one run; its
    ``"all"`` loss is the same weighted sum, so it compares with a joint network's. ``params``
    counts trainable and frozen weights (summed over separate networks); ``seconds_per_epoch``
    is training wall time over epochs run (the first epoch includes graph tracing).
    ``output_dir`` keeps each run's ``history.csv`` in ``<output_dir>/<run>/seed<seed>``
    (restarted, never resumed); ``None`` writes nothing.
    """
    from faceattr_lab import labels as labels_mod

    if not isinstance(configs, dict) or not configs:
        raise ValueError("configs must be a non-empty dict {run name: {knob: value}}; build "
                         "one with ablation_configs(base, knob=[values]).")
    for name, knobs in configs.items():
        _check_knobs(knobs, f"configs[{name!r}]")
    seeds = [int(s) for s in ([seeds] if isinstance(seeds, int) else seeds)]
    if not seeds or min(seeds) < 0:
        raise ValueError(f"seeds={seeds!r}; pass non-negative ints, e.g. seeds=(0, 1, 2).")
    schemes = labels_mod.resolve(schemes)
    build_fn = build_fn or build_custom_cnn
    data = {"train": load_arrays(train_df, schemes, image_size),
            "test": load_arrays(test_df, schemes, image_size)}
    if val_df is not None and len(val_df):
        data["val"] = load_arrays(val_df, schemes, image_size)
    input_shape = data["train"][0].shape[1:]

    tables = []
    for name, knobs in configs.items():
        knobs = {**DEFAULT_KNOBS, "loss_weights": loss_weights, **knobs}
        weights = knobs["loss_weights"] or {}
        groups = [[s] for s in schemes] if knobs["separate"] else [schemes]
        for seed in seeds:
            parts, params, seconds, epochs_run, total_loss = [], 0, 0.0, 0, 0.0
            for group in groups:
                out = None
                if output_dir is not None:
                    out = Path(output_dir) / name / f"seed{seed}"
                    if len(groups) > 1:
                        out = out / group[0].output
                result = _train_and_test(build_fn, knobs, group, data, input_shape, seed,
                                         epochs, batch_size, early_stopping, deterministic, out)
                table, losses, count, elapsed, ran = result
                parts.append(table)
                params += count
                seconds += elapsed
                epochs_run = max(epochs_run, ran)
                total_loss += sum(weights.get(s.output, 1.0) * losses[s.output] for s in group)
            table = pd.concat(parts, ignore_index=True)
            table.loc[len(table)] = ["", "all", "loss", total_loss]
            table = table.assign(run=name, seed=seed, params=params,
                                 seconds_per_epoch=seconds / max(epochs_run, 1))
            tables.append(table)
            if echo:
                print(f"{name} | seed {seed}: {epochs_run} epochs, "
                      f"{seconds / max(epochs_run, 1):.1f} s/epoch, test loss {total_loss:.4f}",
                      flush=True)
    return pd.concat(tables, ignore_index=True)[list(GRID_COLUMNS)]


def _train_and_test(build_fn, knobs, schemes, data, input_shape, seed, epochs, batch_size,
                    early_stopping, deterministic, output_dir):
    """One model: build, compile, fit, test. Returns (tidy metrics, head losses, params, s, epochs)."""
    import faceattr_lab as fl

    fl.set_seed(seed, deterministic=deterministic)
    model = build_fn(knobs, schemes, input_shape)
    outputs = {s.output for s in schemes}
    weights = {k: v for k, v in (knobs["loss_weights"] or {}).items() if k in outputs}
    fl.models.compile_for(model, schemes, optimizer=knobs["optimizer"],
                          learning_rate=knobs["learning_rate"], loss_weights=weights or None)

    def subset(split):
        images, targets = data[split]
        return images, {s.output: targets[s.output] for s in schemes}

    train_ds = array_dataset(*subset("train"), batch_size, training=True, seed=seed,
                             augment=knobs["augment"])
    # evaluation batches are larger (results do not depend on them): a small test split is
    # then one batch, and Keras traces the predict and test functions once, not twice
    eval_batch = max(batch_size, EVAL_BATCH)
    val_ds = array_dataset(*subset("val"), eval_batch) if "val" in data else None
    test_ds = array_dataset(*subset("test"), eval_batch)

    start = time.perf_counter()
    history = fl.train.fit(model, train_ds, val_ds, epochs=epochs, output_dir=output_dir,
                           early_stopping=early_stopping, resume=False, verbose=0)
    elapsed = time.perf_counter() - start

    predictions = fl.evaluate.predict(model, test_ds, schemes)
    table = fl.evaluate.evaluate(predictions, schemes, run="")
    scores = model.evaluate(test_ds, return_dict=True, verbose=0)
    if len(schemes) == 1:
        losses = {schemes[0].output: float(scores["loss"])}
    else:
        losses = {s.output: float(scores[f"{s.output}_loss"]) for s in schemes}
    for output, loss in losses.items():
        table.loc[len(table)] = ["", output, "loss", loss]
    params = fl.models.count_params(model)["total"]
    return table, losses, params, elapsed, len(history.epoch)


def _check_knobs(knobs: dict, where: str) -> None:
    if not isinstance(knobs, dict):
        raise ValueError(f"{where} must be a dict of knobs, got {type(knobs).__name__}.")
    unknown = sorted(set(knobs) - set(DEFAULT_KNOBS))
    if unknown:
        raise ValueError(f"{where} has unknown knob(s) {unknown}; use knobs from "
                         f"{sorted(DEFAULT_KNOBS)}.")


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return tuple(a) == tuple(b)
    return a == b


__all__ = ["MODEL_KNOBS", "TRAIN_KNOBS", "DEFAULT_KNOBS", "GRID_COLUMNS", "config_name",
           "ablation_configs", "build_custom_cnn", "load_arrays", "array_dataset", "run_grid"]
