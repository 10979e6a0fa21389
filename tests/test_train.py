"""fit: resume after a crash, reproducibility, schedules, logging; fit_supcon phases; strategy."""

import csv
import importlib
import math
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import faceattr_lab as fl
from faceattr_lab import train

SIZE = 32


def _data(seed, n=48, batch=8, classes=3):
    """Random 32 px images whose class sets a brightness offset; a reshuffling tf.data set."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, size=n)
    x = (rng.uniform(0, 120, size=(n, SIZE, SIZE, 3)) + 60 * y[:, None, None, None])
    x = x.astype("float32")
    train_ds = (tf.data.Dataset.from_tensor_slices((x, {"race": y}))
                .shuffle(n, reshuffle_each_iteration=True).batch(batch))
    val_ds = tf.data.Dataset.from_tensor_slices((x[:16], {"race": y[:16]})).batch(batch)
    return train_ds, val_ds


def _model(classes=3):
    """Tiny CNN with a random augmentation layer and dropout (both draw from SeedGenerators)."""
    images = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255)(images)
    x = keras.layers.RandomFlip("horizontal")(x)
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.3)(x)
    model = keras.Model(images, {"race": keras.layers.Dense(classes, activation="softmax",
                                                             name="race")(x)})
    model.compile(keras.optimizers.Adam(0.01), loss={"race": "sparse_categorical_crossentropy"},
                  metrics={"race": ["accuracy"]})
    return model


def _fresh(seed=7):
    """What a re-run notebook does: seed, then build data and model."""
    fl.set_seed(seed)
    return (*_data(seed), _model())


class _Crash(keras.callbacks.Callback):
    """Simulates a crash right after an epoch's checkpoint was written."""

    def __init__(self, at_epoch):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at_epoch:
            raise RuntimeError("simulated disconnect")


def _run(tmp, crash_at=None, epochs=4):
    train_ds, val_ds, model = _fresh()
    extra = (_Crash(crash_at),) if crash_at is not None else ()
    history = train.fit(model, train_ds, val_ds, epochs=epochs, output_dir=tmp, early_stopping=3,
                        verbose=0, callbacks=extra)
    return model, history


def test_resume_after_crash_gives_identical_weights(tmp_path):
    full_model, full_history = _run(tmp_path / "full")

    with pytest.raises(RuntimeError, match="simulated"):
        _run(tmp_path / "crashed", crash_at=1)          # dies after epoch 2 is checkpointed
    assert (tmp_path / "crashed" / "backup" / "latest.weights.h5").exists()
    resumed_model, resumed_history = _run(tmp_path / "crashed")

    assert resumed_history.epoch == [2, 3]              # epochs 1-2 are not repeated
    # Exact: same ops, same order, same RNG state and shuffle order on one CPU.
    for a, b in zip(full_model.get_weights(), resumed_model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(full_history.history["loss"][2:],
                                  resumed_history.history["loss"])
    with (tmp_path / "crashed" / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    assert not (tmp_path / "crashed" / "backup").exists()   # removed once training finished


def test_shuffle_and_dropout_state_matter_for_resume(tmp_path, monkeypatch):
    """Without replaying the shuffle and RNG state, the resumed run would differ."""
    full_model, _ = _run(tmp_path / "full", epochs=3)
    with pytest.raises(RuntimeError):
        _run(tmp_path / "crashed", crash_at=0, epochs=3)
    monkeypatch.setattr(train, "_backup_state", lambda backup_dir: (1, 0))  # forget iterators
    monkeypatch.setattr(train, "_seed_states", lambda model: [])            # forget RNG
    resumed_model, _ = _run(tmp_path / "crashed", epochs=3)
    differs = [not np.array_equal(a, b) for a, b in
               zip(full_model.get_weights(), resumed_model.get_weights())]
    assert any(differs)


def test_same_seed_same_metrics(tmp_path):
    histories = [_run(tmp_path / f"run{i}", epochs=2)[1].history for i in range(2)]
    assert histories[0] == histories[1]


def _variables_created_while_tracing(model, train_ds, prebuild):
    """Variables a fit of one epoch creates inside tf.function traces."""
    created = []

    def creator(next_creator, **kwargs):
        if tf.inside_function():
            created.append(kwargs.get("name"))
        return next_creator(**kwargs)

    if prebuild:
        train.build_for_training(model, train_ds)
    with tf.variable_creator_scope(creator):
        model.fit(train_ds, epochs=1, verbose=0)
    return created


def test_build_for_training_leaves_nothing_to_create_inside_the_trace():
    # A tf.function that creates variables while tracing is traced a second time; Keras
    # creates the optimizer slots and the loss trackers that way unless they exist already.
    train_ds, _, model = _fresh()
    assert _variables_created_while_tracing(model, train_ds, prebuild=False)
    train_ds, _, model = _fresh()
    assert _variables_created_while_tracing(model, train_ds, prebuild=True) == []


def test_build_for_training_changes_no_result():
    train_ds, _, model = _fresh()
    model.fit(train_ds, epochs=2, verbose=0, shuffle=False)
    plain = [w.numpy() for w in model.weights]
    train_ds, _, model = _fresh()
    train.build_for_training(model, train_ds)
    model.fit(train_ds, epochs=2, verbose=0, shuffle=False)
    for a, b in zip(plain, model.weights):
        np.testing.assert_array_equal(a, b.numpy())


def test_resume_false_starts_again_and_early_stopping_restores_best(tmp_path):
    with pytest.raises(RuntimeError):
        _run(tmp_path, crash_at=0)
    train_ds, val_ds, model = _fresh()
    history = train.fit(model, train_ds, val_ds, epochs=2, output_dir=tmp_path, resume=False,
                        verbose=0)
    assert history.epoch == [0, 1]

    # Frozen weights (learning rate 0): val_loss never improves after epoch 0, so with
    # patience 2 training stops after epoch 2 and the epoch-0 weights are restored.
    train_ds, val_ds, model = _fresh()
    model.optimizer.learning_rate.assign(0.0)
    start = model.get_weights()
    history = train.fit(model, train_ds, val_ds, epochs=6, early_stopping=2, verbose=0)
    assert history.epoch == [0, 1, 2]
    for a, b in zip(start, model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind, params, expected", [
    ("step", {"drop": 0.5, "every": 2}, lambda e: 0.01 * 0.5 ** (e // 2)),
    ("cosine", {}, lambda e: 0.005 * (1 + math.cos(math.pi * e / 4))),
])
def test_lr_schedules(kind, params, expected):
    train_ds, _, model = _fresh()
    history = train.fit(model, train_ds.take(1), epochs=4, early_stopping=None,
                        lr_schedule=kind, lr_params=params, verbose=0)
    np.testing.assert_allclose(history.history["learning_rate"],
                               [expected(e) for e in range(4)], rtol=1e-6)
    with pytest.raises(ValueError, match="lr_schedule"):
        train.fit(model, train_ds, epochs=1, lr_schedule="linear")


def test_verbose_auto(monkeypatch):
    for name in ("CI", "PAPERMILL_EXECUTION", train.QUIET_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(train.QUIET_ENV, "1")
    assert train.resolve_verbose("auto") == 2
    monkeypatch.setenv(train.QUIET_ENV, "0")
    assert train.resolve_verbose("auto") == 1
    monkeypatch.delenv(train.QUIET_ENV)
    monkeypatch.setenv("CI", "true")
    assert train.resolve_verbose("auto") == 2
    monkeypatch.delenv("CI")
    monkeypatch.setattr(sys, "stdout", types.SimpleNamespace(isatty=lambda: False))
    assert train.resolve_verbose("auto") == 2
    assert train.resolve_verbose(0) == 0
    with pytest.raises(ValueError, match="verbose"):
        train.resolve_verbose("loud")


def test_bad_arguments():
    train_ds, _, model = _fresh()
    uncompiled = keras.Model(model.inputs, model.outputs)
    with pytest.raises(ValueError, match="[Cc]ompile"):
        train.fit(uncompiled, train_ds, epochs=1)
    with pytest.raises(ValueError, match="epochs"):
        train.fit(model, train_ds, epochs=0)
    with pytest.raises(ValueError, match="output_dir"):
        train.fit(model, train_ds, epochs=1, tensorboard=True)


def test_mixed_precision_only_with_gpu():
    had_gpu = bool(tf.config.list_physical_devices("GPU"))
    try:
        assert train.enable_mixed_precision_if_gpu() is had_gpu
        assert (keras.mixed_precision.global_policy().name == "mixed_float16") is had_gpu
    finally:
        keras.mixed_precision.set_global_policy("float32")


# ------------------------------------------------------------------ SupCon phases
def _tiny_supcon_module():
    """Stand-ins with the contract of faceattr_lab.models.supcon (used if it is missing)."""

    def projection_model(encoder, schemes, dim=128):
        features = encoder.output
        return keras.Model(encoder.input, {s.output: keras.layers.Dense(
            dim, activation="relu", name=f"{s.output}_projection")(features) for s in schemes})

    def classifier_model(encoder, schemes, hidden=512, dropout=0.5, trainable_encoder=False):
        encoder.trainable = trainable_encoder
        images = keras.Input(encoder.input.shape[1:])
        features = encoder(images, training=False if not trainable_encoder else None)
        outputs = {}
        for s in schemes:
            x = keras.layers.Dropout(dropout)(features)
            x = keras.layers.Dense(hidden, activation="relu")(x)
            x = keras.layers.Dropout(dropout)(x)
            outputs[s.output] = keras.layers.Dense(s.num_classes, activation="softmax",
                                                   name=s.output)(x)
        return keras.Model(images, outputs)

    return types.SimpleNamespace(projection_model=projection_model,
                                 classifier_model=classifier_model)


def _tiny_encoder():
    images = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255)(images)
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(images, x, name="encoder")


@pytest.mark.parametrize("views", [1, 2])
def test_fit_supcon_phases(tmp_path, monkeypatch, views):
    try:
        importlib.import_module("faceattr_lab.models.supcon")
    except ImportError:
        monkeypatch.setitem(sys.modules, "faceattr_lab.models.supcon", _tiny_supcon_module())
    scheme = types.SimpleNamespace(name="race_toy", output="race", kind="classification",
                                   num_classes=3, classes=("a", "b", "c"))
    fl.set_seed(3)
    train_ds, val_ds = _data(3)
    encoder = _tiny_encoder()
    snapshots = {}

    real_fit = train.fit

    def recording_fit(model, *args, **kwargs):
        phase = Path(args[3]).name
        snapshots[phase + "_before"] = [w.copy() for w in encoder.get_weights()]
        history = real_fit(model, *args, **kwargs)
        snapshots[phase + "_after"] = [w.copy() for w in encoder.get_weights()]
        return history

    monkeypatch.setattr(train, "fit", recording_fit)
    result = train.fit_supcon(encoder, [scheme], train_ds, val_ds, epochs_pretrain=2,
                              epochs_classifier=1, epochs_finetune=1, views=views,
                              hidden=16, projection_dim=8, output_dir=tmp_path, verbose=0)

    def same(a, b):
        return all(np.array_equal(x, y) for x, y in zip(snapshots[a], snapshots[b]))

    assert not same("pretrain_before", "pretrain_after")      # contrastive phase trains it
    assert same("classifier_before", "classifier_after")      # frozen encoder
    assert not same("finetune_before", "finetune_after")      # re-compiled: it trains now
    assert np.all(np.isfinite(result["pretrain"].history["loss"]))
    assert any(k.startswith("val_") and k.endswith("accuracy")
               for k in result["classifier"].history)
    assert set(result["model"].output) == {"race"}
    with pytest.raises(ValueError, match="classification"):
        train.fit_supcon(encoder, [types.SimpleNamespace(name="age", output="age",
                                                         kind="regression")],
                         train_ds, epochs_pretrain=1, epochs_classifier=1)


# ------------------------------------------------------------------ distribution strategy
def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    script = textwrap.dedent(f"""
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import keras, faceattr_lab as fl
        from faceattr_lab import train
        fl.set_seed(0)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        def build():
            inputs = keras.Input((4,))
            model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
            model.compile(keras.optimizers.SGD(0.1), loss="mse")
            return model
        x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
        y = x @ np.array([1.0, -2.0, 0.5, 0.0], dtype="float32")
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
        history = train.fit(build, ds, epochs=3, strategy=strategy, early_stopping=None,
                            output_dir={str(tmp_path)!r}, verbose=0)
        losses = history.history["loss"]
        assert strategy.num_replicas_in_sync == 2
        assert losses[-1] < losses[0], losses
        print("REPLICAS", strategy.num_replicas_in_sync, "LOSS", losses)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=240, env={**__import__("os").environ,
                                            "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "REPLICAS 2" in done.stdout


def test_first_step_benchmark_returns_both_variants():
    from faceattr_lab import benchmarks

    table = benchmarks.first_step_seconds(repeats=1, image_size=16, batch_size=4)
    assert table["variant"].tolist() == ["Keras builds lazily (traced twice)",
                                         "build_for_training first"]
    assert (table["median s to first step"] > 0).all() and (table["repeats"] == 1).all()
