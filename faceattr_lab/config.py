"""Where data and outputs live, and the quick / full run profiles. Lab 00.

- Data (datasets, downloaded archives, ImageNet weights) lives in the *data folder*:
  ``$FACEATTR_LAB_DATA`` if set, else ``~/faceattr_lab_data``. Never in the repository.
- Run outputs (executed notebooks, ``results.json``, checkpoints, figures) live in the
  *output folder*: ``$FACEATTR_LAB_OUTPUT`` if set, else ``outputs/`` at the top of the
  checkout (git-ignored), else ``~/faceattr_lab_outputs`` for an installed kit.

Every path a lab uses is resolved here, so a lab runs the same from papermill (which starts
the kernel in the caller's folder) and from nbval (which starts it in the notebook's folder).
"""

from __future__ import annotations

import difflib
import logging
import math
import numbers
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

DATA_ENV = "FACEATTR_LAB_DATA"
OUTPUT_ENV = "FACEATTR_LAB_OUTPUT"
# "1": one log line per epoch instead of progress bars (the runner sets it for papermill)
QUIET_ENV = "FACEATTR_LAB_QUIET"

DATASETS = ("synthetic", "utkface", "fairface", "afad", "adience")
PROFILES = ("quick", "full", "grading")
# The grading profile (fl.course.grader's default): the quick profile with every training cut to
# one epoch. The checks' verdicts come from the exercises' code and the checks' own cases, not
# from the lab's data, so what the run adds is the executed notebook a student gets back; one
# epoch keeps every cell running on the same data, in a fraction of the time.
GRADING = "grading"


def repo_root() -> Path | None:
    """The checkout the package runs from, or ``None`` for an installed kit. Lab 00."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / "labs").is_dir() else None


def data_dir() -> Path:
    """The data folder (``$FACEATTR_LAB_DATA`` overrides it); created on first use. Lab 00."""
    path = Path(os.environ.get(DATA_ENV) or Path.home() / "faceattr_lab_data").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def output_dir(*parts: str) -> Path:
    """A folder under the output root (``$FACEATTR_LAB_OUTPUT`` overrides it); created. Lab 00."""
    env = os.environ.get(OUTPUT_ENV)
    if env:
        root = Path(env).expanduser()
    elif repo_root() is not None:
        root = repo_root() / "outputs"
    else:
        root = Path.home() / "faceattr_lab_outputs"
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def in_colab() -> bool:
    """True inside Google Colab. Lab 00."""
    return "COLAB_RELEASE_TAG" in os.environ or "google.colab" in __import__("sys").modules


def gpu_available() -> bool:
    """True when TensorFlow sees a GPU. Lab 00."""
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def environment() -> dict:
    """Versions, accelerator and folders of this run, for the top of a lab. Lab 00."""
    import platform

    import keras
    import tensorflow as tf

    from faceattr_lab import __version__

    gpus = tf.config.list_physical_devices("GPU")
    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras backend": keras.backend.backend(),
        "faceattr-lab": __version__,
        "accelerator": ", ".join(g.name for g in gpus) if gpus else "none (CPU only)",
        "colab": in_colab(),
        "data folder": str(data_dir()),
        "output folder": str(output_dir()),
    }


def use_drive(folder: str = "faceattr_lab") -> Path:
    """On Colab, mount Google Drive and keep data and outputs there across sessions. Lab 00.

    Sets ``$FACEATTR_LAB_DATA`` to ``<Drive>/<folder>/data`` and ``$FACEATTR_LAB_OUTPUT`` to
    ``<Drive>/<folder>/outputs``, so datasets, checkpoints and results survive a disconnect.
    """
    if not in_colab():
        raise ValueError("use_drive() mounts Google Drive and works on Colab only; elsewhere "
                         f"set ${DATA_ENV} and ${OUTPUT_ENV} to the folders you want.")
    from google.colab import drive  # type: ignore[import-not-found]

    drive.mount("/content/drive")
    base = Path("/content/drive/MyDrive") / folder
    os.environ[DATA_ENV] = str(base / "data")
    os.environ[OUTPUT_ENV] = str(base / "outputs")
    data_dir(), output_dir()
    return base


@dataclass(frozen=True)
class Settings:
    """A lab's resolved settings: the profile's values with the lab's explicit overrides."""

    lab: str
    profile: str
    dataset: str
    image_size: int
    epochs: int
    batch_size: int
    seed: int
    n_images: int
    weights: str | None
    data_root: Path | None
    output_dir: Path
    extra: dict = field(default_factory=dict)

    def __getitem__(self, key):
        return self.extra[key]


# The quick profile runs on a 2-core CPU in about a minute on synthetic data: one cached set of
# 3,000 faces drawn at 64 px (shared by every lab), trained at 32 px, where a small CNN reaches
# about 0.9 gender / 0.85 race(5) / 0.5 age(9) accuracy in 10 epochs (~40 s). The full profile
# runs the study's experiment on a real dataset on a GPU. Each lab passes its own per-profile
# values (the study's image size, epochs, dataset) as ``lab_defaults``.
PROFILE_DEFAULTS = {
    "quick": dict(dataset="synthetic", image_size=32, epochs=10, batch_size=32, n_images=3000,
                  weights=None),
    "full": dict(dataset="utkface", image_size=128, epochs=30, batch_size=64, n_images=0,
                 weights="imagenet"),
}


class _RetracingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


def quiet_retracing_warnings() -> None:
    """Drop TensorFlow's "N out of the last N calls ... triggered tf.function retracing". Lab 02.

    Every new Keras model traces its own training and prediction functions, so a lab that
    trains a grid of models meets that warning by design; it would only alarm a student.
    Other TensorFlow warnings still show. Called by :func:`settings`; safe to call again.
    """
    logger = logging.getLogger("tensorflow")
    if not any(isinstance(f, _RetracingFilter) for f in logger.filters):
        logger.addFilter(_RetracingFilter())


RANDOM_WEIGHTS = "random"
# the kit's SmallVGG pre-trained on synthetic faces (fl.pretraining): the quick profile's ImageNet
SYNTHETIC_WEIGHTS = "synthetic"
# fewer synthetic faces leave too few per class and split for the labs' tables and metrics
MIN_SYNTHETIC_IMAGES = 100


def _is_int(value) -> bool:
    """An integer that is not a bool (``True`` is an int to Python, never a count here)."""
    return isinstance(value, numbers.Integral) and not _is_bool(value)


def _is_bool(value) -> bool:
    numpy = sys.modules.get("numpy")  # NumPy's bool only when NumPy is loaded: no import here
    return isinstance(value, bool) or (numpy is not None and isinstance(value, numpy.bool_))


def _kind_name(kinds: tuple) -> str:
    names = {int: "an int", float: "a number", str: "a string", bool: "True or False"}
    return " or ".join(names.get(k, f"a {k.__name__}") for k in kinds)


def _fmt(value) -> str:
    return repr(str(value)) if isinstance(value, Path) else repr(value)


def _example(kinds, value, minimum, maximum):
    """A value to suggest: the number a quoted one meant, or the bound it crossed (or None)."""
    if isinstance(value, str) and kinds and str not in kinds:  # e.g. "1e-4" from a shell
        for k in (k for k in (int, float) if k in kinds):
            try:
                value = k(value.strip())
                break
            except ValueError:
                pass
    fits = not kinds or any(_matches(value, k) for k in kinds)
    if fits and isinstance(value, numbers.Real) and not _is_bool(value) and value == value:
        if minimum is not None and value < minimum:
            return minimum
        if maximum is not None and value > maximum:
            return maximum
        return value
    return minimum if minimum is not None else maximum


def _matches(value, k) -> bool:
    if k is int:
        return _is_int(value)
    if k is float:
        return isinstance(value, numbers.Real) and not _is_bool(value)
    if k is bool:
        return _is_bool(value)
    return isinstance(value, k)


def check_parameter(name: str, value, *, kind=None, minimum=None, maximum=None, choices=None,
                    allow_none: bool = False):
    """A lab parameter's ``value`` if valid, else a ValueError saying what to set. Lab 02.

    ``kind``: a type or tuple of types (``int`` excludes bools; ``float`` also takes ints and
    returns a float). ``minimum``/``maximum`` are inclusive; ``choices`` is any iterable (a
    dict: its keys); ``allow_none`` lets None through. E.g.
    ``check_parameter("FINE_TUNE_LR", lr, kind=float, minimum=1e-6, maximum=1.0)``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name={name!r}; pass the parameter's name as the student types it, "
                         "e.g. 'EPOCHS'.")
    if minimum is not None and maximum is not None and minimum > maximum:
        raise ValueError(f"minimum={minimum!r} > maximum={maximum!r}; pass minimum <= maximum.")
    kinds = () if kind is None else kind if isinstance(kind, tuple) else (kind,)
    if not all(isinstance(k, type) for k in kinds) or kind == ():
        raise ValueError(f"kind={kind!r}; pass a type or a tuple of types, e.g. int or "
                         "(int, float).")
    bounds = [f"{sign} {bound!r}" for sign, bound in ((">=", minimum), ("<=", maximum))
              if bound is not None]
    rule = " ".join(filter(None, [_kind_name(kinds), " and ".join(bounds)])) or "a value"
    if bounds:
        rule += " (bounds inclusive)"
    if choices is not None:
        choices = list(choices)
        rule = (_kind_name(kinds) + ", " if kinds else "") + f"one of {_choice_list(choices)}"

    def fail(problem: str = rule):
        example = None if choices is not None else _example(kinds, value, minimum, maximum)
        if choices is not None:
            todo = f"set {name} to one of these"
        elif example is None:
            todo = f"set {name} to {rule}"
        else:
            todo = f"set {name} to e.g. {example!r}"
            if isinstance(value, str) and not isinstance(example, str):
                todo += " (a number, without quotes)"
        raise ValueError(f"{name}={_fmt(value)}: must be {problem}; {todo}.")

    if value is None:
        if allow_none:
            return None
        fail()

    if kinds:
        if not any(_matches(value, k) for k in kinds):
            fail()
        if int in kinds and _is_int(value):
            value = int(value)
        elif float in kinds and _matches(value, float):
            value = float(value)
            if value != value:
                fail(f"{rule}, not NaN")
    if bounds:
        try:
            inside = (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
        except TypeError:
            inside = False
        if not inside:
            fail()
    if choices is not None and value not in choices:
        fail()
    return value


def _choice_list(choices) -> str:
    items = list(choices)
    try:
        items = sorted(items)
    except TypeError:
        items = sorted(items, key=repr)
    return ", ".join(repr(c) for c in items)


def parse_names(name: str, text, choices) -> list[str]:
    """A comma-separated parameter (``"MobileNetV2, VGG16"``) as a list of known names. Lab 03.

    Items are stripped; an empty item, a repeated name or a name not in ``choices`` (any
    iterable; a dict: its keys) raises ValueError listing the valid choices.
    """
    allowed = list(choices)
    if not isinstance(text, str):
        raise ValueError(f"{name}={_fmt(text)}: must be a comma-separated string of names; set "
                         f"{name} to e.g. {', '.join(map(str, sorted(allowed)[:2]))!r}.")
    names = [item.strip() for item in text.split(",")]
    if any(not item for item in names):
        raise ValueError(f"{name}={text!r}: has an empty name (a stray or doubled comma); list "
                         f"names separated by single commas, from {_choice_list(allowed)}.")
    unknown = [item for item in names if item not in allowed]
    if unknown:
        hints = []
        for item in unknown:
            close = difflib.get_close_matches(item, [str(c) for c in allowed], n=1, cutoff=0.6)
            close = close or [c for c in map(str, allowed) if c.lower() == item.lower()]
            hints += close[:1]
        raise ValueError(f"{name}={text!r}: unknown {', '.join(map(repr, unknown))}"
                         + (f" (did you mean {', '.join(map(repr, hints))}?)" if hints else "")
                         + f"; use names from {_choice_list(allowed)}.")
    repeated = sorted({item for item in names if names.count(item) > 1})
    if repeated:
        raise ValueError(f"{name}={text!r}: lists {', '.join(map(repr, repeated))} more than "
                         "once; list each name once.")
    return names


def _weights(value):
    """``WEIGHTS`` as ``keras.applications`` takes it: ``"random"`` (or None) -> None."""
    if value is None or value == RANDOM_WEIGHTS:
        return None
    if value in ("imagenet", SYNTHETIC_WEIGHTS):
        return value
    if not isinstance(value, (str, Path)):
        raise ValueError(f"WEIGHTS={value!r}: must be 'imagenet', 'synthetic', 'random' or the "
                         "path of a weights file; set WEIGHTS to one of these (None: the "
                         "profile's).")
    path = Path(value).expanduser()
    if not path.is_file():
        raise ValueError(f"WEIGHTS={str(value)!r}: no such file ({path.resolve()} does not "
                         "exist); fix the path, or set WEIGHTS to 'imagenet', 'synthetic', "
                         "'random' or None (the profile's).")
    return str(path)


def _validate(values: dict, defaults: dict, explicit: dict, profile: str, min_image_size,
              lab_keys=()) -> None:
    """Check the resolved standard values in place, naming each parameter as a lab spells it."""
    if values["dataset"] not in DATASETS:
        raise ValueError(f"DATASET={values['dataset']!r}: must be one of {_choice_list(DATASETS)}; "
                         "set DATASET to one of these, or None for this lab's default "
                         f"({defaults['dataset']!r} in the {profile} profile).")
    if min_image_size is not None:
        check_parameter("min_image_size", min_image_size, kind=int, minimum=1)
    for key in ("image_size", "epochs", "batch_size"):
        try:
            values[key] = check_parameter(key.upper(), values[key], kind=int, minimum=1)
        except ValueError as error:
            if key not in lab_keys:  # the lab's parameter has its own default, not None
                raise
            raise ValueError(f"{str(error)[:-1]}, or None for this lab's default "
                             f"({defaults[key]!r} in the {profile} profile).") from None
    if min_image_size is not None and values["image_size"] < min_image_size:
        raise ValueError(f"IMAGE_SIZE={values['image_size']!r}: too small, this lab's models need "
                         f"at least {min_image_size} px (their down-sampling would shrink the "
                         f"image to nothing); set IMAGE_SIZE to {min_image_size} or more, or None "
                         "for the lab's default.")
    synthetic = values["dataset"] == "synthetic"
    n = values["n_images"]
    if synthetic and n == 0 and explicit.get("n_images") is None and _is_int(n):
        # the full profile's 0 means "all of a real dataset"; synthetic data has no "all"
        n = values["n_images"] = PROFILE_DEFAULTS["quick"]["n_images"]
    if synthetic:
        if not _is_int(n) or n < MIN_SYNTHETIC_IMAGES:
            raise ValueError(f"N_IMAGES={_fmt(n)}: synthetic data needs an int >= "
                             f"{MIN_SYNTHETIC_IMAGES} faces (fewer leave too few per class to "
                             "split and evaluate); set N_IMAGES to e.g. "
                             f"{PROFILE_DEFAULTS['quick']['n_images']}.")
    elif not _is_int(n) or n < 0:
        raise ValueError(f"N_IMAGES={_fmt(n)}: must be a positive int (a seeded sample) or 0 "
                         "(all of the dataset); set N_IMAGES to e.g. 3000, or 0.")
    values["n_images"] = int(n)


def settings(lab: str, profile: str = "quick", *, seed: int = 42,
             data_root: str | Path | None = None, output: str | Path | None = None,
             lab_defaults: dict | None = None, min_image_size: int | None = None,
             **explicit) -> Settings:
    """Resolve a lab's settings: profile defaults < the lab's defaults < explicit values. Lab 00.

    ``lab_defaults`` maps ``"quick"``/``"full"`` to per-lab values (e.g. the study's image
    size); explicit keyword values that are not ``None`` win. Keys that are not standard
    settings land in ``Settings.extra`` (read them as ``settings["key"]``). Every standard
    value is checked (ValueError naming the parameter, e.g. ``IMAGE_SIZE``; ``min_image_size``:
    the smallest image this lab's models take). Starts a fresh ``results.json`` in the output
    folder, where ``fl.results.record`` then writes, and calls :func:`quiet_retracing_warnings`.
    ``weights="random"`` asks for randomly initialised backbones in any profile
    (``Settings.weights`` is then None): how a full-profile run works offline;
    ``"synthetic"`` names the kit's SmallVGG pre-trained on synthetic faces (lab 03).
    ``profile="grading"`` (the grader's) is the quick profile with ``epochs`` and every lab
    value named ``*_epochs`` cut to 1; ``Settings.profile`` then reads ``"quick"``.
    """
    if not isinstance(profile, str) or profile not in PROFILES:
        raise ValueError(f"PROFILE={_fmt(profile)}: must be one of {_choice_list(PROFILES)}; set "
                         "PROFILE to 'quick' (synthetic faces, CPU, minutes) or 'full' (a real "
                         "dataset, GPU).")
    grading = profile == GRADING
    if grading:  # the quick profile, every training cut to one epoch (see GRADING)
        profile = "quick"
    defaults = dict(PROFILE_DEFAULTS[profile])
    defaults.update((lab_defaults or {}).get(profile, {}))
    if grading:
        defaults.update({key: 1 for key, value in defaults.items()
                         if (key == "epochs" or key.endswith("_epochs")) and _is_int(value)
                         and value > 1})
    values = {**defaults, **{k: v for k, v in explicit.items() if v is not None}}
    _validate(values, defaults, explicit, profile, min_image_size,
              lab_keys=set((lab_defaults or {}).get(profile, {})))
    seed = check_parameter("SEED", seed, kind=int, minimum=0)
    weights = _weights(values["weights"])
    root = None
    if data_root:  # None or "": the data folder
        root = Path(data_root).expanduser()
        if not root.is_dir():
            raise ValueError(f"DATA_DIR={str(data_root)!r}: no such folder ({root.resolve()}); "
                             "fix the path, or set DATA_DIR = None to use the data folder "
                             f"(${DATA_ENV} or ~/faceattr_lab_data).")
    if output is not None and not isinstance(output, (str, Path)):
        raise ValueError(f"OUTPUT_DIR={output!r}: must be a folder path; set OUTPUT_DIR to a "
                         "path, or None for the lab's folder under outputs/.")
    out = Path(output).expanduser() if output else output_dir(lab)
    if out.exists() and not out.is_dir():
        raise ValueError(f"OUTPUT_DIR={str(output)!r}: is a file, not a folder; set OUTPUT_DIR "
                         "to a folder path, or None for the lab's folder under outputs/.")
    out.mkdir(parents=True, exist_ok=True)
    quiet_retracing_warnings()
    from faceattr_lab import results

    results.start(out)
    standard = set(PROFILE_DEFAULTS["quick"])
    return Settings(
        lab=lab, profile=profile, dataset=values["dataset"], image_size=values["image_size"],
        epochs=values["epochs"], batch_size=values["batch_size"], seed=seed,
        n_images=values["n_images"], weights=weights, data_root=root, output_dir=out,
        extra={k: v for k, v in values.items() if k not in standard},
    )


__all__ = ["DATA_ENV", "OUTPUT_ENV", "QUIET_ENV", "RANDOM_WEIGHTS", "DATASETS", "PROFILES",
           "GRADING",
           "PROFILE_DEFAULTS", "Settings",
           "data_dir", "output_dir", "repo_root", "in_colab", "gpu_available", "environment",
           "use_drive", "quiet_retracing_warnings", "settings", "check_parameter", "parse_names",
           "MIN_SYNTHETIC_IMAGES"]
