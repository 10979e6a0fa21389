"""Splits, the tf.data pipeline and class weights on hand-made tables and tiny images."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

pipeline = pytest.importorskip("faceattr_lab.pipeline")
from faceattr_lab import labels as L  # noqa: E402


# -- splits ----------------------------------------------------------------------------------
def people(n=600, seed=0, subjects=None):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "path": [f"/img/{i}.jpg" for i in range(n)],
        "gender": pd.array(rng.choice([0, 1], n, p=[0.7, 0.3]), dtype="Int64"),
        "race": pd.array(rng.choice(["White", "Black", "Asian"], n, p=[0.6, 0.3, 0.1]),
                         dtype="string"),
    })
    if subjects:
        df["user_id"] = [f"u{i % subjects}" for i in range(n)]
    return df


def assert_partition(df, parts):
    paths = [set(parts[k]["path"]) for k in pipeline.SPLITS]
    assert sum(len(p) for p in paths) == len(df)
    assert set().union(*paths) == set(df["path"])
    assert not (paths[0] & paths[1] or paths[0] & paths[2] or paths[1] & paths[2])


def test_split_is_a_seeded_stratified_partition():
    df = people()
    parts = pipeline.split(df, seed=3, stratify=["gender", "race"])
    assert_partition(df, parts)
    assert [len(parts[k]) for k in pipeline.SPLITS] == [420, 90, 90]
    share = df.groupby(["gender", "race"]).size() / len(df)
    for name in pipeline.SPLITS:
        part_share = parts[name].groupby(["gender", "race"]).size() / len(parts[name])
        np.testing.assert_allclose(part_share.reindex(share.index).to_numpy(), share, atol=0.02)
    again = pipeline.split(df, seed=3, stratify=["gender", "race"])
    other = pipeline.split(df, seed=4, stratify=["gender", "race"])
    assert again["test"]["path"].tolist() == parts["test"]["path"].tolist()
    assert other["test"]["path"].tolist() != parts["test"]["path"].tolist()
    assert parts["train"].attrs["split"] == "train"


def test_split_with_groups_is_subject_exclusive():
    df = people(n=600, subjects=60)
    parts = pipeline.split(df, seed=0, groups="user_id")
    assert_partition(df, parts)
    users = [set(parts[k]["user_id"]) for k in pipeline.SPLITS]
    assert not (users[0] & users[1] or users[0] & users[2] or users[1] & users[2])
    assert 0.08 < len(parts["test"]) / len(df) < 0.25
    plain = pipeline.split(df, seed=0, groups="user_id", stratify=None)
    assert_partition(df, plain)


def test_fairface_official_val_becomes_test():
    df = people(n=200)
    df["split"] = ["val" if i % 4 == 0 else "train" for i in range(200)]
    df.attrs["dataset"] = "fairface"
    parts = pipeline.split(df, seed=0, val_fraction=0.2)
    assert_partition(df, parts)
    assert set(parts["test"]["path"]) == set(df.loc[df["split"] == "val", "path"])
    assert (parts["val"]["split"] == "train").all() and len(parts["val"]) == 30
    assert "TEST" in parts["test"].attrs["split_note"]


def test_split_rejects_bad_arguments():
    with pytest.raises(ValueError, match="below 1"):
        pipeline.split(people(50), val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ValueError, match="Cannot stratify"):
        pipeline.split(people(50), stratify="age")


def test_adience_folds():
    df = pd.DataFrame({"path": [f"/a/{i}.jpg" for i in range(10)],
                       "fold": [0, 0, 1, 1, 2, 2, 3, 3, 4, 4],
                       "user_id": [f"u{i // 2}" for i in range(10)]})
    parts = pipeline.adience_folds(df, test_fold=2, val_fold=3)
    assert_partition(df, parts)
    assert parts["test"]["fold"].tolist() == [2, 2] and parts["val"]["fold"].tolist() == [3, 3]
    assert len(pipeline.adience_folds(df, 0)["val"]) == 0
    df.loc[0, "user_id"] = "u4"  # u4 now spans folds 0 and 2
    with pytest.raises(ValueError, match="subject-exclusive"):
        pipeline.adience_folds(df, 1)


# -- images ----------------------------------------------------------------------------------
@pytest.fixture
def images(tmp_path):
    """Eight 24x30 images of known flat colours; #1 grayscale JPEG, #2 a PNG named .jpg."""
    rows = []
    for i in range(8):
        colour = (30 * i, 200 - 20 * i, 100)
        path = tmp_path / f"{i}.jpg"
        if i == 1:
            Image.new("L", (30, 24), 90).save(path, format="JPEG")
            colour = (90, 90, 90)
        elif i == 2:
            Image.new("RGBA", (30, 24), (*colour, 255)).save(path, format="PNG")
        else:
            Image.new("RGB", (30, 24), colour).save(path, format="JPEG", quality=95)
        rows.append({"path": str(path), "gender": i % 2, "age": 18 + 3 * i, "colour": colour})
    df = pd.DataFrame(rows)
    df["gender"] = df["gender"].astype("Int64")
    df["age"] = df["age"].astype("Int64")
    return df


def test_dataset_images_and_labels(images):
    ds = pipeline.make_dataset(images, ["gender", "age_fairface9"], 16, batch_size=3)
    x, y = pipeline.to_numpy(ds)
    assert x.shape == (8, 16, 16, 3) and x.dtype == np.float32
    assert x.min() >= 0 and x.max() <= 255
    # flat colours survive decoding and resizing to within JPEG error, in file order
    np.testing.assert_allclose(x.mean(axis=(1, 2)), np.array(images["colour"].tolist()), atol=4)
    assert y["gender"].tolist() == [0, 1, 0, 1, 0, 1, 0, 1]
    # ages 18, 21, ..., 39 -> 10-19, 20-29 x3, 30-39 x4 (indices 2, 3, 4)
    assert y["age"].tolist() == [2, 3, 3, 3, 4, 4, 4, 4]
    batches = [b[0].shape[0] for b in ds]
    assert batches == [3, 3, 2]


def test_grayscale_and_png_named_jpg_load_as_rgb(images):
    x = pipeline.load_images(images["path"][1:3], (12, 20))
    assert x.shape == (2, 12, 20, 3)
    np.testing.assert_allclose(x[0], 90, atol=2)  # gray replicated into three channels
    np.testing.assert_allclose(x[1].mean(axis=(0, 1)), images["colour"][2], atol=1)


def test_training_shuffle_is_seeded(images):
    colours = np.array(images["colour"].tolist(), dtype=np.float32)

    def order(seed, cache=False):
        ds = pipeline.make_dataset(images, "gender", 8, batch_size=8, training=True,
                                   shuffle_seed=seed, cache=cache)
        pixels = next(iter(ds))[0].numpy()[:, 0, 0, :]  # each image has its own flat colour
        distance = np.abs(pixels[:, None, :] - colours[None]).sum(axis=-1)
        return distance.argmin(axis=1).tolist()

    first = order(1)
    assert sorted(first) == list(range(8)) and first != list(range(8))
    assert order(1) == first
    assert order(2) != first
    assert order(1, cache=True) == order(1, cache=True)


@pytest.fixture
def textured(tmp_path):
    """Eight 16x16 PNGs (lossless) of random pixels in [40, 215], so any move or flip shows."""
    rng = np.random.default_rng(7)
    rows = []
    for i in range(8):
        path = tmp_path / f"t{i}.png"
        Image.fromarray(rng.integers(40, 216, (16, 16, 3), dtype=np.uint8)).save(path)
        rows.append({"path": str(path), "gender": i % 2})
    df = pd.DataFrame(rows)
    df["gender"] = df["gender"].astype("Int64")
    return df


def _epochs(ds, count=2):
    """``count`` passes over a dataset, each a fresh iterator: [(images, genders), ...]."""
    passes = []
    for _ in range(count):
        x, y = pipeline.to_numpy(ds)
        passes.append((x, y["gender"]))
    return passes


def test_augmentation_is_seeded_per_epoch_and_replays(textured):
    def build(seed):
        return pipeline.make_dataset(textured, "gender", 16, batch_size=3, training=True,
                                     augment=True, shuffle_seed=seed)

    first, second = _epochs(build(1))
    again = _epochs(build(1))
    for (x, y), (x_again, y_again) in zip((first, second), again):
        np.testing.assert_array_equal(x, x_again)   # same seeds, same batches, every epoch
        np.testing.assert_array_equal(y, y_again)
    assert not np.allclose(first[0], second[0])      # a new epoch draws anew
    other = _epochs(build(2), 1)[0]
    assert not np.allclose(first[0], other[0])       # another seed draws otherwise
    # what fl.train.fit does on resume: create (and drop) the finished epochs' iterators
    resumed = build(1)
    iter(resumed)
    np.testing.assert_array_equal(_epochs(resumed, 1)[0][0], second[0])
    # augmentation really changes every image, within [0, 255]
    x, _ = first
    originals = pipeline.load_images(textured["path"], 16)
    assert x.shape == (8, 16, 16, 3) and x.min() >= 0 and x.max() <= 255
    closest = np.abs(x[:, None] - originals[None]).mean(axis=(2, 3, 4)).min(axis=1)
    assert (closest > 1.0).all(), closest
    with pytest.raises(ValueError, match="training=True"):
        pipeline.make_dataset(textured, "gender", 16, augment=True)


def test_each_augmentation_transform_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.uniform(100, 150, (16, 8, 8, 3)).astype("float32")
    seeds = np.arange(16, dtype=np.int64) * 7919 + 1
    off = dict(crop=False, flip=False, brightness=0, contrast=0, rotation=0)

    flipped = pipeline.augmentation(**{**off, "flip": True})(x, seeds=seeds).numpy()
    mirrored = [np.array_equal(f, o[:, ::-1]) for f, o in zip(flipped, x)]
    kept = [np.array_equal(f, o) for f, o in zip(flipped, x)]
    assert all(m or k for m, k in zip(mirrored, kept)) and any(mirrored) and any(kept)
    np.testing.assert_array_equal(
        pipeline.augmentation(**{**off, "flip": True})(x, seeds=seeds).numpy(), flipped)

    brighter = pipeline.augmentation(**{**off, "brightness": 0.2})(x, seeds=seeds).numpy()
    delta = (brighter - x).reshape(16, -1)
    np.testing.assert_allclose(delta, delta[:, :1] * np.ones_like(delta), atol=1e-3)
    assert np.abs(delta[:, 0]).max() <= 0.2 * 255 + 1e-3 and np.abs(delta[:, 0]).min() > 0

    contrasted = pipeline.augmentation(**{**off, "contrast": 0.2})(x, seeds=seeds).numpy()
    mean = x.mean(axis=(1, 2), keepdims=True)  # per image and channel
    centred, result = (x - mean).reshape(16, -1), (contrasted - mean).reshape(16, -1)
    factor = (centred * result).sum(axis=1) / (centred ** 2).sum(axis=1)
    np.testing.assert_allclose(result, factor[:, None] * centred, atol=1e-3)
    assert ((factor >= 0.8 - 1e-6) & (factor <= 1.2 + 1e-6)).all() and factor.std() > 0

    with pytest.raises(ValueError, match="augment=None"):
        pipeline.augmentation(**off)


def test_geometric_augmentation_by_hand():
    image = np.arange(6 * 6 * 1, dtype="float32").reshape(1, 6, 6, 1) * np.ones((1, 1, 1, 3),
                                                                                   "float32")
    one, zero = np.ones(1, "float32"), np.zeros(1, "float32")
    shifted = pipeline._affine(image, one, zero, 2 * one, zero).numpy()
    # content moves 2 px right; the left border is reflected (d c b a | a b c d)
    np.testing.assert_allclose(shifted[0, :, 2:], image[0, :, :-2], atol=1e-4)
    np.testing.assert_allclose(shifted[0, :, 0], image[0, :, 1], atol=1e-4)
    np.testing.assert_allclose(shifted[0, :, 1], image[0, :, 0], atol=1e-4)
    turned = pipeline._affine(image, one, np.full(1, np.pi / 2, "float32"), zero, zero).numpy()
    np.testing.assert_allclose(turned[0], np.rot90(image[0], 1), atol=1e-3)


def test_training_crop_is_a_random_flipped_slice_and_seeded(textured):
    originals = pipeline.load_images(textured["path"], 16)

    def build(seed):
        return pipeline.make_dataset(textured, "gender", 16, batch_size=3, training=True,
                                     shuffle_seed=seed, crop=10)

    first, second = _epochs(build(1))
    assert first[0].shape == (8, 10, 10, 3)
    found = []
    for crop in first[0]:  # find the (image, top, left, mirrored) it was cut from
        matches = [(i, t, l, m) for i in range(8) for t in range(7) for l in range(7)
                   for m in (False, True)
                   if np.array_equal(crop, originals[i, t:t + 10, l:l + 10][:, ::-1] if m
                                     else originals[i, t:t + 10, l:l + 10])]
        assert len(matches) == 1
        found.append(matches[0])
    assert sorted(f[0] for f in found) == list(range(8))  # each image once, inside the image
    assert len({(t, l) for _, t, l, _ in found}) > 2 and {m for *_, m in found} == {False, True}
    again = _epochs(build(1))
    np.testing.assert_array_equal(again[0][0], first[0])
    np.testing.assert_array_equal(again[1][0], second[0])
    assert not np.array_equal(first[0], second[0])
    assert not np.array_equal(_epochs(build(2), 1)[0][0], first[0])


def test_evaluation_crop_is_the_centre(textured):
    originals = pipeline.load_images(textured["path"], 16)
    x, _ = pipeline.to_numpy(pipeline.make_dataset(textured, "gender", 16, crop=10))
    np.testing.assert_array_equal(x, originals[:, 3:13, 3:13])  # (16 - 10) // 2 = 3
    x, _ = pipeline.to_numpy(pipeline.make_dataset(textured, "gender", 16, crop=(10, 13)))
    np.testing.assert_array_equal(x, originals[:, 3:13, 1:14])  # (16 - 13) // 2 = 1
    with pytest.raises(ValueError, match="larger than the images"):
        pipeline.make_dataset(textured, "gender", 16, crop=17)


def test_ten_crops_are_the_corners_centre_and_mirrors():
    image = np.arange(6 * 8 * 3).reshape(1, 6, 8, 3)  # H 6, W 8; crops 4 x 5
    crops = pipeline.ten_crops(image, (4, 5)).numpy()
    assert crops.shape == (10, 1, 4, 5, 3)
    expected = [image[:, 0:4, 0:5], image[:, 0:4, 3:8], image[:, 2:6, 0:5], image[:, 2:6, 3:8],
                image[:, 1:5, 1:6]]  # centre: (6 - 4) // 2 = 1, (8 - 5) // 2 = 1
    expected += [e[:, :, ::-1] for e in expected]
    for name, got, want in zip(pipeline.TEN_CROPS, crops, expected):
        np.testing.assert_array_equal(got, want, err_msg=name)
    assert crops[0, 0, 0, 0, 0] == 0 and crops[5, 0, 0, 0, 0] == 4 * 3  # mirror starts at col 4
    single = pipeline.ten_crops(image[0], 4).numpy()
    np.testing.assert_array_equal(single[4], image[0, 1:5, 2:6])
    with pytest.raises(ValueError, match="larger than the images"):
        pipeline.ten_crops(image, 7)


def test_dataset_refuses_rows_a_scheme_cannot_encode(images):
    bad = images.assign(gender=pd.array([0, pd.NA] * 4, dtype="Int64"))
    with pytest.raises(ValueError, match="select"):
        pipeline.make_dataset(bad, "gender", 16)


def test_sample_weights_in_dataset(images):
    df = images.iloc[:6]  # genders 0, 1, 0, 1, 0, 1 and ages all < 40
    ds = pipeline.make_dataset(df, ["gender", "age_years"], 8, batch_size=6, sample_weights=True)
    _, y, w = next(iter(ds))
    np.testing.assert_allclose(w["gender"].numpy(), 1.0)
    np.testing.assert_allclose(w["age"].numpy(), 1.0)
    weights = pipeline.sample_weights(df.iloc[:4].assign(gender=pd.array([0, 0, 0, 1],
                                                                         dtype="Int64")),
                                      ["gender"])
    np.testing.assert_allclose(weights["gender"], [4 / 6, 4 / 6, 4 / 6, 2.0])


# -- class weights ---------------------------------------------------------------------------
def test_class_weights_match_the_balanced_formula():
    y = np.array([0] * 50 + [1] * 30 + [2] * 15 + [4] * 5)
    classes, counts = np.unique(y, return_counts=True)
    expected = len(y) / (len(classes) * counts)  # n / (k * count)
    got = pipeline.class_weights(y)
    assert list(got) == [0, 1, 2, 4]
    np.testing.assert_allclose(list(got.values()), expected)
    with pytest.raises(ValueError, match="int class indices"):
        pipeline.class_weights(np.array([0.5, 1.0]))


def test_labels_come_from_the_schemes(images):
    df = images.assign(race=pd.array(["East Asian", "White"] * 4, dtype="string"))
    _, y = pipeline.to_numpy(pipeline.make_dataset(df, [L.get("race_fairface4")], 8))
    assert y["race"].tolist() == [2, 0] * 4


def test_scaled_jpeg_decode_matches_a_full_decode(tmp_path):
    import tensorflow as tf

    # a smooth 200x200 photo-like JPEG (UTKFace's size), downscaled 6x: libjpeg decodes at 1/4
    gradient = np.linspace(0, 255, 200)
    array = np.stack([np.add.outer(gradient, gradient) / 2, np.tile(gradient, (200, 1)),
                      np.full((200, 200), 90.0)], axis=-1).astype(np.uint8)
    path = tmp_path / "smooth.jpg"
    Image.fromarray(array).save(path, quality=95)
    full = tf.image.resize(tf.io.decode_image(tf.io.read_file(str(path)), channels=3), (32, 32),
                           antialias=True).numpy()
    np.testing.assert_allclose(pipeline.load_images([path], 32)[0], full, atol=6)


def test_benchmark_returns_its_table():
    from faceattr_lab import benchmarks

    table = benchmarks.pipeline_throughput(n=12, image_size=16, batch_size=4, repeats=1)
    assert table["method"].tolist() == ["make_dataset", "PIL loop (studies)",
                                        "bare tf.data decode"]
    assert (table["images_per_s"] > 0).all() and np.isfinite(table["images_per_s"]).all()
    assert table.loc[1, "relative_to_pil"] == 1.0
    # every speed is read against the PIL loop's, row 1
    np.testing.assert_allclose(table["relative_to_pil"],
                               table["images_per_s"] / table.loc[1, "images_per_s"], rtol=1e-12)
    assert {"cpu", "cores", "tensorflow"} <= set(benchmarks.machine())


# -- partial labels (issue #9) ---------------------------------------------------------------
def _partial(images):
    """Rows 0, 2, 4 lack gender; rows 1, 3 lack age (ages 18, 21, ..., 39)."""
    return images.assign(gender=pd.array([pd.NA, 1, pd.NA, 1, pd.NA, 1, 0, 1], dtype="Int64"),
                         age=pd.array([18, pd.NA, 24, pd.NA, 30, 33, 36, 39], dtype="Int64"))


def test_dataset_masks_missing_labels_when_asked(images):
    df = _partial(images)
    kept, excluded = L.select(df, ["gender", "age_years_116"], require="any")
    assert len(kept) == 8 and excluded["kept"].all() and len(excluded) == 5
    with pytest.raises(ValueError, match="missing='mask'"):  # never masked silently
        pipeline.make_dataset(kept, ["gender", "age_years_116"], 8)
    with pytest.raises(ValueError, match="'raise'.*'mask'"):
        pipeline.make_dataset(kept, ["gender"], 8, missing="drop")
    ds = pipeline.make_dataset(kept, ["gender", "age_years_116"], 8, batch_size=8,
                               missing="mask", sample_weights=True)
    _, y, w = next(iter(ds))
    assert y["gender"].numpy().tolist() == [-1, 1, -1, 1, -1, 1, 0, 1]
    np.testing.assert_allclose(y["age"].numpy(), np.array(
        [18, np.nan, 24, np.nan, 30, 33, 36, 39]) / 116, rtol=1e-6)
    # balanced over the 5 labelled rows (four 1s, one 0): 5 / (2 * 4), 5 / (2 * 1); masked 0
    np.testing.assert_allclose(w["gender"].numpy(), [0, .625, 0, .625, 0, .625, 2.5, .625])
    np.testing.assert_allclose(w["age"].numpy(), [1, 0, 1, 0, 1, 1, 1, 1])
    # class weights count labelled rows only
    assert pipeline.class_weights(np.array([-1, 0, 0, 1, -1])) == {0: 0.75, 1: 1.5}
    with pytest.warns(UserWarning, match="no row"):
        pipeline.make_dataset(kept.assign(gender=pd.array([pd.NA] * 8, dtype="Int64")),
                              ["gender", "age_years_116"], 8, missing="mask")


def test_from_arrays_carries_mask_values():
    images = np.arange(4 * 2 * 2 * 3, dtype=np.uint8).reshape(4, 2, 2, 3)
    targets = {"gender": np.array([0, -1, 1, -1]),
               "age": np.array([0.5, np.nan, np.nan, 0.25], np.float32)}
    x, y = pipeline.to_numpy(pipeline.from_arrays(images, targets, batch_size=3))
    np.testing.assert_array_equal(x, images.astype(np.float32))
    assert y["gender"].tolist() == [0, -1, 1, -1]
    np.testing.assert_array_equal(y["age"], targets["age"])


def _faces_with_a_cut_jpeg(folder, n, broken):
    """``n`` random 40 px JPEGs (gender alternating) whose file ``broken`` is cut short."""
    rows = []
    for i in range(n):
        path = folder / f"face{i}.jpg"
        pixels = np.random.default_rng(i).integers(0, 255, (40, 40, 3)).astype(np.uint8)
        Image.fromarray(pixels).save(path, quality=90)
        rows.append({"path": str(path), "gender": i % 2})
    cut = folder / f"face{broken}.jpg"
    cut.write_bytes(cut.read_bytes()[:300])  # cut inside the entropy-coded data
    return pd.DataFrame(rows).astype({"gender": "Int64"}), cut


def test_a_corrupt_jpeg_stops_with_its_file_name(tmp_path):
    import faceattr_lab as fl

    df, broken = _faces_with_a_cut_jpeg(tmp_path, 6, broken=3)
    assert fl.pipeline.unreadable_files(df["path"]) == [str(broken)]
    ds = fl.pipeline.make_dataset(df, ["gender"], 32, batch_size=4)
    model = fl.models.custom_cnn((32, 32, 3), ["gender"], conv_filters=(4,), dense_units=4)
    with pytest.raises(ValueError, match=r"could not decode 1 image file\(s\): .*face3\.jpg.*verify"):
        fl.evaluate.predict(model, ds, ["gender"])
    # an error that is not about decoding is left alone
    assert fl.pipeline.explain_decode_error(RuntimeError("shapes differ"), ds) is None


def test_a_corrupt_jpeg_met_in_training_stops_fit_with_its_file_name(tmp_path):
    import faceattr_lab as fl

    df, _ = _faces_with_a_cut_jpeg(tmp_path, 8, broken=5)
    ds = fl.pipeline.make_dataset(df, ["gender"], 32, batch_size=4, training=True)
    model = fl.models.custom_cnn((32, 32, 3), ["gender"], conv_filters=(4,), dense_units=4)
    fl.models.compile_for(model, ["gender"])
    with pytest.raises(ValueError, match=r"face5\.jpg.*faceattr-lab data verify"):
        fl.train.fit(model, ds, epochs=1, verbose=0)
