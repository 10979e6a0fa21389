"""The synthetic attribute domain and the SmallVGG backbone pretrained on it (lab 03)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

import faceattr_lab as fl
from faceattr_lab import pretraining
from faceattr_lab.datasets import synthetic

TINY = dict(n=240, n_val=40, epochs=1, batch_size=32)


def test_attribute_faces_follow_the_generators_rules():
    images, table = synthetic.attribute_faces(300, seed=3, image_size=32, workers=1)
    assert images.shape == (300, 32, 32, 3) and images.dtype == np.uint8
    assert list(table.columns[3:]) == list(synthetic.ATTRIBUTES)
    # rules of the face generator, checked on the table: no lipstick on men or children, no
    # beard on women or boys, no bald women, "baby" hair only under 2
    assert not table.loc[table.gender == 0, "lipstick"].any()
    assert not table.loc[table.age < 13, "lipstick"].any()
    assert not table.loc[(table.gender == 1) | (table.age < 17), "beard"].any()
    assert not table.loc[table.gender == 1, "bald"].any()
    assert ((table.hair_style == "baby") == (table.age < 2)).all()
    assert set(table.hair_style) <= set(synthetic.HAIR_STYLES)
    # another domain: gender, race and age drawn uniformly, not as any dataset's
    assert 0.4 < table.gender.mean() < 0.6
    assert table.race.nunique() == len(synthetic.RACES)


def test_attribute_faces_are_reproducible_and_independent_of_workers():
    a, ta = synthetic.attribute_faces(410, seed=1, workers=2)
    b, tb = synthetic.attribute_faces(20, seed=1, workers=1)
    np.testing.assert_array_equal(a[:20], b)
    assert ta.head(20).equals(tb)
    c, _ = synthetic.attribute_faces(20, seed=2, workers=1)
    assert not np.array_equal(b, c)


@pytest.mark.parametrize("bad", [dict(n=0), dict(seed=-1), dict(image_size=8)])
def test_attribute_faces_reject_bad_arguments(bad):
    with pytest.raises(ValueError):
        synthetic.attribute_faces(**{"n": 10, **bad})


def test_small_vgg_has_the_vgg_layout_and_no_imagenet_weights():
    base = fl.models.backbone("SmallVGG", (32, 32, 3), weights=None)
    convs = [l for l in base.get_layer("smallvgg_application").layers if "conv" in l.name]
    assert [c.filters for c in convs] == [32, 32, 64, 64, 128, 128, 256, 256]
    # 3x3 kernels without bias: 9 * c_in * c_out per convolution
    channels = [3, 32, 32, 64, 64, 128, 128, 256, 256]
    assert sum(c.count_params() for c in convs) == sum(
        9 * a * b for a, b in zip(channels[:-1], channels[1:]))
    assert base.output.shape[-1] == 256
    with pytest.raises(ValueError, match="no ImageNet weights"):
        fl.models.backbone("SmallVGG", (32, 32, 3), weights="imagenet")


def test_pretrain_is_byte_reproducible_and_loads_through_backbone(tmp_path):
    first, second = tmp_path / "a.weights.h5", tmp_path / "b.weights.h5"
    report = pretraining.pretrain(first, **TINY)
    pretraining.pretrain(second, **TINY)
    assert first.read_bytes() == second.read_bytes()
    assert set(report["validation"]) == set(synthetic.ATTRIBUTES)
    # the weights file loads through the same path a student's own weights take
    images, _ = synthetic.attribute_faces(8, seed=5, workers=1)
    loaded = fl.models.backbone("SmallVGG", (32, 32, 3), weights=first)
    again = fl.models.backbone("SmallVGG", (32, 32, 3), weights=first)
    fresh = fl.models.backbone("SmallVGG", (32, 32, 3), weights=None)
    np.testing.assert_array_equal(loaded.predict(images, verbose=0),
                                  again.predict(images, verbose=0))
    assert not np.allclose(loaded.predict(images, verbose=0), fresh.predict(images, verbose=0))


def test_synthetic_weights_cache_in_the_data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(fl.config.DATA_ENV, str(tmp_path))
    path = pretraining.synthetic_weights(**TINY)
    assert path.parent == tmp_path / "weights" and path.name.endswith(".weights.h5")
    manifest = pretraining.cached(path)
    assert manifest["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert manifest["recipe"]["n"] == TINY["n"]
    stamp = path.stat().st_mtime_ns
    assert pretraining.synthetic_weights(**TINY) == path and path.stat().st_mtime_ns == stamp
    # a damaged file no longer matches its manifest: it is made again, identical
    good = path.read_bytes()
    path.write_bytes(good[:100])
    assert pretraining.cached(path) is None
    assert pretraining.synthetic_weights(**TINY).read_bytes() == good
    # another recipe is another file
    assert pretraining.weights_path(**{**TINY, "epochs": 2}) != path


@pytest.mark.parametrize("bad", [dict(n=10, n_val=10), dict(epochs=0), dict(colour=True),
                                 dict(learning_rate=0.0)])
def test_recipe_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        pretraining.weights_path(**bad)


def test_pretrain_wants_a_weights_file_name(tmp_path):
    with pytest.raises(ValueError, match=".weights.h5"):
        pretraining.pretrain(tmp_path / "model.keras", **TINY)
