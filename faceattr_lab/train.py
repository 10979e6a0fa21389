"""Training: ``fit`` with sensible callbacks, checkpoint-and-resume, SupCon phases, scale-out.

- :func:`fit` wraps ``model.fit`` with early stopping (best weights restored), an optional
  step or cosine learning-rate decay, a CSV history, optional TensorBoard logs, quiet line-based
  logging under papermill / CI, and **resume**: run the same cell again with the same
  ``output_dir`` after a crash or a Colab disconnect and training continues from the last
  completed epoch with weights, optimizer, epoch counter, early-stopping state, dropout and
  augmentation RNG state and the dataset's shuffle position restored.
- :func:`fit_supcon` runs the SupCon study's phases (contrastive pre-training, classifier on the
  frozen encoder, optional fine-tuning after re-compiling).
- :func:`with_strategy` / ``fit(..., strategy=...)`` build and train under a
  ``tf.distribute`` strategy; :func:`enable_mixed_precision_if_gpu` switches on float16.

Resume is exact on one device (same seed, CPU): the resumed run ends with the same weights as
an uninterrupted one (``tests/test_train.py`` checks bit equality). What makes that true:

* Keras' ``BackupAndRestore`` saves weights, optimizer variables and the epoch number;
  this module also saves every ``SeedGenerator`` state (dropout, random augmentation layers)
  and the early-stopping state (``wait``, ``best``, best weights), which Keras does not.
* A ``tf.data`` shuffle with ``reshuffle_each_iteration`` draws a new order each time an
  iterator is created, counting from the dataset's seed. ``fit`` counts the iterators Keras
  creates over the training set and stores that count; on resume it creates (and drops) the
  same number of iterators before training, so epoch *k* sees the order it would have seen.
  This needs the dataset to be built the same way after ``fl.set_seed(SEED)`` (the kit's
  pipeline does), and any randomness inside its ``map`` functions to be seeded per iterator
  (tf.data re-creates such ops with each iterator). Under a multi-device strategy the input
  is re-sharded and the order is not guaranteed.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import warnings
from pathlib import Path

import keras
import numpy as np

from faceattr_lab.config import QUIET_ENV

LR_SCHEDULES = (None, "step", "cosine")
_BACKUP = "backup"
_STATE_FILE = "extra_state.npz"


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------
def _in_notebook_kernel() -> bool:
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") \
        else None
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def quiet_logging() -> bool:
    """True when progress bars should give way to one log line per epoch. Lab 00.

    Quiet under ``FACEATTR_LAB_QUIET=1`` (the kit's runner sets it for papermill), ``CI``,
    ``PAPERMILL_EXECUTION``, or when stdout is not a terminal outside a notebook kernel.
    """
    flag = os.environ.get(QUIET_ENV, "").strip().lower()
    if flag in ("1", "true", "yes"):
        return True
    if flag in ("0", "false", "no"):
        return False
    if os.environ.get("CI") or os.environ.get("PAPERMILL_EXECUTION"):
        return True
    if _in_notebook_kernel():
        return False
    try:
        return not sys.stdout.isatty()
    except (AttributeError, ValueError):
        return True


def resolve_verbose(verbose="auto") -> int:
    """Keras ``verbose`` for ``fit``: ``"auto"`` gives 1 (bars) or 2 (line per epoch). Lab 00."""
    if verbose == "auto":
        return 2 if quiet_logging() else 1
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 'auto', 0, 1 or 2, got {verbose!r}.")
    return verbose


def enable_mixed_precision_if_gpu() -> bool:
    """Use the ``mixed_float16`` policy when TensorFlow sees a GPU; return whether it did. Lab 03.

    Call it before building the model. The kit's losses compute in float32 either way.
    """
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        keras.mixed_precision.set_global_policy("mixed_float16")
        return True
    return False


def with_strategy(strategy, build_fn):
    """Build (and compile) a model inside ``strategy.scope()``; returns ``build_fn()``. Lab 03.

    ``build_fn`` takes no argument and returns a compiled model; variables created in the
    scope are mirrored across the strategy's devices.
    """
    if not callable(build_fn):
        raise ValueError("build_fn must be a function that builds and compiles the model.")
    if strategy is None:
        return build_fn()
    with strategy.scope():
        return build_fn()


def lr_schedule_fn(kind, base_lr: float, epochs: int, *, drop: float = 0.5,
                   every: int = 10, min_lr: float = 0.0, warmup: int = 0):
    """Learning rate per epoch: ``"step"`` (``base * drop**(epoch // every)``) or ``"cosine"``
    (from ``base`` to ``min_lr`` over ``epochs``, after ``warmup`` linear epochs). Lab 02."""
    if kind == "step":
        if every < 1 or not 0 < drop <= 1:
            raise ValueError("step decay needs every >= 1 and 0 < drop <= 1.")
        return lambda epoch: base_lr * drop ** (epoch // every)
    if kind == "cosine":
        def cosine(epoch):
            if epoch < warmup:
                return base_lr * (epoch + 1) / (warmup + 1)
            progress = (epoch - warmup) / max(1, epochs - warmup)
            return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * min(progress, 1)))
        return cosine
    raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {kind!r}.")


# --------------------------------------------------------------------------------------------
# Resumable callbacks
# --------------------------------------------------------------------------------------------
class _IteratorCount:
    """Counts iterators created over the training dataset (each one draws a new shuffle)."""

    def __init__(self, start: int = 0):
        self.value = start


def _counting(dataset, counter: _IteratorCount):
    """A no-op view of ``dataset`` (``take(-1)``) whose every ``iter()`` is counted."""
    view = dataset.take(-1)
    base = type(view)

    def __iter__(self):
        counter.value += 1
        return base.__iter__(self)

    view.__class__ = type(f"Counted{base.__name__}", (base,), {"__iter__": __iter__})
    return view


def _seed_states(model):
    """The ``SeedGenerator`` state variables of a model (dropout, random augmentation)."""
    weight_ids = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weight_ids]


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """``EarlyStopping`` whose state (patience count, best value, best weights) survives a
    restart: :class:`ResumableBackup` saves and restores it. Lab 02."""

    _pending = None

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self._pending is not None:
            state, self._pending = self._pending, None
            self.wait, self.best_epoch = int(state["wait"]), int(state["best_epoch"])
            self.best = None if np.isnan(state["best"]) else float(state["best"])
            if state["best_weights"]:
                self.best_weights = list(state["best_weights"])

    def state(self) -> dict:
        return {"wait": self.wait, "best_epoch": self.best_epoch,
                "best": np.nan if self.best is None else float(self.best),
                "best_weights": list(self.best_weights or [])}


class ResumableBackup(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` that also keeps what it misses: RNG (``SeedGenerator``) states, the
    early-stopping state and how many dataset iterators the run created. Lab 02."""

    def __init__(self, backup_dir, early_stopping=None, iterator_count=None):
        super().__init__(backup_dir, save_freq="epoch", double_checkpoint=True)
        self.early_stopping = early_stopping
        self.iterator_count = iterator_count
        self._state_path = os.path.join(backup_dir, _STATE_FILE)

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        arrays = {"epoch": np.int64(self._current_epoch),
                  "iterators": np.int64(self.iterator_count.value if self.iterator_count else 0)}
        for i, variable in enumerate(_seed_states(self.model)):
            arrays[f"rng_{i}"] = keras.ops.convert_to_numpy(variable)
        if self.early_stopping is not None:
            es = self.early_stopping.state()
            arrays.update(es_wait=es["wait"], es_best_epoch=es["best_epoch"], es_best=es["best"])
            for i, weight in enumerate(es["best_weights"]):
                arrays[f"es_weight_{i}"] = weight
        tmp = self._state_path + ".tmp.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, self._state_path)   # written first, atomically; epoch-tagged
        super()._save_model()

    def _load_model(self):
        super()._load_model()
        if not os.path.exists(self._state_path):
            return
        with np.load(self._state_path) as state:
            state = dict(state)
        if int(state["epoch"]) != getattr(self.model, "_initial_epoch", None):
            warnings.warn("The RNG / early-stopping backup does not match the weights' epoch "
                          "(interrupted while saving); resuming without it.", stacklevel=2)
            return
        for i, variable in enumerate(_seed_states(self.model)):
            if f"rng_{i}" in state:
                variable.assign(state[f"rng_{i}"])
        if self.early_stopping is not None and "es_wait" in state:
            n = sum(key.startswith("es_weight_") for key in state)
            self.early_stopping._pending = {
                "wait": state["es_wait"], "best_epoch": state["es_best_epoch"],
                "best": state["es_best"],
                "best_weights": [state[f"es_weight_{i}"] for i in range(n)]}


def _backup_state(backup_dir: Path) -> tuple[int, int]:
    """(completed epochs, dataset iterators created) recorded in a backup, or (0, 0)."""
    meta, extra = backup_dir / "training_metadata.json", backup_dir / _STATE_FILE
    if not meta.exists():
        return 0, 0
    epoch = int(json.loads(meta.read_text())["epoch"])
    iterators = 0
    if extra.exists():
        with np.load(extra) as state:
            if int(state["epoch"]) == epoch:
                iterators = int(state["iterators"])
    return epoch, iterators


def _truncate_csv(path: Path, epochs_done: int) -> None:
    """Keep the CSV rows of the epochs the backup holds (a crash may leave one extra)."""
    if not path.exists():
        return
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    header, body = rows[0], rows[1:]
    kept = [row for row in body if row and int(float(row[0])) < epochs_done]
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([header, *kept])


# --------------------------------------------------------------------------------------------
# fit
# --------------------------------------------------------------------------------------------
def build_for_training(model, train_ds) -> None:
    """Create the optimizer's slots and the compiled loss and metrics before ``fit``. Lab 02.

    Keras creates all three lazily, inside the first trace of the training step; a ``tf.function``
    that creates variables is traced twice, so building them first halves the graph-building
    time of every new model (about 2 s of CPU per small model on 2 cores). Loss and metrics are
    built by one eager ``compute_loss`` / ``compute_metrics`` on a zero batch of one image in
    inference mode, so no weight, statistic or random state changes; Keras resets the metrics
    at the start of each epoch.
    Does nothing for an optimizer that is already built (a model trained before).
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or getattr(optimizer, "built", True):
        return
    spec = getattr(train_ds, "element_spec", None)
    if spec is None or not isinstance(spec, tuple) or len(spec) < 2:
        return  # not a tf.data (images, labels) pipeline: leave it to Keras
    import tensorflow as tf

    def zeros(s):
        shape = [1, *s.shape[1:]]
        if None in shape:
            raise LookupError
        return tf.zeros(shape, s.dtype)

    try:
        x, y = tf.nest.map_structure(zeros, spec[0]), tf.nest.map_structure(zeros, spec[1])
    except (LookupError, AttributeError, TypeError):
        return  # a ragged or unknown-shaped input: Keras builds lazily as usual
    with model.distribute_strategy.scope():
        optimizer.build(model.trainable_variables)
        try:
            y_pred = model(x, training=False)
            model.compute_loss(x=x, y=y, y_pred=y_pred)
            model.compute_metrics(x, y, y_pred, sample_weight=None)
        except Exception:  # noqa: BLE001 - only a speed-up: a loss that rejects a zero batch
            pass           # is built by Keras inside the trace, as without this function


def with_class_weights(dataset, class_weight: dict):
    """``(x, y)`` batches -> ``(x, y, sample_weight)`` with per-output class weights. Lab 02.

    ``class_weight`` is ``{output: {class index: weight}}`` (``fl.pipeline.class_weights``
    gives the inner dict); each label of a named output becomes the weight of its class (1 for
    a class not in the dict), every other output gets weight 1. What :func:`fit` does with its
    ``class_weight`` argument.
    """
    import tensorflow as tf

    spec = getattr(dataset, "element_spec", None)
    if not isinstance(dataset, tf.data.Dataset) or not isinstance(spec, tuple):
        raise ValueError("class_weight needs a tf.data pipeline of (images, labels) batches "
                         "(fl.pipeline.make_dataset); pass sample weights yourself otherwise.")
    if len(spec) != 2:
        raise ValueError("the training pipeline yields sample weights already; drop "
                         "class_weight, or build the pipeline without sample weights.")
    if not isinstance(spec[1], dict):
        raise ValueError("class_weight needs labels as a dict {output: labels}, as the kit's "
                         "pipeline yields them.")
    if not isinstance(class_weight, dict) or not all(
            isinstance(w, dict) for w in class_weight.values()):
        raise ValueError("class_weight must be {output: {class index: weight}}, e.g. "
                         f"{{{next(iter(spec[1]))!r}: fl.pipeline.class_weights(labels)}}; "
                         f"got {class_weight!r}.")
    unknown = sorted(set(class_weight) - set(spec[1]))
    if unknown:
        raise ValueError(f"class_weight names {unknown}, which the labels do not have; use "
                         f"keys from {sorted(spec[1])}.")
    tables = {}
    for output, weights in class_weight.items():
        if not spec[1][output].dtype.is_integer:
            raise ValueError(f"class_weight[{output!r}] needs int class labels, but the "
                             f"{output!r} labels are {spec[1][output].dtype.name}; use "
                             "sample weights for regression targets.")
        shape = spec[1][output].shape
        if shape.rank is not None and (shape.rank > 2 or (shape.rank == 2
                                                          and shape[-1] not in (1, None))):
            raise ValueError(f"class_weight[{output!r}] needs one class index per sample; the "
                             f"labels have shape {shape} (one-hot?). Use sparse labels.")
        if any(int(c) != c or c < 0 for c in weights):
            raise ValueError(f"class_weight[{output!r}] keys must be class indices >= 0, got "
                             f"{sorted(weights)}.")
        if weights:
            table = np.ones(int(max(weights)) + 1, "float32")
            for c, w in weights.items():
                table[int(c)] = float(w)
            tables[output] = tf.constant(table)

    def weigh(images, labels):
        weights = {}
        for output, y in labels.items():
            batch = tf.shape(y)[0]
            if output not in tables:
                weights[output] = tf.ones([batch], tf.float32)
                continue
            table = tables[output]
            y = tf.reshape(tf.cast(y, tf.int64), [batch, -1])[:, 0]
            size = table.shape[0]
            known = (y >= 0) & (y < size)   # classes outside the dict weigh 1
            weights[output] = tf.where(known, tf.gather(table, tf.clip_by_value(y, 0, size - 1)),
                                       tf.ones_like(y, tf.float32))
        return images, labels, weights

    return dataset.map(weigh, num_parallel_calls=tf.data.AUTOTUNE)


def fit(model, train_ds, val_ds=None, epochs: int = 10, output_dir=None, *,
        early_stopping: int | None = 5, monitor: str | None = None,
        lr_schedule: str | None = None, lr_params: dict | None = None, csv: bool = True,
        tensorboard: bool = False, resume: bool = True, class_weight=None, verbose="auto",
        callbacks=(), strategy=None) -> keras.callbacks.History:
    """Train a compiled model with the kit's callbacks; resumable. Lab 02.

    - ``model``: a compiled Keras model, or a function that builds and compiles one (built
      under ``strategy.scope()`` when ``strategy`` is given).
    - ``early_stopping``: patience in epochs on ``monitor`` (``"val_loss"`` with validation
      data, else ``"loss"``), best weights restored at the end; ``None`` disables it.
    - ``lr_schedule``: ``None``, ``"step"`` or ``"cosine"`` with ``lr_params`` passed to
      :func:`lr_schedule_fn` (e.g. ``{"drop": 0.5, "every": 10}``); the base rate is the
      compiled optimizer's.
    - ``output_dir``: where ``history.csv``, ``backup/`` and ``logs/`` (TensorBoard) go. With
      ``resume=True``, a backup left there by an interrupted run is picked up (that run's
      epochs are not repeated); ``resume=False`` discards it and starts afresh.
    - ``class_weight``: ``{output: {class index: weight}}``, e.g.
      ``{"race": fl.pipeline.class_weights(race_labels)}``. Keras 3 takes ``class_weight``
      for single-output models only and the kit's labels are always a dict, so ``fit`` maps
      each training batch's labels to per-output sample weights in the ``tf.data`` pipeline
      (yielding ``(images, labels, {output: weights})``): a sample of class ``c`` weighs
      ``class_weight[output][c]``; a class missing from the dict and every output not named
      weigh 1 (as Keras' own ``class_weight``). Keras' losses then average ``weight * loss``
      over the batch. Training only: validation losses stay unweighted. A pipeline that
      yields sample weights already cannot take class weights too (``ValueError``).
    - ``verbose="auto"``: progress bars in a notebook, one line per epoch under papermill / CI.
    Returns the Keras ``History`` of the epochs run by this call.
    """
    if strategy is not None and not isinstance(model, keras.Model):
        model = with_strategy(strategy, model)
    elif not isinstance(model, keras.Model):
        if not callable(model):
            raise ValueError("model must be a compiled keras.Model or a function building one.")
        model = model()
    if strategy is not None and getattr(model, "distribute_strategy", strategy) is not strategy:
        raise ValueError("The model was not built under this strategy: pass a build function "
                         "(fit(build_fn, ..., strategy=s)) or build it in with_strategy(s, fn).")
    if getattr(model, "optimizer", None) is None or not getattr(model, "compiled", True):
        raise ValueError("Compile the model first (fl.models.compile_for or model.compile).")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}.")
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {lr_schedule!r}.")
    monitor = monitor or ("val_loss" if val_ds is not None else "loss")
    if class_weight is not None:
        train_ds = with_class_weights(train_ds, class_weight)

    out = Path(output_dir).expanduser() if output_dir is not None else None
    all_callbacks = []
    es = None
    if early_stopping is not None:
        es = ResumableEarlyStopping(monitor=monitor, patience=int(early_stopping),
                                    restore_best_weights=True, verbose=0)

    epochs_done, iterators_done, counter = 0, 0, None
    is_tf_data = type(train_ds).__module__.startswith("tensorflow")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        backup_dir = out / _BACKUP
        if not resume and backup_dir.exists():
            import shutil

            shutil.rmtree(backup_dir)
        epochs_done, iterators_done = _backup_state(backup_dir)
        if is_tf_data:
            # Replay the shuffles the finished epochs drew, then count the new ones.
            for _ in range(iterators_done):
                iter(train_ds)
            counter = _IteratorCount(iterators_done)
            train_ds = _counting(train_ds, counter)
        all_callbacks.append(ResumableBackup(str(backup_dir), es, counter))
        if csv:
            history_csv = out / "history.csv"
            if epochs_done:
                _truncate_csv(history_csv, epochs_done)
            all_callbacks.append(keras.callbacks.CSVLogger(str(history_csv),
                                                           append=epochs_done > 0))
        if tensorboard:
            all_callbacks.append(keras.callbacks.TensorBoard(log_dir=str(out / "logs")))
    elif tensorboard:
        raise ValueError("tensorboard=True needs an output_dir for its logs.")
    if es is not None:
        all_callbacks.append(es)
    if lr_schedule is not None:
        base_lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
        schedule = lr_schedule_fn(lr_schedule, base_lr, epochs, **(lr_params or {}))
        all_callbacks.append(keras.callbacks.LearningRateScheduler(schedule))
    all_callbacks.extend(callbacks)

    if epochs_done >= epochs:
        warnings.warn(f"{out} holds a finished backup of {epochs_done} epochs; nothing to run. "
                      "Pass resume=False to train again.", stacklevel=2)
    build_for_training(model, train_ds)
    return model.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=all_callbacks,
                     verbose=resolve_verbose(verbose),
                     shuffle=False)  # a tf.data pipeline shuffles itself (seeded, per epoch)


# --------------------------------------------------------------------------------------------
# SupCon phases
# --------------------------------------------------------------------------------------------
def two_views(dataset, augment):
    """Each batch twice, stacked on the batch axis (2B samples, labels tiled). Lab 05.

    ``augment`` (a function or Keras layer on an image batch, random) is applied to each copy
    separately, giving Khosla et al.'s two augmented views of every image. SupCon on the
    stacked batch equals SupCon on (B, 2, D) views (see ``fl.losses.supcon_loss``).
    """
    import tensorflow as tf

    if augment is None or not callable(augment):
        raise ValueError("two_views needs augment (a random augmentation function or Keras "
                         "layer): two identical copies are not two views.")

    def stack(images, labels):
        first = augment(images)
        second = augment(images)
        tiled = tf.nest.map_structure(lambda y: tf.concat([y, y], axis=0), labels)
        return tf.concat([first, second], axis=0), tiled

    return dataset.map(stack, num_parallel_calls=tf.data.AUTOTUNE)


def _one_view(dataset, augment):
    """Each batch augmented once (``augment`` on the images, labels unchanged)."""
    import tensorflow as tf

    return dataset.map(lambda images, labels: (augment(images), labels),
                       num_parallel_calls=tf.data.AUTOTUNE)


def _phase_dir(output_dir, name):
    return None if output_dir is None else Path(output_dir).expanduser() / name


def fit_supcon(encoder, schemes, train_ds, val_ds=None, *, epochs_pretrain: int,
               epochs_classifier: int, epochs_finetune: int = 0, temperature: float = 0.1,
               variant: str = "supcon", loss_weight: float = 0.1, views: int = 1,
               augment=None, projection_dim: int = 128, projection_head: str = "keras_io",
               hidden: int = 512,
               dropout: float = 0.5, learning_rate: float = 1e-3,
               finetune_learning_rate: float = 1e-4, output_dir=None,
               early_stopping: int | None = 5, verbose="auto") -> dict:
    """The SupCon study's training (Khosla et al. 2020, multi-output as in ltkhang's study). Lab 05.

    1. ``pretrain``: encoder + one projection head per scheme, a SupCon loss per output with
       weight ``loss_weight`` (the study: 0.1). ``views=2`` is Khosla et al.'s setup: two
       augmented views of each image (:func:`two_views`), so ``augment`` (a random
       augmentation function or Keras layer on an image batch) is required (``ValueError``
       otherwise: two identical copies are not two views). ``views=1`` is the keras.io
       example's setup (study A): one view per image, augmented by ``augment`` if given, else
       only by random layers inside the encoder. ``projection_head``: "keras_io" (``Dense(
       projection_dim, relu)``, the keras.io example's head, which study A used) or
       "supcontrast" (Khosla et al.'s MLP head, linear then L2-normalised); see
       ``fl.models.supcon.projection_model``.
       The validation loss is computed on ONE un-augmented view of each validation image.
       Two identical copies would give every anchor its own copy as a positive at cosine 1
       (and in the denominator), adding a label-free instance-discrimination term; one view
       keeps exactly the supervised term (same-label samples as positives), on deterministic
       inputs, so it is comparable from epoch to epoch. It is on a different scale from the
       training loss (B anchors, no augmented twin): compare val_loss with itself only.
    2. ``classifier``: softmax heads on the FROZEN encoder, cross-entropy.
    3. ``finetune`` (if ``epochs_finetune``): the encoder unfrozen and the model RE-COMPILED
       (the study set ``trainable=True`` without re-compiling, so its encoder stayed frozen)
       at ``finetune_learning_rate``.
    Each phase checkpoints in its own folder under ``output_dir`` and resumes like :func:`fit`.
    Returns ``{"pretrain": History, "classifier": History, "finetune": History | None,
    "model": classifier model}``.
    """
    from faceattr_lab import losses
    from faceattr_lab.models import supcon as supcon_models

    schemes = list(schemes)
    bad = [s.name for s in schemes if getattr(s, "kind", "classification") != "classification"]
    if bad:
        raise ValueError(f"SupCon needs classification schemes; {bad} are not. Use the "
                         "classification version of the scheme (e.g. age bins).")
    if views not in (1, 2):
        raise ValueError(f"views must be 1 or 2, got {views!r}.")
    if augment is not None and not callable(augment):
        raise ValueError(f"augment must be a function or Keras layer on an image batch, got "
                         f"{augment!r}.")
    if views == 2 and augment is None:
        raise ValueError("views=2 without augment would train on two identical copies of each "
                         "image, not Khosla et al.'s two augmented views: pass augment=... (e.g. "
                         "a keras.Sequential of RandomFlip/RandomTranslation/RandomZoom), or "
                         "use views=1.")
    outputs = [s.output for s in schemes]

    projector = supcon_models.projection_model(encoder, schemes, dim=projection_dim,
                                               head=projection_head)
    loss, loss_weights = losses.supcon_losses(schemes, weights=loss_weight,
                                              temperature=temperature, variant=variant)
    projector.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss,
                      loss_weights=loss_weights)
    if views == 2:
        pretrain_ds = two_views(train_ds, augment)
    else:
        pretrain_ds = _one_view(train_ds, augment) if augment is not None else train_ds
    pretrain_val = val_ds   # one un-augmented view per image (see the docstring)
    histories = {"pretrain": fit(projector, pretrain_ds, pretrain_val, epochs_pretrain,
                                 _phase_dir(output_dir, "pretrain"),
                                 early_stopping=early_stopping, verbose=verbose)}

    classifier = supcon_models.classifier_model(encoder, schemes, hidden=hidden, dropout=dropout,
                                                trainable_encoder=False)

    def compile_classifier(rate):
        classifier.compile(
            optimizer=keras.optimizers.Adam(rate),
            loss={name: "sparse_categorical_crossentropy" for name in outputs},
            metrics={name: ["accuracy"] for name in outputs})

    encoder.trainable = False
    compile_classifier(learning_rate)
    histories["classifier"] = fit(classifier, train_ds, val_ds, epochs_classifier,
                                  _phase_dir(output_dir, "classifier"),
                                  early_stopping=early_stopping, verbose=verbose)
    histories["finetune"] = None
    if epochs_finetune:
        encoder.trainable = True
        compile_classifier(finetune_learning_rate)   # trainable changes need a re-compile
        histories["finetune"] = fit(classifier, train_ds, val_ds, epochs_finetune,
                                    _phase_dir(output_dir, "finetune"),
                                    early_stopping=early_stopping, verbose=verbose)
    histories["model"] = classifier
    return histories


__all__ = ["LR_SCHEDULES", "quiet_logging", "resolve_verbose",
           "enable_mixed_precision_if_gpu", "with_strategy", "lr_schedule_fn",
           "ResumableEarlyStopping", "ResumableBackup", "with_class_weights", "fit", "two_views",
           "fit_supcon"]
