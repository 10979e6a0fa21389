"""The tiny data and model the training and resume tests share (the SIGKILL test also runs this
source in a subprocess, so it imports nothing from the tests)."""

import types

import keras
import numpy as np
import tensorflow as tf

import faceattr_lab as fl

SIZE = 16


def data(seed, n=48, batch=8, classes=3, size=SIZE):
    """Random images whose class sets a brightness offset; a reshuffling tf.data set."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, size=n)
    x = (rng.uniform(0, 120, (n, size, size, 3)) + 60 * y[:, None, None, None])
    x = x.astype("float32")
    train_ds = (tf.data.Dataset.from_tensor_slices((x, {"race": y}))
                .shuffle(n, reshuffle_each_iteration=True).batch(batch))
    val_ds = tf.data.Dataset.from_tensor_slices((x[:16], {"race": y[:16]})).batch(batch)
    return train_ds, val_ds


def model(learning_rate=0.01, classes=3, size=SIZE):
    """Tiny CNN with a random augmentation layer and dropout (both draw from SeedGenerators)."""
    images = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 255)(images)
    x = keras.layers.RandomFlip("horizontal")(x)
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.3)(x)
    out = keras.Model(images, {"race": keras.layers.Dense(classes, activation="softmax",
                                                           name="race")(x)})
    out.compile(keras.optimizers.Adam(learning_rate),
                loss={"race": "sparse_categorical_crossentropy"},
                metrics={"race": ["accuracy"]})
    return out


def fresh(seed=7, size=SIZE):
    """What a re-run notebook does: seed, then build data and model."""
    fl.set_seed(seed)
    return (*data(seed, size=size), model(size=size))


def encoder(size=SIZE):
    """The tiny CNN's trunk alone, image -> 4 features (SupCon tests)."""
    images = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 255)(images)
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(images, x, name="encoder")


# a 3-class classification scheme on the "race" output, for the toy data
RACE_TOY = types.SimpleNamespace(name="race_toy", output="race", kind="classification",
                                 num_classes=3, classes=("a", "b", "c"))
