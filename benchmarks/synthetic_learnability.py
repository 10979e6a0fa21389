"""Is the synthetic data learnable but not trivial? A small Keras CNN in the quick profile.

Generates the UTKFace layout (64 px), trains a 4-block CNN (conv-BN-ReLU-pool) with three softmax heads (gender,
the 5 UTKFace race codes, FairFace's 9 age groups) on 3,000 images for a few epochs and reports
held-out accuracy. Targets: gender >= 0.90, race (5) >= 0.70, age (9 groups) >= 0.50, none at 1.0.

    nice .venv/bin/python benchmarks/synthetic_learnability.py [--n 4000] [--epochs 8]
"""

from __future__ import annotations

import argparse
import math
import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

NAME = re.compile(r"^(\d+)_([01])_([0-4])_(\d{17})\.jpg\.chip\.jpg$")
AGE_EDGES = np.array([0, 3, 10, 20, 30, 40, 50, 60, 70])  # left-closed FairFace groups


def load(folder: Path):
    images, labels = [], []
    for path in sorted(folder.iterdir()):
        m = NAME.match(path.name)
        if not m:  # the inserted defects
            continue
        images.append(np.asarray(Image.open(path).convert("RGB")))
        age, gender, race = int(m[1]), int(m[2]), int(m[3])
        labels.append((gender, race, int(np.searchsorted(AGE_EDGES, age, side="right") - 1)))
    return np.stack(images).astype("float32"), np.array(labels)


def build(image_size: int, steps: int):
    import keras
    from keras import layers

    inputs = keras.Input((image_size, image_size, 3))
    x = layers.Rescaling(1 / 255)(inputs)
    for filters in (24, 48, 96, 128):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)  # few steps: settle fast
        x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3)(x)
    outputs = {name: layers.Dense(k, activation="softmax", name=name)(x)
               for name, k in (("gender", 2), ("race", 5), ("age", 9))}
    model = keras.Model(inputs, outputs)
    schedule = keras.optimizers.schedules.CosineDecay(2e-3, steps)  # a steady last epoch
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss={k: "sparse_categorical_crossentropy" for k in outputs},
                  metrics={k: ["accuracy"] for k in outputs})
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import keras

    from faceattr_lab.datasets.synthetic import make_synthetic

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        root = make_synthetic(Path(tmp) / "utk", "utkface", args.n, seed=args.seed,
                              image_size=args.image_size)
        t_gen = time.time() - t0
        x, y = load(root / "UTKFace")
    order = np.random.default_rng(args.seed).permutation(len(x))  # names sort by age: shuffle
    x, y = x[order], y[order]
    keras.utils.set_random_seed(args.seed)
    model = build(args.image_size, args.epochs * math.ceil(args.train / 64))
    split = args.train
    targets = lambda rows: {"gender": rows[:, 0], "race": rows[:, 1], "age": rows[:, 2]}  # noqa
    t0 = time.time()
    model.fit(x[:split], targets(y[:split]), batch_size=64, epochs=args.epochs, verbose=2,
              validation_data=(x[split:], targets(y[split:])))
    t_fit = time.time() - t0
    pred = model.predict(x[split:], verbose=0)
    print(f"\ngenerated {args.n} images in {t_gen:.1f}s; trained {args.epochs} epochs on "
          f"{split} images in {t_fit:.1f}s; held-out {len(x) - split} images")
    for i, (task, target) in enumerate((("gender", .9), ("race", .7), ("age", .5))):
        acc = float(np.mean(pred[task].argmax(1) == y[split:, i]))
        chance = float(np.max(np.bincount(y[split:, i])) / (len(x) - split))
        print(f"{task:7s} accuracy {acc:.3f}  (target >= {target}, majority class {chance:.3f})")


if __name__ == "__main__":
    main()
