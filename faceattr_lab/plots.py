"""Figures for the labs: training curves, confusion matrices, per-group bars, errors. Lab 00.

Lab 08's fairness audit adds ``reliability`` (calibration per task and group) and
``gradcam_grid`` (Grad-CAM heat maps over faces, from ``faceattr_lab.explain``).

Every function builds a matplotlib Figure with labelled axes and a title and *returns* it
without showing it (no ``plt.show()``; the figure is closed in pyplot so loops do not pile up
open figures). In a notebook, end the cell with the call (or the figure) to display it once;
``save(fig, path)`` writes a PNG. Tables come from ``faceattr_lab.evaluate``.

Charts display as PNG at ``DISPLAY_DPI``; photo grids (``image_grid``) are a
:class:`PhotoFigure`, which a notebook shows as one JPEG (photos in PNG would make an executed
notebook megabytes large). Both keep a readable ``text/plain`` for headless views.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

DPI = 120  # saved PNG files
DISPLAY_DPI = 100  # figures shown in a notebook (PNG charts, JPEG photo grids)
JPEG_QUALITY = 75  # photo grids shown in a notebook
RIGHT_COLOR = "tab:green"
WRONG_COLOR = "tab:red"
BASELINE_COLOR = "black"
_MISSING = "<NA>"
_MAX_ANNOTATED_CLASSES = 12
_BAR_LABEL_POINTS = 7  # font size of the value written on each bar


def _figure(nrows: int = 1, ncols: int = 1, **kwargs):
    """``plt.subplots`` whose figure is released from pyplot: returned, never auto-shown."""
    kwargs.setdefault("dpi", DISPLAY_DPI)
    fig, axes = plt.subplots(nrows, ncols, **kwargs)
    plt.close(fig)
    return fig, axes


class PhotoFigure(Figure):
    """A figure of photos (what ``image_grid`` returns): a notebook shows it as a JPEG. Lab 00.

    A grid of faces stored as PNG takes about a megabyte, as JPEG a sixth of that, so executed
    notebooks stay small. Everything else is a normal matplotlib ``Figure``: ``save`` still
    writes a PNG, ``to_jpeg()`` gives the bytes shown, and its ``text/plain`` says what the
    grid holds (for headless and text views).
    """

    def to_jpeg(self, dpi: float | None = None, quality: int = JPEG_QUALITY) -> bytes:
        """The figure as JPEG bytes at ``dpi`` (default: the figure's own)."""
        buffer = io.BytesIO()
        self.savefig(buffer, format="jpeg", dpi=dpi or self.dpi, bbox_inches="tight",
                     facecolor="white", pil_kwargs={"quality": int(quality)})
        return buffer.getvalue()

    def describe(self) -> str:
        """One line for text views: the title and how many images the grid holds."""
        images = sum(bool(ax.get_images()) for ax in self.axes)
        title = self.get_suptitle() or "image grid"
        width, height = (self.get_size_inches() * self.dpi).round().astype(int)
        return f"<{title}: {images} images, a {width}x{height} px JPEG>"

    def _repr_mimebundle_(self, include=None, exclude=None):
        _register_photo_display()
        return {"image/jpeg": base64.b64encode(self.to_jpeg()).decode("ascii"),
                "text/plain": self.describe()}

    def __repr__(self) -> str:
        return self.describe()


def _no_display(_fig):
    return None


def _register_photo_display() -> None:
    """In IPython, stop the inline backend's PNG (SVG, PDF) printers for ``PhotoFigure``.

    They are registered for ``Figure`` and would add a PNG beside the JPEG of
    ``PhotoFigure._repr_mimebundle_``; a printer that returns None adds nothing.
    """
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with Jupyter
        return
    shell = get_ipython()
    if shell is None:
        return
    for mime, formatter in shell.display_formatter.formatters.items():
        if mime.startswith("image/") or mime == "application/pdf":
            if formatter.type_printers.get(PhotoFigure) is not _no_display:
                formatter.for_type(PhotoFigure, _no_display)


def save(fig, path: str | Path) -> Path:
    """Save ``fig`` as a PNG at 120 dpi (folders created); returns the path. Lab 00.

    A path without a suffix gets ``.png``. Put figures in the run's output folder, e.g.
    ``fl.plots.save(fig, settings.output_dir / "confusion.png")``.
    """
    path = Path(path)
    if path.suffix == "":
        path = path.with_suffix(".png")
    if path.suffix.lower() != ".png":
        raise ValueError(f"save writes PNG files; give a path ending in .png, got {path.name!r}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", format="png")
    return path


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------

def training_curves(history, metrics: Sequence[str] | None = None, title: str = "Training curves"):
    """Train vs validation curves, one panel per metric. Lab 00.

    ``history`` is a Keras ``History`` (what ``fit`` returns), its ``.history`` dict, or the
    CSVLogger table (``pd.read_csv(".../history.csv")``). ``metrics`` defaults to every logged
    metric except the learning rate; ``val_<metric>`` is drawn beside each when logged.
    """
    frame = _history_frame(history)
    if metrics is None:
        metrics = [c for c in frame.columns
                   if not c.startswith("val_") and c not in ("epoch", "lr", "learning_rate")]
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    unknown = [m for m in metrics if m not in frame.columns]
    if unknown or not metrics:
        train_metrics = [c for c in frame.columns if not c.startswith("val_") and c != "epoch"]
        raise ValueError(f"cannot plot {unknown or metrics}; the history logs {train_metrics}.")
    epochs = frame["epoch"] + 1 if "epoch" in frame.columns else np.arange(1, len(frame) + 1)
    ncols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig, axes = _figure(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        ax.plot(epochs, frame[metric], marker="o", markersize=3, label="train")
        if f"val_{metric}" in frame.columns:
            ax.plot(epochs, frame[f"val_{metric}"], marker="o", markersize=3, label="validation")
        ax.set(title=metric, xlabel="epoch", ylabel=metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes.flat[len(metrics):]:
        fig.delaxes(ax)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _history_frame(history) -> pd.DataFrame:
    if isinstance(history, pd.DataFrame):
        return history.reset_index(drop=True)
    logs = getattr(history, "history", history)
    if not isinstance(logs, Mapping) or not logs:
        raise ValueError("training_curves needs a Keras History, its .history dict or the "
                         "CSVLogger DataFrame; this one has no logged epochs.")
    return pd.DataFrame({k: list(v) for k, v in logs.items()})


# --------------------------------------------------------------------------------------------
# Classification results
# --------------------------------------------------------------------------------------------

def confusion_matrix(cm_or_predictions, class_names: Sequence[str] | None = None,
                     normalize: bool = True, title: str | None = None, scheme=None):
    """Heatmap of a confusion matrix; cells show row fractions (or counts). Lab 01.

    Takes a count matrix (array), the labelled table from ``fl.evaluate.confusion``, or a
    ``predict`` table together with ``scheme=``. With ``normalize=True`` each row (a true
    class) sums to 1, so the diagonal is each class's recall; rows without images stay 0.
    Cells are annotated up to 12 classes.
    """
    import seaborn as sns

    from faceattr_lab import evaluate

    data = cm_or_predictions
    if isinstance(data, pd.DataFrame) and scheme is not None:
        data = evaluate.confusion(data, scheme)
    if isinstance(data, pd.DataFrame):
        if class_names is None:
            class_names = [str(c) for c in data.index]
        counts = data.to_numpy()
    else:
        counts = np.asarray(data)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"a confusion matrix is square, got shape {counts.shape}; pass "
                         "fl.evaluate.confusion(predictions, scheme) or predictions with scheme=.")
    k = counts.shape[0]
    class_names = [str(c) for c in (class_names if class_names is not None else range(k))]
    if len(class_names) != k:
        raise ValueError(f"{len(class_names)} class names for a {k} x {k} matrix; give one per "
                         "class, in index order.")
    if normalize:
        totals = counts.sum(axis=1, keepdims=True)
        values = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
        text = np.vectorize(lambda v: f"{v:.2f}")(values)
    else:
        values = counts
        text = np.vectorize(lambda v: f"{int(v)}")(values)
    size = max(4.0, 0.55 * k + 2.5)
    fig, ax = _figure(figsize=(size + 1, size))
    sns.heatmap(values, annot=text if k <= _MAX_ANNOTATED_CLASSES else False, fmt="",
                cmap="Blues", vmin=0, vmax=1 if normalize else None, square=True,
                xticklabels=class_names, yticklabels=class_names, linewidths=0.5,
                cbar_kws={"label": "fraction of true class" if normalize else "images"}, ax=ax)
    ax.set(xlabel="predicted", ylabel="true",
           title=title or ("Confusion matrix (rows sum to 1)" if normalize
                           else "Confusion matrix (counts)"))
    ax.tick_params(axis="x", labelrotation=45 if max(map(len, class_names)) > 5 else 0)
    ax.tick_params(axis="y", labelrotation=0)
    fig.tight_layout()
    return fig


def group_bars(breakdown_table: pd.DataFrame, metric: str = "accuracy", by: str = "race",
               task: str | None = None, title: str | None = None):
    """Per-group bars of one metric from ``fl.evaluate.breakdown``, with group sizes. Lab 01.

    One bar per group (and per task or run when the table holds several); ``n=`` above each
    bar is the group's number of images, so a small group's shaky number is visible. A table
    made with ``breakdown(..., ci=0.95)`` also gets each group's interval as an error bar.
    """
    table = breakdown_table
    needed = {"by", "group", "metric", "value", "n", "task"}
    if not needed <= set(table.columns):
        raise ValueError(f"group_bars needs a fl.evaluate.breakdown table (columns "
                         f"{sorted(needed)}), got {list(table.columns)}.")
    rows = table[(table["by"] == by) & (table["metric"] == metric)]
    if task is not None:
        rows = rows[rows["task"] == task]
    if rows.empty:
        raise ValueError(f"no rows for metric={metric!r}, by={by!r}"
                         f"{'' if task is None else f', task={task!r}'}; the table has metrics "
                         f"{sorted(table['metric'].unique())} by {sorted(table['by'].unique())}.")
    keys = [c for c in ("run", "task") if c in rows.columns and rows[c].nunique() > 1]
    series = rows[keys].astype(str).agg(" · ".join, axis=1) if keys else pd.Series(
        rows["task"].iloc[0], index=rows.index)
    frame = rows.assign(_series=series)
    groups = list(dict.fromkeys(frame["group"]))
    names = list(dict.fromkeys(frame["_series"]))
    fig, ax = _figure(figsize=(max(5.0, 0.9 * len(groups) * max(1, len(names)) + 2), 4))
    width = 0.8 / len(names)
    intervals = {"ci_low", "ci_high"} <= set(frame.columns) and frame["ci_low"].notna().any()
    for i, name in enumerate(names):
        part = frame[frame["_series"] == name].set_index("group").reindex(groups)
        x = np.arange(len(groups)) + (i - (len(names) - 1) / 2) * width
        bars = ax.bar(x, part["value"], width, label=name)
        labels = [f"{v:.2f}\nn={int(n)}" if pd.notna(n) else ""
                  for v, n in zip(part["value"], part["n"])]
        if not intervals:
            ax.bar_label(bars, labels=labels, fontsize=7, padding=2)
            continue
        low = (part["value"] - part["ci_low"]).clip(lower=0).fillna(0)
        high = (part["ci_high"] - part["value"]).clip(lower=0).fillna(0)
        ax.errorbar(x, part["value"], yerr=[low, high], fmt="none", ecolor="black",
                    elinewidth=0.8, capsize=2)
        for xi, top_of_bar, label in zip(x, part["value"] + high, labels):
            if label:  # above the interval, not across it
                ax.text(xi, top_of_bar + 0.01, label, ha="center", va="bottom", fontsize=7)
    ax.set_xticks(np.arange(len(groups)), groups)
    top = frame["ci_high"].max() if intervals else frame["value"].max()
    ax.set_ylim(0, 1.15 if top <= 1 else top * 1.2)
    subject = task if task is not None else ", ".join(dict.fromkeys(frame["task"]))
    ax.set(xlabel=by, ylabel=f"{metric} (bars: interval)" if intervals else metric,
           title=title or f"{subject} {metric} by {by}")
    if len(names) > 1:
        ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def compare_runs(table: pd.DataFrame, metric: str, x: str = "run", hue: str | None = "task",
                 title: str | None = None, *, baseline=None,
                 baseline_label: str = "no-learning baseline"):
    """Bars of one metric across runs, with std error bars over repeats. Lab 02.

    Takes a tidy table (``evaluate``/``compare``: several rows per ``x`` and ``hue`` are
    averaged and their std drawn) or a ``summarize`` result (its ``mean`` and ``std``).
    Every table that compares runs in a lab gets this plot beside it.

    ``baseline`` draws what no learning scores as a dashed line, named ``baseline_label`` in
    the legend: a number (one line across the plot, e.g. the mean-age MAE) or a dict
    ``{hue value: number}`` (with ``hue=None``: ``{x value: number}``) for one short line over
    each of that group's bars, e.g. each task's majority-class accuracy. Each bar's value
    label moves off the line (and sits on a white box), so the line never strikes through it.
    """
    if "metric" not in table.columns or metric not in set(table["metric"]):
        have = sorted(table["metric"].unique()) if "metric" in table.columns else []
        raise ValueError(f"no rows for metric={metric!r}; the table has {have}.")
    rows = table[table["metric"] == metric]
    keys = [x] + ([hue] if hue is not None and hue in rows.columns else [])
    missing = [k for k in keys if k not in rows.columns]
    if missing:
        raise ValueError(f"table has no column {missing}; it has {list(rows.columns)}.")
    if "mean" in rows.columns:
        stats = rows[keys + ["mean", "std"]].copy()
        if stats.duplicated(subset=keys).any():
            raise ValueError(f"several summary rows share the same {keys}; filter the table.")
    else:
        stats = rows.groupby(keys, sort=False)["value"].agg(["mean", "std"]).reset_index()
    xs = list(dict.fromkeys(stats[x]))
    hues = list(dict.fromkeys(stats[hue])) if len(keys) == 2 else [None]
    lines = _baseline_lines(baseline, xs, hues, x, hue if len(keys) == 2 else None)
    fig, ax = _figure(figsize=(max(5.0, 0.8 * len(xs) * len(hues) + 2), 4))
    width = 0.8 / len(hues)
    repeated = stats["std"].notna().any()  # single runs have no spread: draw no error bars
    drawn = []  # (bars, means, per-bar baseline or NaN)
    for i, h in enumerate(hues):
        part = stats if h is None else stats[stats[hue] == h]
        part = part.set_index(x).reindex(xs)
        positions = np.arange(len(xs)) + (i - (len(hues) - 1) / 2) * width
        bars = ax.bar(positions, part["mean"], width,
                      yerr=part["std"].fillna(0) if repeated else None, capsize=4,
                      label=None if h is None else str(h))
        levels = [lines[None] if None in lines else lines.get(v if h is None else h, np.nan)
                  for v in xs]
        drawn.append((bars, part["mean"].to_numpy(dtype=float), np.asarray(levels, float),
                      part["std"].fillna(0).to_numpy(dtype=float) if repeated
                      else np.zeros(len(xs))))
    _draw_baselines(ax, drawn, lines, width, baseline_label)
    _bar_value_labels(ax, fig, drawn)
    ax.set_xticks(np.arange(len(xs)), [str(v) for v in xs])
    if max(len(str(v)) for v in xs) > 10:
        ax.tick_params(axis="x", labelrotation=30)
    default = f"{metric} by {x}" + (" (error bars: std)" if repeated else "")
    ax.set(xlabel=x, ylabel=metric, title=title or default)
    if hues != [None] or lines:
        ax.legend(title=hue if hues != [None] else None, fontsize="small", loc="upper left",
                  bbox_to_anchor=(1.01, 1))  # off the bars
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    _rotate_crowded_ticks(fig, ax)
    return fig


def _rotate_crowded_ticks(fig, ax) -> None:
    """Tilt the x tick labels when, laid out, neighbours touch; then lay out again."""
    boxes = [t.get_window_extent() for t in ax.get_xticklabels() if t.get_text()]
    if any(a.x1 + 2 > b.x0 for a, b in zip(boxes, boxes[1:])):
        ax.tick_params(axis="x", labelrotation=30)
        fig.tight_layout()


def _baseline_lines(baseline, xs, hues, x, hue) -> dict:
    """``compare_runs``' baseline as ``{None: level}`` (one line) or ``{group: level}``."""
    if baseline is None:
        return {}
    if isinstance(baseline, Mapping):
        groups, name = (hues, hue) if hue is not None else (xs, x)
        unknown = [k for k in baseline if k not in groups]
        if unknown:
            raise ValueError(f"baseline has keys {unknown} that are not {name} values; give "
                             f"one number per {name} among {groups}, or a single number.")
        levels = dict(baseline)
    else:
        levels = {None: baseline}
    for key, value in levels.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer,
                                                             np.floating)) \
                or not np.isfinite(value):
            raise ValueError(f"baseline{'' if key is None else f'[{key!r}]'} must be a finite "
                             f"number (what no learning scores), got {value!r}.")
        levels[key] = float(value)
    return levels


def _draw_baselines(ax, drawn, lines, width, label) -> None:
    if not lines:
        return
    style = dict(color=BASELINE_COLOR, linestyle="--", linewidth=1.3, zorder=3)
    if set(lines) == {None}:
        ax.axhline(lines[None], label=label, **style)
        return
    xs, ys = [], []
    for bars, _means, levels, _std in drawn:
        for bar, level in zip(bars, levels):
            if np.isnan(level):
                continue
            middle = bar.get_x() + bar.get_width() / 2
            xs += [middle - 0.55 * width, middle + 0.55 * width, np.nan]
            ys += [level, level, np.nan]
    ax.plot(xs, ys, label=label, **style)


def _bar_value_labels(ax, fig, drawn) -> None:
    """Write each bar's mean on it, away from the baseline and error bar (``compare_runs``)."""
    tops = [np.nanmax(np.concatenate([m + s, levels]))
            for _b, m, levels, s in drawn if np.isfinite(np.concatenate([m + s, levels])).any()]
    bottoms = [np.nanmin(np.concatenate([m - s, levels]))
               for _b, m, levels, s in drawn if np.isfinite(np.concatenate([m - s, levels])).any()]
    if tops and min(bottoms + [0.0]) >= 0:
        ax.set_ylim(0, max(tops) * 1.12 if max(tops) > 0 else 1)
    low, high = ax.get_ylim()
    axes_pixels = fig.get_size_inches()[1] * fig.dpi * 0.72  # about the axes' share
    text = (_BAR_LABEL_POINTS / 72 * fig.dpi) * (high - low) / axes_pixels  # label height
    clear = 0.8 * text  # from the label's centre to a line it must not touch
    largest = max((np.nanmax(np.abs(m)) for _b, m, _l, _s in drawn if np.isfinite(m).any()),
                  default=0.0)
    label = "{:.2f}" if largest <= 1.5 else "{:.3g}"  # shares and accuracies: two decimals each
    for bars, means, levels, std in drawn:
        for bar, mean, level, spread in zip(bars, means, levels, std):
            if np.isnan(mean):
                continue
            y = _label_height(mean, level, spread, text, clear)
            ax.text(bar.get_x() + bar.get_width() / 2, y, label.format(mean), ha="center",
                    va="center", fontsize=_BAR_LABEL_POINTS, zorder=4,
                    bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none",
                              alpha=0.85))


def _label_height(mean: float, level: float, spread: float, text: float, clear: float) -> float:
    """Where a bar's value label goes: the bar's centre, unless the baseline passes there;
    then the middle of the longer stretch of bar on either side of the line, or above the
    bar (and its error bar) when neither stretch fits the label."""
    centre = mean / 2
    if np.isnan(level) or abs(centre - level) >= clear:
        return centre
    lo, hi = sorted((0.0, mean))
    if lo < level < hi:
        below, above = (lo, level), (level, hi)
        part = max(below, above, key=lambda seg: seg[1] - seg[0])
        if part[1] - part[0] >= 2 * clear:
            return (part[0] + part[1]) / 2
    top = max(mean + spread, level) if mean >= 0 else min(mean - spread, level)
    return top + (clear + text / 2) * (1 if mean >= 0 else -1)


# --------------------------------------------------------------------------------------------
# Age and features
# --------------------------------------------------------------------------------------------

def paired_seeds(table: pd.DataFrame, metric: str, task: str = "all", runs=None,
                 split: str | None = "val", title: str | None = None, by: str = "seed",
                 baseline: float | None = None, baseline_label: str = "majority class"):
    """One line per seed across runs (paired repeats), the mean in black. Lab 02.

    Reads a grid table (``fl.experiments.run_grid``: columns run, seed, task, metric, value,
    and split when ``split`` is given). Lines that slope the same way for every seed show a
    difference that the seed does not explain; crossing lines show one that it may.
    ``by="fold"`` pairs the folds of ``fl.experiments.cross_validate`` instead (lab 04);
    ``baseline`` draws a dashed line at a no-learning score (e.g. the majority class).
    """
    if by not in ("seed", "fold"):
        raise ValueError(f"by={by!r}; pair runs by 'seed' (lab 02's grids) or 'fold' "
                         "(cross_validate's table).")
    _check_columns(table, ["run", by, "task", "metric", "value"]
                   + (["split"] if split is not None else []))
    rows = table[(table["task"] == task) & (table["metric"] == metric)]
    if split is not None:
        rows = rows[rows["split"] == split]
    values = rows.pivot_table(index=by, columns="run", values="value", sort=False)
    runs = list(values.columns) if runs is None else list(runs)
    missing = [run for run in runs if run not in values.columns]
    if missing or len(runs) < 2:
        raise ValueError(f"need at least two runs with {task} {metric} rows; missing {missing}, "
                         f"available {sorted(values.columns)}.")
    values = values[runs].dropna()
    if values.empty:
        raise ValueError(f"runs {runs} share no {by}; run them under the same {by}s.")
    fig, ax = _figure(figsize=(max(4.5, 1.6 * len(runs) + 2.5), 4))
    xs = np.arange(len(runs))
    for seed, row in values.iterrows():
        ax.plot(xs, row.to_numpy(), marker="o", alpha=0.7, label=f"{by} {seed}")
    ax.plot(xs, values.mean().to_numpy(), color="black", linewidth=3, marker="s",
            label=f"mean over {by}s")
    if baseline is not None:
        ax.axhline(baseline, color=BASELINE_COLOR, linestyle="--", linewidth=1,
                   label=baseline_label)
    ax.set_xticks(xs, [str(run) for run in runs])
    where = f", {split} split" if split is not None else ""
    ax.set(xlabel="configuration" if by == "seed" else "model",
           ylabel=f"{metric} (task {task}{where})",
           title=title or f"{task} {metric}{where}, paired by {by}")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def accuracy_vs_params(table: pd.DataFrame, metric: str = "accuracy", panel: str = "task",
                       baseline: dict | None = None, title: str | None = None):
    """Score against trainable parameters (log scale), one point per model and panel. Lab 04.

    ``table`` has columns ``model``, ``trainable``, ``value`` and ``panel`` (e.g. ``task``):
    one row per model and panel; an optional ``note`` column is written beside each point
    (e.g. the task, where one panel holds several). ``baseline`` maps a panel to a
    no-learning score (e.g. the majority class), drawn dashed. Points to the upper left do
    more with fewer parameters.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    _check_columns(table, ["model", "trainable", "value", panel])
    if (table["trainable"] <= 0).any():
        raise ValueError("trainable parameters must be > 0 for a log axis; drop models that "
                         "train nothing.")
    panels = list(pd.unique(table[panel]))
    fig, axes = _figure(1, len(panels), figsize=(4.2 * len(panels) + 2.5, 4.2), squeeze=False,
                        layout="constrained")
    colours = {m: f"C{i % 10}" for i, m in enumerate(pd.unique(table["model"]))}
    for ax, name in zip(axes[0], panels):
        rows = table[table[panel] == name]
        for _, row in rows.iterrows():
            ax.scatter(row["trainable"], row["value"], s=40, color=colours[row["model"]],
                       label=row["model"], zorder=3)
            if "note" in rows and isinstance(row["note"], str):
                ax.annotate(row["note"], (row["trainable"], row["value"]), fontsize=7,
                            xytext=(5, 3), textcoords="offset points")
        if baseline is not None and name in baseline:
            ax.axhline(baseline[name], color=BASELINE_COLOR, linestyle="--", linewidth=1,
                       label="majority class")
        ax.set_xscale("log")
        low, high = rows["trainable"].min(), rows["trainable"].max()
        ax.set_xlim(low / 2, high * 2)  # room around the points, at least a factor of 4
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))  # a tick in any range
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set(title=str(name), xlabel="trainable parameters (log scale)", ylabel=metric)
        ax.grid(alpha=0.3)
    handles, labels = {}, []
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    fig.legend(list(handles.values()), list(handles), fontsize="small", loc="outside right upper")
    fig.suptitle(title or f"{metric} against trainable parameters")
    for ax in axes[0]:
        for label in ax.get_xticklabels():
            label.set_rotation(30)
    return fig


def age_error(predictions, output: str = "age", bin_width: int = 10, title: str | None = None):
    """Mean absolute age error per true-age bin, with std bars and bin sizes. Lab 02.

    ``predictions`` is a ``predict`` table with years (regression, or ordinal with
    ``<o>_true_years``), or a dict ``{run name: table}`` to compare runs (e.g. MSE regression
    vs CORAL). Bins are left-closed: age 20 falls in 20-29; the first and last bins are named
    by the youngest and oldest true ages they hold (20-25 when no one is older than 25).
    """
    runs = dict(predictions) if isinstance(predictions, Mapping) else {"": predictions}
    if not runs:
        raise ValueError("age_error needs a predictions table or a dict of them.")
    errors = {name: _age_errors(table, output) for name, table in runs.items()}
    all_true = np.concatenate([t for t, _ in errors.values()])
    lo = math.floor(all_true.min() / bin_width) * bin_width
    hi = (math.floor(all_true.max() / bin_width) + 1) * bin_width
    edges = np.arange(lo, hi + 1, bin_width)
    # the outer bins are named by the ages they can hold: 90-90 is "90", not "90-99"
    youngest, oldest = math.floor(all_true.min()), math.floor(all_true.max())
    spans = [(max(int(a), youngest), min(int(b) - 1, oldest))
             for a, b in zip(edges[:-1], edges[1:])]
    labels = [f"{a}-{b}" if a < b else f"{a}" for a, b in spans]
    fig, ax = _figure(figsize=(max(6.0, 0.6 * len(labels) + 2), 4))
    sizes = []
    for i, (name, (true, abs_error)) in enumerate(errors.items()):
        bins = pd.cut(true, edges, right=False, labels=labels)
        stats = (pd.DataFrame({"bin": bins, "error": abs_error})
                 .groupby("bin", observed=False)["error"].agg(["mean", "std", "count"]))
        sizes.append(tuple(stats["count"]))
        offset = (i - (len(errors) - 1) / 2) * 0.12
        x = np.arange(len(labels)) + offset
        if len(errors) == 1:
            position = np.asarray(bins.codes)
            jitter = np.random.default_rng(0).uniform(-0.2, 0.2, len(true))
            ax.scatter(position + jitter, abs_error, s=6, alpha=0.25, color="tab:gray",
                       label="images")
        ax.errorbar(x, stats["mean"], yerr=stats["std"].fillna(0), marker="o", capsize=4,
                    label=f"{name} mean ± std".strip())
    ticks = labels if len(set(sizes)) > 1 else [f"{b}\nn={n}" for b, n in zip(labels, sizes[0])]
    ax.set_xticks(np.arange(len(labels)), ticks, fontsize=8)
    ax.set(xlabel=f"true {output} (years)", ylabel="absolute error (years)",
           title=title or f"{output.capitalize()} error by true {output}")
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def _age_errors(table: pd.DataFrame, output: str):
    for true_col, pred_col in ((f"{output}_true_years", f"{output}_pred_years"),
                               (f"{output}_true", f"{output}_pred")):
        if true_col in table.columns and pred_col in table.columns:
            break
    else:
        raise ValueError(f"predictions have no {output}_true/{output}_pred columns; make them "
                         "with fl.evaluate.predict.")
    if f"{output}_true_name" in table.columns:
        raise ValueError(f"{output!r} is a classification task (groups, not years); use "
                         "confusion_matrix or group_bars instead.")
    true = table[true_col].to_numpy(dtype=float, na_value=np.nan)
    pred = table[pred_col].to_numpy(dtype=float, na_value=np.nan)
    known = ~np.isnan(true) & ~np.isnan(pred)
    if not known.any():
        raise ValueError(f"no image has both a true and a predicted {output}.")
    return true[known], np.abs(pred[known] - true[known])


def _projection(features, method: str, seed: int):
    """(N, 2) points and the two axis names: PCA or t-SNE (scikit-learn) of (N, D) features."""
    if method == "pca":
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, random_state=seed)
        points = pca.fit_transform(features)
        ratio = pca.explained_variance_ratio_
        return points, [f"PC {i + 1} ({ratio[i]:.0%} of variance)" for i in range(2)]
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, max(2.0, (len(features) - 1) / 3)))
        points = TSNE(n_components=2, perplexity=perplexity, init="pca",
                      random_state=seed).fit_transform(features)
        return points, ["t-SNE 1", "t-SNE 2"]
    raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}.")


def _embedding_features(features, n_labels: int, what: str = "features") -> np.ndarray:
    features = np.asarray(features, dtype=float).reshape(len(features), -1)
    if n_labels != len(features):
        raise ValueError(f"{len(features)} {what} rows but {n_labels} labels; give one label "
                         "per row.")
    if len(features) < 3:
        raise ValueError("embedding needs at least 3 points.")
    return features


def _scatter_classes(ax, points, labels, class_names, size: float = 10) -> None:
    values = pd.unique(labels)
    if np.issubdtype(np.asarray(values).dtype, np.number):
        values = np.sort(values)  # class indices: the legend in the scheme's order
    for value in values:
        mask = labels == value
        ax.scatter(points[mask, 0], points[mask, 1], s=size, alpha=0.7,
                   label=_label_name(value, class_names))


def embedding(features, labels, method: str = "pca", class_names: Sequence[str] | None = None,
              title: str | None = None, seed: int = 0):
    """2-D scatter of feature vectors (PCA or t-SNE, scikit-learn) coloured by label. Lab 05.

    ``features`` is (N, D), e.g. an encoder's outputs; ``labels`` N class indices or names.
    t-SNE is slow beyond a few thousand points; PCA is linear and instant.
    """
    labels = np.asarray(labels)
    features = _embedding_features(features, len(labels))
    points, axis_names = _projection(features, method, seed)
    fig, ax = _figure(figsize=(6, 5))
    _scatter_classes(ax, points, labels, class_names)
    ax.set(xlabel=axis_names[0], ylabel=axis_names[1],
           title=title or f"Feature embedding ({'PCA' if method == 'pca' else 't-SNE'})")
    ax.legend(fontsize="small", markerscale=2, loc="best")
    fig.tight_layout()
    return fig


def embedding_grid(features: Mapping, labels: Mapping, method: str = "pca",
                   class_names: Mapping | None = None, title: str | None = None, seed: int = 0):
    """Several embeddings side by side: one row per feature set, one column per task. Lab 05.

    ``features`` maps a row name (e.g. "before phase 1") to (N, D) vectors of the same N
    images; ``labels`` maps a task to its N labels (class indices; a negative one, a missing
    label, is not drawn); ``class_names`` maps a task to its class names. Each row is projected
    once (PCA or t-SNE, as :func:`embedding`) and coloured by each task in turn, so a row shows
    how one embedding separates every task.
    """
    if not features or not labels:
        raise ValueError("pass at least one feature set and one task: features={name: (N, D)}, "
                         "labels={task: N labels}.")
    labels = {task: np.asarray(values) for task, values in labels.items()}
    class_names = dict(class_names or {})
    rows, cols = len(features), len(labels)
    fig, axes = _figure(rows, cols, figsize=(3.4 * cols, 3.0 * rows), squeeze=False)
    for r, (name, values) in enumerate(features.items()):
        n = len(next(iter(labels.values())))
        points, axis_names = _projection(_embedding_features(values, n, f"{name!r}"), method,
                                         seed)
        for c, (task, task_labels) in enumerate(labels.items()):
            if len(task_labels) != n:
                raise ValueError(f"labels[{task!r}] has {len(task_labels)} values, expected {n} "
                                 "(one per image, in the features' order).")
            keep = ~(np.asarray(task_labels, dtype=float) < 0)
            ax = axes[r, c]
            _scatter_classes(ax, points[keep], task_labels[keep], class_names.get(task), size=5)
            ax.set_title(f"{name}: {task}", fontsize="medium")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(axis_names[0], fontsize="small")  # each row has its own projection
            if c == 0:
                ax.set_ylabel(axis_names[1], fontsize="small")
            if r == 0:
                ax.legend(fontsize="x-small", markerscale=2, loc="best", ncols=1 + (
                    len(pd.unique(task_labels[keep])) > 5))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------

def image_grid(images_or_paths, titles: Sequence[str] | None = None, true=None, pred=None,
               class_names: Sequence[str] | None = None, ncols: int = 8,
               title: str = "Images", max_images: int = 64):
    """A grid of faces with titles; predicted vs true in green (right) or red (wrong). Lab 00.

    ``images_or_paths`` is an array (N, H, W, 3) in [0, 255] (a pipeline batch), a list of
    arrays, or image file paths. ``true``/``pred`` are class indices (named via
    ``class_names``) or names. At most ``max_images`` are drawn, and the title says so. The
    title sits above the first row (constrained layout); the figure is a :class:`PhotoFigure`,
    shown in a notebook as a JPEG.
    """
    images = _load_images(images_or_paths)
    total = len(images)
    if total == 0:
        raise ValueError("image_grid got no images.")
    for name, values in (("titles", titles), ("true", true), ("pred", pred)):
        if values is not None and len(values) != total:
            raise ValueError(f"{name} has {len(values)} entries for {total} images; give one "
                             "per image.")
    if ncols < 1:
        raise ValueError(f"ncols must be a positive int, got {ncols!r}.")
    shown = min(total, max_images)
    ncols = min(ncols, shown)
    nrows = math.ceil(shown / ncols)
    lines = (titles is not None) + (true is not None) + (pred is not None)
    _register_photo_display()
    fig, axes = _figure(nrows, ncols, figsize=(1.1 * ncols, (1.1 + 0.16 * lines) * nrows + 0.4),
                        squeeze=False, FigureClass=PhotoFigure, layout="constrained")
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= shown:
            continue
        ax.imshow(images[i])
        text, color = [], "black"
        if titles is not None:
            text.append(str(titles[i]))
        if pred is not None:
            text.append(f"pred: {_label_name(pred[i], class_names)}")
        if true is not None:
            text.append(f"true: {_label_name(true[i], class_names)}")
        if pred is not None and true is not None:
            right = _label_name(pred[i], class_names) == _label_name(true[i], class_names)
            color = RIGHT_COLOR if right else WRONG_COLOR
        if text:
            ax.set_title("\n".join(text), fontsize=8, color=color)
    suffix = f" (first {shown} of {total})" if shown < total else ""
    fig.suptitle(title + suffix)  # constrained layout keeps it clear of the first row
    return fig


def _load_images(images) -> list[np.ndarray]:
    if hasattr(images, "numpy"):
        images = images.numpy()
    if isinstance(images, (str, Path)):
        images = [images]
    out = []
    for item in images:
        if isinstance(item, (str, Path)):
            from PIL import Image

            path = Path(item)
            if not path.is_file():
                raise ValueError(f"image file {str(path)!r} does not exist.")
            with Image.open(path) as img:
                item = np.asarray(img.convert("RGB"))
        array = np.asarray(item.numpy() if hasattr(item, "numpy") else item)
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim not in (2, 3):
            raise ValueError(f"an image must be (H, W) or (H, W, 3), got shape {array.shape}.")
        if array.dtype != np.uint8:  # the pipeline's float32 in [0, 255]
            array = np.clip(array, 0, 255).astype(np.uint8)
        out.append(array)
    return out


def _label_name(value, class_names) -> str:
    if class_names is not None and isinstance(value, (int, np.integer)):
        return str(class_names[int(value)])
    if isinstance(value, np.generic):
        value = value.item()
    return str(value)


# --------------------------------------------------------------------------------------------
# Fairness audit: calibration and Grad-CAM (Lab 08)
# --------------------------------------------------------------------------------------------

_FEW_GROUPS = 3  # up to this many groups share one panel per task in reliability()
_PANELS_PER_ROW = 4


def reliability(predictions, schemes, by=None, bins: int = 10, title: str | None = None):
    """Reliability diagram per task: accuracy against mean confidence per bin. Lab 08.

    Guo, Pleiss, Sun & Weinberger (2017), "On Calibration of Modern Neural Networks", ICML.
    From ``fl.evaluate.calibration``: each line joins a group's non-empty confidence bins
    (equal width on [0, 1]); a marker's area grows with the faces in its bin, so an
    off-diagonal point made of three faces is visibly small. The dashed diagonal is "perfectly
    calibrated": below it the model is over-confident. The legend gives each group's ECE
    (``fl.evaluate.calibration_error``) and number of faces.

    Layout: without ``by``, one panel per task. With ``by`` (a column or a tuple of columns, as
    in ``fl.evaluate.breakdown``) and at most 3 groups, one panel per task with a line per
    group; with more groups, lines would pile up, so each group gets its own panel (tasks in
    rows, at most 4 panels per row) with the all-faces line in grey for comparison.
    """
    from faceattr_lab import evaluate
    from faceattr_lab.labels import resolve

    schemes = resolve(schemes)
    tasks = []
    for scheme in schemes:
        table = evaluate.calibration(predictions, scheme, bins=bins, by=by)
        ece = evaluate.calibration_error(predictions, scheme, bins=bins, by=by)
        overall = (evaluate.calibration(predictions, scheme, bins=bins) if by is not None
                   else None)
        tasks.append((scheme.output, table, ece, overall))
    groups = list(dict.fromkeys(tasks[0][1]["group"]))
    for _, table, _, _ in tasks[1:]:
        groups += [g for g in dict.fromkeys(table["group"]) if g not in groups]
    colors = {g: plt.get_cmap("tab10")(i % 10) for i, g in enumerate(groups)}
    shared = by is None or len(groups) <= _FEW_GROUPS
    per_task = 1 if shared else math.ceil(len(groups) / _PANELS_PER_ROW)
    ncols = len(tasks) if shared else min(len(groups), _PANELS_PER_ROW)
    nrows = 1 if shared else per_task * len(tasks)
    size = 3.6 if shared else 2.6
    fig, axes = _figure(nrows, ncols, figsize=(size * ncols + 0.3, size * nrows + 0.5),
                        squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.set_visible(False)
    by_label = "" if by is None else (by if isinstance(by, str) else " x ".join(by))
    for t, (task, table, ece, overall) in enumerate(tasks):
        scores = ece.set_index("group")
        if shared:
            panels = [(axes[0, t], [g for g in groups if g in set(table["group"])], task)]
        else:
            present = [g for g in groups if g in set(table["group"])]
            panels = [(axes[t * per_task + i // ncols, i % ncols], [g], f"{task}: {g}")
                      for i, g in enumerate(present)]
        for k, (ax, members, panel_title) in enumerate(panels):
            ax.set_visible(True)
            first = t == 0 and k == 0  # small multiples: the shared lines named once
            ax.plot([0, 1], [0, 1], ls="--", color="0.5", lw=1,
                    label="perfectly calibrated" if shared or first else None)
            if not shared and overall is not None:
                ax.plot(overall["confidence"], overall["accuracy"], color="0.65", lw=1.2,
                        label="all faces" if first else None)
            for group in members:
                rows = table[table["group"] == group]
                sizes = 12 + 160 * rows["n"] / max(1, table["n"].max())
                label = (f"ECE {scores.loc[group, 'value']:.3f}, "
                         f"n={int(scores.loc[group, 'n'])}")
                label = f"{group} ({label})" if shared else label  # else the title names it
                color = "tab:blue" if by is None else colors[group]
                ax.plot(rows["confidence"], rows["accuracy"], color=color, lw=1.5, label=label)
                ax.scatter(rows["confidence"], rows["accuracy"], s=sizes, color=color,
                           edgecolor="white", linewidth=0.5, zorder=3, clip_on=False)
            ax.set(xlim=(0, 1), ylim=(0, 1), aspect="equal", title=panel_title)
            ax.set_xlabel("mean confidence (top class)", fontsize=8)
            ax.set_ylabel("accuracy", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6.5 if shared else 7, loc="upper left", frameon=True)
    what = f" by {by_label}" if by_label else ""
    fig.suptitle(title or f"Reliability{what} ({bins} bins; marker area grows with the "
                          "faces in a bin)", fontsize=10)
    return fig


def gradcam_grid(images, heatmaps: Mapping, titles: Mapping | None = None, alpha: float = 0.45,
                 cmap: str = "jet", title: str = "Grad-CAM: where each head looked",
                 face_titles: Sequence[str] | None = None):
    """Faces with their Grad-CAM heat maps laid over them, one row per face. Lab 08.

    ``images`` is (N, H, W, 3) in [0, 255]; ``heatmaps`` a dict ``{"gender": (N, H, W), ...}``
    from ``fl.explain.grad_cam`` (values in [0, 1]), one overlay column per key after the face
    itself. ``titles`` optionally ``{key: N strings}`` written over each overlay (e.g.
    ``"female 0.93"``); ``face_titles`` optionally N strings over the faces themselves (e.g.
    each face's true labels). ``alpha`` is the heat map's opacity. Each map is scaled to its own
    maximum, so colours compare places within one map, not strengths across maps: the
    colourbar says so. Returns a :class:`PhotoFigure` (shown as a JPEG).
    """
    faces = _load_images(images)
    if not isinstance(heatmaps, Mapping) or not heatmaps:
        raise ValueError("heatmaps must be a non-empty dict {name: (N, H, W) array}, e.g. "
                         "{'gender': fl.explain.grad_cam(model, images, 'gender')}.")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha={alpha}; pass an opacity between 0 and 1, e.g. 0.45.")
    maps = {}
    for key, value in heatmaps.items():
        value = np.asarray(value, dtype=float)
        if value.ndim != 3 or len(value) != len(faces):
            raise ValueError(f"heatmaps[{key!r}] has shape {value.shape}; pass one (H, W) map "
                             f"per face, shape ({len(faces)}, H, W).")
        maps[key] = value
    titles = dict(titles or {})
    for key, value in titles.items():
        if key not in maps or len(value) != len(faces):
            raise ValueError(f"titles[{key!r}] must name a heat map and give one string per "
                             f"face ({len(faces)}).")
    if face_titles is not None and len(face_titles) != len(faces):
        raise ValueError(f"face_titles has {len(face_titles)} strings; pass one per face "
                         f"({len(faces)}).")
    _register_photo_display()
    ncols, nrows = 1 + len(maps), len(faces)
    fig, axes = _figure(nrows, ncols, figsize=(1.7 * ncols + 0.9, 1.8 * nrows + 0.5),
                        squeeze=False, FigureClass=PhotoFigure, layout="constrained")
    shown = None
    for i, face in enumerate(faces):
        axes[i, 0].imshow(face)
        text = ["face"] if i == 0 else []
        if face_titles is not None:
            text.append(str(face_titles[i]))
        axes[i, 0].set_title("\n".join(text), fontsize=8)
        for j, (key, value) in enumerate(maps.items(), start=1):
            ax = axes[i, j]
            ax.imshow(face)
            heat = value[i]
            extent = (-0.5, face.shape[1] - 0.5, face.shape[0] - 0.5, -0.5)
            shown = ax.imshow(heat, cmap=cmap, alpha=alpha, vmin=0, vmax=1, extent=extent,
                              interpolation="bilinear")
            text = [f"{key} head"] if i == 0 else []
            if key in titles:
                text.append(str(titles[key][i]))
            ax.set_title("\n".join(text), fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    scale = ScalarMappable(norm=Normalize(0, 1), cmap=shown.get_cmap())  # opaque, unlike maps
    bar = fig.colorbar(scale, ax=axes, shrink=min(0.9, 3.0 / nrows + 0.2), pad=0.02)
    bar.set_label("heat (each map scaled to its own max)", fontsize=7)
    bar.ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    return fig


# --------------------------------------------------------------------------------------------
# Data analysis
# --------------------------------------------------------------------------------------------

def distribution(df: pd.DataFrame, column: str, hue: str | None = None, bins: int = 30,
                 title: str | None = None, kind: str | None = None):
    """Distribution of one column: a histogram for numbers, counted bars for categories. Lab 01.

    ``kind`` is ``"hist"`` or ``"bars"``; by default text, boolean, gender-code and two-valued
    columns get bars, ordered by frequency (a categorical column: in its categories' order,
    e.g. age groups), with missing values counted as a ``<NA>`` bar
    (gender 0/1 shows as male/female), and other numbers a histogram whose title counts the
    missing ones. ``hue`` splits the bars or stacks the histogram by another column.
    The histogram has at most ``bins`` bins, cut by :func:`histogram_edges`: whole numbers
    (ages in years) get bins of a whole number of values, so no bin holds more ages than
    another and shows a peak that is not in the data.
    """
    import seaborn as sns

    _check_columns(df, [column] + ([hue] if hue else []))
    data = df[[column] + ([hue] if hue else [])].copy()
    if hue:
        data[hue] = _as_category(data[hue], hue)
    if kind is None:
        kind = "hist" if _is_numeric(data[column], column) else "bars"
    if kind not in ("hist", "bars"):
        raise ValueError(f"kind must be 'hist', 'bars' or None (automatic), got {kind!r}.")
    fig, ax = _figure(figsize=(7, 4))
    if kind == "hist":
        missing = int(data[column].isna().sum())
        values = data.dropna(subset=[column]).astype({column: float})
        edges = histogram_edges(values[column], bins)
        sns.histplot(data=values, x=column, hue=hue, bins=edges, multiple="stack", ax=ax)
        width = edges[1] - edges[0] if len(edges) > 1 else 1
        whole = _is_whole(values[column].to_numpy())
        note = f", {missing} missing" if missing else ""
        note += f", {int(width)} values per bin" if whole and width > 1 else ""
        ax.set(xlabel=column, ylabel="images",
               title=title or f"Distribution of {column} ({len(values)} images{note})")
    else:
        data[column] = _as_category(data[column], column)
        order = list(data[column].cat.categories) \
            if isinstance(data[column].dtype, pd.CategoricalDtype) \
            else list(data[column].value_counts().index)
        sns.countplot(data=data, x=column, hue=hue, order=order, ax=ax)
        for container in ax.containers:
            ax.bar_label(container, fontsize=7)
        if max(len(str(v)) for v in order) * len(order) > 60:
            ax.tick_params(axis="x", labelrotation=45)
        ax.set(xlabel=column, ylabel="images",
               title=title or f"Images per {column}" + (f" and {hue}" if hue else ""))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def histogram_edges(values, bins: int = 30) -> np.ndarray:
    """Bin edges for a histogram of ``values`` with at most ``bins`` bins. Lab 01.

    Whole numbers (ages in years) get bins of ``w`` whole values each, edges at ``k - 0.5``
    and the bins aligned on multiples of ``w`` (w = 5: ages 0-4, 5-9, ...), with the
    smallest ``w`` that needs at most ``bins`` bins. Equal-width bins on whole numbers would
    hold three ages in some bins and two in others, a peak that is not in the data. Other
    numbers get ``bins`` equal-width bins from the minimum to the maximum (numpy's edges).
    """
    if not isinstance(bins, (int, np.integer)) or isinstance(bins, bool) or bins < 1:
        raise ValueError(f"bins must be a positive int (the most bins to draw), got {bins!r}.")
    array = np.asarray(pd.Series(values).dropna().to_numpy(dtype=float), dtype=float)
    array = array[np.isfinite(array)]
    if array.size == 0:
        raise ValueError("histogram_edges needs at least one finite value.")
    if not _is_whole(array):
        return np.histogram_bin_edges(array, bins=int(bins))
    lo, hi = int(array.min()), int(array.max())
    width = max(1, math.ceil((hi - lo + 1) / bins))
    while True:
        start = math.floor(lo / width) * width
        count = math.floor((hi - start) / width) + 1
        if count <= bins:
            break
        width += 1
    return start - 0.5 + width * np.arange(count + 1)


def _is_whole(array) -> bool:
    array = np.asarray(array, dtype=float)
    array = array[np.isfinite(array)]
    return bool(array.size) and bool(np.all(array == np.round(array)))


def crosstab_heatmap(df: pd.DataFrame, row: str, col: str, normalize: bool | str = False,
                     title: str | None = None):
    """Heatmap of ``pd.crosstab(df[row], df[col])``: how two labels co-occur. Lab 01.

    ``normalize`` is passed to ``pd.crosstab`` (``"index"``: each row sums to 1); missing
    values are counted as a last ``<NA>`` row or column.
    """
    import seaborn as sns

    _check_columns(df, [row, col])
    table = pd.crosstab(_as_category(df[row], row), _as_category(df[col], col),
                        normalize=normalize)
    table = table.reindex(index=_missing_last(table.index), columns=_missing_last(table.columns))
    fractions = normalize is not False
    fig, ax = _figure(figsize=(max(5.0, 0.8 * table.shape[1] + 3),
                               max(3.5, 0.5 * table.shape[0] + 2)))
    sns.heatmap(table, annot=True, fmt=".2f" if fractions else "d", cmap="Blues",
                linewidths=0.5, ax=ax,
                cbar_kws={"label": "fraction" if fractions else "images"})
    ax.set(xlabel=col, ylabel=row, title=title or f"{row} x {col}")
    ax.tick_params(axis="y", labelrotation=0)
    fig.tight_layout()
    return fig


def _missing_last(labels) -> list:
    return [v for v in labels if v != _MISSING] + [v for v in labels if v == _MISSING]


def _check_columns(df, columns):
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"expected a pandas DataFrame (a dataset table), got {type(df)}.")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"the table has no column(s) {missing}; it has {list(df.columns)}.")


def _is_numeric(series: pd.Series, name: str) -> bool:
    from faceattr_lab.evaluate import GROUP_NAMES

    if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return False
    return name not in GROUP_NAMES and series.nunique() > 2


def _as_category(series: pd.Series, name: str) -> pd.Series:
    """Values as display strings; gender codes named, missing values as ``<NA>``; a
    categorical keeps its categories' order."""
    from faceattr_lab.evaluate import GROUP_NAMES

    names = GROUP_NAMES.get(name, {})
    shown = series.astype(object).map(
        lambda v: _MISSING if pd.isna(v) else str(names.get(v, v))).astype(str)
    if isinstance(series.dtype, pd.CategoricalDtype):  # keep the categories' order (age groups)
        order = [str(names.get(c, c)) for c in series.cat.categories]
        order += [_MISSING] if (shown == _MISSING).any() else []
        return pd.Series(pd.Categorical(shown, categories=order), index=series.index, name=name)
    return shown


__all__ = ["DPI", "save", "training_curves", "confusion_matrix", "group_bars", "compare_runs",
           "paired_seeds",
           "age_error", "embedding", "embedding_grid", "image_grid", "PhotoFigure", "distribution",
           "histogram_edges",
           "crosstab_heatmap", "DISPLAY_DPI", "JPEG_QUALITY", "reliability", "gradcam_grid"]
