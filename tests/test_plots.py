"""Tests for faceattr_lab.plots: every figure builds from a small hand-made input, is labelled,
and saves as a PNG."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from PIL import Image  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from faceattr_lab import plots  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check_labelled_and_saves(fig, tmp_path, name="fig"):
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert axes, "figure has no axes"
    for ax in axes:
        assert ax.get_xlabel() and ax.get_ylabel(), f"unlabelled axes in {name}"
    assert fig.get_suptitle() or all(ax.get_title() for ax in axes), f"{name} has no title"
    path = plots.save(fig, tmp_path / f"{name}.png")
    assert path.is_file() and path.read_bytes()[:8] == PNG_MAGIC


@pytest.fixture
def breakdown_table():
    return pd.DataFrame({
        "run": "r", "task": "gender", "by": "race", "group": ["A", "B", "C"],
        "metric": "accuracy", "value": [0.9, 0.75, 0.6], "n": [40, 12, 5]})


def test_training_curves_from_history_and_csv(tmp_path):
    logs = {"loss": [1.0, 0.7, 0.5], "val_loss": [1.1, 0.8, 0.7],
            "gender_accuracy": [0.5, 0.6, 0.7], "val_gender_accuracy": [0.5, 0.55, 0.6],
            "learning_rate": [1e-3] * 3}

    class History:
        history = logs

    fig = plots.training_curves(History())
    assert [ax.get_title() for ax in fig.axes] == ["loss", "gender_accuracy"]
    train, val = fig.axes[0].get_lines()
    np.testing.assert_allclose(train.get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(val.get_ydata(), logs["val_loss"])
    _check_labelled_and_saves(fig, tmp_path, "history")
    csv = pd.DataFrame(logs).assign(epoch=[0, 1, 2])
    fig = plots.training_curves(csv, metrics=["gender_accuracy"])
    assert len(fig.axes) == 1
    with pytest.raises(ValueError, match="logs"):
        plots.training_curves(csv, metrics=["age_mae"])


def test_confusion_matrix_cell_texts(tmp_path):
    counts = np.array([[3, 1], [0, 4]])
    fig = plots.confusion_matrix(counts, ["male", "female"])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["0.75", "0.25", "0.00", "1.00"]  # rows divided by 4 and 4
    _check_labelled_and_saves(fig, tmp_path, "cm")
    fig = plots.confusion_matrix(counts, ["male", "female"], normalize=False)
    assert [t.get_text() for t in fig.axes[0].texts] == ["3", "1", "0", "4"]
    labelled = pd.DataFrame(counts, index=["m", "f"], columns=["m", "f"])
    fig = plots.confusion_matrix(labelled)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["m", "f"]
    with pytest.raises(ValueError, match="class names"):
        plots.confusion_matrix(counts, ["a", "b", "c"])


def test_group_bars_show_counts(tmp_path, breakdown_table):
    fig = plots.group_bars(breakdown_table, metric="accuracy", by="race")
    ax = fig.axes[0]
    assert [p.get_height() for p in ax.patches] == pytest.approx([0.9, 0.75, 0.6])
    labels = [t.get_text() for t in ax.texts]
    assert labels == ["0.90\nn=40", "0.75\nn=12", "0.60\nn=5"]
    _check_labelled_and_saves(fig, tmp_path, "groups")
    with pytest.raises(ValueError, match="no rows"):
        plots.group_bars(breakdown_table, metric="macro_f1")


def test_group_bars_draw_each_groups_interval_and_label_above_it(tmp_path, breakdown_table):
    table = breakdown_table.assign(ci_low=breakdown_table["value"] - 0.1,
                                   ci_high=breakdown_table["value"] + 0.05)
    fig = plots.group_bars(table, metric="accuracy", by="race")
    ax = fig.axes[0]
    (bars,) = [c for c in ax.collections if len(c.get_segments()) == 3]
    spans = [tuple(segment[:, 1]) for segment in bars.get_segments()]
    assert spans == [pytest.approx((v - 0.1, v + 0.05)) for v in (0.9, 0.75, 0.6)]
    texts = ax.texts
    assert [t.get_text() for t in texts] == ["0.90\nn=40", "0.75\nn=12", "0.60\nn=5"]
    assert [t.get_position()[1] for t in texts] == pytest.approx([0.96, 0.81, 0.66])
    assert "interval" in ax.get_ylabel()
    _check_labelled_and_saves(fig, tmp_path, "groups_ci")


def test_compare_runs_error_bars(tmp_path):
    table = pd.DataFrame({
        "run": ["a", "a", "b", "b"], "seed": [1, 2, 1, 2], "task": "gender",
        "metric": "accuracy", "value": [0.8, 0.9, 0.6, 0.6]})
    fig = plots.compare_runs(table, "accuracy")
    ax = fig.axes[0]
    assert [p.get_height() for p in ax.patches] == pytest.approx([0.85, 0.6])
    # error bar of run a spans mean +- std (std of 0.8, 0.9 with n - 1 = 0.0707)
    segments = ax.collections[0].get_segments()
    assert segments[0][:, 1] == pytest.approx([0.85 - 0.0707107, 0.85 + 0.0707107])
    assert [t.get_text() for t in ax.texts] == ["0.85", "0.60"]  # shares: two decimals each
    _check_labelled_and_saves(fig, tmp_path, "runs")
    summary = pd.DataFrame({"run": ["a", "b"], "task": "gender", "metric": "accuracy",
                            "mean": [0.85, 0.6], "std": [0.07, np.nan], "n": [2, 1]})
    fig = plots.compare_runs(summary, "accuracy")
    assert [p.get_height() for p in fig.axes[0].patches] == pytest.approx([0.85, 0.6])


def test_paired_seeds_draws_one_line_per_shared_seed(tmp_path):
    table = pd.DataFrame({
        "run": ["a", "a", "a", "b", "b", "b", "b"], "seed": [1, 2, 3, 1, 2, 3, 4],
        "split": "val", "task": "all", "metric": "loss",
        "value": [0.5, 0.4, 0.6, 0.3, 0.35, 0.5, 9.0]})
    test_rows = table.assign(split="test", value=100.0)
    fig = plots.paired_seeds(pd.concat([table, test_rows]), "loss", runs=["a", "b"])
    ax = fig.axes[0]
    # seeds 1-3 are shared (seed 4 has run b only); the last line is the mean
    assert [list(line.get_ydata()) for line in ax.lines[:3]] == [[0.5, 0.3], [0.4, 0.35],
                                                                 [0.6, 0.5]]
    assert list(ax.lines[3].get_ydata()) == pytest.approx([0.5, (0.3 + 0.35 + 0.5) / 3])
    _check_labelled_and_saves(fig, tmp_path, "paired")
    with pytest.raises(ValueError, match="missing"):
        plots.paired_seeds(table, "loss", runs=["a", "c"])


def test_paired_seeds_pairs_folds_and_draws_the_baseline(tmp_path):
    table = pd.DataFrame({"run": ["single", "single", "multi", "multi"], "fold": [0, 1, 0, 1],
                          "task": "age", "metric": "accuracy", "value": [0.4, 0.5, 0.3, 0.6]})
    fig = plots.paired_seeds(table, "accuracy", task="age", split=None, by="fold",
                             baseline=0.25)
    ax = fig.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert labels[:3] == ["fold 0", "fold 1", "mean over folds"] and "majority class" in labels
    assert [list(line.get_ydata()) for line in ax.lines[:2]] == [[0.4, 0.3], [0.5, 0.6]]
    assert list(ax.lines[3].get_ydata()) == [0.25, 0.25]  # the dashed baseline
    _check_labelled_and_saves(fig, tmp_path, "folds")
    with pytest.raises(ValueError, match="'seed'"):
        plots.paired_seeds(table, "accuracy", task="age", split=None, by="subject")


def test_accuracy_vs_params_one_point_per_model_and_panel(tmp_path):
    table = pd.DataFrame({
        "model": ["small", "big", "small", "big"], "trainable": [1_000, 100_000, 1_000, 100_000],
        "value": [0.6, 0.8, 0.3, 0.35], "task": ["gender", "gender", "age", "age"],
        "note": [None, "best", None, None]})
    fig = plots.accuracy_vs_params(table, panel="task", baseline={"gender": 0.5})
    gender, age = fig.axes[:2]
    assert gender.get_title() == "gender" and gender.get_xscale() == "log"
    points = [tuple(c.get_offsets()[0]) for c in gender.collections]
    assert points == [(1_000, 0.6), (100_000, 0.8)]
    assert [t.get_text() for t in gender.texts] == ["best"]
    assert list(gender.lines[0].get_ydata()) == [0.5, 0.5] and not age.lines  # baseline: gender
    assert gender.get_xlim() == pytest.approx((500, 200_000))
    _check_labelled_and_saves(fig, tmp_path, "accuracy_vs_params")
    with pytest.raises(ValueError, match="> 0"):
        plots.accuracy_vs_params(table.assign(trainable=0), panel="task")


def test_age_error_bins_are_left_closed(tmp_path):
    predictions = pd.DataFrame({"age_true": [20.0, 25.0, 29.0, 30.0, 45.0],
                                "age_pred": [22.0, 25.0, 33.0, 20.0, 46.0]})
    fig = plots.age_error(predictions)
    ax = fig.axes[0]
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    # age 30 is in 30-39; the last bin holds no one older than 45, and says so
    assert ticks == ["20-29\nn=3", "30-39\nn=1", "40-45\nn=1"]
    means = ax.lines[0].get_ydata()
    assert list(means) == pytest.approx([2.0, 10.0, 1.0])  # (2 + 0 + 4) / 3, 10, 1
    _check_labelled_and_saves(fig, tmp_path, "age")
    fig = plots.age_error({"mse": predictions, "coral": predictions.assign(age_pred=30.0)})
    assert len(fig.axes[0].get_legend().get_texts()) == 2
    one_age = pd.DataFrame({"age_true": [23.0, 90.0], "age_pred": [25.0, 60.0]})
    ticks = [t.get_text() for t in plots.age_error(one_age).axes[0].get_xticklabels()]
    assert ticks[0].startswith("23-29\n") and ticks[-1] == "90\nn=1"  # not "90-99"
    with pytest.raises(ValueError, match="classification"):
        plots.age_error(predictions.assign(age_true_name="20-29"))


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_embedding(tmp_path, method):
    rng = np.random.default_rng(0)
    features = np.vstack([rng.normal(0, 1, (15, 5)), rng.normal(4, 1, (15, 5))])
    labels = np.repeat([0, 1], 15)
    with threadpool_limits(1):  # OpenMP threads crawl on a busy 2-core machine
        fig = plots.embedding(features, labels, method=method, class_names=["male", "female"])
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["male", "female"]
    # one scatter per class, 15 points each, in label order
    points = [collection.get_offsets() for collection in fig.axes[0].collections]
    assert [len(p) for p in points] == [15, 15]
    drawn = np.vstack(points)
    if method == "pca":
        # numpy reference: project the centred features on the top 2 right singular vectors
        # (each axis up to its sign); the axis labels give each one's share of the variance
        centred = features - features.mean(axis=0)
        _, singular, vt = np.linalg.svd(centred, full_matrices=False)
        np.testing.assert_allclose(np.abs(drawn), np.abs(centred @ vt[:2].T), atol=1e-8)
        share = singular ** 2 / (singular ** 2).sum()
        assert fig.axes[0].get_xlabel() == f"PC 1 ({share[0]:.0%} of variance)"
        assert fig.axes[0].get_ylabel() == f"PC 2 ({share[1]:.0%} of variance)"
    # the clusters (means 0 and 4 in 5-D) stay apart: every point's nearest drawn neighbour
    # has its own label
    distance = np.linalg.norm(drawn[:, None] - drawn[None], axis=-1)
    np.fill_diagonal(distance, np.inf)
    assert (labels[distance.argmin(axis=1)] == labels).all()
    _check_labelled_and_saves(fig, tmp_path, f"embedding_{method}")
    with pytest.raises(ValueError, match="pca"):
        plots.embedding(features, labels, method="umap")


def test_image_grid_colours_right_and_wrong(tmp_path):
    images = np.random.default_rng(0).uniform(0, 255, (3, 16, 16, 3)).astype("float32")
    fig = plots.image_grid(images, true=[0, 1, 1], pred=[0, 0, 1],
                           class_names=["male", "female"], ncols=2)
    titles = [ax.title for ax in fig.axes if ax.get_title()]
    assert [t.get_text() for t in titles] == ["pred: male\ntrue: male", "pred: male\ntrue: female",
                                              "pred: female\ntrue: female"]
    colours = [to_rgba(t.get_color()) for t in titles]
    assert colours == [to_rgba(plots.RIGHT_COLOR), to_rgba(plots.WRONG_COLOR),
                       to_rgba(plots.RIGHT_COLOR)]
    assert fig.get_suptitle()
    path = plots.save(fig, tmp_path / "grid")
    assert path.suffix == ".png" and path.read_bytes()[:8] == PNG_MAGIC


def test_image_grid_from_paths_and_limits(tmp_path):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"face{i}.jpg")
        Image.new("RGB", (12, 12), (40 * i, 80, 120)).save(paths[-1])
    fig = plots.image_grid(paths, titles=["a", "b", "c"], max_images=2)
    assert "first 2 of 3" in fig.get_suptitle()
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["a", "b"]
    with pytest.raises(ValueError, match="one per image"):
        plots.image_grid(paths, true=[0, 1])


def test_distribution_and_crosstab(tmp_path):
    df = pd.DataFrame({
        "age": pd.array([1, 5, 23, 30, 30, 41, 55, 60, 70, 80, 90, None], dtype="Int64"),
        "gender": pd.array([0, 1, 1, 0, 0, 1, 0, 1, None, 0, 0, 1], dtype="Int64"),
        "race": ["White", "Black", "White", "Asian", "White", "Indian", "White", "Black",
                 "White", None, "Asian", "White"],
    })
    fig = plots.distribution(df, "race", hue="gender")
    _check_labelled_and_saves(fig, tmp_path, "dist_race")
    fig = plots.distribution(df, "race")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()][0] == "White"
    assert [p.get_height() for p in ax.patches] == [6, 2, 2, 1, 1]  # counted by hand
    assert "<NA>" in [t.get_text() for t in ax.get_xticklabels()]  # missing race is a bar
    fig = plots.distribution(df, "age")
    assert "1 missing" in fig.axes[0].get_title()
    _check_labelled_and_saves(fig, tmp_path, "dist_age")
    fig = plots.crosstab_heatmap(df, "race", "gender")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert sum(int(t) for t in texts) == len(df)  # every row counted, missing ones included
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["female", "male", "<NA>"]
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [
        "Asian", "Black", "Indian", "White", "<NA>"]
    # counted by hand, row by row: female, male, missing gender
    assert [int(t) for t in texts] == [0, 2, 0,   # Asian: rows 3, 10 male
                                       2, 0, 0,   # Black: rows 1, 7 female
                                       1, 0, 0,   # Indian: row 5 female
                                       2, 3, 1,   # White: 2, 11 female; 0, 4, 6 male; 8
                                       0, 1, 0]   # no race: row 9 male
    _check_labelled_and_saves(fig, tmp_path, "crosstab")
    with pytest.raises(ValueError, match="no column"):
        plots.distribution(df, "skin")


def test_ordered_groups_keep_their_order(tmp_path):
    groups = ["0-2", "3-9", "10-19", "20-29"]  # alphabetical order would put 10-19 second
    df = pd.DataFrame({
        "age group": pd.Categorical(["20-29", "3-9", "10-19", "20-29", None, "0-2", "20-29"],
                                    categories=groups, ordered=True),
        "race": ["White", "Black", "White", "Black", "White", "White", "Black"]})
    fig = plots.crosstab_heatmap(df, "race", "age group")
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == [*groups, "<NA>"]
    assert fig.axes[0].get_xlabel() == "age group"
    fig = plots.distribution(df, "age group")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [*groups, "<NA>"]
    assert [p.get_height() for p in ax.patches] == [1, 1, 1, 3, 1]  # counted by hand


def test_save_rejects_other_formats(tmp_path, breakdown_table):
    fig = plots.group_bars(breakdown_table)
    with pytest.raises(ValueError, match=".png"):
        plots.save(fig, tmp_path / "fig.pdf")
    assert plots.save(fig, tmp_path / "deep" / "dir" / "fig.png").is_file()


def _drawn(fig):
    """Draw ``fig`` on an Agg canvas; returns its renderer (for text and axes extents)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _text_extents(fig, ax):
    """Display-space boxes of the value labels ``compare_runs`` writes on the bars."""
    renderer = _drawn(fig)
    return [t.get_window_extent(renderer) for t in ax.texts]


def test_compare_runs_baseline_line_clears_every_bar_label(tmp_path):
    # bars of 0.30, 0.62, 0.80 with a baseline at 0.31: the centre of the 0.62 bar (0.31) sits
    # exactly on the line, so its label must move; the 0.30 bar's label too (0.15 is near)
    table = pd.DataFrame({"run": ["a", "b", "c"], "task": "age", "metric": "accuracy",
                          "value": [0.30, 0.62, 0.80]})
    fig = plots.compare_runs(table, "accuracy", hue=None, baseline=0.31,
                             baseline_label="majority class (0.31)")
    ax = fig.axes[0]
    _drawn(fig)
    line = [ln for ln in ax.lines if ln.get_label() == "majority class (0.31)"]
    assert len(line) == 1 and set(line[0].get_ydata()) == {0.31}
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["majority class (0.31)"]
    assert [t.get_text() for t in ax.texts] == ["0.30", "0.62", "0.80"]
    line_y = ax.transData.transform((0, 0.31))[1]
    for box in _text_extents(fig, ax):
        assert not box.y0 - 1 <= line_y <= box.y1 + 1, "the baseline crosses a bar label"
    top = ax.get_ylim()[1]
    assert top >= 0.8  # every bar and label fits
    for box in _text_extents(fig, ax):
        assert box.y1 <= ax.transData.transform((0, top))[1]
    _check_labelled_and_saves(fig, tmp_path, "baseline")


def test_compare_runs_baseline_per_hue(tmp_path):
    table = pd.DataFrame({"run": ["x", "x", "y", "y"], "task": ["gender", "race"] * 2,
                          "metric": "accuracy", "value": [0.9, 0.5, 0.8, 0.45]})
    levels = {"gender": 0.52, "race": 0.42}
    fig = plots.compare_runs(table, "accuracy", baseline=levels, baseline_label="majority")
    ax = fig.axes[0]
    _drawn(fig)
    (line,) = [ln for ln in ax.lines if ln.get_label() == "majority"]
    xs, ys = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
    # one short segment over each bar, at its task's level (NaN breaks between segments)
    bars = {(round(p.get_x() + p.get_width() / 2, 6)): p for p in ax.patches}
    segments = [(xs[i:i + 2], ys[i]) for i in range(0, len(xs), 3)]
    assert len(segments) == 4
    for (x0, x1), level in segments:
        middle = round((x0 + x1) / 2, 6)
        bar = bars[middle]
        assert x0 <= bar.get_x() and x1 >= bar.get_x() + bar.get_width()
        colour = bar.get_facecolor()
        task = "gender" if colour == ax.patches[0].get_facecolor() else "race"
        assert level == levels[task]
    for text, box in zip(ax.texts, _text_extents(fig, ax)):
        x_middle = ax.transData.inverted().transform(((box.x0 + box.x1) / 2, 0))[0]
        for (x0, x1), level in segments:
            if x0 <= x_middle <= x1:
                y = ax.transData.transform((0, level))[1]
                assert not box.y0 - 1 <= y <= box.y1 + 1, f"line crosses label {text.get_text()}"
    with pytest.raises(ValueError, match="not task values"):
        plots.compare_runs(table, "accuracy", baseline={"age": 0.3})
    with pytest.raises(ValueError, match="finite number"):
        plots.compare_runs(table, "accuracy", baseline="0.5")
    _check_labelled_and_saves(fig, tmp_path, "baseline_hue")


def test_histogram_edges_bin_whole_numbers_on_whole_numbers():
    # 10 faces at each age 0..8: flat. Four equal-width bins of 2 years (numpy closes the
    # last one) put three ages (6, 7, 8) in the last bin and two in the others: a false peak
    ages = np.repeat(np.arange(9), 10)
    false_peak, _ = np.histogram(ages, bins=4)
    assert list(false_peak) == [20, 20, 20, 30]
    edges = plots.histogram_edges(ages, bins=4)
    np.testing.assert_allclose(edges, [-0.5, 2.5, 5.5, 8.5])  # 3 ages a bin, edges at k - 0.5
    counts, _ = np.histogram(ages, bins=edges)
    assert list(counts) == [30, 30, 30]
    # enough bins: one per age; widths align on multiples (5: ages 0-4, 5-9, ...)
    np.testing.assert_allclose(plots.histogram_edges(ages, bins=100), np.arange(10) - 0.5)
    years = np.array([1, 7, 23, 48, 90])
    np.testing.assert_allclose(plots.histogram_edges(years, bins=19)[:3], [-0.5, 4.5, 9.5])
    assert len(plots.histogram_edges(years, bins=19)) - 1 <= 19
    # other numbers keep numpy's equal-width edges
    floats = np.array([0.1, 0.4, 2.7])
    np.testing.assert_allclose(plots.histogram_edges(floats, bins=3),
                               np.histogram_bin_edges(floats, bins=3))
    with pytest.raises(ValueError, match="positive int"):
        plots.histogram_edges(ages, bins=0)


def test_distribution_of_whole_ages_has_no_false_peak():
    df = pd.DataFrame({"age": pd.array(np.repeat(np.arange(9), 10), dtype="Int64")})
    fig = plots.distribution(df, "age", bins=4)
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == [30, 30, 30]  # what the fixture holds: 10 faces per age, 3 ages a bar
    lefts = [p.get_x() for p in fig.axes[0].patches]
    assert lefts == pytest.approx([-0.5, 2.5, 5.5])
    assert "3 values per bin" in fig.axes[0].get_title()


def test_image_grid_title_clears_the_first_row():
    images = np.random.default_rng(0).uniform(0, 255, (54, 16, 16, 3)).astype("float32")
    fig = plots.image_grid(images, titles=["more than 70"] * 54, ncols=6,
                           title="One row per age group")
    renderer = _drawn(fig)
    title = fig._suptitle.get_window_extent(renderer)
    first_row = [ax for ax in fig.axes if ax.get_images()][:6]
    for ax in first_row:
        assert ax.title.get_window_extent(renderer).y1 < title.y0  # its caption is below
        assert ax.get_window_extent(renderer).y1 < title.y0


def test_image_grid_shows_as_one_small_jpeg():
    from IPython.core import pylabtools
    from IPython.core.interactiveshell import InteractiveShell

    # noisy photos: what makes a PNG of a face grid megabytes large
    images = np.random.default_rng(0).integers(0, 256, (16, 64, 64, 3)).astype("uint8")
    fig = plots.image_grid(images, titles=[f"face {i}" for i in range(16)], title="Faces")
    assert isinstance(fig, plots.PhotoFigure)
    jpeg = fig.to_jpeg()
    assert jpeg[:3] == b"\xff\xd8\xff"
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=fig.dpi, bbox_inches="tight")
    assert len(jpeg) < len(png.getvalue()) / 3
    shell = InteractiveShell.instance()
    try:
        pylabtools.select_figure_formats(shell, {"png"})  # what the inline backend registers
        data, _ = shell.display_formatter.format(fig)
        assert set(data) == {"image/jpeg", "text/plain"}  # no PNG beside the JPEG
        assert base64.b64decode(data["image/jpeg"])[:3] == b"\xff\xd8\xff"
        assert data["text/plain"].startswith("<Faces: 16 images")
        chart, _ = shell.display_formatter.format(plots.group_bars(pd.DataFrame({
            "run": "r", "task": "gender", "by": "race", "group": ["A"], "metric": "accuracy",
            "value": [0.9], "n": [4]})))
        assert "image/png" in chart  # other figures are still PNG charts
    finally:
        InteractiveShell.clear_instance()
