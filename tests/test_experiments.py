"""Experiment grids: one-factor-at-a-time configs, and run_grid's tidy table on tiny data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import faceattr_lab as fl
from faceattr_lab import experiments


@pytest.fixture()
def tiny_table(face_table):
    """48 hand-made 32 px images: brighter for gender 1, ages 1..95 years."""
    return face_table(48, 32)


def test_ablation_configs_change_one_knob_at_a_time():
    base = {"dropout": 0.5, "conv_filters": (16, 32)}
    configs = experiments.ablation_configs(base, dropout=[0.4, 0.5, 0.6],
                                           conv_filters=[(16, 32, 64)], optimizer=["rmsprop"])
    assert list(configs) == ["base", "dropout=0.4", "dropout=0.6", "conv_filters=16-32-64",
                             "optimizer=rmsprop"]
    assert configs["base"] == base
    assert configs["dropout=0.6"] == {"dropout": 0.6, "conv_filters": (16, 32)}
    assert configs["optimizer=rmsprop"] == {**base, "optimizer": "rmsprop"}


def test_unknown_knob_is_refused():
    with pytest.raises(ValueError, match="unknown knob"):
        experiments.ablation_configs({"dropuot": 0.5})
    with pytest.raises(ValueError, match="list of values"):
        experiments.ablation_configs({}, dropout=0.6)


def test_run_grid_scores_validation_and_tests_only_when_asked(tiny_table):
    schemes = [fl.labels.get("age_years_116"), fl.labels.get("gender")]
    train, val, test = tiny_table.iloc[:32], tiny_table.iloc[32:40], tiny_table.iloc[40:]
    configs = {"small": {"conv_filters": (4,), "dense_units": 8, "dropout": 0.2},
               "small_separate": {"conv_filters": (4,), "dense_units": 8, "separate": True}}
    table = experiments.run_grid(configs, train, val, test, schemes, 32, epochs=1,
                                 batch_size=16, seeds=(0, 1), loss_weights={"age": 2.0},
                                 echo=False)
    assert list(table.columns) == list(experiments.GRID_COLUMNS)
    expected = {("age", m) for m in ("mae", "rmse", "mean_signed_error", "loss")}
    expected |= {("gender", m) for m in ("accuracy", "balanced_accuracy", "macro_f1", "loss")}
    expected |= {("all", "loss")}
    for run in configs:
        for seed in (0, 1):
            for split, part in (("val", val), ("test", test)):
                rows = table[(table.run == run) & (table.seed == seed) & (table.split == split)]
                assert set(zip(rows.task, rows.metric)) == expected
                assert len(rows) == len(expected)
                values = rows.set_index(["task", "metric"])["value"]
                # the total is the weighted sum of the head losses (age weighted 2)
                assert values["all", "loss"] == pytest.approx(
                    2.0 * values["age", "loss"] + values["gender", "loss"], rel=1e-5)
                # every split is scored on its own faces: gender accuracy is a multiple of 1/n
                hits = values["gender", "accuracy"] * len(part)
                assert hits == pytest.approx(round(hits), abs=1e-6)
    # intervals only on the test split, around the figure, for per-face means only
    test_rows = table[table.split == "test"].set_index(["run", "seed", "task", "metric"])
    acc = test_rows.loc[("small", 0, "gender", "accuracy")]
    assert acc.ci_low <= acc.value <= acc.ci_high
    assert test_rows.loc[("small", 0, "gender", "macro_f1")][["ci_low", "ci_high"]].isna().all()
    assert table.loc[table.split == "val", ["ci_low", "ci_high"]].isna().all().all()
    # separate networks: two trunks, so more weights than one shared trunk
    params = table.groupby("run")["params"].first()
    assert params["small_separate"] > params["small"]
    # without a test split the test is never touched
    no_test = experiments.run_grid({"small": configs["small"]}, train, val, None, schemes, 32,
                                   epochs=1, batch_size=16, seeds=(0,), echo=False)
    assert set(no_test.split) == {"val"}
    with pytest.raises(ValueError, match="validation split"):
        experiments.run_grid(configs, train, None, test, schemes, 32, epochs=1, batch_size=16)


def test_same_seed_gives_same_metrics(tiny_table):
    schemes = [fl.labels.get("age_years_116"), fl.labels.get("gender")]
    train, val = tiny_table.iloc[:32], tiny_table.iloc[32:]
    configs = {"a": {"conv_filters": (4,), "dense_units": 8, "augment": True}}
    kwargs = dict(epochs=1, batch_size=16, echo=False)
    first = experiments.run_grid(configs, train, val, None, schemes, 32, seeds=(3,), **kwargs)
    again = experiments.run_grid(configs, train, val, None, schemes, 32, seeds=(3,), **kwargs)
    np.testing.assert_allclose(first["value"].to_numpy(), again["value"].to_numpy(), rtol=1e-6)
    other = experiments.run_grid(configs, train, val, None, schemes, 32, seeds=(4,), **kwargs)
    assert not np.allclose(first["value"].to_numpy(), other["value"].to_numpy())


def test_compare_on_validation_pairs_runs_by_seed():
    # a hand-made grid: a - b per seed is 0.5, 1.0, 0.1 (seed 9 exists for a only)
    rows = [("a", 1, 2.0), ("a", 2, 3.0), ("a", 3, 1.1), ("a", 9, 0.0),
            ("b", 1, 1.5), ("b", 2, 2.0), ("b", 3, 1.0)]
    grid = pd.DataFrame([{"run": r, "seed": s, "split": "val", "task": "all", "metric": "loss",
                          "value": v} for r, s, v in rows])
    test_rows = grid.assign(split="test", value=100.0)  # must be ignored
    result = experiments.compare_on_validation(pd.concat([grid, test_rows]), "a", "b")
    diffs = np.array([0.5, 1.0, 0.1])
    assert result["seeds"] == [1, 2, 3]
    assert result["mean"] == pytest.approx(diffs.mean())
    assert result["std"] == pytest.approx(diffs.std(ddof=1))
    # t(0.975, 2) = 4.302653 (tables); half width = t * s / sqrt(3)
    half = 4.302653 * diffs.std(ddof=1) / np.sqrt(3)
    assert result["ci_low"] == pytest.approx(diffs.mean() - half, rel=1e-5)
    assert result["ci_high"] == pytest.approx(diffs.mean() + half, rel=1e-5)
    assert result["real"] is False
    with pytest.raises(ValueError, match="share 0 seed"):
        experiments.compare_on_validation(grid[grid.run == "a"].assign(run="c")
                                          .pipe(lambda g: pd.concat([g, grid[grid.run == "b"]
                                                                     .assign(seed=99)])), "c", "b")


def test_lr_schedule_knob_decays_the_rate_per_epoch(tiny_table, tmp_path):
    schemes = [fl.labels.get("age_years_116"), fl.labels.get("gender")]
    train, val = tiny_table.iloc[:32], tiny_table.iloc[32:]
    small = {"conv_filters": (4,), "dense_units": 8, "learning_rate": 4e-3}
    configs = {"constant": small, "cosine": {**small, "lr_schedule": "cosine"}}
    experiments.run_grid(configs, train, val, None, schemes, 32, epochs=3, batch_size=16,
                         seeds=(0,), early_stopping=None, output_dir=tmp_path, echo=False)
    # fit's cosine: epoch e of n at base * (1 + cos(pi e / n)) / 2 -> 1, 0.75, 0.25 of the base
    def history(run):  # the finished run's History, as fit keeps it
        return json.loads((tmp_path / run / "seed0" / "done.json").read_text())["history"]

    np.testing.assert_allclose(history("cosine")["learning_rate"], [4e-3, 3e-3, 1e-3], rtol=1e-5)
    assert "learning_rate" not in history("constant")  # no schedule: the compiled rate
    # the default is study C's constant rate; an unknown schedule is refused before training
    assert experiments.DEFAULT_KNOBS["lr_schedule"] is None
    with pytest.raises(ValueError, match="lr_schedule"):
        experiments.run_grid({"x": {**small, "lr_schedule": "linear"}}, train, val, None,
                             schemes, 32, epochs=1, batch_size=16, echo=False)
    assert experiments.ablation_configs(small, lr_schedule=["cosine"])["lr_schedule=cosine"] \
        == configs["cosine"]
