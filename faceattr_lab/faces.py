"""Faces in photos: MTCNN detection, eye alignment and a kit model's predictions per face.

Lab 09. Used by ``faceattr-lab predict``::

    faces = fl.faces.detect(image)                 # boxes, confidences, eye positions
    crop = fl.faces.align(image, faces[0], 128)    # eyes level, square, FairFace's margin
    found = fl.faces.predict_faces(model, [image])  # per face: each head's prediction
    drawn = fl.faces.annotate(image, found, schemes)  # boxes, eyes and labels drawn on a copy

Detection uses the ``mtcnn`` package (Zhang et al. 2016, "Joint Face Detection and Alignment
using Multi-task Cascaded Convolutional Networks"), whose weights ship in its wheel, so it works
offline. TensorFlow and mtcnn load inside the functions that need them.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np

# FairFace's released crops ("Padding=0.25"): the face box grown by a quarter of its side on
# every side, so a face fills about two thirds of the crop, as in the training sets.
DEFAULT_MARGIN = 0.25
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# a head's number of outputs -> its scheme (a single sigmoid unit is a two-class gender head)
SCHEME_BY_CLASSES = {1: "gender", 2: "gender", 9: "age_fairface9", 5: "race_utk5",
                     7: "race_fairface7"}


def load_image(path) -> np.ndarray:
    """An image file as an RGB uint8 array (H, W, 3), EXIF rotation applied. Lab 09.

    Raises ``OSError`` (or ``ValueError``) when the file is not a readable image.
    """
    from PIL import Image, ImageOps

    with Image.open(Path(path)) as image:
        image = ImageOps.exif_transpose(image)
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _as_rgb(image) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or min(array.shape[:2]) < 1:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {array.shape}; load files "
                         "with fl.faces.load_image(path).")
    if array.dtype != np.uint8:
        if array.size and (np.nanmin(array) < 0 or np.nanmax(array) > 255):
            raise ValueError("image values must lie in [0, 255]; pass uint8 pixels, not "
                             "normalised ones.")
        array = np.clip(np.nan_to_num(array), 0, 255).astype(np.uint8)
    return array


@lru_cache(maxsize=1)
def _detector():
    from mtcnn import MTCNN

    return MTCNN()


def detect(image, min_confidence: float = 0.9) -> list[dict]:
    """The faces MTCNN finds in an RGB image, most confident first. Lab 09.

    Each face is a dict: ``box`` ``(x, y, w, h)`` in pixels (clipped to the image),
    ``confidence`` in [0, 1], and ``left_eye`` / ``right_eye`` ``(x, y)`` (left and right as
    seen in the image). Faces below ``min_confidence`` are dropped.
    """
    if not 0 <= min_confidence <= 1:
        raise ValueError(f"min_confidence={min_confidence}; pass a value in [0, 1], e.g. 0.9.")
    array = _as_rgb(image)
    height, width = array.shape[:2]
    if min(height, width) < 12:  # MTCNN's smallest window
        return []
    faces = []
    for found in _detector().detect_faces(array):
        confidence = float(found["confidence"])
        if confidence < min_confidence:
            continue
        x, y, w, h = (int(v) for v in found["box"])
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + w, width), min(y + h, height)
        points = found["keypoints"]
        faces.append({
            "box": (x0, y0, x1 - x0, y1 - y0),
            "confidence": confidence,
            "left_eye": tuple(float(v) for v in points["left_eye"]),
            "right_eye": tuple(float(v) for v in points["right_eye"]),
        })
    return sorted(faces, key=lambda f: -f["confidence"])


def eye_angle(left_eye, right_eye) -> float:
    """The angle in degrees of the line from the left to the right eye (image coordinates,
    y down): positive when the right eye is lower. ``align`` rotates the photo by it. Lab 09."""
    (lx, ly), (rx, ry) = left_eye, right_eye
    return math.degrees(math.atan2(ry - ly, rx - lx))


def crop_box(box, margin: float = DEFAULT_MARGIN) -> tuple:
    """The square ``(left, top, right, bottom)`` that ``align`` cuts around a face box. Lab 09.

    Centred on the box ``(x, y, w, h)``, with side ``max(w, h) * (1 + 2 * margin)``: the
    longer side grown by ``margin`` of itself on each side (FairFace's crops: 0.25).
    """
    if not 0 <= margin <= 2:
        raise ValueError(f"margin={margin}; pass a fraction of the box side in [0, 2], "
                         f"e.g. {DEFAULT_MARGIN}.")
    x, y, w, h = box
    if w <= 0 or h <= 0:
        raise ValueError(f"face box {tuple(box)} is empty; pass a face from fl.faces.detect.")
    cx, cy, half = x + w / 2, y + h / 2, max(w, h) * (1 + 2 * margin) / 2
    return (cx - half, cy - half, cx + half, cy + half)


def align(image, face: dict, size: int = 128, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """The face rotated about its box centre so the eyes are level, cropped square and resized.

    The square is :func:`crop_box` (the box's longer side times ``1 + 2 * margin``, default
    0.25, the margin of FairFace's released crops); the rotation is :func:`eye_angle`; parts
    outside the photo are black. Returns uint8 ``(size, size, 3)``. Lab 09.
    """
    from PIL import Image

    if int(size) != size or size < 1:
        raise ValueError(f"size={size}; pass the model's input side in pixels, e.g. 128.")
    if not 0 <= margin <= 2:
        raise ValueError(f"margin={margin}; pass a fraction of the box side in [0, 2], "
                         f"e.g. {DEFAULT_MARGIN}.")
    missing = {"box", "left_eye", "right_eye"} - set(face)
    if missing:
        raise ValueError(f"face lacks {sorted(missing)}; pass a face returned by "
                         "fl.faces.detect(image).")
    square = crop_box(face["box"], margin)
    angle = eye_angle(face["left_eye"], face["right_eye"])  # > 0: the right eye is lower
    cx, cy = (square[0] + square[2]) / 2, (square[1] + square[3]) / 2
    photo = Image.fromarray(_as_rgb(image))
    # PIL turns counter-clockwise (as displayed) by a positive angle: that lifts the right eye
    photo = photo.rotate(angle, resample=Image.BILINEAR, center=(cx, cy))
    box = tuple(int(round(v)) for v in square)
    crop = photo.crop(box).resize((int(size), int(size)), Image.BILINEAR)
    return np.asarray(crop, dtype=np.uint8)


def _outputs(model) -> dict:
    outputs = model.output
    if not isinstance(outputs, dict):
        raise ValueError("the model's outputs are not a dict keyed by task; pass a kit model "
                         "(fl.models.*), whose heads are named gender / age / race.")
    return outputs


def infer_schemes(model) -> list:
    """Each head's scheme from its number of outputs: 1 or 2 gender, 9 ``age_fairface9``,
    5 ``race_utk5``, 7 ``race_fairface7``; the head's name must be that scheme's output.

    Regression and ordinal (CORAL) age heads cannot be told apart this way (their scale and
    first year are not in the model): pass their schemes by name. Lab 09."""
    from faceattr_lab import labels

    schemes = []
    for output, tensor in _outputs(model).items():
        units = int(tensor.shape[-1])
        name = SCHEME_BY_CLASSES.get(units)
        scheme = labels.get(name) if name else None
        if scheme is None or scheme.output != output:
            raise ValueError(f"cannot tell the scheme of the {output!r} head ({units} outputs); "
                             "pass the schemes by name (--schemes gender age_fairface9 ...; "
                             "a regression age head: age_years_116; a CORAL one: coral_21_60).")
        schemes.append(scheme)
    return schemes


def probabilities(raw, scheme) -> np.ndarray:
    """A classification head's outputs (B, K), or one sigmoid unit (B, 1) for two classes, as
    probabilities (B, K); logits go through a softmax. Lab 09."""
    raw = np.asarray(raw, dtype=float)
    if raw.ndim != 2:
        raw = raw.reshape(len(raw), -1)
    k = len(scheme.classes)
    if scheme.kind != "classification":
        raise ValueError(f"the {scheme.output!r} head is {scheme.kind}: it has no class "
                         "probabilities; read its prediction with fl.faces.decode(raw, scheme).")
    if raw.shape[1] == 1 and k == 2:
        p = raw[:, 0]
        if p.size and (p.min() < 0 or p.max() > 1):
            p = 1 / (1 + np.exp(-p))
        return np.stack([1 - p, p], axis=1)
    if raw.shape[1] != k:
        raise ValueError(f"the {scheme.output!r} head has {raw.shape[1]} outputs but scheme "
                         f"{scheme.name!r} has {k} classes; pass the scheme the model was "
                         "trained with.")
    if raw.size and (raw.min() < 0 or raw.max() > 1
                     or not np.allclose(raw.sum(axis=1), 1, atol=1e-3)):
        raw = np.exp(raw - raw.max(axis=1, keepdims=True))
        raw = raw / raw.sum(axis=1, keepdims=True)
    return raw


def decode(raw, scheme) -> dict:
    """One head's raw outputs for a batch of faces as predictions: ``{name: array}``. Lab 09.

    classification: ``class`` (names) and ``probability`` (of that class), plus
    ``probabilities`` (B, K); regression: ``years``; ordinal (CORAL / OR-CNN, ``K - 1``
    logits): ``rank`` (the number of P(rank > k) above 0.5), ``score`` (their sum) and, where
    the scheme's ranks are years (``fl.labels.coral(lo, hi)``), ``years``. Regression and
    ordinal heads are decoded as ``fl.evaluate.predict`` decodes them.
    """
    from faceattr_lab import evaluate

    raw = np.asarray(raw, dtype=float)
    n = len(raw)
    if scheme.kind == "classification":
        probs = probabilities(raw, scheme)
        best = probs.argmax(axis=1) if n else np.zeros(0, int)
        return {"class": np.asarray(scheme.classes, dtype=object)[best],
                "probability": probs[np.arange(n), best], "probabilities": probs}
    if scheme.kind not in ("regression", "ordinal"):
        raise ValueError(f"scheme {scheme.name!r} has kind {scheme.kind!r}; pass a "
                         "classification, regression or ordinal scheme.")
    columns = evaluate.decode_outputs(scheme, raw)  # the kit's own decoding (fl.evaluate.predict)
    o = scheme.output
    if scheme.kind == "regression":
        return {"years": np.asarray(columns[f"{o}_pred"], dtype=float)}
    out = {"rank": np.asarray(columns[f"{o}_pred"], dtype=int),
           "score": np.asarray(columns[f"{o}_score"], dtype=float)}
    if f"{o}_pred_years" in columns:
        out["years"] = np.asarray(columns[f"{o}_pred_years"], dtype=float)
    return out


def _check_head(units: int, scheme) -> None:
    """Raise ValueError unless a head with ``units`` outputs can carry ``scheme``."""
    k = len(scheme.classes)
    expected = {"classification": (k,) if k != 2 else (1, 2), "regression": (1,),
                "ordinal": (k - 1,)}.get(scheme.kind)
    if expected is None or units not in expected:
        raise ValueError(f"the {scheme.output!r} head has {units} outputs but scheme "
                         f"{scheme.name!r} ({scheme.kind}, {k} classes) needs "
                         f"{' or '.join(map(str, expected or ()))}; pass the scheme the model "
                         "was trained with.")


def predict_faces(model, images, schemes=None, min_confidence: float = 0.9,
                  margin: float = DEFAULT_MARGIN, batch_size: int = 64) -> list[list[dict]]:
    """Detect, align and classify every face of every image with a kit model. Lab 09.

    ``images`` is a list of RGB arrays; ``schemes`` (names or ``fl.labels`` schemes) default to
    :func:`infer_schemes`. Returns, per image, its faces as :func:`detect` gives them, each
    with ``predictions``: ``{output: {name: value}}`` as :func:`decode` names them (a class
    and its probability; years; a rank), and ``probabilities``: ``{output: array of K class
    probabilities}`` in the scheme's class order, for the classification heads.
    """
    from faceattr_lab import labels

    if isinstance(images, np.ndarray) and images.ndim == 3:
        raise ValueError("images is one image; pass a list of images, e.g. [image].")
    if not 0 <= margin <= 2:
        raise ValueError(f"margin={margin}; pass a fraction of the box side in [0, 2], "
                         f"e.g. {DEFAULT_MARGIN}.")
    if schemes is None:
        schemes = infer_schemes(model)
    else:
        schemes = [labels.get(s) if isinstance(s, str) else s for s in schemes]
        heads = _outputs(model)
        absent = [s.output for s in schemes if s.output not in heads]
        if absent:
            raise ValueError(f"the model has no {absent} head; its heads are {sorted(heads)}.")
        for s in schemes:  # checked before any face is found, so every image gets the check
            _check_head(int(heads[s.output].shape[-1]), s)
    if not schemes:
        raise ValueError("no schemes to predict; pass at least one, e.g. ['gender'].")
    size = model.input_shape[1]
    if size is None or model.input_shape[2] != size:
        raise ValueError(f"model input {model.input_shape}: predict_faces needs a square, fixed "
                         "input size; rebuild the model with e.g. input_shape=(128, 128, 3).")
    found = [detect(image, min_confidence) for image in images]
    crops = [align(image, face, size, margin) for image, faces in zip(images, found)
             for face in faces]
    if crops:
        batch = np.stack(crops).astype("float32")  # kit models take [0, 255] and rescale
        raw = {s.output: [] for s in schemes}
        for start in range(0, len(batch), batch_size):
            out = model.predict_on_batch(batch[start:start + batch_size])
            for s in schemes:
                raw[s.output].append(np.asarray(out[s.output]))
        decoded = {s.output: decode(np.concatenate(raw[s.output]), s) for s in schemes}
        i = 0
        for faces in found:
            for face in faces:
                face["predictions"] = {
                    o: {k: v[i] for k, v in columns.items() if k != "probabilities"}
                    for o, columns in decoded.items()}
                face["probabilities"] = {o: columns["probabilities"][i]
                                         for o, columns in decoded.items()
                                         if "probabilities" in columns}
                i += 1
    return found


def label(face: dict, schemes=None) -> str:
    """A face's predictions as one short line, e.g. ``"female 0.93 · 30-39 0.41 · White 0.71"``
    (a class and its probability; years ``"34 y"``; a rank ``"rank 13 (34 y)"``), in the
    order of ``schemes`` (schemes, their names or head names; default: every head). Lab 09."""
    from faceattr_lab import labels

    predictions = face.get("predictions")
    if predictions is None:
        raise ValueError("the face has no predictions; pass a face from "
                         "fl.faces.predict_faces(model, images).")
    if schemes is None:
        outputs = list(predictions)
    else:
        outputs = [s if isinstance(s, str) and s in predictions
                   else (labels.get(s) if isinstance(s, str) else s).output for s in schemes]
    parts = []
    for output in outputs:
        p = predictions[output]
        if "class" in p:
            parts.append(f"{p['class']} {p['probability']:.2f}")
        elif "rank" in p:
            years = f" ({p['years']:.0f} y)" if "years" in p else ""
            parts.append(f"rank {int(p['rank'])}{years}")
        else:
            parts.append(f"{p['years']:.0f} y")
    return " · ".join(parts)


TABLE_COLUMNS = ("image", "face", "status", "x", "y", "w", "h", "confidence")


def _head_columns(scheme) -> list[str]:
    o = scheme.output
    if scheme.kind == "classification":
        return [f"{o}_prob_{c}" for c in scheme.classes] + [f"{o}_pred"]
    if scheme.kind == "regression":
        return [f"{o}_pred"]
    return [f"{o}_pred", f"{o}_score", *([f"{o}_pred_years"] if scheme.lo is not None else [])]


def table_columns(schemes) -> list[str]:
    """The columns of ``faceattr-lab predict``'s CSV for these heads. Lab 09.

    ``image``, ``face`` (0, 1, ... per image), ``status`` ("ok", "no face" or "unreadable:
    <reason>"), the box ``x y w h`` and ``confidence``, then per head: classification
    ``<head>_prob_<class>`` for every class and ``<head>_pred`` (the most probable class);
    regression ``<head>_pred`` (years); ordinal ``<head>_pred`` (the rank), ``<head>_score``
    (the sum of P(rank > k)) and, where ranks are years, ``<head>_pred_years``.
    """
    from faceattr_lab import labels

    columns = list(TABLE_COLUMNS)
    for scheme in schemes:
        columns += _head_columns(labels.get(scheme) if isinstance(scheme, str) else scheme)
    return columns


def table_rows(image_name: str, faces, schemes) -> list[dict]:
    """The :func:`table_columns` rows of one image: one per face of :func:`predict_faces`, or
    one ``"no face"`` row when it has none (never skipped silently). Lab 09."""
    from faceattr_lab import labels

    schemes = [labels.get(s) if isinstance(s, str) else s for s in schemes]
    if not faces:
        return [{"image": image_name, "status": "no face"}]
    rows = []
    for index, face in enumerate(faces):
        row = {"image": image_name, "face": index, "status": "ok",
               "confidence": round(float(face["confidence"]), 4),
               **dict(zip("xywh", (int(v) for v in face["box"])))}
        for scheme in schemes:
            o, p = scheme.output, face["predictions"][scheme.output]
            if scheme.kind == "classification":
                row.update({f"{o}_prob_{c}": round(float(v), 5)
                            for c, v in zip(scheme.classes, face["probabilities"][o])})
                row[f"{o}_pred"] = p["class"]
            elif scheme.kind == "regression":
                row[f"{o}_pred"] = round(float(p["years"]), 2)
            else:
                row[f"{o}_pred"] = int(p["rank"])
                row[f"{o}_score"] = round(float(p["score"]), 4)
                if "years" in p:
                    row[f"{o}_pred_years"] = round(float(p["years"]), 2)
        rows.append(row)
    return rows


def seconds_per_face(run, images, batch_size: int = 1, repeats: int = 5) -> float:
    """Best of ``repeats`` timed passes of ``run(batch)`` over ``images``, per image. Lab 09.

    ``images`` is split into batches of ``batch_size`` (the last may be shorter) and ``run`` is
    called on each (e.g. ``model.predict_on_batch``, or a function detecting the faces of a
    list of photos); one untimed call first builds and traces what needs it. The best pass
    is the one least disturbed by other work on the machine.
    """
    import time

    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size={batch_size}; pass a whole number >= 1, e.g. 64.")
    if int(repeats) != repeats or repeats < 1:
        raise ValueError(f"repeats={repeats}; pass a whole number >= 1, e.g. 5.")
    if len(images) == 0:
        raise ValueError("images is empty; pass at least one image (or face crop) to time.")
    batches = [images[i:i + batch_size] for i in range(0, len(images), int(batch_size))]
    run(batches[0])  # build and trace, not timed
    best = math.inf
    for _ in range(int(repeats)):
        start = time.perf_counter()
        for batch in batches:
            run(batch)
        best = min(best, time.perf_counter() - start)
    return best / len(images)


def annotate(image, faces, schemes=None, color=(255, 215, 0), width: int | None = None,
             font_size: int | None = None) -> np.ndarray:
    """A copy of the photo with each face's box, eye points and label drawn on it. Lab 09.

    ``faces`` as :func:`detect` or :func:`predict_faces` gives them; a face with predictions
    is labelled with :func:`label` (``schemes``: the order of the heads, default all of the
    face's heads), one without them with its detection confidence. Returns RGB uint8.
    """
    from PIL import Image, ImageDraw, ImageFont

    photo = Image.fromarray(_as_rgb(image).copy())
    draw = ImageDraw.Draw(photo)
    side = min(photo.size)
    width = width or max(1, side // 200)
    font_size = font_size or max(10, side // 32)
    try:
        font = ImageFont.load_default(size=font_size)
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        font = ImageFont.load_default()
    for face in faces:
        x, y, w, h = face["box"]
        draw.rectangle((x, y, x + w, y + h), outline=color, width=width)
        for eye in ("left_eye", "right_eye"):
            if eye in face:
                ex, ey = face[eye]
                r = max(2, width + 1)
                draw.ellipse((ex - r, ey - r, ex + r, ey + r), outline=color, width=width)
        if "predictions" in face:
            text = label(face, schemes)
        else:
            text = f"face {face['confidence']:.3f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left, bottom - top
        tx = min(max(0, x), max(0, photo.width - tw - 4))
        ty = y - th - 6 if y - th - 6 >= 0 else min(y + h + 2, photo.height - th - 4)
        draw.rectangle((tx, ty, tx + tw + 4, ty + th + 4), fill=(0, 0, 0))
        draw.text((tx + 2 - left, ty + 2 - top), text, fill=color, font=font)
    return np.asarray(photo, dtype=np.uint8)
