"""Face detection, alignment and ``faceattr-lab predict`` on a photo, a faceless image and a
broken file, with a tiny untrained kit model saved here."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

import faceattr_lab as fl
from faceattr_lab import cli, faces

SCHEMES = ("gender", "age_fairface9", "race_utk5")


@pytest.fixture(scope="module")
def astronaut():
    from skimage import data

    return data.astronaut()  # 512 x 512; her face is at about x 180-270, y 60-175 (by eye)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    model = fl.models.custom_cnn((32, 32, 3), [fl.labels.get(s) for s in SCHEMES],
                                 conv_filters=(8, 8), dense_units=16)
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory, astronaut):
    folder = tmp_path_factory.mktemp("photos")
    (folder / "nested").mkdir()
    Image.fromarray(astronaut).save(folder / "nested" / "astronaut.png")
    Image.fromarray(np.full((160, 200, 3), 120, np.uint8)).save(folder / "flat.png")
    (folder / "broken.jpg").write_text("this is not a JPEG")
    (folder / "notes.txt").write_text("not an image: skipped by extension")
    return folder


def test_detect_finds_the_astronauts_face(astronaut):
    found = faces.detect(astronaut)
    assert len(found) == 1
    x, y, w, h = found[0]["box"]
    assert 0 <= x and 0 <= y and x + w <= 512 and y + h <= 512
    assert 190 <= x + w / 2 <= 260 and 80 <= y + h / 2 <= 150  # centred on her face
    assert 60 <= w <= 140 and 60 <= h <= 150
    assert found[0]["confidence"] > 0.95
    (lx, ly), (rx, ry) = found[0]["left_eye"], found[0]["right_eye"]
    assert x < lx < rx < x + w and y < ly < y + h / 2 and y < ry < y + h / 2


def test_detect_finds_nothing_on_a_flat_image_and_checks_its_arguments():
    assert faces.detect(np.full((120, 120, 3), 90, np.uint8)) == []
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        faces.detect(np.zeros((50, 50, 3), np.uint8), min_confidence=1.5)
    with pytest.raises(ValueError, match="RGB"):
        faces.detect(np.zeros((50, 50), np.uint8))


def test_align_crops_the_box_with_the_default_margin():
    image = np.zeros((100, 100, 3), np.uint8)
    image[..., 0] = np.arange(100)[None, :]  # red = column, green = row
    image[..., 1] = np.arange(100)[:, None]
    face = {"box": (40, 40, 20, 20), "left_eye": (45.0, 47.0), "right_eye": (55.0, 47.0)}
    crop = faces.align(image, face, size=30)  # side 20 * (1 + 2 * 0.25) = 30, from 35 to 65
    np.testing.assert_array_equal(crop, image[35:65, 35:65])


def test_align_levels_tilted_eyes():
    image = np.zeros((100, 100, 3), np.uint8)
    image[38:43, 38:43] = 255  # left eye at (40, 40), right eye at (60, 60): 45 degrees
    image[58:63, 58:63] = 255
    face = {"box": (30, 30, 40, 40), "left_eye": (40.0, 40.0), "right_eye": (60.0, 60.0)}
    crop = faces.align(image, face, size=60, margin=0.25).astype(float)[..., 0]
    rows, cols = np.nonzero(crop > 128)
    left, right = cols < 30, cols >= 30
    assert left.any() and right.any()
    assert abs(rows[left].mean() - rows[right].mean()) < 1.0  # level after rotation
    assert abs(rows[left].mean() - 30) < 1.0  # the eyes' midpoint stays at the centre
    # the eyes are 28.3 px apart; the crop maps 60 px of the photo onto 60 px
    assert abs((cols[right].mean() - cols[left].mean()) - 20 * 2 ** 0.5) < 1.5
    with pytest.raises(ValueError, match="size"):
        faces.align(image, face, size=0)
    with pytest.raises(ValueError, match="detect"):
        faces.align(image, {"box": (0, 0, 5, 5)})


def test_probabilities_of_sigmoid_softmax_and_logits():
    gender, race = fl.labels.get("gender"), fl.labels.get("race_utk5")
    np.testing.assert_allclose(faces.probabilities([[0.8]], gender), [[0.2, 0.8]])
    p = 1 / (1 + np.exp(2.0))  # a logit, -2
    np.testing.assert_allclose(faces.probabilities([[-2.0]], gender), [[1 - p, p]])
    np.testing.assert_allclose(faces.probabilities([[0.0] * 5], race), [[0.2] * 5])
    np.testing.assert_allclose(faces.probabilities([[0.1, 0.2, 0.3, 0.4, 0.0]], race),
                               [[0.1, 0.2, 0.3, 0.4, 0.0]])
    with pytest.raises(ValueError, match="5 classes"):
        faces.probabilities([[0.5, 0.5]], race)


def test_predict_faces_infers_the_schemes_and_gives_probabilities(model_path, astronaut):
    import keras

    model = keras.saving.load_model(model_path, compile=False)
    assert [s.name for s in faces.infer_schemes(model)] == list(SCHEMES)
    found = faces.predict_faces(model, [astronaut, np.full((64, 64, 3), 50, np.uint8)])
    assert len(found) == 2 and len(found[0]) == 1 and found[1] == []
    probs = found[0][0]["probabilities"]
    assert {o: len(p) for o, p in probs.items()} == {"gender": 2, "age": 9, "race": 5}
    for p in probs.values():
        assert abs(p.sum() - 1) < 1e-5 and (p >= 0).all()
    with pytest.raises(ValueError, match="list of images"):
        faces.predict_faces(model, astronaut)
    with pytest.raises(ValueError, match="no \\['race'\\] head|has no"):
        faces.predict_faces(keras.Model(model.input, {"gender": model.output["gender"]}),
                            [astronaut], ["gender", "race_utk5"])


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_predict_command_writes_a_row_per_face_and_per_problem(model_path, photos, tmp_path,
                                                               capsys):
    out = tmp_path / "preds.csv"
    assert cli.main(["predict", str(photos), "--model", str(model_path), "--out", str(out)]) == 0
    rows = {r["image"].rsplit("/", 1)[-1]: r for r in read_rows(out)}
    assert sorted(rows) == ["astronaut.png", "broken.jpg", "flat.png"]  # notes.txt not an image
    assert rows["flat.png"]["status"] == "no face" and rows["flat.png"]["x"] == ""
    assert rows["broken.jpg"]["status"].startswith("unreadable: ")
    face = rows["astronaut.png"]
    assert face["status"] == "ok" and face["face"] == "0" and float(face["confidence"]) > 0.95
    x, y, w, h = (int(face[k]) for k in "xywh")
    assert 190 <= x + w / 2 <= 260 and 80 <= y + h / 2 <= 150
    for scheme in (fl.labels.get(s) for s in SCHEMES):
        probs = [float(face[f"{scheme.output}_prob_{c}"]) for c in scheme.classes]
        assert abs(sum(probs) - 1) < 1e-3
        assert face[f"{scheme.output}_pred"] == scheme.classes[int(np.argmax(probs))]
    printed = capsys.readouterr().out
    assert "1 faces, 1 without a face, 1 unreadable" in printed
    assert "1 other file(s) in the folders skipped" in printed and "notes.txt" in printed


def test_predict_command_errors_are_one_line_exit_2(model_path, photos, tmp_path, capsys):
    out = str(tmp_path / "p.csv")
    assert cli.main(["predict", str(photos / "nope.png"), "--model", str(model_path),
                     "--out", out]) == 2
    assert cli.main(["predict", str(photos / "flat.png"), "--model", str(model_path),
                     "--out", out, "--schemes", "gender", "race_fairface7"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "7 classes" in err


# ---- lab 09: regression and CORAL age heads, drawing, the CSV's rows, the upload panel --------

def _age_model(age_scheme, seed):
    import keras

    keras.utils.set_random_seed(seed)
    return fl.models.custom_cnn((32, 32, 3), [fl.labels.get("gender"), age_scheme],
                                conv_filters=(8, 8), dense_units=16, sigmoid_gender=False)


def _crop(model, astronaut):
    face = faces.detect(astronaut)[0]
    crop = faces.align(astronaut, face, 32)[None].astype("float32")
    return model.predict_on_batch(crop)


def test_predict_faces_reads_a_regression_age_head_in_years(astronaut, tmp_path):
    scheme = fl.labels.get("age_years_116")
    model = _age_model(scheme, 1)
    with pytest.raises(ValueError, match="age_years_116"):
        faces.infer_schemes(model)  # a 1-unit age head: regression scale unknown, name it
    face = faces.predict_faces(model, [astronaut], ["gender", scheme])[0][0]
    raw = _crop(model, astronaut)
    expected = 116 * float(np.asarray(raw["age"])[0, 0])  # study C: age / 116 -> years
    assert face["predictions"]["age"]["years"] == pytest.approx(expected, rel=1e-5)
    assert set(face["probabilities"]) == {"gender"}  # a regression head has no probabilities
    assert faces.label(face, ["gender", scheme]).endswith(f"{expected:.0f} y")
    path = tmp_path / "age.keras"
    model.save(path)
    out = tmp_path / "age.csv"
    assert cli.main(["predict", str(tmp_path / ".." / tmp_path.name), "--model", str(path),
                     "--out", str(out), "--schemes", "gender", "age_years_116"]) == 2  # no images
    image = tmp_path / "a.png"
    Image.fromarray(astronaut).save(image)
    assert cli.main(["predict", str(image), "--model", str(path), "--out", str(out),
                     "--schemes", "gender", "age_years_116"]) == 0
    row = read_rows(out)[0]
    assert float(row["age_pred"]) == pytest.approx(expected, abs=0.01)
    assert "age_score" not in row and "age_prob_0-2" not in row


def test_predict_faces_reads_a_coral_age_head_as_rank_and_years(astronaut, tmp_path):
    scheme = fl.labels.coral(21, 60)  # 40 ranks, 39 logits
    model = _age_model(scheme, 2)
    face = faces.predict_faces(model, [astronaut], ["gender", "coral_21_60"])[0][0]
    logits = np.asarray(_crop(model, astronaut)["age"], dtype=float)[0]
    assert logits.shape == (39,)
    p = 1 / (1 + np.exp(-logits))  # P(rank > k), CORAL's decoding by hand
    rank = int((p > 0.5).sum())
    got = face["predictions"]["age"]
    assert got["rank"] == rank and got["years"] == 21 + rank
    assert got["score"] == pytest.approx(p.sum(), rel=1e-5)
    assert faces.label(face, ["gender", scheme]).endswith(f"rank {rank} ({21 + rank} y)")
    path = tmp_path / "coral.keras"
    model.save(path)
    Image.fromarray(astronaut).save(tmp_path / "a.png")
    out = tmp_path / "coral.csv"
    assert cli.main(["predict", str(tmp_path / "a.png"), "--model", str(path), "--out",
                     str(out), "--schemes", "gender", "coral_21_60"]) == 0
    row = read_rows(out)[0]
    assert int(row["age_pred"]) == rank and float(row["age_pred_years"]) == 21 + rank
    assert float(row["age_score"]) == pytest.approx(p.sum(), abs=1e-3)
    # the wrong number of ranks is caught before any face is read
    assert cli.main(["predict", str(tmp_path / "a.png"), "--model", str(path), "--out",
                     str(out), "--schemes", "gender", "coral_21_50"]) == 2


def test_crop_box_and_eye_angle_by_hand():
    assert faces.crop_box((40, 40, 20, 20)) == (35.0, 35.0, 65.0, 65.0)
    # the longer side decides: 30 * 1.5 = 45 around the centre (50, 55)
    assert faces.crop_box((40, 40, 20, 30), margin=0.25) == (27.5, 32.5, 72.5, 77.5)
    assert faces.crop_box((0, 0, 10, 10), margin=0) == (0, 0, 10, 10)
    assert faces.eye_angle((0, 0), (10, 0)) == 0
    assert faces.eye_angle((0, 0), (10, 10)) == pytest.approx(45)
    assert faces.eye_angle((10, 20), (20, 20 - 10 * np.tan(np.radians(25)))) == pytest.approx(-25)
    with pytest.raises(ValueError, match="margin"):
        faces.crop_box((0, 0, 10, 10), margin=-0.1)
    with pytest.raises(ValueError, match="empty"):
        faces.crop_box((0, 0, 0, 10))


def test_annotate_draws_the_box_and_the_label_on_a_copy(model_path, astronaut):
    import keras

    model = keras.saving.load_model(model_path, compile=False)
    found = faces.predict_faces(model, [astronaut])[0]
    before = astronaut.copy()
    drawn = faces.annotate(astronaut, found, SCHEMES, color=(255, 0, 255), width=2)
    np.testing.assert_array_equal(astronaut, before)  # the photo itself is left alone
    assert drawn.shape == astronaut.shape and drawn.dtype == np.uint8
    x, y, w, h = found[0]["box"]
    assert (drawn[y + h // 2, x] == (255, 0, 255)).all()  # the box's left edge
    assert (drawn[y + h, x + w // 2] == (255, 0, 255)).all()  # its bottom edge
    np.testing.assert_array_equal(drawn[400:, 400:], astronaut[400:, 400:])  # far from the face
    text = faces.label(found[0], SCHEMES)
    parts = text.split(" · ")
    assert len(parts) == 3
    gender = found[0]["probabilities"]["gender"]
    assert parts[0] == f"{('male', 'female')[int(gender.argmax())]} {gender.max():.2f}"
    with pytest.raises(ValueError, match="predictions"):
        faces.label({"box": (0, 0, 1, 1)})


def test_table_rows_report_an_image_without_a_face():
    rows = faces.table_rows("empty.png", [], SCHEMES)
    assert rows == [{"image": "empty.png", "status": "no face"}]
    columns = faces.table_columns(["gender", "age_years_116", "coral_21_60"])
    assert columns[:8] == ["image", "face", "status", "x", "y", "w", "h", "confidence"]
    assert columns[8:] == ["gender_prob_male", "gender_prob_female", "gender_pred", "age_pred",
                           "age_pred", "age_score", "age_pred_years"]


def test_seconds_per_face_calls_the_function_once_per_batch_plus_one():
    calls = []
    seconds = faces.seconds_per_face(lambda b: calls.append(len(b)), list(range(10)),
                                     batch_size=4, repeats=3)
    assert calls == [4] + [4, 4, 2] * 3  # one untimed call, then three passes
    assert seconds >= 0
    with pytest.raises(ValueError, match="batch_size"):
        faces.seconds_per_face(len, [1], batch_size=0)
    with pytest.raises(ValueError, match="empty"):
        faces.seconds_per_face(len, [])


def test_photo_upload_callback_labels_uploaded_photos(model_path, astronaut):
    import io

    import keras

    model = keras.saving.load_model(model_path, compile=False)
    panel = fl.widgets.photo_upload(model)
    png = io.BytesIO()
    Image.fromarray(astronaut).save(png, format="PNG")
    flat = io.BytesIO()
    Image.fromarray(np.full((90, 120, 3), 128, np.uint8)).save(flat, format="JPEG")
    value = ({"name": "astronaut.png", "type": "image/png", "content": memoryview(png.getvalue())},
             {"name": "flat.jpg", "content": memoryview(flat.getvalue())},
             {"name": "notes.jpg", "content": memoryview(b"not an image")})
    table = panel.predict(value)  # what the FileUpload's observer calls, without a browser
    assert list(table["image"]) == ["astronaut.png", "flat.jpg", "notes.jpg"]
    assert list(table["status"][:2]) == ["ok", "no face"]
    assert table["status"][2].startswith("unreadable: ")
    direct = faces.predict_faces(model, [astronaut])[0][0]
    assert table.loc[0, "x"] == direct["box"][0]
    assert table.loc[0, "gender_prob_female"] == pytest.approx(
        float(direct["probabilities"]["gender"][1]), abs=1e-5)
    assert panel.images["astronaut.png"].shape == astronaut.shape
    assert len(panel.output.outputs) == 3  # two annotated photos and the table
    # ipywidgets 7 gave a dict by file name
    assert fl.widgets.uploaded_files({"a.png": {"content": b"xy"}}) == [("a.png", b"xy")]


def test_bench_predict_is_registered_and_prints_the_table(monkeypatch, capsys):
    import pandas as pd

    from faceattr_lab import benchmarks

    args = cli.build_parser().parse_args(["bench", "predict", "--no-backbone", "--repeats", "2"])
    assert (args.repeats, args.no_backbone) == (2, True)
    calls = {}

    def fake(repeats, backbone):  # the timing itself is not tested (no timed tests)
        calls.update(repeats=repeats, backbone=backbone)
        return pd.DataFrame([{"stage": "model", "model": "m", "input": "32x32 crop", "batch": 64,
                              "parameters": 1e6, "s / face": 0.002, "faces / s": 500.0}])

    monkeypatch.setattr(benchmarks, "predict_speed", fake)
    assert args.func(args) == 0
    assert calls == {"repeats": 2, "backbone": None}
    out = capsys.readouterr().out
    assert "0.00200" in out and "500" in out and "1.00 M" in out


def test_predict_command_checks_the_margin(model_path, photos, tmp_path, capsys):
    assert cli.main(["predict", str(photos / "flat.png"), "--model", str(model_path),
                     "--out", str(tmp_path / "p.csv"), "--margin", "3"]) == 2
    assert "--margin" in capsys.readouterr().err


def test_predict_command_loads_a_kit_backbone_model_in_a_fresh_process(astronaut, tmp_path):
    """A new process has imported none of the kit's layers (``Preprocess`` registers when
    ``fl.models.backbones`` is imported): ``faceattr-lab predict`` must load the model anyway."""
    import subprocess
    import sys

    import keras

    schemes = [fl.labels.get("gender")]
    base = fl.models.backbone("SmallVGG", (32, 32, 3), weights=None)
    images = keras.Input((32, 32, 3), name="image")
    model = keras.Model(images, fl.models.add_heads(base(images), schemes))
    model.save(tmp_path / "smallvgg.keras")
    Image.fromarray(astronaut).save(tmp_path / "astronaut.png")
    out = tmp_path / "rows.csv"
    command = [sys.executable, "-c", "import sys; from faceattr_lab.cli import main; "
               "sys.exit(main(sys.argv[1:]))", "predict", str(tmp_path / "astronaut.png"),
               "--model", str(tmp_path / "smallvgg.keras"), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = read_rows(out)
    assert row["status"] == "ok"
    assert float(row["gender_prob_male"]) + float(row["gender_prob_female"]) == pytest.approx(
        1, abs=1e-3)


def test_load_model_refuses_what_is_not_a_keras_file(tmp_path):
    (tmp_path / "weights.h5").write_bytes(b"")
    with pytest.raises(ValueError, match="not a saved .keras model"):
        fl.models.load_model(tmp_path / "weights.h5")
