"""Training: ``fit`` with sensible callbacks, checkpoint-and-resume, SupCon phases, scale-out.

- :func:`fit` wraps ``model.fit`` with early stopping (best weights restored), an optional
  step or cosine learning-rate decay, a CSV history, optional TensorBoard logs, quiet line-based
  logging under papermill / CI, and **resume**: run the same cell (or, after a Colab
  disconnect, the whole notebook) again with the same ``output_dir`` and training continues
  from the last SAVED epoch with weights, optimizer, epoch counter, early-stopping state,
  dropout and augmentation RNG state and the dataset's shuffle position restored; a training
  that had finished is not run again: its final state and History are loaded.
- :func:`fit_supcon` runs the SupCon study's phases (contrastive pre-training, classifier on the
  frozen encoder, optional fine-tuning after re-compiling); on a re-run the finished phases are
  skipped the same way.
- :func:`with_strategy` / ``fit(..., strategy=...)`` build and train under a
  ``tf.distribute`` strategy; :func:`enable_mixed_precision_if_gpu` switches on float16.

How resume works (public Keras and ``tf.data`` APIs only):

* **What** (:class:`ResumeCheckpoint`): ``<output_dir>/backup/state.npz`` holds the model's
  weights, the optimizer's variables (``model.optimizer.variables``: step count, moments,
  learning rate), every ``SeedGenerator`` state (dropout, random augmentation layers), the
  early-stopping state (patience count, best value and epoch, best weights), the number of
  finished epochs, their History, the training seconds and the run's fingerprint. One file,
  written under a temporary name, flushed to disk and renamed over the previous one, so a kill
  at any moment leaves the last complete checkpoint.
* **When**: at the end of an epoch once ``checkpoint_every`` seconds (default 30; and at
  least 20 times the last save's duration) have passed since the last save, and when an
  exception (a crash, the notebook's stop button) ends training between two epochs. Epochs
  in between cost nothing; a kill (a disconnect, SIGKILL) loses the epochs since the last
  save plus the one in progress, and resumes exactly from the last saved epoch.
  ``checkpoint_every=0`` saves after every epoch.
* **Finished**: when training ends, ``final_state.npz`` (the same state, after early stopping
  restored the best weights) and ``done.json`` (fingerprint, History, epochs, seconds) are
  written and ``backup/`` is removed. A later call with the same fingerprint trains nothing:
  it loads that state (after one step on a zero batch, undone, so that the model's training
  step is traced as the finished run's was: a later ``fit`` without re-compiling behaves
  alike), replays the phase's shuffles and returns the History. So a multi-phase flow
  (``fit_supcon``, freeze then fine-tune, lab 02's grid) re-run after a crash skips the
  phases that had finished and resumes the one that had not.
* **Fingerprint**: the model's layers and their configurations, weight shapes and trainable
  flags; a hash of the starting weights, optimizer variables and RNG states (another seed,
  other pre-trained weights or an earlier phase that ended differently change it); the
  optimizer's and the compiled loss / metrics configuration; the data (``tf.data`` element
  spec and number of batches; the validation set's first batch hashed); ``epochs`` and
  ``fit``'s settings (early stopping, monitor, learning-rate schedule, class weights); and
  the caller's ``fingerprint`` dict (``run_grid`` passes the knobs, seed and a hash of the
  images). A checkpoint with another fingerprint is never continued: ``fit`` warns, naming
  what changed, and starts afresh. ``resume=False`` discards the checkpoint without looking.
* **Shuffle order**: a ``tf.data`` shuffle with ``reshuffle_each_iteration`` draws a new
  order each time an iteration over it starts, counting from its seed. ``fit`` trains on
  ``train_ds.repeat()`` with ``steps_per_epoch`` = its number of batches (and no prefetch
  after ``repeat``, which would start the next iteration early), so epoch *k* is the
  dataset's *k*-th iteration and a training of *n* epochs draws *n* orders, whatever Keras
  does with iterators (bare ``model.fit`` draws two per epoch in Keras 3.15); on
  resume after *k* epochs it first creates (and drops) *k* iterators, so epoch *k* sees the
  order it would have seen. This needs the dataset built the same way after
  ``fl.set_seed(SEED)`` (the kit's pipeline is), a known number of batches (else ``fit``
  warns on resume that the order is not replayed; ``tf.data.experimental.assert_cardinality``
  fixes it), and any randomness inside its ``map`` functions seeded per iteration. Under a
  multi-device strategy the input is re-sharded and the order is not guaranteed.

Resume is exact on one device (same seed, CPU): the resumed run ends with the same weights as
an uninterrupted one (``tests/test_train.py`` and ``tests/test_resume.py``, which kills a
training with SIGKILL in the middle of an epoch, check bit equality).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import shutil
import sys
import time
import warnings
import weakref
from pathlib import Path

import keras
import numpy as np

from faceattr_lab.config import QUIET_ENV

LR_SCHEDULES = (None, "step", "cosine")
_BACKUP = "backup"            # <output_dir>/backup/state.npz while training
_STATE_FILE = "state.npz"
_FINAL_FILE = "final_state.npz"
_DONE_FILE = "done.json"
_FORMAT = 1                   # version of the checkpoint files
_START = "starting weights, optimizer and RNG state"


def _now() -> float:
    """The clock of checkpoint intervals (tests replace it)."""
    return time.monotonic()


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
# Resume: state files, fingerprint, shuffle replay
# --------------------------------------------------------------------------------------------
def _seed_states(model):
    """The ``SeedGenerator`` state variables of a model (dropout, random augmentation)."""
    weight_ids = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weight_ids]


def _digest(arrays) -> str:
    """A short hash of arrays' dtypes, shapes and bytes."""
    h = hashlib.blake2b(digest_size=12)
    for array in arrays:
        array = np.ascontiguousarray(array)
        h.update(f"{array.dtype.str}{array.shape}".encode())
        h.update(repr(array.tolist()).encode() if array.dtype.hasobject else array.tobytes())
    return h.hexdigest()


def _jsonable(value):
    """``json.dumps`` default: arrays by hash, numpy scalars by value, objects by type."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) or hasattr(value, "numpy"):
        return "array " + _digest([np.asarray(value)])
    if isinstance(value, (set, frozenset)):
        return sorted(map(str, value))
    if isinstance(value, bytes):
        return "bytes " + hashlib.blake2b(value, digest_size=12).hexdigest()
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__} {getattr(value, '__name__', '')}".strip()


def _canonical(value) -> str:
    try:
        return json.dumps(value, sort_keys=True, default=_jsonable)
    except (TypeError, ValueError):    # keys that do not sort (mixed types)
        return json.dumps(value, default=_jsonable)


def _layers(layer, rows: list) -> list:
    """Each layer's class and configuration (without its name: Keras numbers names per
    session), nested models flattened."""
    if isinstance(layer, keras.Model):
        rows.append([type(layer).__name__, bool(layer.trainable)])
        for sub in layer.layers:
            _layers(sub, rows)
        return rows
    try:
        config = dict(layer.get_config())
        config.pop("name", None)
    except Exception:  # noqa: BLE001 - a custom layer without get_config: its class only
        config = None
    rows.append([f"{type(layer).__module__}.{type(layer).__qualname__}", config])
    return rows


def _batches(dataset) -> int | None:
    """Number of batches of a ``tf.data`` dataset, or None (not tf.data, unknown, infinite)."""
    import tensorflow as tf

    if not isinstance(dataset, tf.data.Dataset):
        return None
    count = int(dataset.cardinality())
    return count if count > 0 else None


def _data_identity(dataset, first_batch: bool) -> str:
    """Element spec and number of batches; with ``first_batch``, a hash of the first one."""
    import tensorflow as tf

    if dataset is None:
        return "none"
    if isinstance(dataset, tf.data.Dataset):
        text = f"{dataset.element_spec!r}, {int(dataset.cardinality())} batches"
        if first_batch:
            for batch in dataset.take(1):
                text += ", first batch " + _digest(
                    [np.asarray(t) for t in tf.nest.flatten(batch)])
        return text
    try:
        arrays = [np.asarray(a) for a in tf.nest.flatten(dataset)]
    except (TypeError, ValueError):
        return type(dataset).__qualname__
    return ", ".join(f"{a.dtype}{a.shape}" for a in arrays) + " " + _digest(
        [a[:: max(1, len(a) // 256)] if a.ndim else a for a in arrays])


def _fingerprint(model, train_ds, val_ds, settings: dict, extra: dict | None) -> dict:
    """What must be equal for a checkpoint to be continued: ``{part: short text}``."""
    weights = [(tuple(w.shape), str(w.dtype), bool(w.trainable)) for w in model.weights]
    state = [w.numpy() for w in model.weights] + [v.numpy() for v in _seed_states(model)] + \
        [v.numpy() for v in model.optimizer.variables]
    optimizer = dict(model.optimizer.get_config())
    optimizer.pop("name", None)
    try:
        compiled = dict(model.get_compile_config() or {})
    except Exception:  # noqa: BLE001 - a loss Keras cannot serialize: its types
        compiled = {"loss": model.loss}
    compiled.pop("optimizer", None)
    parts = {
        "model architecture": _digest([np.frombuffer(
            _canonical([_layers(model, []), weights]).encode(), np.uint8)]),
        _START: _digest(state),
        "optimizer": f"{type(model.optimizer).__name__} {_canonical(optimizer)}",
        "loss and metrics": _canonical(compiled),
        "training data": _data_identity(train_ds, first_batch=False),
        "validation data": _data_identity(val_ds, first_batch=val_ds is not train_ds),
    }
    parts.update({name: _canonical(value) for name, value in settings.items()})
    parts.update({f"fingerprint[{name!r}]": _canonical(value)
                  for name, value in (extra or {}).items()})
    return parts


def _changes(saved: dict, now: dict) -> list[str]:
    """What differs between two fingerprints, in words: ``["epochs 3 -> 4", ...]``."""
    changes = []
    for part in [*now, *(p for p in saved if p not in now)]:
        before, after = saved.get(part), now.get(part)
        if before == after:
            continue
        if before is not None and after is not None and max(len(before), len(after)) <= 40:
            changes.append(f"{part} {before} -> {after}")
        elif part == _START:
            changes.append(f"{part} (another seed, other pre-trained weights or an earlier "
                           "phase that ended differently)")
        else:
            changes.append(f"{part} changed")
    return changes


# The fingerprint a model object started a training with, per output_dir: a model that trained
# in this session (then was interrupted) has moved on from its starting state, yet its backup
# is its own and continues.
_STARTED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _continued(model, out: Path, parts: dict) -> dict:
    entry = _STARTED.get(model, {}).get(str(out))
    if entry is None or entry[0]() is not model.optimizer:
        return parts
    started = entry[1]
    return {**parts, _START: started[_START], "optimizer": started["optimizer"]}


def _register(model, out: Path, parts: dict) -> None:
    _STARTED.setdefault(model, {})[str(out)] = (weakref.ref(model.optimizer), parts)


def _replay_shuffles(dataset, count: int) -> None:
    """Create (and drop) ``count`` iterators: the shuffles of ``count`` finished epochs."""
    for _ in range(count):
        iter(dataset)


def _restore_rng(model, arrays: list) -> None:
    for variable, value in zip(_seed_states(model), arrays):
        variable.assign(value)


def _snapshot(model, early_stopping=None) -> dict:
    """Everything to restore, as numpy arrays: weights, RNG states, optimizer variables and
    (during training) early stopping's best weights."""
    arrays = {f"w{i}": w.numpy() for i, w in enumerate(model.weights)}
    arrays.update({f"r{i}": v.numpy() for i, v in enumerate(_seed_states(model))})
    arrays.update({f"o{i}": v.numpy() for i, v in enumerate(model.optimizer.variables)})
    if early_stopping is not None and early_stopping.best_weights is not None:
        arrays.update({f"e{i}": np.asarray(w)
                       for i, w in enumerate(early_stopping.best_weights)})
    return arrays


def _write_atomically(path: Path, write) -> None:
    """``write(file)`` to a temporary file, flush it to disk, rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_state(path: Path, arrays: dict, meta: dict) -> None:
    meta = {**meta, "format": _FORMAT}
    _write_atomically(path, lambda f: np.savez(f, _meta=np.array(json.dumps(meta)), **arrays))


def _read_state(path: Path) -> tuple[dict, dict]:
    """(meta, arrays) of a state file; raises ValueError when it cannot be used."""
    try:
        with np.load(path) as z:
            arrays = {key: z[key] for key in z.files}
        meta = json.loads(str(arrays.pop("_meta")))
    except Exception as error:  # noqa: BLE001 - a truncated or foreign file
        raise ValueError(f"{path} cannot be read ({error})") from error
    if meta.get("format") != _FORMAT:
        raise ValueError(f"{path} was written by another version of the kit")
    return meta, arrays


def _check_shapes(model, arrays: dict) -> list[list[np.ndarray]]:
    """The arrays for (weights, RNG states, optimizer variables), checked against the model."""
    groups = []
    for prefix, variables in (("w", model.weights), ("r", _seed_states(model)),
                              ("o", model.optimizer.variables)):
        values = [arrays.get(f"{prefix}{i}") for i in range(len(variables))]
        if f"{prefix}{len(variables)}" in arrays or any(
                v is None or tuple(v.shape) != tuple(var.shape)
                for v, var in zip(values, variables)):
            raise ValueError("its variables do not match the model's")
        groups.append(values)
    return groups


def _apply_state(model, groups) -> None:
    weights, rng, optimizer = groups
    model.set_weights(weights)
    _restore_rng(model, rng)
    for variable, value in zip(model.optimizer.variables, optimizer):
        variable.assign(value)


def _discard(out: Path) -> None:
    """Remove a checkpoint and a finished state (history.csv and logs stay)."""
    shutil.rmtree(out / _BACKUP, ignore_errors=True)
    for name in (_DONE_FILE, _FINAL_FILE):
        (out / name).unlink(missing_ok=True)


def _truncate_csv(path: Path, epochs_done: int) -> None:
    """Keep the CSV rows of the epochs the checkpoint holds (epochs after it are re-run)."""
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


def _warm_up(model, train_ds) -> None:
    """One training step on a zero batch with ``train_ds``'s element spec, so Keras traces
    the training step with the current trainable layers, as the finished training did.
    The caller restores every variable afterwards."""
    import tensorflow as tf

    spec = getattr(train_ds, "element_spec", None)
    if spec is None:
        return
    n = model.distribute_strategy.num_replicas_in_sync
    try:
        element = tf.nest.map_structure(lambda s: tf.zeros(s.shape[1:], s.dtype), spec)
        zeros = tf.data.Dataset.from_tensors(element).repeat(n).batch(n)
    except (TypeError, ValueError, AttributeError):
        return  # an unknown inner shape: Keras traces at the next fit instead
    if zeros.element_spec != spec:
        return
    model.fit(zeros, epochs=1, verbose=0, shuffle=False)


def _float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


# --------------------------------------------------------------------------------------------
# Resumable callbacks
# --------------------------------------------------------------------------------------------
class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """``EarlyStopping`` whose state (patience count, best value and epoch, best weights)
    survives a restart: :class:`ResumeCheckpoint` saves it, :func:`fit` restores it. Lab 02."""

    _pending = None

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self._pending is not None:
            state, self._pending = self._pending, None
            self.wait, self.best_epoch = int(state["wait"]), int(state["best_epoch"])
            self.best = None if state["best"] is None else float(state["best"])
            if state["best_weights"]:
                self.best_weights = list(state["best_weights"])

    def state(self) -> dict:
        """Patience count, best value and epoch (JSON); the best weights are saved apart."""
        return {"wait": int(self.wait), "best_epoch": int(self.best_epoch),
                "best": None if self.best is None else float(self.best)}

    def restore(self, state: dict, best_weights: list) -> None:
        """Continue from a saved :meth:`state` when the next training begins."""
        self._pending = {**state, "best_weights": best_weights}


class ResumeCheckpoint(keras.callbacks.Callback):
    """Saves what :func:`fit` needs to resume, at most every ``every`` seconds. Lab 02.

    At the end of an epoch, once ``every`` seconds have passed since the last save (0: every
    epoch; and at least 20 times as long as the last save took, so saving a large model on a
    slow disk stays under about 5 % of the time), it writes ``path`` atomically: weights,
    optimizer variables, RNG states, the early-stopping state, the epochs done, their History
    and seconds, and the fingerprint.
    Nothing happens on the epochs in between, nor after the last epoch (``fit`` then writes
    the finished state). :meth:`save_if_between_epochs` saves when an exception ends
    training after an epoch finished and before the next one started.
    """

    def __init__(self, path, *, every: float = 30.0, epochs: int, fingerprint: dict,
                 early_stopping=None, initial_epoch: int = 0, history: dict | None = None,
                 seconds: float = 0.0, base_lr: float | None = None):
        super().__init__()
        self.path, self.every, self.epochs = Path(path), float(every), int(epochs)
        self.fingerprint, self.early_stopping = fingerprint, early_stopping
        self.epochs_done, self.seconds_before, self.base_lr = initial_epoch, seconds, base_lr
        self.history = {key: list(values) for key, values in (history or {}).items()}
        self.between_epochs = self.finished = False
        self.saves = 0
        self._gap = self.every
        self._start = self._last_save = _now()

    def on_train_begin(self, logs=None):
        self._start = self._last_save = _now()

    def on_epoch_begin(self, epoch, logs=None):
        self.between_epochs = False

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(_float(value))
        self.epochs_done = epoch + 1
        self.between_epochs = True
        if self.model.stop_training or self.epochs_done >= self.epochs:
            self.finished = True        # fit writes the finished state
        elif _now() - self._last_save >= self._gap:
            try:
                self.save()
            except OSError as error:    # a full disk, a Drive hiccup: train on, try later
                self._last_save = _now()
                warnings.warn(f"could not save the checkpoint {self.path} ({error}); "
                              "training continues and tries again later.", stacklevel=2)

    def seconds(self) -> float:
        return self.seconds_before + (_now() - self._start)

    def meta(self) -> dict:
        es = self.early_stopping
        return {"epochs_done": self.epochs_done, "epochs": self.epochs,
                "history": self.history, "seconds": self.seconds(),
                "fingerprint": self.fingerprint, "base_lr": self.base_lr,
                "early_stopping": None if es is None else es.state()}

    def save(self) -> None:
        start = _now()
        _write_state(self.path, _snapshot(self.model, self.early_stopping), self.meta())
        self.saves += 1
        self._last_save = _now()
        if self.every > 0:   # a large model on a slow disk: keep saving under ~5 % of the time
            self._gap = max(self.every, 20 * (self._last_save - start))

    def save_if_between_epochs(self) -> None:
        """After an exception: save when the state is a finished epoch's (and not the last)."""
        if self.between_epochs and not self.finished and self.epochs_done > 0:
            try:
                self.save()
            except Exception as error:  # noqa: BLE001 - never hide the original exception
                warnings.warn(f"could not save the checkpoint ({error}).", stacklevel=2)


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


def _one_iteration_per_epoch(train_ds):
    """``train_ds`` repeated, without the prefetch tf.data would inject after ``repeat``:
    it would start the next repetition (and draw its shuffle) ahead of time, once more than
    the epochs trained. The pipeline's own prefetch (the kit's end with one) keeps working
    inside each repetition."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_optimization.inject_prefetch = False
    return train_ds.repeat().with_options(options)


def _train(model, train_ds, val_ds, epochs, initial_epoch, callbacks, verbose, sources=()):
    """``model.fit`` on ``train_ds`` repeated with ``steps_per_epoch`` = its batches (exactly
    one iteration of the dataset per epoch, see the module docstring), else on ``train_ds``.
    A file the pipeline cannot decode stops training with its name (``sources``: the pipelines
    as ``fl.pipeline.make_dataset`` built them)."""
    import tensorflow as tf

    steps = _batches(train_ds)
    data, extra = ((_one_iteration_per_epoch(train_ds), {"steps_per_epoch": steps}) if steps
                   else (train_ds, {}))
    try:
        return model.fit(data, validation_data=val_ds, epochs=epochs,
                         initial_epoch=initial_epoch, callbacks=list(callbacks),
                         verbose=verbose, shuffle=False,  # tf.data shuffles itself (seeded)
                         **extra)
    except tf.errors.InvalidArgumentError as error:
        from faceattr_lab import pipeline

        explained = pipeline.explain_decode_error(error, *sources)
        if explained is None:
            raise
        raise explained from error


def _ensure_optimizer_built(model) -> None:
    """Build the optimizer's variables as Keras would at the first step (needed to save and
    restore them before training)."""
    if not getattr(model, "built", False):
        raise ValueError("fit with an output_dir needs a built model (a functional model, or "
                         "call model.build(input_shape) first) to save and restore its state.")
    if not model.optimizer.built:
        with model.distribute_strategy.scope():
            model.optimizer.build(model.trainable_variables)


def _load_finished(model, train_ds, out: Path, done: dict, verbose: int):
    """Load a finished training's final state and History, or None when it cannot be used."""
    try:
        meta, arrays = _read_state(out / _FINAL_FILE)
        groups = _check_shapes(model, arrays)
    except (ValueError, OSError) as error:
        warnings.warn(f"{out} says its training finished, but its final state cannot be "
                      f"used ({error}); training afresh.", stacklevel=3)
        return None
    _warm_up(model, train_ds)
    _apply_state(model, groups)
    epochs_run = int(meta["epochs_done"])
    _replay_shuffles(train_ds, epochs_run if _batches(train_ds) else 0)
    history = keras.callbacks.History()
    history.set_model(model)
    history.history = {key: list(values) for key, values in meta["history"].items()}
    history.epoch = list(range(epochs_run))
    history.params = {"verbose": verbose, "epochs": int(meta["epochs"]),
                      "steps": _batches(train_ds)}
    history.resume_info = {"status": "finished earlier", "initial_epoch": 0,
                           "seconds_before": float(meta["seconds"])}
    if verbose:
        print(f"{out}: finished earlier ({_plural(epochs_run, 'epoch')}, "
              f"{meta['seconds']:.0f} s); loaded its final state and history (resume=False "
              f"trains again).\n{_last_epoch_line(history.history, epochs_run)}", flush=True)
    return history


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _last_epoch_line(history: dict, epochs_run: int) -> str:
    """The metrics of a loaded History's last epoch, as Keras' epoch line writes them."""
    last = {key: values[-1] for key, values in sorted(history.items()) if len(values)}
    if not last:
        return f"epoch {epochs_run}: no metrics were recorded."
    return f"epoch {epochs_run} (the last): " + " - ".join(
        f"{key}: {value:.4f}" if abs(value) > 1e-3 else f"{key}: {value:.4e}"
        for key, value in ((k, float(v)) for k, v in last.items()))


def _load_backup(model, out: Path, parts: dict, early_stopping):
    """Restore an interrupted training's checkpoint; its meta, or None (afresh)."""
    path = out / _BACKUP / _STATE_FILE
    if not path.exists():
        return None
    try:
        meta, arrays = _read_state(path)
        changes = _changes(meta["fingerprint"], parts)
        if changes:
            warnings.warn(f"{out} holds a checkpoint made with other settings: "
                          f"{'; '.join(changes)}. Starting afresh.", stacklevel=3)
            _discard(out)
            return None
        groups = _check_shapes(model, arrays)
    except (ValueError, OSError, KeyError) as error:
        warnings.warn(f"the checkpoint in {out} cannot be used ({error}); starting afresh.",
                      stacklevel=3)
        _discard(out)
        return None
    _apply_state(model, groups)
    if early_stopping is not None and meta.get("early_stopping") is not None:
        best = [arrays[f"e{i}"] for i in range(sum(k.startswith("e") for k in arrays))]
        early_stopping.restore(meta["early_stopping"], best)
    return meta


def fit(model, train_ds, val_ds=None, epochs: int = 10, output_dir=None, *,
        early_stopping: int | None = 5, monitor: str | None = None,
        lr_schedule: str | None = None, lr_params: dict | None = None, csv: bool = True,
        tensorboard: bool = False, resume: bool = True, checkpoint_every: float = 30.0,
        fingerprint: dict | None = None, class_weight=None, verbose="auto",
        callbacks=(), strategy=None) -> keras.callbacks.History:
    """Train a compiled model with the kit's callbacks; resumable. Lab 02.

    - ``model``: a compiled Keras model, or a function that builds and compiles one (built
      under ``strategy.scope()`` when ``strategy`` is given).
    - ``early_stopping``: patience in epochs on ``monitor`` (``"val_loss"`` with validation
      data, else ``"loss"``), best weights restored at the end; ``None`` disables it.
    - ``lr_schedule``: ``None``, ``"step"`` or ``"cosine"`` with ``lr_params`` passed to
      :func:`lr_schedule_fn` (e.g. ``{"drop": 0.5, "every": 10}``); the base rate is the
      compiled optimizer's.
    - ``output_dir``: where ``history.csv``, the checkpoint (``backup/``), the finished state
      (``final_state.npz``, ``done.json``) and ``logs/`` (TensorBoard) go. With
      ``resume=True`` a call finds what an earlier one left there: an interrupted training
      continues from its last saved epoch, a finished one is not run again (its final state
      and History are loaded); both only when the fingerprint matches (same model, starting
      weights, optimizer, data, epochs and settings, and the same ``fingerprint`` dict),
      else ``fit`` warns, naming what changed, and starts afresh. ``resume=False`` discards
      them and starts afresh. See the module docstring.
    - ``checkpoint_every``: least seconds of training between two checkpoints (saved at the
      end of an epoch; 0: after every epoch). A kill loses the epochs since the last one plus
      the epoch in progress; a Python exception between two epochs saves first.
    - ``fingerprint``: extra values that identify the run (seed, data version, knobs): a
      checkpoint made with other values is not continued.
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
    Returns the Keras ``History`` of the epochs run by this call (all of them when the
    training had finished earlier), with ``history.resume_info``: ``status`` ("new",
    "resumed" or "finished earlier"), ``initial_epoch`` and ``seconds_before`` (training
    seconds of earlier calls).
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
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, (int, float)) \
            or not checkpoint_every >= 0 or math.isinf(checkpoint_every):
        raise ValueError(f"checkpoint_every must be seconds >= 0 (0: after every epoch), got "
                         f"{checkpoint_every!r}.")
    if fingerprint is not None and not isinstance(fingerprint, dict):
        raise ValueError(f"fingerprint must be a dict of values naming the run, e.g. "
                         f"{{'seed': 42}}, got {fingerprint!r}.")
    if tensorboard and output_dir is None:
        raise ValueError("tensorboard=True needs an output_dir for its logs.")
    verbose = resolve_verbose(verbose)
    monitor = monitor or ("val_loss" if val_ds is not None else "loss")
    sources = (train_ds, val_ds)  # as built, before fit wraps them: they know their files
    if class_weight is not None:
        train_ds = with_class_weights(train_ds, class_weight)
    es = None
    if early_stopping is not None:
        es = ResumableEarlyStopping(monitor=monitor, patience=int(early_stopping),
                                    restore_best_weights=True, verbose=0)
    base_lr = None   # the compiled rate, read before a checkpoint overwrites it
    if lr_schedule is not None:
        base_lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    build_for_training(model, train_ds)

    def schedule(base):
        if lr_schedule is None:
            return []
        rates = lr_schedule_fn(lr_schedule, base, epochs, **(lr_params or {}))
        return [keras.callbacks.LearningRateScheduler(rates)]

    if output_dir is None:  # nothing written, nothing resumed
        history = _train(model, train_ds, val_ds, epochs, 0,
                         [*([es] if es else []), *schedule(base_lr), *callbacks], verbose,
                         sources)
        history.resume_info = {"status": "new", "initial_epoch": 0, "seconds_before": 0.0}
        return history

    out = Path(output_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    _ensure_optimizer_built(model)
    if not resume:
        _discard(out)
    settings = {"epochs": epochs, "early_stopping": early_stopping,
                "monitor": monitor if early_stopping is not None else None,
                "lr_schedule": lr_schedule, "lr_params": lr_params, "class_weight": class_weight}
    parts = _continued(model, out, _fingerprint(model, train_ds, val_ds, settings, fingerprint))

    meta = None
    if resume:
        done_file = out / _DONE_FILE
        if done_file.exists():
            try:
                done = json.loads(done_file.read_text())
                changes = _changes(done["fingerprint"], parts)
            except (ValueError, KeyError, OSError) as error:
                done, changes = None, [f"{done_file} cannot be read ({error})"]
            if not changes:
                history = _load_finished(model, train_ds, out, done, verbose)
                if history is not None:
                    _register(model, out, parts)
                    return history
            else:
                warnings.warn(f"{out} holds a finished training made with other settings: "
                              f"{'; '.join(changes)}. Training afresh.", stacklevel=2)
            _discard(out)
        meta = _load_backup(model, out, parts, es)
    initial_epoch = int(meta["epochs_done"]) if meta else 0
    if meta and meta.get("base_lr") is not None:
        base_lr = float(meta["base_lr"])
    _register(model, out, parts)
    if initial_epoch:
        if _batches(train_ds) is None:
            warnings.warn("the training data's number of batches is unknown (a filter?), so "
                          "its shuffle order is not replayed: the resumed run differs from an "
                          "uninterrupted one. ds.apply(tf.data.experimental.assert_cardinality"
                          "(n)) makes it exact.", stacklevel=2)
        else:
            _replay_shuffles(train_ds, initial_epoch)
        if verbose:
            print(f"Resuming {out} after epoch {initial_epoch} of {epochs} (its last saved "
                  "epoch).", flush=True)

    all_callbacks = []
    if csv:
        history_csv = out / "history.csv"
        if initial_epoch:
            _truncate_csv(history_csv, initial_epoch)
        all_callbacks.append(keras.callbacks.CSVLogger(str(history_csv),
                                                       append=initial_epoch > 0))
    if es is not None:
        all_callbacks.append(es)
    all_callbacks.extend(schedule(base_lr))
    checkpoint = ResumeCheckpoint(out / _BACKUP / _STATE_FILE, every=checkpoint_every,
                                  epochs=epochs, fingerprint=parts, early_stopping=es,
                                  initial_epoch=initial_epoch,
                                  history=meta["history"] if meta else None,
                                  seconds=float(meta["seconds"]) if meta else 0.0,
                                  base_lr=base_lr)
    all_callbacks.append(checkpoint)     # after early stopping: it saves that epoch's state
    if tensorboard:
        all_callbacks.append(keras.callbacks.TensorBoard(log_dir=str(out / "logs")))
    all_callbacks.extend(callbacks)

    try:
        history = _train(model, train_ds, val_ds, epochs, initial_epoch, all_callbacks,
                         verbose, sources)
    except BaseException:
        checkpoint.save_if_between_epochs()
        raise
    # Finished: the final state (best weights restored), then the marker, then no backup.
    finished = checkpoint.meta()
    _write_state(out / _FINAL_FILE, _snapshot(model), finished)
    marker = {key: finished[key] for key in ("epochs_done", "epochs", "seconds",
                                             "fingerprint", "history")}
    _write_atomically(out / _DONE_FILE, lambda f: f.write(json.dumps(marker, indent=1)
                                                          .encode()))
    shutil.rmtree(out / _BACKUP, ignore_errors=True)
    history.resume_info = {"status": "resumed" if initial_epoch else "new",
                           "initial_epoch": initial_epoch,
                           "seconds_before": float(meta["seconds"]) if meta else 0.0}
    return history


# --------------------------------------------------------------------------------------------
# SupCon phases
# --------------------------------------------------------------------------------------------
def _augmenter(augment):
    """``(dataset, copies) -> dataset of (copies, labels)``: ``augment`` applied ``copies`` times
    to each batch, reproducibly. The kit's ``fl.pipeline.Augmentation`` gets stateless per-image
    seeds from ``tf.data.Dataset.random(augment.seed, rerandomize_each_iteration=True)`` (the same
    draws on every run, new ones each epoch, replayed by a resumed ``fit``) and runs in
    parallel; any other callable runs in order, one batch after another, so its own random
    state is drawn in the same order on every run."""
    import tensorflow as tf

    from faceattr_lab.pipeline import Augmentation

    if isinstance(augment, Augmentation):
        def apply(dataset, copies):
            seeds = tf.data.Dataset.random(seed=augment.seed, rerandomize_each_iteration=True)

            def views(batch, seed):
                images, labels = batch
                count = tf.shape(images)[0]
                return tuple(augment(images, seeds=tf.random.stateless_uniform(
                    [count], seed=tf.stack([seed, tf.constant(copy, tf.int64)]), minval=None,
                    maxval=None, dtype=tf.int64)) for copy in range(copies)), labels

            return tf.data.Dataset.zip((dataset, seeds)).map(views,
                                                             num_parallel_calls=tf.data.AUTOTUNE)
    else:
        def apply(dataset, copies):
            return dataset.map(lambda images, labels: (
                tuple(augment(images) for _ in range(copies)), labels))
    return apply


def two_views(dataset, augment):
    """Each batch twice, stacked on the batch axis (2B samples, labels tiled). Lab 05.

    ``augment`` (a function or Keras layer on an image batch, random) is applied to each copy
    separately, giving Khosla et al.'s two augmented views of every image. SupCon on the
    stacked batch equals SupCon on (B, 2, D) views (see ``fl.losses.supcon_loss``). With the
    kit's ``fl.pipeline.augmentation(seed=...)`` the views are the same on every run (stateless
    per-image seeds) and new each epoch.
    """
    import tensorflow as tf

    if augment is None or not callable(augment):
        raise ValueError("two_views needs augment (a random augmentation function or Keras "
                         "layer): two identical copies are not two views.")

    def stack(views, labels):
        tiled = tf.nest.map_structure(lambda y: tf.concat([y, y], axis=0), labels)
        return tf.concat(list(views), axis=0), tiled

    return _augmenter(augment)(dataset, 2).map(stack, num_parallel_calls=tf.data.AUTOTUNE)


def one_view(dataset, augment):
    """Each batch augmented once (``augment`` on the images, labels unchanged). Lab 05.

    The one-view counterpart of :func:`two_views`, with the same reproducible draws: the
    keras.io SupCon setup, and the augmentation of a baseline trained beside it.
    """
    if augment is None or not callable(augment):
        raise ValueError("one_view needs augment (a random augmentation function or Keras "
                         "layer); without one, use the dataset as it is.")
    return _augmenter(augment)(dataset, 1).map(lambda views, labels: (views[0], labels))


def _phase_dir(output_dir, name):
    return None if output_dir is None else Path(output_dir).expanduser() / name


def _stored_features(encoder, dataset):
    """One pass of the frozen ``encoder`` (inference mode) over ``dataset``: vectors, labels
    and the first batch's size."""
    import tensorflow as tf

    vectors, labels, size = [], [], None
    for images, batch_labels in dataset:
        size = size or int(images.shape[0])
        vectors.append(keras.ops.convert_to_numpy(encoder(images, training=False)))
        labels.append(tf.nest.map_structure(np.asarray, batch_labels))
    if not vectors:
        raise ValueError("the dataset yielded no batches; check the table it was built from.")
    stacked = tf.nest.map_structure(lambda *parts: np.concatenate(parts), *labels)
    return np.concatenate(vectors).astype("float32"), stacked, size


def _fit_heads_on_features(classifier, encoder, schemes, train_ds, val_ds, epochs, output_dir,
                           *, hidden, dropout, learning_rate, shuffle_seed, early_stopping,
                           resume, verbose):
    """Phase 2 of :func:`fit_supcon` on stored encoder outputs; the heads' History."""
    import tensorflow as tf

    from faceattr_lab.models.heads import add_heads

    train_x, train_y, batch = _stored_features(encoder, train_ds)
    vectors = keras.Input((train_x.shape[-1],), name="features")
    heads = keras.Model(vectors, add_heads(vectors, schemes, hidden=hidden, dropout=dropout),
                        name="supcon_heads")
    heads.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss={s.output: "sparse_categorical_crossentropy" for s in schemes},
                  metrics={s.output: ["accuracy"] for s in schemes})
    train_vectors = (tf.data.Dataset.from_tensor_slices((train_x, train_y))
                     .shuffle(len(train_x), seed=shuffle_seed, reshuffle_each_iteration=True)
                     .batch(batch))
    val_vectors = None
    if val_ds is not None:
        val_x, val_y, _ = _stored_features(encoder, val_ds)
        val_vectors = tf.data.Dataset.from_tensor_slices((val_x, val_y)).batch(batch)
    history = fit(heads, train_vectors, val_vectors, epochs, output_dir,
                  early_stopping=early_stopping, resume=resume, verbose=verbose)
    for layer in heads.layers:
        if layer.weights:
            classifier.get_layer(layer.name).set_weights(layer.get_weights())
    return history


def fit_supcon(encoder, schemes, train_ds, val_ds=None, *, epochs_pretrain: int,
               epochs_classifier: int, epochs_finetune: int = 0, temperature: float = 0.1,
               variant: str = "supcon", loss_weight: float = 0.1, views: int = 1,
               augment=None, projection_dim: int = 128, projection_head: str = "keras_io",
               hidden: int = 512,
               dropout: float = 0.5, learning_rate: float = 1e-3,
               finetune_learning_rate: float = 1e-4, output_dir=None,
               early_stopping: int | None = 5, resume: bool = True,
               classifier_on_features: bool = False, shuffle_seed: int = 0,
               verbose="auto") -> dict:
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
    2. ``classifier``: softmax heads on the FROZEN encoder, cross-entropy. With
       ``classifier_on_features=True`` the frozen encoder runs once over ``train_ds`` and
       ``val_ds`` and the heads train on the stored vectors (shuffled each epoch, seeded by
       ``shuffle_seed``, in batches of ``train_ds``'s first batch size), then go into the
       classifier model, which is compiled but not yet fitted. A frozen encoder (BatchNorm in
       inference mode) gives the same vectors every epoch, so this is the same training at
       a fraction of the cost, provided ``train_ds`` itself is not augmented.
    3. ``finetune`` (if ``epochs_finetune``): the encoder unfrozen and the model RE-COMPILED
       (the study set ``trainable=True`` without re-compiling, so its encoder stayed frozen)
       at ``finetune_learning_rate``.
    Each phase checkpoints in its own folder under ``output_dir`` (``pretrain``,
    ``classifier``, ``finetune``) and resumes like :func:`fit`: re-run after a crash, the
    phases that had finished are skipped (final state and History loaded) and the interrupted
    one continues from its last saved epoch. ``resume=False`` trains every phase afresh.
    Returns ``{"pretrain": History, "classifier": History, "finetune": History | None,
    "model": classifier model, "projector": the phase-1 model (encoder + projection heads)}``.
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
        pretrain_ds = one_view(train_ds, augment) if augment is not None else train_ds
    pretrain_val = val_ds   # one un-augmented view per image (see the docstring)
    histories = {"pretrain": fit(projector, pretrain_ds, pretrain_val, epochs_pretrain,
                                 _phase_dir(output_dir, "pretrain"),
                                 early_stopping=early_stopping, resume=resume,
                                 verbose=verbose)}

    classifier = supcon_models.classifier_model(encoder, schemes, hidden=hidden, dropout=dropout,
                                                trainable_encoder=False)

    def compile_classifier(rate):
        classifier.compile(
            optimizer=keras.optimizers.Adam(rate),
            loss={name: "sparse_categorical_crossentropy" for name in outputs},
            metrics={name: ["accuracy"] for name in outputs})

    encoder.trainable = False
    compile_classifier(learning_rate)
    if classifier_on_features:
        histories["classifier"] = _fit_heads_on_features(
            classifier, encoder, schemes, train_ds, val_ds, epochs_classifier,
            _phase_dir(output_dir, "classifier"), hidden=hidden, dropout=dropout,
            learning_rate=learning_rate, shuffle_seed=shuffle_seed,
            early_stopping=early_stopping, resume=resume, verbose=verbose)
    else:
        histories["classifier"] = fit(classifier, train_ds, val_ds, epochs_classifier,
                                      _phase_dir(output_dir, "classifier"),
                                      early_stopping=early_stopping, resume=resume,
                                      verbose=verbose)
    histories["finetune"] = None
    if epochs_finetune:
        encoder.trainable = True
        compile_classifier(finetune_learning_rate)   # trainable changes need a re-compile
        histories["finetune"] = fit(classifier, train_ds, val_ds, epochs_finetune,
                                    _phase_dir(output_dir, "finetune"),
                                    early_stopping=early_stopping, resume=resume,
                                    verbose=verbose)
    histories["model"] = classifier
    histories["projector"] = projector
    return histories


__all__ = ["LR_SCHEDULES", "quiet_logging", "resolve_verbose",
           "enable_mixed_precision_if_gpu", "with_strategy", "lr_schedule_fn",
           "ResumableEarlyStopping", "ResumeCheckpoint", "with_class_weights", "fit",
           "two_views", "one_view", "fit_supcon"]
