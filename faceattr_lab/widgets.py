"""Interactive ipywidgets panels for the labs: a face browser, a custom-CNN playground and a
photo upload that finds and labels faces (lab 09).

Each panel function returns its widget container, so it displays when it is a cell's last
value. The logic behind a panel is a plain function (:func:`filter_faces`,
:func:`train_knobs`) that runs without a browser; the container also carries its callback
(``panel.update()`` / ``panel.train()``) so a test or a script can drive it headlessly.

ipywidgets, TensorFlow and Keras are imported inside the functions: importing this module
costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

UNKNOWN = "unknown"
GENDER_NAMES = {0: "male", 1: "female"}

# The knobs of the custom CNN (study C's ablations, shrunk to run in a minute on a CPU).
DEFAULT_KNOBS = {
    "conv_filters": (16, 32, 64),  # one conv block per entry
    "bn_order": "bn_relu",          # "bn_relu", "relu_bn" or "none"
    "dense_units": 128,
    "dropout": 0.5,
    "optimizer": "adam",            # "adam", "rmsprop" or "sgd"
    "learning_rate": 1e-3,
    "augment": False,
    "epochs": 2,                    # 1..3 in the playground
    "batch_size": 32,
    "seed": 0,
}
BN_ORDERS = ("bn_relu", "relu_bn", "none")
OPTIMIZERS = ("adam", "rmsprop", "sgd")
FILTER_CHOICES = {
    "2 blocks: 16-32": (16, 32),
    "3 blocks: 16-32-64": (16, 32, 64),
    "3 blocks: 32-64-128": (32, 64, 128),
    "4 blocks: 16-32-64-128": (16, 32, 64, 128),
}


# --------------------------------------------------------------------------------------------
# Face browser
# --------------------------------------------------------------------------------------------

def _names(series: pd.Series, column: str) -> pd.Series:
    """Display names of a column's values: gender codes named, missing values "unknown"."""
    names = GENDER_NAMES if column == "gender" else {}
    return series.astype(object).map(lambda v: UNKNOWN if pd.isna(v) else str(names.get(v, v)))


def _choices(df: pd.DataFrame, column: str) -> list[str]:
    """The values a filter offers, in a natural order (age groups young to old, unknown last)."""
    from faceattr_lab import labels

    present = set(_names(df[column], column))
    if column == "gender":
        order = ["male", "female"]
    elif column == "age_group":
        order = [*labels.FAIRFACE_AGE_GROUPS, *labels.ADIENCE_AGE_GROUPS]
    else:
        order = []
    known = [v for v in order if v in present]
    rest = sorted(present - set(known) - {UNKNOWN})
    return known + rest + ([UNKNOWN] if UNKNOWN in present else [])


def filter_faces(df: pd.DataFrame, gender: Sequence[str] | None = None,
                 race: Sequence[str] | None = None, age_group: Sequence[str] | None = None,
                 age_range: tuple[int, int] | None = None) -> pd.DataFrame:
    """The rows of a dataset table that match every given filter. Lab 01.

    ``gender``, ``race`` and ``age_group`` are collections of display names ("male",
    "female", "White", "20-29", ... and "unknown" for a missing value); ``None`` or an empty
    selection does not filter. ``age_range=(lo, hi)`` keeps ages in years with
    ``lo <= age <= hi`` (rows without years are dropped by it). This is the face browser's
    filter, usable on its own.
    """
    if "path" not in df.columns:
        raise ValueError("filter_faces needs a dataset table with a 'path' column; pass what "
                         "fl.datasets.load(...) returned.")
    keep = np.ones(len(df), dtype=bool)
    for column, wanted in (("gender", gender), ("race", race), ("age_group", age_group)):
        if not wanted:
            continue
        if column not in df.columns:
            raise ValueError(f"the table has no {column!r} column to filter on; its columns "
                             f"are {list(df.columns)}.")
        keep &= _names(df[column], column).isin(set(wanted)).to_numpy()
    if age_range is not None:
        lo, hi = age_range
        if lo > hi:
            raise ValueError(f"age_range must be (low, high) with low <= high, got {age_range}.")
        ages = df["age"].astype("float64").to_numpy(na_value=np.nan)
        with np.errstate(invalid="ignore"):
            keep &= (ages >= lo) & (ages <= hi)
    return df[keep]


def _caption(row) -> str:
    gender = {0: "M", 1: "F"}.get(row.gender, "?") if pd.notna(row.gender) else "?"
    age = f"{int(row.age)}y" if "age" in row._fields and pd.notna(row.age) else (
        str(row.age_group) if "age_group" in row._fields and pd.notna(row.age_group) else "?")
    race = str(row.race) if "race" in row._fields and pd.notna(row.race) else ""
    return " ".join(part for part in (gender, age, race) if part)


def _thumbnails(paths, image_size: int) -> np.ndarray:
    from PIL import Image

    images = []
    for path in paths:
        with Image.open(path) as image:
            images.append(np.asarray(image.convert("RGB").resize((image_size, image_size))))
    return np.stack(images)


def _show(output, *objects) -> None:
    """Replace what an ``Output`` widget shows (strings as text, anything else displayed).

    Sets the widget's contents directly instead of capturing with ``with output:`` and
    ``clear_output(wait=True)``, which can hang a headless kernel under nbclient/papermill.
    """
    output.outputs = ()
    for obj in objects:
        if isinstance(obj, str):
            output.append_stdout(obj + "\n")
        else:
            output.append_display_data(obj)


def face_browser(df: pd.DataFrame, n: int = 24, image_size: int = 64, seed: int = 0):
    """A panel that filters faces by gender, race and age and shows a grid of matches. Lab 01.

    Multi-selects for gender and race (and age group where the table has groups), a range
    slider for age in years (where it has years), a "New sample" button, the number of
    matching faces and a grid of up to ``n`` of them drawn with ``fl.plots.image_grid`` at
    ``image_size`` pixels. An empty selection means "any". Returns the container; its
    ``update()`` re-runs the filter (what every control change calls), ``selection()``
    returns the matching rows and ``count`` is the ``Label`` showing their number.
    """
    import ipywidgets as widgets

    from faceattr_lab import plots

    if not isinstance(df, pd.DataFrame) or "path" not in df.columns or df.empty:
        raise ValueError("face_browser needs a non-empty dataset table with a 'path' column; "
                         "pass what fl.datasets.load(...) returned.")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int (faces per grid), got {n!r}.")
    if not isinstance(image_size, int) or image_size < 16:
        raise ValueError(f"image_size must be an int >= 16 pixels, got {image_size!r}.")

    filters: dict[str, widgets.Widget] = {}
    for column in ("gender", "race", "age_group"):
        if column in df.columns and df[column].notna().any():
            options = _choices(df, column)
            filters[column] = widgets.SelectMultiple(
                options=options, value=(), rows=min(len(options), 9),
                description=column.replace("_", " "), layout=widgets.Layout(width="260px"))
    has_years = "age" in df.columns and df["age"].notna().any()
    if has_years:
        lo, hi = int(df["age"].min()), int(df["age"].max())
        filters["age"] = widgets.IntRangeSlider(value=(lo, hi), min=lo, max=hi, step=1,
                                                description="age (years)", continuous_update=False,
                                                layout=widgets.Layout(width="420px"))
    count = widgets.Label()
    resample = widgets.Button(description="New sample", icon="refresh")
    output = widgets.Output()
    state = {"seed": seed}

    def selection() -> pd.DataFrame:
        age_range = None
        if has_years:
            lo_sel, hi_sel = filters["age"].value
            if (lo_sel, hi_sel) != (filters["age"].min, filters["age"].max):
                age_range = (lo_sel, hi_sel)
        chosen = {name: filters[name].value for name in ("gender", "race", "age_group")
                  if name in filters}
        return filter_faces(df, **chosen, age_range=age_range)

    def update(*_):
        matches = selection()
        count.value = f"{len(matches)} of {len(df)} faces match"
        if matches.empty:
            _show(output, "No face matches these filters; clear a selection (ctrl/cmd-click).")
            return
        shown = matches.sample(min(n, len(matches)), random_state=state["seed"])
        titles = [_caption(row) for row in shown.itertuples(index=False)]
        fig = plots.image_grid(_thumbnails(shown["path"], image_size), titles=titles,
                               ncols=min(8, len(shown)), max_images=n,
                               title=f"{len(shown)} of {len(matches)} matching faces")
        _show(output, fig)

    def new_sample(_):
        state["seed"] += 1
        update()

    for control in filters.values():
        control.observe(update, names="value")
    resample.on_click(new_sample)

    controls = widgets.HBox(list(filters.values()))
    panel = widgets.VBox([controls, widgets.HBox([resample, count]), output])
    panel.update = update
    panel.selection = selection
    panel.filters = filters
    panel.count = count
    panel.output = output
    update()
    return panel


# --------------------------------------------------------------------------------------------
# Custom-CNN playground
# --------------------------------------------------------------------------------------------

def _check_knobs(knobs: dict) -> dict:
    unknown = sorted(set(knobs) - set(DEFAULT_KNOBS))
    if unknown:
        raise ValueError(f"unknown knob(s) {unknown}; the knobs are {sorted(DEFAULT_KNOBS)}.")
    values = {**DEFAULT_KNOBS, **knobs}
    filters = tuple(int(f) for f in values["conv_filters"])
    if not filters or any(f < 1 for f in filters):
        raise ValueError(f"conv_filters must list positive filter counts, one per block, e.g. "
                         f"(16, 32, 64); got {values['conv_filters']!r}.")
    values["conv_filters"] = filters
    if values["bn_order"] not in BN_ORDERS:
        raise ValueError(f"bn_order must be one of {BN_ORDERS}, got {values['bn_order']!r}.")
    if values["optimizer"] not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {values['optimizer']!r}.")
    if not 0 <= float(values["dropout"]) < 1:
        raise ValueError(f"dropout must be in [0, 1), got {values['dropout']!r}.")
    for key in ("epochs", "dense_units", "batch_size"):
        if not isinstance(values[key], (int, np.integer)) or values[key] < 1:
            raise ValueError(f"{key} must be a positive int, got {values[key]!r}.")
    if not isinstance(values["seed"], (int, np.integer)) or isinstance(values["seed"], bool) \
            or values["seed"] < 0:
        raise ValueError(f"seed must be a non-negative int, got {values['seed']!r}.")
    return values


def knobs_label(knobs: dict) -> str:
    """A short run name for a knob setting, e.g. "16-32-64 bn_relu d128 p0.5 adam e2". Lab 02.

    A seed other than the default 0 is named last ("... e2 s3"), so repeats of one setting
    under several seeds stay apart in the panel's table.
    """
    k = _check_knobs(knobs)
    return (f"{'-'.join(map(str, k['conv_filters']))} {k['bn_order']} d{k['dense_units']} "
            f"p{float(k['dropout']):g} {k['optimizer']}" + (" aug" if k["augment"] else "")
            + f" e{k['epochs']}" + (f" s{k['seed']}" if k["seed"] != DEFAULT_KNOBS["seed"] else ""))


def train_knobs(knobs: dict, train_df: pd.DataFrame, val_df: pd.DataFrame, schemes,
                image_size: int = 48, max_images: int | None = None, run: str | None = None):
    """Train a small ``fl.models.custom_cnn`` with these knobs; return (metrics, history). Lab 02.

    ``knobs`` overrides :data:`DEFAULT_KNOBS` (``conv_filters``, ``bn_order``,
    ``dense_units``, ``dropout``, ``optimizer``, ``learning_rate``, ``augment``, ``epochs``,
    ``batch_size``, ``seed``); unknown keys raise. Rows the schemes cannot encode are left out
    (``fl.labels.select``); with ``max_images`` the training table is cut to a seeded random
    subset of that size. Trains with ``fl.train.fit`` (no early stopping, nothing written)
    and scores the validation table with ``fl.evaluate``: the tidy table has columns ``run``,
    ``task``, ``metric``, ``value``; the Keras ``History`` holds the curves.
    """
    import keras

    from faceattr_lab import evaluate, labels, models, pipeline, train

    k = _check_knobs(knobs)
    schemes = labels.resolve(schemes)
    train_rows, _ = labels.select(train_df, schemes)
    val_rows, _ = labels.select(val_df, schemes)
    if train_rows.empty or val_rows.empty:
        raise ValueError(f"no rows left to train ({len(train_rows)}) or validate "
                         f"({len(val_rows)}) on after selecting the schemes "
                         f"{[s.name for s in schemes]}; pick schemes that match the dataset.")
    if max_images is not None and len(train_rows) > max_images:
        train_rows = train_rows.sample(max_images, random_state=k["seed"])
    keras.utils.set_random_seed(int(k["seed"]))
    train_ds = pipeline.make_dataset(train_rows, schemes, image_size, k["batch_size"],
                                     training=True, augment=bool(k["augment"]) or None,
                                     shuffle_seed=int(k["seed"]))
    val_ds = pipeline.make_dataset(val_rows, schemes, image_size, k["batch_size"])
    model = models.custom_cnn((image_size, image_size, 3), schemes,
                              conv_filters=k["conv_filters"], bn_order=k["bn_order"],
                              dense_units=int(k["dense_units"]), dropout=float(k["dropout"]),
                              bn_momentum=0.9)  # a 1-3 epoch run: see fl.models.cnn.BN_MOMENTUM
    models.compile_for(model, schemes, optimizer=k["optimizer"],
                       learning_rate=float(k["learning_rate"]))
    history = train.fit(model, train_ds, val_ds, epochs=int(k["epochs"]), early_stopping=None,
                        verbose=0)
    predictions = evaluate.predict(model, val_ds, schemes)
    table = evaluate.evaluate(predictions, schemes, run=run or knobs_label(k))
    return table, history


def cnn_playground(train_df: pd.DataFrame, val_df: pd.DataFrame, schemes, image_size: int = 48,
                   max_images: int = 800):
    """A panel to pick custom-CNN knobs, train a tiny model and compare the runs. Lab 02.

    Controls for the conv blocks and their filters, BN/ReLU order, dense units, dropout,
    optimizer, augmentation, epochs (1-3) and the seed (initial weights, shuffling, dropout: a
    difference between two runs means something only if it survives a change of seed); the
    Train button calls :func:`train_knobs` on
    at most ``max_images`` training faces at ``image_size`` pixels and shows the validation
    metrics, the training curves and a table of every run so far. Returns the container;
    ``knobs()`` reads the controls into a knob dict, ``train()`` is the button's callback and
    ``runs`` the list of tidy metric tables.
    """
    import ipywidgets as widgets

    from faceattr_lab import evaluate, labels, plots

    schemes = labels.resolve(schemes)
    if not isinstance(image_size, int) or image_size < 16:
        raise ValueError(f"image_size must be an int >= 16 pixels, got {image_size!r}.")
    if not isinstance(max_images, int) or max_images < 1:
        raise ValueError(f"max_images must be a positive int, got {max_images!r}.")
    style = {"description_width": "110px"}
    width = widgets.Layout(width="330px")
    controls = {
        "conv_filters": widgets.Dropdown(options=list(FILTER_CHOICES),
                                         value="3 blocks: 16-32-64", description="conv blocks",
                                         style=style, layout=width),
        "bn_order": widgets.ToggleButtons(options=list(BN_ORDERS), value="bn_relu",
                                          description="BN / ReLU", style=style),
        "dense_units": widgets.Dropdown(options=[64, 128, 256, 512], value=128,
                                        description="dense units", style=style, layout=width),
        "dropout": widgets.FloatSlider(value=0.5, min=0.0, max=0.8, step=0.1,
                                       description="dropout", style=style, layout=width),
        "optimizer": widgets.ToggleButtons(options=list(OPTIMIZERS), value="adam",
                                           description="optimizer", style=style),
        "augment": widgets.Checkbox(value=False, description="augmentation"),
        "epochs": widgets.IntSlider(value=2, min=1, max=3, description="epochs", style=style,
                                    layout=width),
        "seed": widgets.BoundedIntText(value=DEFAULT_KNOBS["seed"], min=0, max=10**6,
                                       description="seed", style=style, layout=width),
    }
    button = widgets.Button(description="Train", button_style="primary", icon="play")
    status = widgets.Label(f"{min(len(train_df), max_images)} training faces at "
                           f"{image_size} px; tasks {[s.name for s in schemes]}")
    output = widgets.Output()
    runs: list[pd.DataFrame] = []

    def knobs() -> dict:
        values = {name: control.value for name, control in controls.items()}
        values["conv_filters"] = FILTER_CHOICES[values["conv_filters"]]
        return values

    def train(*_):
        button.disabled = True
        status.value = "training..."
        try:
            table, history = train_knobs(knobs(), train_df, val_df, schemes, image_size,
                                         max_images=max_images,
                                         run=f"run {len(runs) + 1}: {knobs_label(knobs())}")
            runs.append(table)
            status.value = f"done: run {len(runs)}"
            _show(output, evaluate.wide(pd.concat(runs, ignore_index=True)),
                  plots.training_curves(history, title=table["run"].iloc[0]))
            return table, history
        finally:
            button.disabled = False

    button.on_click(train)
    panel = widgets.VBox([*controls.values(), widgets.HBox([button, status]), output])
    panel.knobs = knobs
    panel.train = train
    panel.runs = runs
    panel.controls = controls
    panel.output = output
    return panel


def uploaded_files(value) -> list[tuple[str, bytes]]:
    """``(name, bytes)`` of each file in a ``FileUpload`` value, in ipywidgets 8's form (a tuple
    of dicts with ``name`` and ``content``) or 7's (a dict ``{name: {"content": ...}}``).
    Lab 09."""
    if isinstance(value, dict):
        value = [{"name": name, **entry} for name, entry in value.items()]
    files = []
    for entry in value or ():
        if not isinstance(entry, dict) or "content" not in entry:
            raise ValueError("an upload entry lacks its content; pass FileUpload.value as "
                             "ipywidgets gives it.")
        files.append((str(entry.get("name", f"upload {len(files)}")), bytes(entry["content"])))
    return files


def photo_upload(model, schemes=None, min_confidence: float = 0.9, margin: float | None = None):
    """A panel to upload photos and see each face found, with the model's predictions. Lab 09.

    On upload, every photo is read, its faces detected, aligned and predicted
    (``fl.faces.predict_faces``), drawn with their boxes and labels (``fl.faces.annotate``),
    and one table row per face is shown (``fl.faces.table_rows``; a photo without a face or
    a file that is not an image gets its own row). Returns the container; its ``predict(value)``
    is the upload's callback (a ``FileUpload`` value; callable without a browser), which
    returns the table, and ``images`` holds the annotated photos by file name.
    """
    import io

    import ipywidgets as widgets
    from PIL import Image, ImageOps

    from faceattr_lab import faces, labels

    schemes = (faces.infer_schemes(model) if schemes is None
               else [labels.get(s) if isinstance(s, str) else s for s in schemes])
    margin = faces.DEFAULT_MARGIN if margin is None else margin
    if not 0 <= min_confidence <= 1:
        raise ValueError(f"min_confidence={min_confidence}; pass a value in [0, 1], e.g. 0.9.")
    upload = widgets.FileUpload(accept="image/*", multiple=True, description="Upload photos")
    status = widgets.Label(f"faces are cropped to {model.input_shape[1]} px for the model; "
                           "nothing leaves this notebook")
    output = widgets.Output()
    annotated: dict[str, np.ndarray] = {}

    def predict(value):
        rows, shown = [], []
        for name, content in uploaded_files(value):
            try:
                with Image.open(io.BytesIO(content)) as opened:
                    image = np.asarray(ImageOps.exif_transpose(opened).convert("RGB"))
            except (OSError, ValueError, Image.DecompressionBombError) as error:
                rows.append({"image": name, "status": f"unreadable: {error}"})
                continue
            found = faces.predict_faces(model, [image], schemes, min_confidence=min_confidence,
                                        margin=margin)[0]
            rows += faces.table_rows(name, found, schemes)
            annotated[name] = faces.annotate(image, found, schemes)
            shown.append(Image.fromarray(annotated[name]))
        table = pd.DataFrame(rows, columns=faces.table_columns(schemes))
        status.value = (f"{table['image'].nunique()} files, "
                        f"{int((table['status'] == 'ok').sum())} faces")
        _show(output, *shown, table)
        return table

    upload.observe(lambda change: predict(change["new"]), names="value")
    panel = widgets.VBox([widgets.HBox([upload, status]), output])
    panel.predict = predict
    panel.images = annotated
    panel.upload = upload
    panel.output = output
    return panel


__all__ = ["DEFAULT_KNOBS", "FILTER_CHOICES", "filter_faces", "face_browser", "knobs_label",
           "train_knobs", "cnn_playground", "uploaded_files", "photo_upload"]
