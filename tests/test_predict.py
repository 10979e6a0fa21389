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
    assert "1 faces, 1 without a face, 1 unreadable" in capsys.readouterr().out


def test_predict_command_errors_are_one_line_exit_2(model_path, photos, tmp_path, capsys):
    out = str(tmp_path / "p.csv")
    assert cli.main(["predict", str(photos / "nope.png"), "--model", str(model_path),
                     "--out", out]) == 2
    assert cli.main(["predict", str(photos / "flat.png"), "--model", str(model_path),
                     "--out", out, "--schemes", "gender", "race_fairface7"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "7 classes" in err
