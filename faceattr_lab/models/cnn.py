"""The custom CNN of the ablation study (study C): conv blocks, one dense layer, several heads."""

from __future__ import annotations

import keras
from keras import layers

from .heads import _check_schemes, add_heads

BN_ORDERS = ("bn_relu", "relu_bn", "none")
# Keras's BatchNormalization defaults to momentum 0.99: its moving statistics, used at
# inference, need thousands of steps to match the data, so a model trained for the ~100 steps
# of a quick run tests at chance. 0.9 (PyTorch's default) settles in tens of steps and is as
# good for long runs.
BN_MOMENTUM = 0.9


def _conv_block(x, filters: int, kernel_size: int, bn_order: str, name: str):
    """Conv2D -> BN/ReLU in the chosen order -> 2x2 max-pool."""
    x = layers.Conv2D(filters, kernel_size, padding="same", use_bias=bn_order == "none",
                      name=f"{name}_conv")(x)
    if bn_order == "bn_relu":
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
        x = layers.ReLU(name=f"{name}_relu")(x)
    elif bn_order == "relu_bn":
        x = layers.ReLU(name=f"{name}_relu")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    else:
        x = layers.ReLU(name=f"{name}_relu")(x)
    return layers.MaxPooling2D(2, name=f"{name}_pool")(x)


def _trunk(images, conv_filters, kernel_size, bn_order, dense_units, global_pool, prefix=""):
    """Rescale to [0, 1], conv blocks, flatten (or average), Dense(dense_units) -> features."""
    x = layers.Rescaling(1.0 / 255, name=f"{prefix}rescale")(images)
    for index, filters in enumerate(conv_filters):
        x = _conv_block(x, filters, kernel_size, bn_order, name=f"{prefix}block{index + 1}")
    if global_pool:
        x = layers.GlobalAveragePooling2D(name=f"{prefix}pool")(x)
    else:
        x = layers.Flatten(name=f"{prefix}flatten")(x)
    if dense_units:
        x = layers.Dense(dense_units, activation="relu", name=f"{prefix}dense")(x)
    return x


def _check(input_shape, conv_filters, kernel_size, bn_order):
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"input_shape={input_shape}; pass (height, width, 3).")
    if bn_order not in BN_ORDERS:
        raise ValueError(f"bn_order={bn_order!r}; use one of {BN_ORDERS}.")
    if not conv_filters or kernel_size < 1:
        raise ValueError("pass at least one conv filter count and kernel_size >= 1, "
                         "e.g. conv_filters=(32, 64, 128), kernel_size=3.")
    smallest = 2 ** len(conv_filters)
    if min(input_shape[:2]) < smallest:
        raise ValueError(f"{len(conv_filters)} conv blocks halve the image {len(conv_filters)} "
                         f"times: images must be at least {smallest} px, got {input_shape[:2]}; "
                         "use fewer blocks or larger images.")
    return input_shape


def custom_cnn(input_shape, schemes, conv_filters=(32, 64, 128), kernel_size: int = 3,
               bn_order: str = "bn_relu", dense_units: int = 512, dropout: float = 0.5,
               age_activation: str | None = None, global_pool: bool = False,
               separate: bool = False, name: str = "custom_cnn") -> keras.Model:
    """The custom multi-output CNN of the ablation study (study C). Lab 02.

    Architecture: ``Rescaling(1/255)``, one block per entry of ``conv_filters``
    (``Conv2D(k x k, same) -> BatchNorm/ReLU in bn_order -> MaxPool 2``), ``Flatten`` (or global
    average pooling), ``Dense(dense_units, relu)``, then per scheme ``Dropout(dropout)`` and its
    head (softmax for gender; ``Dense(1)`` with ``age_activation`` for age regressed on a [0, 1]
    scale; CORAL for an ordinal scheme). The ablations: ``conv_filters`` (3-5 blocks),
    ``bn_order`` ("bn_relu" vs "relu_bn" vs "none"), ``age_activation`` (None, "relu",
    "sigmoid"), ``dense_units`` (512 vs 1024), ``dropout`` (0.4-0.7).

    ``separate=True`` gives every head its own trunk inside one model: the heads share no
    weight, so training it is the same as training single-task networks side by side, and the
    "separate vs multi-output" comparison needs one ``fit`` call. One scheme alone builds a
    single-task network.
    """
    input_shape = _check(input_shape, conv_filters, kernel_size, bn_order)
    schemes = _check_schemes(schemes)
    images = keras.Input(input_shape, name="image")
    if separate:
        outputs = {}
        for scheme in schemes:
            features = _trunk(images, conv_filters, kernel_size, bn_order, dense_units,
                              global_pool, prefix=f"{scheme.output}_")
            outputs.update(add_heads(features, [scheme], dropout=dropout,
                                     regression_activation=age_activation))
    else:
        features = _trunk(images, conv_filters, kernel_size, bn_order, dense_units, global_pool)
        outputs = add_heads(features, schemes, dropout=dropout,
                            regression_activation=age_activation)
    return keras.Model(images, outputs, name=name)


def cnn_encoder(input_shape, conv_filters=(32, 64, 128), kernel_size: int = 3,
                bn_order: str = "bn_relu", dense_units: int = 0,
                name: str = "cnn_encoder") -> keras.Model:
    """The custom CNN's trunk alone, image -> feature vector (global average pooled). Lab 05.

    A small, fast encoder for SupCon on a CPU (``supcon_encoder("cnn", ...)``) and for the
    fully trainable benchmark CNN of study E.
    """
    input_shape = _check(input_shape, conv_filters, kernel_size, bn_order)
    images = keras.Input(input_shape, name="image")
    features = _trunk(images, conv_filters, kernel_size, bn_order, dense_units, global_pool=True)
    return keras.Model(images, features, name=name)
