"""A trained kit model exported for serving: the ``.keras`` file and a TensorFlow SavedModel.

``export(model, folder)`` writes both; ``check_export(model, folder, images)`` reloads each the
way a server would (``keras.saving.load_model`` and ``tf.saved_model.load(...).serve``) and
compares their outputs with the model's own, head by head.
"""

from __future__ import annotations

from pathlib import Path

KERAS_FILE = "model.keras"
SAVED_MODEL_DIR = "saved_model"


def load_model(path, compile: bool = False):
    """A saved kit model (``.keras``) loaded in any process, e.g. by ``faceattr-lab predict``.
    Lab 09.

    The kit's own layers (``Preprocess``, ``CoralOutput``, the fusion router, Levi-Hassner's
    local response normalisation) register with Keras when their modules are imported; a fresh
    process that has not built a kit model has not imported them, so this imports them first.
    ``compile=True`` also restores the training loss and optimizer.
    """
    import keras

    from faceattr_lab import losses  # noqa: F401  (the kit's losses, for compile=True)
    from faceattr_lab.models import backbones, fusion, heads, levi_hassner_cnn  # noqa: F401

    path = Path(path).expanduser()
    if not path.is_file() or path.suffix != ".keras":
        raise ValueError(f"{path} is not a saved .keras model; pass the file a lab or "
                         "fl.models.export wrote (model.save('model.keras')).")
    return keras.saving.load_model(path, compile=compile)


def export(model, folder) -> dict:
    """Write ``model.keras`` and a TensorFlow SavedModel (``saved_model/``) into ``folder``.

    The SavedModel's ``serve`` endpoint (Keras' ``model.export``) takes float32 images
    ``(batch, H, W, 3)`` in [0, 255], as every kit model does, and returns the model's outputs
    (a dict keyed by head). Returns ``{"keras": path, "saved_model": path}``. Used by
    ``faceattr-lab predict`` users who deploy a model. Lab 09.
    """
    import keras

    if not isinstance(model, keras.Model):
        raise ValueError(f"export needs a keras.Model, got {type(model).__name__}; load one "
                         "with keras.saving.load_model('model.keras') first.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    keras_path, saved_path = folder / KERAS_FILE, folder / SAVED_MODEL_DIR
    model.save(keras_path)
    model.export(str(saved_path), format="tf_saved_model", verbose=False)
    return {"keras": keras_path, "saved_model": saved_path}


def check_export(model, folder, images, atol: float = 1e-5) -> dict:
    """Reload both exports from ``folder`` and compare their outputs with ``model``'s.

    Returns ``{"keras": max |difference|, "saved_model": max |difference|}`` over every head
    and image; raises ``ValueError`` if a head is missing or a difference exceeds ``atol``.
    Lab 09.
    """
    import keras
    import numpy as np
    import tensorflow as tf

    folder = Path(folder)
    images = np.asarray(images, dtype="float32")
    expected = model.predict(images, verbose=0)
    expected = expected if isinstance(expected, dict) else {"output": expected}
    reloaded = load_model(folder / KERAS_FILE).predict(images, verbose=0)
    loaded = tf.saved_model.load(str(folder / SAVED_MODEL_DIR))  # keep it: serve needs it alive
    served = loaded.serve(tf.constant(images))
    found = {}
    for name, outputs in (("keras", reloaded), ("saved_model", served)):
        outputs = outputs if isinstance(outputs, dict) else {"output": outputs}
        missing = sorted(set(expected) - set(outputs))
        if missing:
            raise ValueError(f"the {name} export lacks the heads {missing}; export the model "
                             "again with fl.models.serving.export.")
        found[name] = max(float(np.max(np.abs(np.asarray(outputs[k]) - expected[k])))
                          for k in expected)
        if found[name] > atol:
            raise ValueError(f"the {name} export differs from the model by {found[name]:.2e} "
                             f"(more than atol={atol}); export it again from this model.")
    return found


def load_served(folder):
    """The exported SavedModel's ``serve`` endpoint as a function, loaded the way a server
    (TensorFlow Serving, a Python service) loads it, without Keras. Lab 09.

    ``served(images)`` takes float32 images ``(batch, H, W, 3)`` in [0, 255] and returns
    ``{head: numpy array}``. The loaded SavedModel lives as long as the function does.
    """
    import numpy as np
    import tensorflow as tf

    path = Path(folder)
    path = path if (path / "saved_model.pb").is_file() else path / SAVED_MODEL_DIR
    if not (path / "saved_model.pb").is_file():
        raise ValueError(f"no SavedModel in {folder}; write one with "
                         "fl.models.serving.export(model, folder).")
    loaded = tf.saved_model.load(str(path))

    def served(images):
        outputs = loaded.serve(tf.constant(np.asarray(images, dtype="float32")))
        outputs = outputs if isinstance(outputs, dict) else {"output": outputs}
        return {name: value.numpy() for name, value in outputs.items()}

    served.saved_model = loaded
    return served


__all__ = ["KERAS_FILE", "SAVED_MODEL_DIR", "export", "check_export", "load_served"]
