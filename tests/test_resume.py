"""Resume that survives a real disconnect: SIGKILL mid-epoch, checkpoint intervals, skipped
finished phases, fingerprints, run_grid. Each resumed run is checked against an uninterrupted
run of the same seed (bit-equal weights on the CPU), never against its own earlier output."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

import faceattr_lab as fl
from faceattr_lab import experiments, train

SIZE = 16

# The data and model of every test; the SIGKILL test runs the same source in subprocesses.
BUILDERS = (Path(__file__).parent / "toy_training.py").read_text()
_builders = types.ModuleType("resume_builders")
exec(BUILDERS, _builders.__dict__)  # noqa: S102 - our own source, shared with the subprocess
fresh, data = _builders.fresh, _builders.data


class CountEpochs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(epoch)


class CrashAt(keras.callbacks.Callback):
    """Raises at the end of epoch ``epoch`` (between two epochs) or, with ``batch``, after
    that batch of the epoch (in the middle of it)."""

    def __init__(self, epoch, batch=None):
        super().__init__()
        self.at, self.batch, self.epoch = epoch, batch, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.batch is not None and self.epoch == self.at and batch == self.batch:
            raise RuntimeError("simulated crash mid-epoch")

    def on_epoch_end(self, epoch, logs=None):
        if self.batch is None and epoch == self.at:
            raise RuntimeError("simulated crash between epochs")


def _equal_weights(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def _saved_epochs(out: Path) -> int:
    """Epochs the checkpoint holds, read from its file (not from fit)."""
    with np.load(out / "backup" / "state.npz") as z:
        return json.loads(str(z["_meta"]))["epochs_done"]


def _csv_epochs(out: Path) -> list[int]:
    with (out / "history.csv").open() as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


# ------------------------------------------------------------------ a real kill
KILLABLE = BUILDERS + textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from faceattr_lab import train

    out, stall_epoch = Path(sys.argv[1]), int(sys.argv[2])


    class Stall(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_begin(self, batch, logs=None):
            if self.epoch == stall_epoch and batch == 2:   # the middle of the epoch
                (out / "stalled").write_text(str(self.epoch))
                time.sleep(600)                              # until SIGKILL


    train_ds, val_ds, net = fresh()
    history = train.fit(net, train_ds, val_ds, epochs=5, output_dir=out / "run",
                        early_stopping=10, checkpoint_every=0, verbose=2, callbacks=[Stall()])
    np.savez(out / "weights.npz", *net.get_weights())
    print("RESUME_INFO", json.dumps(history.resume_info), flush=True)
""")


def test_sigkill_in_the_middle_of_an_epoch_resumes_from_the_last_saved_epoch(tmp_path):
    script = tmp_path / "killable.py"
    script.write_text(KILLABLE)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    reference.mkdir(), killed.mkdir()

    def start(folder, stall_epoch):
        return subprocess.Popen([sys.executable, str(script), str(folder), str(stall_epoch)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env)

    uninterrupted = start(reference, -1)
    victim = start(killed, 3)
    deadline = time.monotonic() + 180
    while not (killed / "stalled").exists():
        assert victim.poll() is None, victim.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "the training never reached epoch 3"
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)   # a disconnect: no exception, no clean-up
    victim.wait(timeout=60)
    assert victim.returncode == -signal.SIGKILL
    # epochs 0-2 finished and were saved (checkpoint_every=0); epoch 3 was half done
    assert _saved_epochs(killed / "run") == 3
    assert _csv_epochs(killed / "run") == [0, 1, 2]

    again = subprocess.run([sys.executable, str(script), str(killed), "-1"], text=True,
                           capture_output=True, env=env, timeout=180)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"Resuming {killed / 'run'} after epoch 3 of 5" in again.stdout
    info = json.loads(again.stdout.split("RESUME_INFO", 1)[1].splitlines()[0])
    assert info["status"] == "resumed" and info["initial_epoch"] == 3
    assert _csv_epochs(killed / "run") == [0, 1, 2, 3, 4]
    assert (killed / "run" / "done.json").exists()
    assert not (killed / "run" / "backup").exists()

    out, _ = uninterrupted.communicate(timeout=180)
    assert uninterrupted.returncode == 0, out[-3000:]
    with np.load(reference / "weights.npz") as a, np.load(killed / "weights.npz") as b:
        assert _equal_weights([a[k] for k in a.files], [b[k] for k in b.files])


# ------------------------------------------------------------------ interval, iterations
def test_checkpoints_only_every_interval_and_a_crash_mid_epoch_resumes_from_the_last(
        tmp_path, monkeypatch):
    train_ds, val_ds, model = fresh()
    train.fit(model, train_ds, val_ds, epochs=6, early_stopping=10, verbose=0)
    reference = model.get_weights()

    clock = {"now": 0.0}
    monkeypatch.setattr(train, "_now", lambda: clock["now"])

    class Tick(keras.callbacks.Callback):   # every epoch takes 12 "seconds"
        def on_epoch_begin(self, epoch, logs=None):
            clock["now"] += 12.0

    saves = []
    real_save = train.ResumeCheckpoint.save

    def recording_save(self):
        saves.append(self.epochs_done)
        real_save(self)

    monkeypatch.setattr(train.ResumeCheckpoint, "save", recording_save)
    out = tmp_path / "run"
    train_ds, val_ds, model = fresh()
    with pytest.raises(RuntimeError, match="mid-epoch"):
        train.fit(model, train_ds, val_ds, epochs=6, output_dir=out, early_stopping=10,
                  checkpoint_every=30, verbose=0, callbacks=[Tick(), CrashAt(4, batch=1)])
    assert saves == [3]           # at 36 s (after epoch 3 of 6); none at 12, 24, 48 s
    assert _saved_epochs(out) == 3

    clock["now"] = 0.0
    train_ds, val_ds, model = fresh()
    history = train.fit(model, train_ds, val_ds, epochs=6, output_dir=out, early_stopping=10,
                        checkpoint_every=30, verbose=0, callbacks=[Tick()])
    assert history.epoch == [3, 4, 5]
    assert saves == [3]           # 12, 24 s, then the last epoch: the finished state instead
    assert (out / "done.json").exists() and not (out / "backup").exists()
    assert _equal_weights(reference, model.get_weights())


def test_one_iteration_of_the_training_set_per_epoch(tmp_path):
    """fit trains epoch k on the dataset's k-th iteration (what resume replays), with or
    without validation and output_dir: after 3 epochs the next iteration is the 4th."""
    def first_batch(ds):
        return next(iter(ds))[0].numpy()

    for epochs, out in ((1, None), (3, None), (3, tmp_path / "run")):
        train_ds, val_ds, model = fresh()
        train.fit(model, train_ds, val_ds, epochs=epochs, output_dir=out, early_stopping=None,
                  verbose=0)
        after_fit = first_batch(train_ds)
        fl.set_seed(7)
        reference, _ = data(7)          # built alike: the same shuffle seed
        for _ in range(epochs):
            iter(reference)
        assert np.array_equal(after_fit, first_batch(reference))
        iter(reference)
        assert not np.array_equal(after_fit, first_batch(reference))   # and not one more


def test_bad_checkpoint_arguments():
    train_ds, _, model = fresh()
    for bad in (-1, float("inf"), "30", True):
        with pytest.raises(ValueError, match="checkpoint_every"):
            train.fit(model, train_ds, epochs=1, checkpoint_every=bad)
    with pytest.raises(ValueError, match="fingerprint"):
        train.fit(model, train_ds, epochs=1, fingerprint=42)


# ------------------------------------------------------------------ fingerprint
def test_a_checkpoint_made_with_other_settings_is_never_continued(tmp_path):
    out = tmp_path / "run"
    train_ds, val_ds, model = fresh()
    with pytest.raises(RuntimeError):
        train.fit(model, train_ds, val_ds, epochs=3, output_dir=out, verbose=0,
                  callbacks=[CrashAt(0)])
    assert _saved_epochs(out) == 1

    cases = [  # (what changes, the words of the warning)
        (dict(epochs=4), "epochs 3 -> 4"),
        (dict(seed=8), "starting weights, optimizer and RNG state"),
        (dict(take=5), "training data changed"),
        (dict(fingerprint={"seed": 1}), "fingerprint['seed']"),
        (dict(learning_rate=0.02), "optimizer changed"),
    ]
    for change, words in cases:
        train_ds, val_ds, model = fresh(change.get("seed", 7))
        if "learning_rate" in change:
            model.optimizer.learning_rate.assign(change["learning_rate"])
        if "take" in change:
            train_ds = train_ds.take(change["take"])
        epochs = change.get("epochs", 4)
        with pytest.warns(UserWarning, match=r"other settings: .*" + words.replace(
                "[", r"\[").replace("]", r"\]")):
            history = train.fit(model, train_ds, val_ds, epochs=epochs, output_dir=out,
                                fingerprint=change.get("fingerprint"), verbose=0)
        assert history.epoch == list(range(epochs))        # afresh, all epochs
        assert history.resume_info["status"] == "new"


# ------------------------------------------------------------------ finished phases
def test_a_finished_training_is_loaded_not_repeated(tmp_path):
    out = tmp_path / "run"
    train_ds, val_ds, model = fresh()
    first = train.fit(model, train_ds, val_ds, epochs=3, output_dir=out, verbose=0)
    weights, steps = model.get_weights(), int(model.optimizer.iterations.numpy())
    csv_text = (out / "history.csv").read_text()

    train_ds, val_ds, model = fresh()                    # a re-run notebook
    counter = CountEpochs()
    again = train.fit(model, train_ds, val_ds, epochs=3, output_dir=out, verbose=0,
                      callbacks=[counter])
    assert counter.epochs == []                          # nothing trained
    assert again.resume_info["status"] == "finished earlier"
    assert again.history == first.history and again.epoch == [0, 1, 2]
    assert _equal_weights(weights, model.get_weights())
    assert int(model.optimizer.iterations.numpy()) == steps == 3 * 6
    assert (out / "history.csv").read_text() == csv_text

    train_ds, val_ds, model = fresh()
    history = train.fit(model, train_ds, val_ds, epochs=3, output_dir=out, resume=False,
                        verbose=0, callbacks=[counter])
    assert counter.epochs == [0, 1, 2] and history.resume_info["status"] == "new"


RACE_TOY = _builders.RACE_TOY


def _encoder():
    return _builders.encoder()


def test_fit_supcon_rerun_skips_finished_phases_and_ends_as_an_uninterrupted_run(
        tmp_path, monkeypatch):
    real_fit = train.fit
    trained = {}
    crash = {"finetune": None}

    def instrumented_fit(model, train_ds, val_ds, epochs, output_dir, **kwargs):
        phase = Path(output_dir).name
        counter = CountEpochs()
        extra = [counter] + ([crash[phase]] if crash.get(phase) else [])
        try:
            return real_fit(model, train_ds, val_ds, epochs, output_dir,
                            callbacks=extra, **kwargs)
        finally:
            trained[phase] = counter.epochs

    monkeypatch.setattr(train, "fit", instrumented_fit)

    def supcon(out):
        fl.set_seed(3)
        train_ds, val_ds = data(3)
        return train.fit_supcon(_encoder(), [RACE_TOY], train_ds, val_ds, epochs_pretrain=2,
                                epochs_classifier=2, epochs_finetune=3, hidden=8,
                                projection_dim=8, early_stopping=None, output_dir=out,
                                verbose=0)

    full = supcon(tmp_path / "full")
    crash["finetune"] = CrashAt(1)        # dies after fine-tuning epoch 2 of 3
    with pytest.raises(RuntimeError):
        supcon(tmp_path / "crashed")
    crash["finetune"] = None
    trained.clear()
    resumed = supcon(tmp_path / "crashed")

    assert trained == {"pretrain": [], "classifier": [], "finetune": [2]}
    for phase in ("pretrain", "classifier"):
        assert resumed[phase].history == full[phase].history      # reloaded, not re-run
        assert resumed[phase].resume_info["status"] == "finished earlier"
    assert resumed["finetune"].epoch == [2]
    assert _equal_weights(full["model"].get_weights(), resumed["model"].get_weights())


def test_a_skipped_frozen_phase_then_fit_without_recompile_behaves_as_uninterrupted(tmp_path):
    """Lab 03's trap: ``base.trainable = True`` without re-compiling trains nothing new,
    because Keras reuses the training step it traced while the base was frozen. A re-run
    that skips the frozen phase must leave the model the same way."""
    def two_phases(out, crash=None):
        fl.set_seed(11)
        train_ds, val_ds = data(11)
        base = _encoder()
        images = keras.Input((SIZE, SIZE, 3))
        model = keras.Model(images, {"race": keras.layers.Dense(3, activation="softmax",
                                                                name="race")(base(images))})
        base.trainable = False
        model.compile(keras.optimizers.Adam(0.01),
                      loss={"race": "sparse_categorical_crossentropy"})
        train.fit(model, train_ds, val_ds, 2, out / "phase1", early_stopping=None, verbose=0)
        frozen = [w.numpy().copy() for w in base.weights]
        base.trainable = True                                  # ... and no compile
        train.fit(model, train_ds, val_ds, 3, out / "phase2", early_stopping=None, verbose=0,
                  callbacks=[crash] if crash else [])
        return model, base, frozen

    model, base, frozen = two_phases(tmp_path / "full")
    assert _equal_weights(frozen, [w.numpy() for w in base.weights])   # the trap itself
    full = model.get_weights()

    with pytest.raises(RuntimeError):
        two_phases(tmp_path / "crashed", crash=CrashAt(0))
    model, base, frozen = two_phases(tmp_path / "crashed")
    assert _equal_weights(frozen, [w.numpy() for w in base.weights])
    assert _equal_weights(full, model.get_weights())


# ------------------------------------------------------------------ run_grid
@pytest.fixture()
def faces(face_table):
    return face_table(40, SIZE)


def test_run_grid_skips_finished_runs_and_retrains_a_changed_one(faces, tmp_path, monkeypatch):
    statuses = []
    real_fit = train.fit

    def recording_fit(*args, **kwargs):
        history = real_fit(*args, **kwargs)
        statuses.append(history.resume_info["status"])
        return history

    monkeypatch.setattr(train, "fit", recording_fit)
    configs = {"a": {"conv_filters": (4,), "dense_units": 8},
               "b": {"conv_filters": (4,), "dense_units": 8, "dropout": 0.2}}
    kwargs = dict(epochs=2, batch_size=8, seeds=(0, 1), echo=False,
                  output_dir=tmp_path / "grid")
    schemes = ["gender"]
    train_df, val_df = faces.iloc[:32], faces.iloc[32:]
    first = experiments.run_grid(configs, train_df, val_df, None, schemes, SIZE, **kwargs)
    assert statuses == ["new"] * 4

    statuses.clear()
    again = experiments.run_grid(configs, train_df, val_df, None, schemes, SIZE, **kwargs)
    assert statuses == ["finished earlier"] * 4
    columns = ["run", "seed", "split", "task", "metric", "value", "params", "epochs"]
    pd.testing.assert_frame_equal(first[columns], again[columns])

    statuses.clear()
    changed = {**configs, "b": {**configs["b"], "augment": True}}   # same model, new data
    with pytest.warns(UserWarning, match=r"fingerprint\['knobs'\] changed"):
        experiments.run_grid(changed, train_df, val_df, None, schemes, SIZE, **kwargs)
    assert statuses == ["finished earlier"] * 2 + ["new"] * 2


# ------------------------------------------------------------------ the benchmark
def test_resume_benchmark_table_and_command():
    from faceattr_lab import benchmarks, cli

    table = benchmarks.resume_overhead(n=64, image_size=16, batch_size=16, epochs=1,
                                       repeats=1, n_val=16)
    rows = table.set_index("variant")
    assert list(rows.index) == ["bare model.fit", "fl.train.fit (resumable)"]
    assert (rows["median s/epoch"] > 0).all() and (rows["repeats"] == 1).all()
    bare, kit = rows["median s/epoch"]
    assert rows["overhead"].tolist() == pytest.approx([0.0, kit / bare - 1])
    args = cli.build_parser().parse_args(["bench", "resume", "--epochs", "2", "--repeats", "9"])
    assert args.func is cli._cmd_bench_resume and (args.epochs, args.repeats, args.n) == (2, 9,
                                                                                        2000)
    with pytest.raises(ValueError, match="positive"):
        benchmarks.resume_overhead(repeats=0)
