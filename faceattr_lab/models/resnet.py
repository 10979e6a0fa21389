"""ResNet-34 as a Functional Keras model: CORAL's backbone. Lab 06.

He, Zhang, Ren & Sun (2016), "Deep residual learning for image recognition", CVPR: a 7x7
stride-2 convolution and a 3x3 stride-2 max-pool, then four stages of *basic blocks* (two 3x3
convolutions with BatchNorm and an identity shortcut; a 1x1 stride-2 projection where the shape
changes), [3, 4, 6, 3] blocks of 64, 128, 256 and 512 filters, global average pooling.
``keras.applications`` has ResNet-50 and deeper (bottleneck blocks) but no ResNet-34, which
Cao, Mirjalili & Raschka (2020) trained from scratch for CORAL (their ``model-code``, after
torchvision's). Convolutions have no bias (BatchNorm follows), as in torchvision, so the
trainable parameters are torchvision's ``resnet34`` minus its 1000-class ``fc``: 21,284,672.
"""

from __future__ import annotations

import keras
from keras import layers

from faceattr_lab.models.heads import ORDINAL_HEADS, add_heads

RESNET34_BLOCKS = (3, 4, 6, 3)
_FILTERS = (64, 128, 256, 512)
_BN = {"momentum": 0.9, "epsilon": 1e-5}  # torch's BatchNorm2d: momentum 0.1, eps 1e-5


def _conv_bn(x, filters: int, kernel: int, stride: int, name: str, relu: bool = True):
    pad = kernel // 2
    if pad:
        x = layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)  # torch's symmetric padding
    x = layers.Conv2D(filters, kernel, strides=stride, use_bias=False,
                      kernel_initializer="he_normal", name=f"{name}_conv")(x)
    x = layers.BatchNormalization(**_BN, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _basic_block(x, filters: int, stride: int, name: str):
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, 1, stride, f"{name}_down", relu=False)
    y = _conv_bn(x, filters, 3, stride, f"{name}_1")
    y = _conv_bn(y, filters, 3, 1, f"{name}_2", relu=False)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.ReLU(name=f"{name}_out")(y)


def resnet34(input_shape=(120, 120, 3), schemes=None, *, blocks=RESNET34_BLOCKS,
             ordinal: str = "coral", name: str = "resnet34") -> keras.Model:
    """ResNet-34 (He et al. 2016, CVPR), from scratch, on [0, 255] images. Lab 06.

    Without ``schemes``: image -> 512 pooled features. With ``schemes``: one head per scheme
    on those features (``fl.models.add_heads``; ``ordinal="coral"`` CORAL's shared-weight
    layer, ``"independent"`` OR-CNN's K-1 classifiers). Images are divided by 255 inside, as
    CORAL's ``ToTensor`` did. ``blocks`` sets the basic blocks per stage (ResNet-18:
    ``(2, 2, 2, 2)``).
    """
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] != 3 or min(input_shape[:2]) < 32:
        raise ValueError(f"input_shape={input_shape}; pass (height, width, 3) with sides of at "
                         "least 32 px (CORAL: 120 x 120 crops of 128 px images).")
    blocks = tuple(blocks)
    if len(blocks) != 4 or any(not isinstance(b, int) or b < 1 for b in blocks):
        raise ValueError(f"blocks={blocks}; pass four positive ints, e.g. (3, 4, 6, 3).")
    if ordinal not in ORDINAL_HEADS:
        raise ValueError(f"ordinal={ordinal!r}; use one of {ORDINAL_HEADS}.")
    images = keras.Input(input_shape, name="image")
    x = layers.Rescaling(1 / 255, name="to_unit")(images)
    x = _conv_bn(x, 64, 7, 2, "stem")
    x = layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)
    for stage, (filters, count) in enumerate(zip(_FILTERS, blocks), start=1):
        for block in range(count):
            stride = 2 if stage > 1 and block == 0 else 1
            x = _basic_block(x, filters, stride, f"stage{stage}_block{block + 1}")
    features = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if schemes is None:
        return keras.Model(images, features, name=name)
    return keras.Model(images, add_heads(features, schemes, ordinal=ordinal), name=name)
