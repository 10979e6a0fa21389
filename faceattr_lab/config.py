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

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

DATA_ENV = "FACEATTR_LAB_DATA"
OUTPUT_ENV = "FACEATTR_LAB_OUTPUT"
# "1": one log line per epoch instead of progress bars (the runner sets it for papermill)
QUIET_ENV = "FACEATTR_LAB_QUIET"

DATASETS = ("synthetic", "utkface", "fairface", "afad", "adience")
PROFILES = ("quick", "full")


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


def _weights(value):
    """``WEIGHTS`` as ``keras.applications`` takes it: ``"random"`` (or None) -> None."""
    if value is None or value == RANDOM_WEIGHTS:
        return None
    if not isinstance(value, (str, Path)):
        raise ValueError(f"WEIGHTS={value!r}; pass 'imagenet', 'random' or a .weights.h5 path.")
    return str(value)


def settings(lab: str, profile: str = "quick", *, seed: int = 42,
             data_root: str | Path | None = None, output: str | Path | None = None,
             lab_defaults: dict | None = None, **explicit) -> Settings:
    """Resolve a lab's settings: profile defaults < the lab's defaults < explicit values. Lab 00.

    ``lab_defaults`` maps ``"quick"``/``"full"`` to per-lab values (e.g. the study's image
    size); explicit keyword values that are not ``None`` win. Keys that are not standard
    settings land in ``Settings.extra`` (read them as ``settings["key"]``). Starts a fresh
    ``results.json`` in the output folder, where ``fl.results.record`` then writes, and calls
    :func:`quiet_retracing_warnings`. ``weights="random"`` asks for randomly initialised
    backbones in any profile (``Settings.weights`` is then None): how a full-profile run works
    offline, where ImageNet's weights cannot be downloaded.
    """
    if profile not in PROFILES:
        raise ValueError(f"PROFILE must be one of {PROFILES}, got {profile!r}.")
    values = dict(PROFILE_DEFAULTS[profile])
    values.update((lab_defaults or {}).get(profile, {}))
    values.update({k: v for k, v in explicit.items() if v is not None})
    if values["dataset"] not in DATASETS:
        raise ValueError(f"DATASET must be one of {DATASETS}, got {values['dataset']!r}.")
    for key in ("image_size", "epochs", "batch_size"):
        if not isinstance(values[key], int) or values[key] <= 0:
            raise ValueError(f"{key.upper()} must be a positive int, got {values[key]!r}.")
    out = Path(output).expanduser() if output else output_dir(lab)
    out.mkdir(parents=True, exist_ok=True)
    quiet_retracing_warnings()
    from faceattr_lab import results

    results.start(out)
    standard = set(PROFILE_DEFAULTS["quick"])
    return Settings(
        lab=lab, profile=profile, dataset=values["dataset"], image_size=values["image_size"],
        epochs=values["epochs"], batch_size=values["batch_size"], seed=int(seed),
        n_images=int(values["n_images"]), weights=_weights(values["weights"]),
        data_root=Path(data_root).expanduser() if data_root else None, output_dir=out,
        extra={k: v for k, v in values.items() if k not in standard},
    )


__all__ = ["DATA_ENV", "OUTPUT_ENV", "QUIET_ENV", "RANDOM_WEIGHTS", "DATASETS", "PROFILES", "PROFILE_DEFAULTS",
           "Settings",
           "data_dir", "output_dir", "repo_root", "in_colab", "gpu_available", "environment",
           "use_drive", "quiet_retracing_warnings", "settings"]
