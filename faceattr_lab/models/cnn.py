"""Study C's custom CNN (conv blocks, one dense layer, several heads) and its trunk alone."""

from __future__ import annotations

import keras
from keras import layers

from faceattr_lab.labels import resolve

from .heads import add_heads

BN_ORDERS = ("bn_relu", "relu_bn", "none")
# Keras's BatchNormalization defaults to momentum 0.99 (study C's setting, kept by the full
# profile): its moving statistics, used at inference, need thousands of steps to match the data,
# so a model trained for the ~100-300 steps of a quick run tests at chance. The quick profile
# passes bn_momentum=0.9 (PyTorch's default), which settles in tens of steps.
BN_MOMENTUM = 0.99

# Study C's final model (the base of its ablation tables), at 128 px.
STUDY_C = dict(conv_filters=(128, 64, 32, 32), kernel_size=3, bn_order="bn_relu",
               dense_units=512, dropout=0.6, age_activation=None, global_pool=False,
               sigmoid_gender=True, bn_momentum=BN_MOMENTUM)


def _norm_relu(x, bn_order: str, momentum: float, name: str):
    """BatchNorm and ReLU in the chosen order (or ReLU alone for ``"none"``)."""
    if bn_order == "bn_relu":
        x = layers.BatchNormalization(momentum=momentum, name=f"{name}_bn")(x)
        return layers.ReLU(name=f"{name}_relu")(x)
    x = layers.ReLU(name=f"{name}_relu")(x)
    if bn_order == "relu_bn":
        x = layers.BatchNormalization(momentum=momentum, name=f"{name}_bn")(x)
    return x


def _conv_block(x, filters: int, kernel_size: int, bn_order: str, momentum: float, name: str):
    """Conv2D (3x3 'same', with bias, as in study C's code) -> BN/ReLU in order -> max-pool 2."""
    x = layers.Conv2D(filters, kernel_size, padding="same", name=f"{name}_conv")(x)
    x = _norm_relu(x, bn_order, momentum, name)
    return layers.MaxPooling2D(2, name=f"{name}_pool")(x)


def _trunk(images, conv_filters, kernel_size, bn_order, dense_units, global_pool, dropout=0.0,
           momentum=BN_MOMENTUM, prefix=""):
    """Rescale to [0, 1], conv blocks, Flatten (or average), Dropout, Dense -> BN/ReLU."""
    x = layers.Rescaling(1.0 / 255, name=f"{prefix}rescale")(images)
    for index, filters in enumerate(conv_filters):
        x = _conv_block(x, filters, kernel_size, bn_order, momentum,
                        name=f"{prefix}block{index + 1}")
    if global_pool:
        x = layers.GlobalAveragePooling2D(name=f"{prefix}pool")(x)
    else:
        x = layers.Flatten(name=f"{prefix}flatten")(x)
    if dropout > 0:
        x = layers.Dropout(dropout, name=f"{prefix}dropout")(x)
    if dense_units:
        x = layers.Dense(dense_units, name=f"{prefix}dense")(x)
        x = _norm_relu(x, bn_order, momentum, name=f"{prefix}dense")
    return x


def _check(input_shape, conv_filters, kernel_size, bn_order):
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"input_shape={input_shape}; pass (height, width, 3).")
    if bn_order not in BN_ORDERS:
        raise ValueError(f"bn_order={bn_order!r}; use one of {BN_ORDERS}.")
    if not conv_filters or kernel_size < 1:
        raise ValueError("pass at least one conv filter count and kernel_size >= 1, "
                         "e.g. conv_filters=(128, 64, 32, 32), kernel_size=3.")
    smallest = 2 ** len(conv_filters)
    if min(input_shape[:2]) < smallest:
        raise ValueError(f"{len(conv_filters)} conv blocks halve the image {len(conv_filters)} "
                         f"times: images must be at least {smallest} px, got {input_shape[:2]}; "
                         "use fewer blocks or larger images.")
    return input_shape


def custom_cnn(input_shape, schemes, conv_filters=STUDY_C["conv_filters"], kernel_size: int = 3,
               bn_order: str = "bn_relu", dense_units: int = 512, dropout: float = 0.6,
               age_activation: str | None = None, global_pool: bool = False,
               separate: bool = False, sigmoid_gender: bool = True,
               bn_momentum: float = BN_MOMENTUM, name: str = "custom_cnn") -> keras.Model:
    """Study C's custom multi-output CNN; the defaults are its final model. Lab 02.

    Architecture (study C's code): ``Rescaling(1/255)``; one block per entry of
    ``conv_filters``, each ``Conv2D(k x k, same) -> BatchNorm -> ReLU -> MaxPool 2``;
    ``Flatten`` (or global average pooling with ``global_pool=True``); ``Dropout(dropout)``;
    ``Dense(dense_units) -> BatchNorm -> ReLU``; then one head per scheme: ``Dense(1)`` with
    ``age_activation`` for age regressed on a [0, 1] scale (study C: linear, MSE on age / 116),
    ``Dense(1, sigmoid)`` for a two-class scheme when ``sigmoid_gender`` (study C's gender head,
    binary cross-entropy), a softmax for other classification schemes, CORAL for an ordinal
    scheme. Defaults: filters 128-64-32-32, dense 512, dropout 0.6, 3x3 kernels, the model of
    study C at 128 px (1,158,274 parameters with age and gender heads).

    The ablations: ``conv_filters`` (3-5 blocks), ``bn_order`` ("bn_relu" vs "relu_bn", applied
    to every block and to the dense layer; "none" drops BatchNorm), ``age_activation`` (None,
    "relu"), ``dense_units`` (512 vs 1024), ``dropout`` (0.4-0.7). ``bn_momentum`` is Keras'
    default 0.99 (the study's); short runs need 0.9 (see ``BN_MOMENTUM``).

    ``separate=True`` gives every head its own trunk inside one model: the heads share no
    weight, so training it is the same as training single-task networks side by side, and the
    "separate vs multi-output" comparison needs one ``fit`` call. One scheme alone builds a
    single-task network.
    """
    input_shape = _check(input_shape, conv_filters, kernel_size, bn_order)
    schemes = resolve(schemes)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout={dropout}; use 0 <= dropout < 1 (study C: 0.6).")
    images = keras.Input(input_shape, name="image")
    head_options = dict(regression_activation=age_activation, binary_sigmoid=sigmoid_gender)
    if separate:
        outputs = {}
        for scheme in schemes:
            features = _trunk(images, conv_filters, kernel_size, bn_order, dense_units,
                              global_pool, dropout, bn_momentum, prefix=f"{scheme.output}_")
            outputs.update(add_heads(features, [scheme], **head_options))
    else:
        features = _trunk(images, conv_filters, kernel_size, bn_order, dense_units, global_pool,
                          dropout, bn_momentum)
        outputs = add_heads(features, schemes, **head_options)
    return keras.Model(images, outputs, name=name)


def cnn_encoder(input_shape, conv_filters=(32, 64, 128), kernel_size: int = 3,
                bn_order: str = "bn_relu", dense_units: int = 0, bn_momentum: float = 0.9,
                name: str = "cnn_encoder") -> keras.Model:
    """The custom CNN's trunk alone, image -> feature vector (global average pooled). Lab 05.

    A small, fast encoder for SupCon on a CPU (``supcon_encoder("cnn", ...)``) and for the
    fully trainable benchmark CNN of study E.
    """
    input_shape = _check(input_shape, conv_filters, kernel_size, bn_order)
    images = keras.Input(input_shape, name="image")
    features = _trunk(images, conv_filters, kernel_size, bn_order, dense_units, global_pool=True,
                      momentum=bn_momentum)
    return keras.Model(images, features, name=name)
