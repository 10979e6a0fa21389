"""SmallVGG: the kit's own compact VGG-style backbone, pretrained offline on synthetic faces.

Simonyan & Zisserman (2015) stack 3x3 convolutions in blocks, each block ending in a 2x2 max
pool; SmallVGG keeps that design at a CPU's scale: four blocks of two 3x3 convolutions
(32-64-128-256 filters), each followed by BatchNormalization (Ioffe & Szegedy 2015) and ReLU,
and global pooling at the top. It has the ``keras.applications`` signature, so
``fl.models.backbone("SmallVGG", ...)`` wraps it like any ImageNet backbone; its pretrained
weights come from ``fl.pretraining`` instead of ImageNet.
"""

from __future__ import annotations

import os

import keras
from keras import layers

WIDTHS = (32, 64, 128, 256)
CITATION = ("Simonyan & Zisserman (2015), Very Deep Convolutional Networks for Large-Scale Image "
            "Recognition, ICLR; here in four blocks of two 3x3 convolutions with BatchNorm "
            "(Ioffe & Szegedy 2015), the kit's own size")


def small_vgg(include_top: bool = False, weights=None, input_shape=None, pooling: str | None = "avg",
              widths=WIDTHS) -> keras.Model:
    """SmallVGG (VGG-style, Simonyan & Zisserman 2015) with the keras.applications signature. Lab 03.

    Takes inputs already scaled to [-1, 1] (``fl.models.backbone`` adds that ``Preprocess``).
    ``weights``: None (random) or the path of weights saved from this network; there are no
    ImageNet weights: use ``fl.pretraining.synthetic_weights()`` for pretrained ones.
    """
    if include_top:
        raise ValueError("SmallVGG has no classifier top; pass include_top=False and add heads "
                         "with fl.models.add_heads.")
    if isinstance(weights, str) and weights == "imagenet":
        raise ValueError("SmallVGG has no ImageNet weights; pass weights=None (random) or "
                         "fl.pretraining.synthetic_weights() (pretrained on synthetic faces).")
    if pooling not in ("avg", "max", None):
        raise ValueError(f"pooling={pooling!r}; use 'avg', 'max' or None.")
    if input_shape is None:
        input_shape = (None, None, 3)
    images = keras.Input(tuple(input_shape), name="input")
    x = images
    for block, width in enumerate(widths, start=1):
        for conv in (1, 2):
            x = layers.Conv2D(width, 3, padding="same", use_bias=False,
                              name=f"block{block}_conv{conv}")(x)
            x = layers.BatchNormalization(name=f"block{block}_bn{conv}")(x)
            x = layers.ReLU(name=f"block{block}_relu{conv}")(x)
        x = layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
    if pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    model = keras.Model(images, x, name="small_vgg")
    if weights is not None:
        path = os.fspath(weights)
        if not os.path.isfile(path):
            raise ValueError(f"weights={path!r} is not a file; pass None or a saved weights file.")
        model.load_weights(path)
    return model
