"""faceattr-lab: a course kit on classifying gender, age and race from faces (Keras 3).

Labs import the kit one way, ``import faceattr_lab as fl``, and call ``fl.<module>.<name>``.
Data flows one way through the modules::

    datasets -> labels -> pipeline -> models / losses -> train -> evaluate -> plots, results

``explain`` (Grad-CAM, Lab 08) sits beside ``evaluate``: it runs models and feeds ``plots``.
Beside them, ``faceattr_lab.course`` runs, grades and releases the labs and holds the
exercises' self-checks (``fl.checks``).

Importing the package has no side effects: submodules load on first use, so
``import faceattr_lab`` does not import TensorFlow.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "config", "datasets", "labels", "pipeline", "models", "losses", "train", "evaluate",
    "explain", "plots", "widgets", "results", "experiments", "pretraining", "benchmarks", "faces", "cli",
    "course",
)
# the course's self-checks, called by every lab as fl.checks.<name>, live in course/
_ALIASES = {"checks": "course.checks"}

__all__ = ["__version__", "set_seed", *_SUBMODULES, *_ALIASES]


def set_seed(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and the backend (``keras.utils.set_random_seed``). Lab 00.

    With ``deterministic=True`` TensorFlow also runs ops deterministically (slower), so the
    same seed on a CPU gives the same metrics run after run.
    """
    import keras

    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}; pass e.g. SEED = 42.")
    keras.utils.set_random_seed(seed)
    if deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def __getattr__(name: str):
    if name in _SUBMODULES or name in _ALIASES:
        return importlib.import_module(f"{__name__}.{_ALIASES.get(name, name)}")
    raise AttributeError(f"module 'faceattr_lab' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
