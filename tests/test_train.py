"""fit: resume after a crash, reproducibility, schedules, logging; fit_supcon phases; strategy."""

import csv
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

import toy_training  # the tiny data and model shared with test_resume.py

SIZE = 32


def _data(seed, n=48, batch=8, classes=3):
    """Random 32 px images whose class sets a brightness offset; a reshuffling tf.data set."""
    return toy_training.data(seed, n=n, batch=batch, classes=classes, size=SIZE)


def _model(classes=3):
    """Tiny CNN with a random augmentation layer and dropout (both draw from SeedGenerators)."""
    return toy_training.model(classes=classes, size=SIZE)


def _fresh(seed=7):
    """What a re-run notebook does: seed, then build data and model."""
    return toy_training.fresh(seed, size=SIZE)


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
    # the crash (an exception between two epochs) saved epoch 2's state before propagating
    assert (tmp_path / "crashed" / "backup" / "state.npz").exists()
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
    monkeypatch.setattr(train, "_replay_shuffles", lambda ds, count: None)  # forget shuffles
    monkeypatch.setattr(train, "_restore_rng", lambda model, arrays: None)   # forget RNG
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
    for name in ("CI", "PAPERMILL_EXECUTION", fl.config.QUIET_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(fl.config.QUIET_ENV, "1")
    assert train.resolve_verbose("auto") == 2
    monkeypatch.setenv(fl.config.QUIET_ENV, "0")
    assert train.resolve_verbose("auto") == 1
    monkeypatch.delenv(fl.config.QUIET_ENV)
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


# ------------------------------------------------------------------ SupCon phases
def _tiny_encoder():
    return toy_training.encoder(size=SIZE)


@pytest.mark.parametrize("views", [1, 2])
def test_fit_supcon_phases(tmp_path, monkeypatch, views):
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
                              augment=_jitter if views == 2 else None,
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


RACE_TOY = toy_training.RACE_TOY


def _jitter(images):
    """A random augmentation: per-pixel noise, so the two views of an image differ."""
    return images + tf.random.uniform(tf.shape(images), -8.0, 8.0)


def _shift(images):
    """An augmentation that is easy to recognise downstream: +1000 on every pixel."""
    return images + 1000.0


def _supcon_numpy(labels, features, temperature=0.1, base_temperature=0.07):
    """Khosla et al. eq. 2 (L_out) for one view per sample, float64, vectorised."""
    labels = np.asarray(labels).reshape(-1)
    z = np.asarray(features, np.float64)
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    logits = z @ z.T / temperature
    not_self = ~np.eye(len(labels), dtype=bool)
    positive = (labels[:, None] == labels[None, :]) & not_self
    log_prob = logits - np.log((np.exp(logits) * not_self).sum(axis=1, keepdims=True))
    count = positive.sum(axis=1)
    mean_log_prob = np.where(count > 0, (log_prob * positive).sum(axis=1) / np.maximum(count, 1),
                             0.0)
    return float(np.mean(-(temperature / base_temperature) * mean_log_prob))


def test_fit_supcon_two_views_need_augment():
    train_ds, val_ds = _data(3)
    with pytest.raises(ValueError, match="augment"):
        train.fit_supcon(_tiny_encoder(), [RACE_TOY], train_ds, val_ds, epochs_pretrain=1,
                         epochs_classifier=1, views=2)
    with pytest.raises(ValueError, match="augment"):
        train.two_views(train_ds, None)


def test_fit_supcon_validation_loss_is_on_one_unaugmented_view(monkeypatch):
    fl.set_seed(5)
    train_ds, val_ds = _data(5)
    val_x = np.concatenate([x for x, _ in val_ds])
    val_y = np.concatenate([y["race"] for _, y in val_ds])
    encoder = _tiny_encoder()
    seen = {}
    real_fit = train.fit

    def recording_fit(model, train_data, val_data, *args, **kwargs):
        if "pretrain" not in seen:
            seen["pretrain"] = (model, train_data, val_data)
        return real_fit(model, train_data, val_data, *args, **kwargs)

    monkeypatch.setattr(train, "fit", recording_fit)
    result = train.fit_supcon(encoder, [RACE_TOY], train_ds, val_ds, epochs_pretrain=1,
                              epochs_classifier=1, views=2, augment=_shift,
                              projection_head="supcontrast", projection_dim=8,
                              early_stopping=None, verbose=0)
    projector, pretrain_train, pretrain_val = seen["pretrain"]
    # training: two (shifted) views per image, stacked; validation: the images as they are
    first_x, first_y = next(iter(pretrain_train))
    assert first_x.shape[0] == first_y["race"].shape[0] == 2 * 8
    assert float(tf.reduce_min(first_x)) >= 1000.0
    np.testing.assert_array_equal(np.concatenate([x for x, _ in pretrain_val]), val_x)
    # the recorded val_loss is 0.1 x SupCon of the un-augmented val images, one view each
    # (the encoder is frozen in the classifier phase, so the projector is as it was then)
    projections = projector.predict(val_x, verbose=0)["race"]
    expected = np.mean([0.1 * _supcon_numpy(val_y[i:i + 8], projections[i:i + 8])
                        for i in (0, 8)])
    np.testing.assert_allclose(result["pretrain"].history["val_loss"][0], expected, rtol=1e-4)
    # and neither the augmented images nor two identical copies of each image
    shifted = projector.predict(val_x + 1000.0, verbose=0)["race"]
    for other in (shifted, projections):
        doubled = np.mean([0.1 * _supcon_numpy(np.tile(val_y[i:i + 8], 2),
                                               np.concatenate([other[i:i + 8]] * 2))
                           for i in (0, 8)])
        assert not np.isclose(result["pretrain"].history["val_loss"][0], doubled, rtol=1e-3)


def test_projection_heads_keras_io_and_supcontrast():
    from faceattr_lab.models import supcon

    fl.set_seed(0)
    encoder = _tiny_encoder()   # a 4-vector per image
    images = np.random.default_rng(0).uniform(0, 255, (16, SIZE, SIZE, 3)).astype("float32")

    def head_layers(model):
        return [(type(layer).__name__, getattr(layer, "units", None),
                 getattr(getattr(layer, "activation", None), "__name__", None))
                for layer in model.layers
                if not isinstance(layer, keras.layers.InputLayer) and layer is not encoder]

    keras_io = supcon.projection_model(encoder, [RACE_TOY], dim=8, head="keras_io")
    assert head_layers(keras_io) == [("Dense", 8, "relu")]
    assert np.all(keras_io.predict(images, verbose=0)["race"] >= 0)   # ends in a ReLU

    supcontrast = supcon.projection_model(encoder, [RACE_TOY], dim=8, head="supcontrast")
    assert head_layers(supcontrast) == [("Dense", 4, "relu"), ("Dense", 8, "linear"),
                                        ("UnitNormalization", None, None)]
    projected = supcontrast.predict(images, verbose=0)["race"]
    assert np.any(projected < 0)                                       # ends linear
    np.testing.assert_allclose(np.linalg.norm(projected, axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="keras_io"):
        supcon.projection_model(encoder, [RACE_TOY], head="mlp")


# ------------------------------------------------------------------ class weights
def _two_head_model():
    """Deterministic (no dropout, no random layer) two-head model with a zero learning rate."""
    images = keras.Input((SIZE, SIZE, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(images))
    model = keras.Model(images, {
        "race": keras.layers.Dense(3, activation="softmax", name="race")(pooled),
        "gender": keras.layers.Dense(2, activation="softmax", name="gender")(pooled)})
    model.compile(keras.optimizers.SGD(0.0),
                  loss={"race": "sparse_categorical_crossentropy",
                        "gender": "sparse_categorical_crossentropy"})
    return model


def test_class_weight_becomes_per_output_sample_weights():
    fl.set_seed(0)
    rng = np.random.default_rng(0)
    race = np.array([0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2])
    gender = rng.integers(0, 2, size=12)
    x = rng.uniform(0, 255, size=(12, SIZE, SIZE, 3)).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices((x, {"race": race, "gender": gender})).batch(12)
    weights = fl.pipeline.class_weights(race)
    by_hand = np.array([12 / (3 * 7), 12 / (3 * 3), 12 / (3 * 2)])   # n / (k * count)
    np.testing.assert_allclose([weights[c] for c in range(3)], by_hand, rtol=1e-6)

    model = _two_head_model()
    history = train.fit(model, ds, epochs=1, early_stopping=None, verbose=0,
                        class_weight={"race": weights})
    p = model.predict(x, verbose=0)     # learning rate 0: the weights the step saw
    ce_race = -np.log(p["race"][np.arange(12), race].astype(np.float64))
    ce_gender = -np.log(p["gender"][np.arange(12), gender].astype(np.float64))
    # Keras averages weight * loss over the batch; gender is not named, so it weighs 1
    expected = np.mean(by_hand[race] * ce_race) + np.mean(ce_gender)
    np.testing.assert_allclose(history.history["loss"][0], expected, rtol=1e-5)
    assert not np.isclose(expected, np.mean(ce_race) + np.mean(ce_gender), rtol=1e-3)

    weighted = train.with_class_weights(ds, {"race": {1: 2.0}})   # classes 0, 2 weigh 1
    _, _, sample_weight = next(iter(weighted))
    np.testing.assert_array_equal(sample_weight["race"], np.where(race == 1, 2.0, 1.0))
    np.testing.assert_array_equal(sample_weight["gender"], np.ones(12))


def test_class_weight_bad_arguments():
    x = np.zeros((4, SIZE, SIZE, 3), "float32")
    y = {"race": np.array([0, 1, 2, 0]), "gender": np.array([0, 1, 0, 1])}
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    model = _two_head_model()
    with pytest.raises(ValueError, match="sample weights already"):
        with_weights = tf.data.Dataset.from_tensor_slices(
            (x, y, {"race": np.ones(4), "gender": np.ones(4)})).batch(4)
        train.fit(model, with_weights, epochs=1, class_weight={"race": {0: 2.0}})
    with pytest.raises(ValueError, match="output"):
        train.fit(model, ds, epochs=1, class_weight={0: 1.0, 1: 2.0})   # Keras' flat form
    with pytest.raises(ValueError, match="which the labels do not have"):
        train.fit(model, ds, epochs=1, class_weight={"age": {0: 1.0}})
    floats = tf.data.Dataset.from_tensor_slices((x, {"race": np.ones(4, "float32")})).batch(4)
    with pytest.raises(ValueError, match="int class labels"):
        train.fit(model, floats, epochs=1, class_weight={"race": {0: 1.0}})


# ------------------------------------------------------------------ compile_for learning rate
def test_compile_for_learning_rate_and_optimizer_instances():
    gender = fl.labels.get("gender")
    features = keras.Input((4,))
    model = keras.Model(features, fl.models.add_heads(features, [gender]))

    def rate():
        return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))

    fl.models.compile_for(model, [gender], optimizer=keras.optimizers.SGD(0.05))
    assert rate() == pytest.approx(0.05)                   # None: the instance's own rate
    fl.models.compile_for(model, [gender], optimizer=keras.optimizers.SGD(0.05),
                          learning_rate=0.2)
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert rate() == pytest.approx(0.2)                    # explicit: honoured
    fl.models.compile_for(model, [gender], optimizer="rmsprop")
    assert rate() == pytest.approx(1e-3)                   # None for a name: 1e-3
    fl.models.compile_for(model, [gender], optimizer=keras.optimizers.Adam,
                          learning_rate=0.01)
    assert isinstance(model.optimizer, keras.optimizers.Adam) and rate() == pytest.approx(0.01)
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    fl.models.compile_for(model, [gender], optimizer=keras.optimizers.SGD(schedule))
    with pytest.raises(ValueError, match="LearningRateSchedule"):
        fl.models.compile_for(model, [gender], optimizer=keras.optimizers.SGD(schedule),
                              learning_rate=0.2)


# ------------------------------------------------------------------ gender_conditioned freezing
def test_gender_conditioned_frozen_until_counts_layers_with_weights():
    from faceattr_lab.models import conditioned

    schemes = [fl.labels.get("gender"), fl.labels.get("race_utk5")]
    model = conditioned.gender_conditioned("MobileNetV2", (SIZE, SIZE, 3), schemes,
                                           embedding_dim=8, frozen_until=-3, weights=None)
    base = model.get_layer("mobilenetv2")
    application = base.get_layer("mobilenetv2_application")
    weighted = [layer.name for layer in application.layers if layer.weights
                and not isinstance(layer, keras.layers.BatchNormalization)]
    assert weighted[-3:] == ["block_16_depthwise", "block_16_project", "Conv_1"]

    def trainable():
        return [layer.name for layer in application.layers if layer.trainable_weights]

    assert trainable() == weighted[-3:]
    conditioned._freeze_until(base, 2)         # freeze the first 2 weighted layers
    assert trainable() == weighted[2:]


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


@pytest.mark.parametrize("epochs, words", [(1, "(1 epoch,"), (2, "(2 epochs,")])
def test_a_finished_training_prints_its_last_epoch_when_loaded(tmp_path, capsys, epochs, words):
    """A rerun that loads a finished training still shows the numbers a training log ends with:
    the last epoch's metrics, each as history.csv recorded it (Keras' "name: 0.1234" format)."""
    train_ds, val_ds, model = _fresh()
    train.fit(model, train_ds, val_ds, epochs=epochs, output_dir=tmp_path, early_stopping=None,
              verbose=0)
    with (tmp_path / "history.csv").open() as f:
        last = list(csv.DictReader(f))[-1]
    capsys.readouterr()

    train_ds, val_ds, model = _fresh()  # a re-run notebook
    again = train.fit(model, train_ds, val_ds, epochs=epochs, output_dir=tmp_path,
                      early_stopping=None, verbose=2)
    out = capsys.readouterr().out
    assert again.resume_info["status"] == "finished earlier"
    assert f"finished earlier {words}" in out
    assert f"epoch {epochs} (the last): " in out
    assert {"loss", "val_loss"} < set(last)
    for key in set(last) - {"epoch"}:
        assert f"{key}: {float(last[key]):.4f}" in out, key


def test_fit_supcon_classifier_on_stored_features(tmp_path):
    """Phase 2 on stored encoder vectors: the encoder stays as it was, and the classifier
    model carries the heads that were trained (its validation accuracy is theirs)."""
    fl.set_seed(4)
    train_ds, val_ds = _data(4)
    encoder = _tiny_encoder()
    result = train.fit_supcon(encoder, [RACE_TOY], train_ds, val_ds, epochs_pretrain=1,
                              epochs_classifier=3, hidden=16, projection_dim=8,
                              classifier_on_features=True, early_stopping=None,
                              output_dir=tmp_path, verbose=0)
    after_pretrain = [w.copy() for w in encoder.get_weights()]
    classifier = result["model"]
    assert not encoder.trainable
    assert (tmp_path / "classifier" / "done.json").is_file()
    val_x = np.concatenate([x for x, _ in val_ds])
    val_y = np.concatenate([y["race"] for _, y in val_ds])
    predicted = classifier.predict(val_x, verbose=0)["race"].argmax(axis=1)
    history = result["classifier"].history
    key = next(k for k in history if k.startswith("val_") and k.endswith("accuracy"))
    assert history[key][-1] == pytest.approx(np.mean(predicted == val_y))
    assert all(np.array_equal(a, b) for a, b in zip(after_pretrain, encoder.get_weights()))
    # the same vectors the heads were trained on: the frozen encoder in inference mode
    vectors, labels, batch = train._stored_features(encoder, val_ds)
    np.testing.assert_allclose(vectors, encoder.predict(val_x, verbose=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(labels["race"], val_y)
    assert batch == 8


def test_one_and_two_views_with_the_kit_augmentation_are_reproducible():
    """Stateless per-image seeds: the same views on every run, new ones each epoch, and two
    different views of each image (the parallel map cannot reorder the draws)."""
    def views(seed):
        fl.set_seed(seed)
        train_ds, _ = _data(seed)
        augment = fl.pipeline.augmentation(brightness=0.0, contrast=0.0, seed=seed)
        return train.two_views(train_ds, augment), train.one_view(train_ds, augment)

    (two, one), (two_again, one_again) = views(2), views(2)
    first_epoch = [x.numpy() for x, _ in two]
    assert all(np.array_equal(a, b.numpy()) for a, (b, _) in zip(first_epoch, two_again))
    assert all(np.array_equal(a.numpy(), b.numpy()) for (a, _), (b, _) in zip(one, one_again))
    second_epoch = [x.numpy() for x, _ in two]
    assert not all(np.array_equal(a, b) for a, b in zip(first_epoch, second_epoch))
    x, y = next(iter(two))
    half = x.shape[0] // 2
    assert not np.array_equal(x[:half].numpy(), x[half:].numpy())  # two different views
    np.testing.assert_array_equal(y["race"][:half], y["race"][half:])
    with pytest.raises(ValueError, match="augment"):
        train.one_view(two, None)
