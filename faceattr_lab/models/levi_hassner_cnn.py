"""The Levi-Hassner CNN for age and gender (study D), with its local response normalisation."""

from __future__ import annotations

import keras
from keras import layers, ops

from faceattr_lab.labels import resolve

from .heads import add_heads


@keras.saving.register_keras_serializable(package="faceattr_lab")
class LocalResponseNormalization(layers.Layer):
    """Local response normalisation across channels (AlexNet's LRN), in ``keras.ops``. Lab 04.

    ``y = x / (bias + alpha * sum_{|j - c| <= depth_radius} x_j^2) ** beta``, the formula of
    ``tf.nn.local_response_normalization``. Caffe divides alpha by the window size
    (``2 * depth_radius + 1``); the defaults here are Levi-Hassner's Caffe settings
    (local_size 5, alpha 1e-4, beta 0.75) written the TensorFlow way: alpha = 1e-4 / 5.
    """

    def __init__(self, depth_radius: int = 2, bias: float = 1.0, alpha: float = 1e-4 / 5,
                 beta: float = 0.75, **kwargs):
        super().__init__(**kwargs)
        self.depth_radius = int(depth_radius)
        self.bias = float(bias)
        self.alpha = float(alpha)
        self.beta = float(beta)

    def call(self, inputs):
        channels = inputs.shape[-1]
        radius = self.depth_radius
        squared = ops.square(inputs)
        padding = [[0, 0]] * (len(inputs.shape) - 1) + [[radius, radius]]
        padded = ops.pad(squared, padding)
        window_sum = sum(padded[..., offset:offset + channels] for offset in range(2 * radius + 1))
        return inputs / ops.power(self.bias + self.alpha * window_sum, self.beta)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "depth_radius": self.depth_radius, "bias": self.bias,
                "alpha": self.alpha, "beta": self.beta}


def _pool_size(size: int) -> int:
    """Output side of a 3x3/2 max-pool in Caffe's ceil mode: ``ceil((size - 3) / 2) + 1``."""
    return -((3 - size) // 2) + 1 if size >= 1 else 0


def _final_size(size: int, first_stride: int) -> int:
    """Spatial size after conv1 (7x7 valid) and the three 3x3/2 max-pools in ceil mode."""
    size = (size - 7) // first_stride + 1 if size >= 7 else 0  # conv2, conv3 keep the size
    for _ in range(3):
        size = _pool_size(size)
    return size


def minimum_size(first_stride: int = 4) -> int:
    """The smallest image side Levi-Hassner accepts with this first stride. Lab 04.

    Pools round up as in Caffe (ceil mode), so a 2-px map still pools to 1 px: 35 px with
    ``first_stride=4``, 21 px with ``first_stride=2``.
    """
    if first_stride < 1:
        raise ValueError(f"first_stride={first_stride}; use 4 (the paper) or 2 for small images.")
    size = 7
    while _final_size(size, first_stride) < 1:
        size += 1
    return size


def _caffe_pool(x, index: int):
    """3x3/2 max-pool with Caffe's ceil-mode output size (Keras pools round down).

    Pads the bottom/right by what ceil mode needs, ``(out - 1) * 2 + 3 - in``, computed from
    the static size. Zero padding is exact here: every pool follows a ReLU, so its inputs are
    >= 0, and each ceil-mode window still covers at least one real pixel.
    """
    pads = [(_pool_size(side) - 1) * 2 + 3 - side for side in x.shape[1:3]]
    if any(pads):
        x = layers.ZeroPadding2D(((0, pads[0]), (0, pads[1])), name=f"pad{index}")(x)
    return layers.MaxPooling2D(3, strides=2, name=f"pool{index}")(x)


PAPER_FILTERS = (96, 256, 384)  # conv1, conv2, conv3 in Levi & Hassner (2015)


def levi_hassner(input_shape, schemes, first_stride: int = 4, dense_units: int = 512,
                 dropout: float = 0.5, filters=PAPER_FILTERS,
                 name: str = "levi_hassner") -> keras.Model:
    """Levi & Hassner's CNN, single-task (one scheme) or multi-task (several). Lab 04.

    Levi & Hassner (2015), "Age and Gender Classification using Convolutional Neural
    Networks", CVPR Workshops (AMFG). Trained from scratch on 227 px crops of Adience:
    ``conv 96 7x7/4 -> ReLU -> maxpool 3/2 -> LRN``, ``conv 256 5x5 -> ReLU -> maxpool 3/2 ->
    LRN``, ``conv 384 3x3 -> ReLU -> maxpool 3/2``, ``FC 512 -> ReLU -> dropout 0.5`` twice,
    then one head per scheme (the multi-task version of study D shares everything but the
    heads). Images are scaled to [-1, 1] inside (the paper subtracts the mean image).

    Pools round their output size up, as Caffe does (ceil mode):
    ``out = ceil((in - 3) / 2) + 1``; conv1 rounds down, ``(in - 7) // 4 + 1``. At 227 px:
    conv1 56x56x96, pool1 28x28, conv2 (5x5, pad 2) 28x28x256, pool2 14x14, conv3 (3x3, pad 1)
    14x14x384, pool3 7x7x384 = 18,816 inputs to fc1; 11,415,048 parameters with the 8 Adience
    age groups. (Keras' floor-mode pooling would give 6x6x384 and 8.86 M.)

    ``filters`` are the three convolutions' widths, the paper's ``(96, 256, 384)`` by default;
    lab 04's quick profile narrows them to fit a CPU budget (and says so).

    With ``first_stride=4`` the network needs images of at least 35 px (64 px leaves 1x1 after
    the last pool); ``first_stride=2`` works down to 21 px. Smaller images raise a
    ``ValueError`` that says so.
    """
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"input_shape={input_shape}; pass (height, width, 3).")
    if first_stride < 1:
        raise ValueError(f"first_stride={first_stride}; use 4 (the paper) or 2 for small images.")
    if _final_size(min(input_shape[:2]), first_stride) < 1:
        raise ValueError(
            f"Levi-Hassner with first_stride={first_stride} needs images of at least "
            f"{minimum_size(first_stride)} px, got {input_shape[:2]}; use a larger image_size "
            f"or first_stride=2 (needs {minimum_size(2)} px).")
    filters = tuple(filters) if isinstance(filters, (list, tuple)) else (filters,)
    if len(filters) != 3 or not all(isinstance(f, int) and f >= 1 for f in filters):
        raise ValueError(f"filters={filters}; pass three positive ints, e.g. {PAPER_FILTERS} "
                         "(the paper's conv1, conv2, conv3 widths).")
    schemes = resolve(schemes)
    images = keras.Input(input_shape, name="image")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(images)
    x = layers.Conv2D(filters[0], 7, strides=first_stride, activation="relu", name="conv1")(x)
    x = _caffe_pool(x, 1)
    x = LocalResponseNormalization(name="norm1")(x)
    x = layers.Conv2D(filters[1], 5, padding="same", activation="relu", name="conv2")(x)
    x = _caffe_pool(x, 2)
    x = LocalResponseNormalization(name="norm2")(x)
    x = layers.Conv2D(filters[2], 3, padding="same", activation="relu", name="conv3")(x)
    x = _caffe_pool(x, 3)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense_units, activation="relu", name="fc1")(x)
    x = layers.Dropout(dropout, name="drop1")(x)
    x = layers.Dense(dense_units, activation="relu", name="fc2")(x)
    x = layers.Dropout(dropout, name="drop2")(x)
    return keras.Model(images, add_heads(x, schemes), name=name)
