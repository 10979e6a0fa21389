"""Faces in photos: MTCNN detection, eye alignment and a kit model's predictions per face.

Used by ``faceattr-lab predict``::

    faces = fl.faces.detect(image)                 # boxes, confidences, eye positions
    crop = fl.faces.align(image, faces[0], 128)    # eyes level, square, FairFace's margin
    found = fl.faces.predict_faces(model, [image])  # per face: probabilities per class per head

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
    """An image file as an RGB uint8 array (H, W, 3), EXIF rotation applied.

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
    """The faces MTCNN finds in an RGB image, most confident first.

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


def align(image, face: dict, size: int = 128, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """The face rotated about its box centre so the eyes are level, cropped square and resized.

    The square's side is the box's longer side times ``1 + 2 * margin`` (default 0.25, the
    margin of FairFace's released crops); parts outside the photo are black. Returns uint8
    ``(size, size, 3)``.
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
    x, y, w, h = face["box"]
    if w <= 0 or h <= 0:
        raise ValueError(f"face box {face['box']} is empty; pass a face from fl.faces.detect.")
    (lx, ly), (rx, ry) = face["left_eye"], face["right_eye"]
    angle = math.degrees(math.atan2(ry - ly, rx - lx))  # > 0: the right eye is lower
    cx, cy = x + w / 2, y + h / 2
    photo = Image.fromarray(_as_rgb(image))
    # PIL turns counter-clockwise (as displayed) by a positive angle: that lifts the right eye
    photo = photo.rotate(angle, resample=Image.BILINEAR, center=(cx, cy))
    half = max(w, h) * (1 + 2 * margin) / 2
    box = tuple(int(round(v)) for v in (cx - half, cy - half, cx + half, cy + half))
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
    5 ``race_utk5``, 7 ``race_fairface7``; the head's name must be that scheme's output."""
    from faceattr_lab import labels

    schemes = []
    for output, tensor in _outputs(model).items():
        units = int(tensor.shape[-1])
        name = SCHEME_BY_CLASSES.get(units)
        scheme = labels.get(name) if name else None
        if scheme is None or scheme.output != output:
            raise ValueError(f"cannot tell the scheme of the {output!r} head ({units} outputs); "
                             "pass the schemes by name (--schemes gender age_fairface9 ...).")
        schemes.append(scheme)
    return schemes


def probabilities(raw, scheme) -> np.ndarray:
    """A classification head's outputs (B, K), or one sigmoid unit (B, 1) for two classes, as
    probabilities (B, K); logits go through a softmax."""
    raw = np.asarray(raw, dtype=float)
    if raw.ndim != 2:
        raw = raw.reshape(len(raw), -1)
    k = len(scheme.classes)
    if scheme.kind != "classification":
        raise ValueError(f"the {scheme.output!r} head is {scheme.kind}; predict_faces needs "
                         "classification (softmax) heads: pass only those schemes.")
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


def predict_faces(model, images, schemes=None, min_confidence: float = 0.9,
                  margin: float = DEFAULT_MARGIN, batch_size: int = 64) -> list[list[dict]]:
    """Detect, align and classify every face of every image with a kit model.

    ``images`` is a list of RGB arrays; ``schemes`` (names or ``fl.labels`` schemes) default to
    :func:`infer_schemes`. Returns, per image, its faces as :func:`detect` gives them, each with
    ``probabilities``: ``{output: array of K class probabilities}`` in the scheme's class order.
    """
    from faceattr_lab import labels

    if isinstance(images, np.ndarray) and images.ndim == 3:
        raise ValueError("images is one image; pass a list of images, e.g. [image].")
    if schemes is None:
        schemes = infer_schemes(model)
    else:
        schemes = [labels.get(s) if isinstance(s, str) else s for s in schemes]
        heads = _outputs(model)
        absent = [s.output for s in schemes if s.output not in heads]
        if absent:
            raise ValueError(f"the model has no {absent} head; its heads are {sorted(heads)}.")
        for s in schemes:  # checked before any face is found, so every image gets the check
            probabilities(np.zeros((0, int(heads[s.output].shape[-1]))), s)
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
        probs = {s.output: probabilities(np.concatenate(raw[s.output]), s) for s in schemes}
        i = 0
        for faces in found:
            for face in faces:
                face["probabilities"] = {o: p[i] for o, p in probs.items()}
                i += 1
    return found
