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
from typing import NamedTuple

import numpy as np
import pandas as pd

# The knobs a configuration may set, with the values used when it does not set them: study C's
# final model (``fl.models.cnn.STUDY_C``) and training (Adam 1e-3, age loss weight 2).
# Model knobs go to the build function; the rest decide compiling, data and training.
MODEL_KNOBS = dict(conv_filters=(128, 64, 32, 32), kernel_size=3, bn_order="bn_relu",
                   dense_units=512, dropout=0.6, age_activation=None, global_pool=False,
                   sigmoid_gender=True, bn_momentum=0.99)
TRAIN_KNOBS = dict(optimizer="adam", learning_rate=1e-3, loss_weights=None, augment=False,
                   separate=False, lr_schedule=None)
# ``lr_schedule``: None (study C: a constant rate), "cosine" (the rate decays from
# ``learning_rate`` towards 0 over the epochs, so a short run ends on small steps; lab 02's
# quick profile) or "step" (halved every 10 epochs): ``fl.train.fit``'s per-epoch schedules.
DEFAULT_KNOBS = {**MODEL_KNOBS, **TRAIN_KNOBS}
LR_SCHEDULES = (None, "cosine", "step")

# Study C's ablation tables, one knob at a time against its final model (the full grid of lab 02):
# conv stacks (3 CL 128-64-32; 4 CL 128-64-32-16; 4 CL 128-64-64-32; 5 CL 128-64-64-32-32; the
# base is 4 CL 128-64-32-32), ReLU -> BN, a ReLU on the age output, Dense 1024, dropout
# 0.4 / 0.5 / 0.7, RMSProp, augmentation, and separate networks.
STUDY_C_ABLATIONS = dict(
    conv_filters=[(128, 64, 32), (128, 64, 32, 16), (128, 64, 64, 32), (128, 64, 64, 32, 32)],
    bn_order=["relu_bn"], age_activation=["relu"], dense_units=[1024], dropout=[0.4, 0.5, 0.7],
    optimizer=["rmsprop"], augment=[True], separate=[True])

GRID_COLUMNS = ("run", "seed", "split", "task", "metric", "value", "ci_low", "ci_high",
                "params", "seconds_per_epoch", "epochs")

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


def run_grid(configs: dict, train_df: pd.DataFrame, val_df: pd.DataFrame,
             test_df: pd.DataFrame | None, schemes, image_size, *, epochs: int, batch_size: int,
             seeds=(0,), build_fn=None, loss_weights: dict | None = None,
             output_dir: str | Path | None = None, early_stopping: int | None = 5,
             deterministic: bool = False, ci: float = 0.95, echo: bool = True) -> pd.DataFrame:
    """Train every configuration under every seed; score it on validation (and test). Lab 02.

    For each configuration (a dict of knobs, see :data:`DEFAULT_KNOBS`) and seed:
    ``fl.set_seed(seed)``, build the model with ``build_fn(knobs, schemes, input_shape)``
    (default :func:`build_custom_cnn`), compile it with ``fl.models.compile_for`` (the knobs
    ``optimizer``, ``learning_rate``, ``loss_weights``, else ``loss_weights``), train it with
    ``fl.train.fit`` (augmented when the knob ``augment`` is on; the learning rate decayed
    per epoch when the knob ``lr_schedule`` is ``"cosine"`` or ``"step"``; early stopping on
    the validation loss, best epoch restored), then score it on ``val_df`` and, only when
    ``test_df`` is given, on ``test_df``: ``fl.evaluate`` metrics per task (age in years), each
    head's ``loss`` (age: MSE on the scheme's scale) and the weighted total under task
    ``"all"``, the figure study C compares. Column ``split`` says which split a row is from.

    Choose configurations, epochs and thresholds on the ``"val"`` rows; pass ``test_df`` only
    for the final run of the chosen configuration, so the test split is touched once. Test
    rows carry a ``ci``-level percentile bootstrap interval over the test faces in ``ci_low``
    / ``ci_high`` (metrics that are a mean over faces; see ``fl.evaluate.evaluate``).

    ``separate=True`` trains one network per task and merges their rows into one run; its
    ``"all"`` loss is the same weighted sum, so it compares with a joint network's. ``params``
    counts trainable and frozen weights (summed over separate networks); ``seconds_per_epoch``
    is training wall time over epochs run (the first epoch includes graph tracing); ``epochs``
    is the number of epochs run. ``output_dir`` keeps each run's ``history.csv``, checkpoint
    and final state in ``<output_dir>/<run>/seed<seed>``: run the grid again after a crash or
    a disconnect and every (configuration, seed) run that had finished is skipped (its final
    weights are loaded and scored again), the interrupted one continues from its last saved
    epoch (``fl.train.fit``'s resume; ``params``, ``epochs`` and ``seconds_per_epoch`` count
    the earlier sessions too). A run whose knobs, seed, epochs, images or labels changed
    starts afresh, with a warning naming the change. ``None`` writes nothing.
    """
    from faceattr_lab import labels as labels_mod

    if not isinstance(configs, dict) or not configs:
        raise ValueError("configs must be a non-empty dict {run name: {knob: value}}; build "
                         "one with ablation_configs(base, knob=[values]).")
    for name, knobs in configs.items():
        _check_knobs(knobs, f"configs[{name!r}]")
        if knobs.get("lr_schedule") not in LR_SCHEDULES:
            raise ValueError(f"configs[{name!r}] has lr_schedule={knobs['lr_schedule']!r}; use "
                             f"one of {LR_SCHEDULES} (None: a constant rate).")
    seeds = [int(s) for s in ([seeds] if isinstance(seeds, int) else seeds)]
    if not seeds or min(seeds) < 0:
        raise ValueError(f"seeds={seeds!r}; pass non-negative ints, e.g. seeds=(0, 1, 2).")
    if val_df is None or len(val_df) == 0:
        raise ValueError("run_grid needs a validation split (val_df): configurations are chosen "
                         "on it; pass parts['val'] from fl.pipeline.split.")
    schemes = labels_mod.resolve(schemes)
    build_fn = build_fn or build_custom_cnn
    data = {"train": load_arrays(train_df, schemes, image_size),
            "val": load_arrays(val_df, schemes, image_size)}
    if test_df is not None:
        data["test"] = load_arrays(test_df, schemes, image_size)
    splits = [split for split in ("val", "test") if split in data]
    input_shape = data["train"][0].shape[1:]
    images_id = _arrays_digest(data) if output_dir is not None else None

    tables = []
    for name, knobs in configs.items():
        knobs = {**DEFAULT_KNOBS, "loss_weights": loss_weights, **knobs}
        weights = knobs["loss_weights"] or {}
        groups = [[s] for s in schemes] if knobs["separate"] else [schemes]
        for seed in seeds:
            parts, params, seconds, epochs_run, statuses = [], 0, 0.0, 0, set()
            total_loss = dict.fromkeys(splits, 0.0)
            for group in groups:
                out = None
                if output_dir is not None:
                    out = Path(output_dir) / name / f"seed{seed}"
                    if len(groups) > 1:
                        out = out / group[0].output
                result = _train_and_score(build_fn, knobs, group, data, splits, input_shape,
                                          seed, epochs, batch_size, early_stopping,
                                          deterministic, out, ci, images_id)
                table, losses, count, elapsed, ran, status = result
                parts.append(table)
                params += count
                seconds += elapsed
                epochs_run = max(epochs_run, ran)
                statuses.add(status)
                for split in splits:
                    total_loss[split] += sum(weights.get(s.output, 1.0) * losses[split][s.output]
                                             for s in group)
            totals = pd.DataFrame({"split": splits, "task": "all", "metric": "loss",
                                   "value": [total_loss[split] for split in splits]})
            table = pd.concat([*parts, totals], ignore_index=True)
            table = table.assign(run=name, seed=seed, params=params, epochs=epochs_run,
                                 seconds_per_epoch=seconds / max(epochs_run, 1))
            tables.append(table)
            if echo:  # validation only: test figures are read from the table, once
                note = "".join(f" ({status})" for status in sorted(statuses - {"new"}))
                print(f"{name} | seed {seed}: {epochs_run} epochs, "
                      f"{seconds / max(epochs_run, 1):.1f} s/epoch, "
                      f"val loss {total_loss['val']:.4f}{note}", flush=True)
    return pd.concat(tables, ignore_index=True).reindex(columns=list(GRID_COLUMNS))


def _arrays_digest(data: dict) -> str:
    """A cheap hash of a grid's data: every label, and every image of a regular sample of
    each split (about 256), with the shapes. Part of each run's resume fingerprint."""
    import hashlib

    h = hashlib.blake2b(digest_size=12)
    for split in sorted(data):
        images, targets = data[split]
        h.update(f"{split}{images.shape}{images.dtype}".encode())
        h.update(np.ascontiguousarray(images[:: max(1, len(images) // 256)]).tobytes())
        for output in sorted(targets):
            h.update(output.encode() + np.ascontiguousarray(targets[output]).tobytes())
    return h.hexdigest()


def _train_and_score(build_fn, knobs, schemes, data, splits, input_shape, seed, epochs,
                     batch_size, early_stopping, deterministic, output_dir, ci,
                     images_id=None):
    """One model: build, compile, fit (resumed or skipped as ``fl.train.fit`` decides when
    ``output_dir`` is set), score on each split. Returns (tidy rows with a split column,
    {split: {output: loss}}, params, training seconds, epochs run, resume status)."""
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

    train_ds = fl.pipeline.from_arrays(*subset("train"), batch_size, training=True,
                                       augment=knobs["augment"] or None, shuffle_seed=seed)
    # evaluation batches are larger (results do not depend on them): a small split is then
    # one batch, and Keras traces the predict and test functions once, not twice
    eval_batch = max(batch_size, EVAL_BATCH)
    eval_sets = {split: fl.pipeline.from_arrays(*subset(split), eval_batch) for split in splits}

    # the run's identity beyond what fit sees itself (model, starting weights, data shapes,
    # epochs): a changed knob, seed, batch size or image set starts it afresh
    # (lr_schedule=None is left out, so checkpoints made before that knob existed stay valid)
    run_id = {"knobs": {k: v for k, v in knobs.items() if not (k == "lr_schedule" and v is None)},
              "heads": [s.output for s in schemes], "seed": seed,
              "batch_size": batch_size, "deterministic": deterministic, "images": images_id}
    start = time.perf_counter()
    history = fl.train.fit(model, train_ds, eval_sets["val"], epochs=epochs,
                           output_dir=output_dir, early_stopping=early_stopping,
                           lr_schedule=knobs["lr_schedule"], fingerprint=run_id, verbose=0)
    info = history.resume_info   # a resumed or skipped run counts its earlier sessions
    elapsed = time.perf_counter() - start + info["seconds_before"]
    ran = info["initial_epoch"] + len(history.epoch)

    tables, losses = [], {}
    for split in splits:
        predictions = fl.evaluate.predict(model, eval_sets[split], schemes)
        table = fl.evaluate.evaluate(predictions, schemes, run="",
                                     ci=ci if split == "test" else None, seed=seed)
        scores = model.evaluate(eval_sets[split], return_dict=True, verbose=0)
        if len(schemes) == 1:
            losses[split] = {schemes[0].output: float(scores["loss"])}
        else:
            losses[split] = {s.output: float(scores[f"{s.output}_loss"]) for s in schemes}
        head_losses = pd.DataFrame({"task": list(losses[split]), "metric": "loss",
                                    "value": list(losses[split].values())})
        tables.append(pd.concat([table.drop(columns="run"), head_losses],
                                ignore_index=True).assign(split=split))
    params = fl.models.count_params(model)["total"]
    return (pd.concat(tables, ignore_index=True), losses, params, elapsed, ran,
            info["status"])


def compare_on_validation(grid: pd.DataFrame, a: str, b: str, task: str = "all",
                          metric: str = "loss", confidence: float = 0.95) -> dict:
    """Configuration ``a`` minus ``b`` on the validation rows of a grid, paired by seed. Lab 02.

    Takes the seeds both runs share (``fl.evaluate.paired_difference``): the mean difference,
    its std over seeds and a t-interval; ``real`` is True only when the interval excludes 0.
    """
    from faceattr_lab import evaluate

    rows = grid[(grid["split"] == "val") & (grid["task"] == task) & (grid["metric"] == metric)]
    values = rows.pivot_table(index="seed", columns="run", values="value")
    missing = [run for run in (a, b) if run not in values.columns]
    if missing:
        raise ValueError(f"no validation {task} {metric} for {missing}; the grid has "
                         f"{sorted(values.columns)}.")
    paired = values[[a, b]].dropna()
    if len(paired) < 2:
        raise ValueError(f"{a!r} and {b!r} share {len(paired)} seed(s); run both under the "
                         "same seeds (at least 2, better 3 or more) to compare them.")
    result = evaluate.paired_difference(paired[a], paired[b], confidence=confidence)
    return {"a": a, "b": b, "task": task, "metric": metric,
            "seeds": [int(seed) for seed in paired.index], **result}


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


CV_COLUMNS = ("run", "test", "fold", "task", "metric", "value")


class CrossValidation(NamedTuple):
    """What :func:`cross_validate` returns: ``table, summary, predictions = cv``. Lab 04."""

    table: pd.DataFrame        # tidy: run, test, fold, task, metric, value (a row per fold x metric)
    summary: pd.DataFrame      # fl.evaluate.summarize over folds: mean, std, n, "mean ± std"
    predictions: pd.DataFrame  # every test image once per test: fl.evaluate.predict + metadata


def cross_validate(df: pd.DataFrame, schemes, build_fn, *, image_size, epochs: int,
                   batch_size: int, crop=None, seed: int = 0, folds=None, val_fold=None,
                   early_stopping: int | None = None, augment=False, oversample: bool = False,
                   optimizer="adam", learning_rate: float | None = 1e-3, run: str = "cv",
                   missing: str = "raise", cache: bool = False, rebuild: bool = False,
                   summary_metrics=("accuracy", "one_off_accuracy"),
                   output_dir: str | Path | None = None, echo: bool = True) -> CrossValidation:
    """Adience's k-fold protocol: one model per test fold, metrics per fold, mean ± std. Lab 04.

    Levi & Hassner (2015), "Age and Gender Classification using Convolutional Neural
    Networks", CVPR Workshops (AMFG), report exact and 1-off accuracy as mean ± std over
    Adience's five subject-exclusive folds. For each test fold ``f`` (``folds``, default every
    value of ``df["fold"]``), ``fl.pipeline.adience_folds`` cuts the table: ``fl.set_seed(seed)``,
    ``model = build_fn(input_shape, schemes)`` (compiled with ``fl.models.compile_for``
    (``optimizer``, ``learning_rate``) unless it comes compiled), ``fl.train.fit`` for
    ``epochs`` on the other folds (``fl.pipeline.make_dataset(..., image_size, crop,
    training=True, augment, shuffle_seed=seed)``: a random crop and flip when ``crop`` is
    set), then ``fl.evaluate.predict`` on fold ``f``: the centre crop, and with
    ``oversample=True`` also the 10-crop average of ``fl.evaluate.predict_oversampled`` (both
    from one pass; the ``test`` column says which: "centre crop" or "over-sampled").

    ``missing="mask"`` keeps rows that lack some scheme's label (a multi-task model then learns
    each head from the rows that have its label; see ``fl.pipeline.make_dataset``);
    ``cache=True`` keeps each fold's decoded images in memory after the first epoch.

    The model is built once: before each later fold its starting weights, its optimizer's
    state (slots, iteration count) and its random generators (dropout, augmentation layers)
    are put back as they were after ``fl.set_seed(seed)`` and ``build_fn``, so each fold
    starts exactly as a freshly built model would, without tracing the training and
    prediction steps again (about 1.7 s of a small model's CPU time per fold).
    ``rebuild=True`` calls ``build_fn`` for every fold instead (the same numbers, slower; a
    ``build_fn`` whose model depends on the fold needs it).

    ``val_fold``: ``None`` (the paper: no validation), ``"next"`` (the fold after the test
    fold, cyclically) or a function ``test_fold -> fold``; the validation fold is taken out
    of the training folds and is never the test fold. ``early_stopping`` (patience) needs one.

    Returns :class:`CrossValidation`: ``table`` (``run``, ``test``, ``fold``, ``task``, ``metric``,
    ``value`` from ``fl.evaluate.evaluate``: accuracy and, for ordered age groups,
    ``one_off_accuracy``), ``summary`` (``fl.evaluate.summarize`` over folds of the
    ``summary_metrics``; ``None`` for every metric) and ``predictions`` (one row per image of
    the table and test, each predicted by the model that did not train on its fold; with
    ``test``, ``path``, ``fold`` and ``user_id`` where present). ``output_dir`` keeps each fold's
    ``history.csv``, checkpoint and final state under ``<output_dir>/fold<f>``: run again
    after a crash, finished folds are loaded instead of trained and an interrupted one
    continues (``fl.train.fit``'s resume; a changed seed, fold split or setting starts afresh).
    """
    import faceattr_lab as fl
    from faceattr_lab import evaluate, models, pipeline, train
    from faceattr_lab import labels as labels_mod

    if "fold" not in df.columns:
        raise ValueError("cross_validate needs a 'fold' column (Adience's folds); load the "
                         "table with fl.datasets.load('adience').")
    all_folds = sorted(int(f) for f in df["fold"].dropna().unique())
    folds = all_folds if folds is None else [int(f) for f in folds]
    if len(all_folds) < 2 or not folds or set(folds) - set(all_folds):
        raise ValueError(f"folds={folds}; pick test folds among the table's folds {all_folds} "
                         "(at least two folds are needed).")
    if val_fold is not None and val_fold != "next" and not callable(val_fold):
        raise ValueError(f"val_fold={val_fold!r}; pass None, 'next' or a function "
                         "test_fold -> validation fold.")
    if early_stopping is not None and val_fold is None:
        raise ValueError("early_stopping needs a validation fold; pass val_fold='next' (or "
                         "early_stopping=None, the paper's protocol).")
    if oversample and crop is None:
        raise ValueError("oversample=True averages 10 crops; pass crop, e.g. image_size=256, "
                         "crop=227.")
    schemes = labels_mod.resolve(schemes)
    crop_size = None if crop is None else pipeline._crop_size(crop, pipeline._size(image_size))
    input_shape = (*(crop_size or pipeline._size(image_size)), 3)
    metadata_columns = [c for c in ("path", "fold", "user_id") if c in df.columns]

    tables, predictions, start = [], [], None
    for test_fold in folds:
        if val_fold is None:
            held_out = None
        elif val_fold == "next":
            held_out = all_folds[(all_folds.index(test_fold) + 1) % len(all_folds)]
        else:
            held_out = int(val_fold(test_fold))
        parts = pipeline.adience_folds(df, test_fold, held_out)
        # seeded before the datasets: tf.data's shuffle and random seeds pair their own seed
        # with the global one, so a fold's batches must not depend on what ran before
        fl.set_seed(seed)
        train_ds = pipeline.make_dataset(parts["train"], schemes, image_size, batch_size,
                                         training=True, augment=augment or None,
                                         shuffle_seed=seed, crop=crop, missing=missing,
                                         cache=cache)
        eval_batch = max(batch_size, EVAL_BATCH)
        val_ds = (pipeline.make_dataset(parts["val"], schemes, image_size, eval_batch,
                                        crop=crop, missing=missing, cache=cache)
                  if held_out is not None else None)
        test_ds = pipeline.make_dataset(parts["test"], schemes, image_size, eval_batch,
                                        crop=None if oversample else crop, missing=missing)

        fl.set_seed(seed)  # again: the model's weights and generators start from the seed
        if rebuild or start is None:
            model = build_fn(input_shape, schemes)
            if not getattr(model, "compiled", False):
                models.compile_for(model, schemes, optimizer=optimizer,
                                   learning_rate=learning_rate)
            if not rebuild:  # the state every later fold starts from
                train.build_for_training(model, train_ds)
                start = _training_state(model)
        else:
            _restore_training_state(model, start)
        out = None if output_dir is None else Path(output_dir) / f"fold{test_fold}"
        fold_id = {"seed": seed, "test_fold": test_fold, "val_fold": held_out,
                   "train_faces": pd.util.hash_pandas_object(
                       parts["train"]["path"].astype(str), index=False).sum().item(),
                   "image_size": image_size, "crop": crop, "augment": augment,
                   "missing": missing}
        history = train.fit(model, train_ds, val_ds, epochs=epochs, output_dir=out,
                            early_stopping=early_stopping, fingerprint=fold_id, verbose=0)
        metadata = parts["test"][metadata_columns].reset_index(drop=True)
        if oversample:
            over_sampled, centre = evaluate.predict_oversampled(
                model, test_ds, schemes, crop=crop, metadata=metadata, centre=True)
            tests = {"centre crop": centre, "over-sampled": over_sampled}
        else:
            tests = {"centre crop": evaluate.predict(model, test_ds, schemes,
                                                     metadata=metadata)}
        for test, fold_predictions in tests.items():
            table = evaluate.evaluate(fold_predictions, schemes, run=run)
            tables.append(table[["run", "task", "metric", "value"]].assign(fold=test_fold,
                                                                           test=test))
            predictions.append(fold_predictions.assign(test=test))
        if echo:
            accuracy = table[table["metric"] == "accuracy"]
            scores = ", ".join(f"{t} accuracy {v:.3f}" for t, v in zip(accuracy["task"],
                                                                       accuracy["value"]))
            print(f"{run} | test fold {test_fold} (val fold {held_out}): "
                  f"{len(history.epoch)} epochs, {scores} ({test})", flush=True)

    table = pd.concat(tables, ignore_index=True)[list(CV_COLUMNS)]
    chosen = table if summary_metrics is None else \
        table[table["metric"].isin(list(summary_metrics))]
    summary = evaluate.summarize(chosen, by=("run", "test", "task", "metric"), over="fold")
    return CrossValidation(table, summary, pd.concat(predictions, ignore_index=True))


def _training_state(model) -> list:
    """A model's weights, optimizer variables and random-generator states, as arrays."""
    from faceattr_lab import train

    variables = [*model.weights, *model.optimizer.variables, *train._seed_states(model)]
    return [(v, np.array(v.numpy(), copy=True)) for v in variables]


def _restore_training_state(model, state: list) -> None:
    """Put back what :func:`_training_state` read (early stopping may also have swapped
    weights: every variable is assigned, none is rebuilt)."""
    for variable, value in state:
        variable.assign(value)


__all__ = ["MODEL_KNOBS", "TRAIN_KNOBS", "DEFAULT_KNOBS", "LR_SCHEDULES", "STUDY_C_ABLATIONS",
           "GRID_COLUMNS",
           "config_name", "compare_on_validation",
           "ablation_configs", "build_custom_cnn", "load_arrays", "run_grid",
           "cross_validate", "CrossValidation", "CV_COLUMNS"]
