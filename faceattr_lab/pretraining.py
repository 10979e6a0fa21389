"""A backbone pretrained offline on synthetic faces: the quick profile's stand-in for ImageNet.

ImageNet's weights cannot be downloaded offline, and a backbone with random weights transfers
nothing. So the kit pretrains its SmallVGG once, on a *separate* synthetic domain (other people
than any lab's data set, drawn by ``fl.datasets.synthetic.attribute_faces``) and on *another
task* (appearance attributes: hair style, bald, beard, glasses, lipstick, fringe, curly hair;
not gender, age or race), and caches the weights in the data folder. Labs then load them with
``fl.models.backbone("SmallVGG", shape, weights=path)``: the same weights-file path a student
uses for weights of their own. The recipe is seeded and the file is byte-reproducible on a CPU.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from pathlib import Path

RECIPE_VERSION = 2  # 2: seeded before the dataset is built (one shuffle order per recipe)
# the recipe of the cached weights: 6,000 faces (5,000 to train, 1,000 to check), 32 px
RECIPE = dict(backbone="SmallVGG", n=6000, n_val=1000, image_size=32, epochs=8, batch_size=64,
              learning_rate=1e-3, seed=0)
WEIGHTS_FOLDER = "weights"


def _recipe(**overrides) -> dict:
    unknown = sorted(set(overrides) - set(RECIPE))
    if unknown:
        raise ValueError(f"unknown recipe keys {unknown}; use some of {sorted(RECIPE)}.")
    recipe = {**RECIPE, **overrides}
    for key in ("n", "n_val", "image_size", "epochs", "batch_size"):
        value = recipe[key]
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{key}={value!r}; pass a positive int.")
    if recipe["n_val"] >= recipe["n"]:
        raise ValueError(f"n_val={recipe['n_val']} leaves no training faces of n={recipe['n']}; "
                         "pass n_val < n.")
    if not isinstance(recipe["seed"], int) or recipe["seed"] < 0:
        raise ValueError(f"seed={recipe['seed']!r}; pass a non-negative int.")
    if not recipe["learning_rate"] > 0:
        raise ValueError(f"learning_rate={recipe['learning_rate']!r}; pass a positive float.")
    return recipe


def _attribute_targets(table) -> dict:
    """``{attribute: labels}``: class indices for hair style, 0/1 floats for the others."""
    import numpy as np

    from faceattr_lab.datasets.synthetic import ATTRIBUTES

    targets = {}
    for name, classes in ATTRIBUTES.items():
        if classes is None:
            targets[name] = table[name].to_numpy(dtype="float32")
        else:
            targets[name] = np.array([classes.index(v) for v in table[name]], dtype="int64")
    return targets


def attribute_model(image_size: int = 32, weights=None):
    """SmallVGG with one head per synthetic attribute, compiled for pretraining. Lab 03."""
    import keras

    from faceattr_lab.datasets.synthetic import ATTRIBUTES
    from faceattr_lab.models.backbones import backbone

    base = backbone("SmallVGG", (image_size, image_size, 3), weights=weights, trainable=True)
    images = keras.Input((image_size, image_size, 3), name="image")
    features = base(images)
    outputs = {}
    for name, classes in ATTRIBUTES.items():
        if classes is None:
            outputs[name] = keras.layers.Dense(1, activation="sigmoid", name=name)(features)
        else:
            outputs[name] = keras.layers.Dense(len(classes), activation="softmax",
                                               name=name)(features)
    return keras.Model(images, outputs, name="smallvgg_attributes")


def pretrain(path: str | Path, *, verbose: int = 0, **recipe) -> dict:
    """Pretrain SmallVGG on the synthetic attribute task; save its weights to ``path``. Lab 03.

    ``path`` must end in ``.weights.h5``; ``recipe`` overrides :data:`RECIPE`. Returns what was
    measured: validation accuracy per attribute, its majority share, and the seconds taken.
    """
    import keras
    import numpy as np
    from faceattr_lab.datasets.synthetic import ATTRIBUTES, attribute_faces
    from faceattr_lab.pipeline import from_arrays

    recipe = _recipe(**recipe)
    path = Path(path)
    if not path.name.endswith(".weights.h5"):
        raise ValueError(f"path={str(path)!r}; name the file '<something>.weights.h5'.")
    start = time.perf_counter()
    images, table = attribute_faces(recipe["n"], recipe["seed"], recipe["image_size"])
    targets = _attribute_targets(table)
    cut = recipe["n"] - recipe["n_val"]
    # seed before the dataset too: tf.data's shuffle order depends on the global seed as well
    keras.utils.set_random_seed(recipe["seed"])
    train = from_arrays(images[:cut], {k: v[:cut] for k, v in targets.items()},
                        recipe["batch_size"], training=True, shuffle_seed=recipe["seed"])
    model = attribute_model(recipe["image_size"])
    steps = recipe["epochs"] * int(np.ceil(cut / recipe["batch_size"]))
    schedule = keras.optimizers.schedules.CosineDecay(recipe["learning_rate"], steps)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss={name: ("binary_crossentropy" if classes is None
                     else "sparse_categorical_crossentropy")
              for name, classes in ATTRIBUTES.items()})
    model.fit(train, epochs=recipe["epochs"], verbose=verbose, shuffle=False)  # shuffled above
    predictions = model.predict(images[cut:], batch_size=256, verbose=0)
    report = {}
    for name, classes in ATTRIBUTES.items():
        truth, train_truth = targets[name][cut:], targets[name][:cut]
        if classes is None:
            predicted = (predictions[name][:, 0] > 0.5).astype(truth.dtype)
            majority = float(np.mean(truth == float(train_truth.mean() > 0.5)))
        else:
            predicted = predictions[name].argmax(axis=1)
            majority = float(np.mean(truth == np.bincount(train_truth).argmax()))
        report[name] = {"accuracy": round(float(np.mean(predicted == truth)), 4),
                        "majority": round(majority, 4)}
    path.parent.mkdir(parents=True, exist_ok=True)
    model.get_layer("smallvgg").save_weights(path)
    return {"validation": report, "seconds": round(time.perf_counter() - start, 1)}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _key(recipe: dict) -> str:
    text = json.dumps({**recipe, "version": RECIPE_VERSION}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def weights_path(**recipe) -> Path:
    """Where the cached weights of a recipe live in the data folder (not made). Lab 03."""
    from faceattr_lab import config

    recipe = _recipe(**recipe)
    name = f"smallvgg-synthetic-attributes-v{RECIPE_VERSION}-{_key(recipe)}.weights.h5"
    return config.data_dir() / WEIGHTS_FOLDER / name


def _manifest(path: Path) -> Path:
    return path.with_name(path.name.replace(".weights.h5", ".json"))


def cached(path: Path) -> dict | None:
    """The manifest of a cached weights file if file and manifest agree, else None. Lab 03."""
    try:
        manifest = json.loads(_manifest(path).read_text())
        return manifest if manifest.get("sha256") == _sha256(path) else None
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def _lock(path: Path):
    """An exclusive lock beside ``path`` where the OS offers one, so two labs train once."""
    try:
        import fcntl
    except ImportError:  # Windows: two processes may both train; they write identical bytes
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def synthetic_weights(*, rebuild: bool = False, verbose: int = 0, **recipe) -> Path:
    """The SmallVGG weights pretrained on synthetic faces, made on first use. Lab 03.

    Cached in ``<data folder>/weights/`` with a JSON manifest (recipe, sha256, validation
    accuracy per attribute); about a minute and a half on a 2-core CPU the first time, instant
    afterwards. ``faceattr-lab weights`` makes them ahead of time. Load them with
    ``fl.models.backbone("SmallVGG", shape, weights=path)``.
    """
    recipe = _recipe(**recipe)
    path = weights_path(**recipe)
    with _lock(path):
        if not rebuild and cached(path) is not None:
            return path
        tmp = path.with_name(f".{os.getpid()}-{path.name}")
        try:
            report = pretrain(tmp, verbose=verbose, **recipe)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        manifest = {"recipe": recipe, "version": RECIPE_VERSION, "sha256": _sha256(path),
                    **report}
        _manifest(path).write_text(json.dumps(manifest, indent=1) + "\n")
    return path
