"""A kit model exported for serving reloads, as .keras and as a SavedModel, to the same outputs."""

from __future__ import annotations

import numpy as np
import pytest

from faceattr_lab import labels
from faceattr_lab.models import cnn, serving


def test_export_reloads_to_the_same_outputs(tmp_path):
    schemes = [labels.get("gender"), labels.get("age_fairface9"), labels.get("race_utk5")]
    model = cnn.custom_cnn((32, 32, 3), schemes, conv_filters=(8, 16), dense_units=16,
                           sigmoid_gender=False)
    paths = serving.export(model, tmp_path / "export")
    assert paths["keras"].is_file() and (paths["saved_model"] / "saved_model.pb").is_file()
    images = np.random.default_rng(0).uniform(0, 255, (6, 32, 32, 3)).astype("float32")
    differences = serving.check_export(model, tmp_path / "export", images)
    assert set(differences) == {"keras", "saved_model"}
    assert max(differences.values()) <= 1e-5
    # the served probabilities are probabilities: each head's rows sum to 1
    import tensorflow as tf

    loaded = tf.saved_model.load(str(paths["saved_model"]))
    served = loaded.serve(tf.constant(images))
    for scheme in schemes:
        np.testing.assert_allclose(np.asarray(served[scheme.output]).sum(axis=1), 1.0,
                                   atol=1e-5)


def test_check_export_catches_another_model(tmp_path):
    schemes = [labels.get("gender")]
    first = cnn.custom_cnn((32, 32, 3), schemes, conv_filters=(8,), dense_units=8)
    serving.export(first, tmp_path)
    other = cnn.custom_cnn((32, 32, 3), schemes, conv_filters=(8,), dense_units=8)
    images = np.random.default_rng(1).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    with pytest.raises(ValueError, match="differs from the model"):
        serving.check_export(other, tmp_path, images)
    with pytest.raises(ValueError, match="keras.Model"):
        serving.export("model.keras", tmp_path)


def test_load_served_gives_the_models_outputs_as_numpy(tmp_path):
    schemes = [labels.get("gender"), labels.get("race_utk5")]
    model = cnn.custom_cnn((32, 32, 3), schemes, conv_filters=(8,), dense_units=8,
                           sigmoid_gender=False)
    serving.export(model, tmp_path)
    served = serving.load_served(tmp_path)
    images = np.random.default_rng(2).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    outputs = served(images)
    expected = model.predict(images, verbose=0)
    assert set(outputs) == {"gender", "race"}
    for key in outputs:
        np.testing.assert_allclose(outputs[key], expected[key], atol=1e-5)
    with pytest.raises(ValueError, match="export"):
        serving.load_served(tmp_path / "nothing")
