"""ImageNet backbones from ``keras.applications`` (and the kit's SmallVGG), transfer models,
and freezing / unfreezing.

Each backbone model carries its own ``preprocess_input`` as a :class:`Preprocess` layer, so it
takes raw [0, 255] images like every kit model and survives ``.keras`` save and load.

Changing ``trainable`` takes effect only after ``compile()``: the SupCon study's fine-tune stage
set ``trainable = True`` without re-compiling, so its encoder most likely stayed frozen.
:func:`freeze` and :func:`unfreeze` therefore always re-compile the model they change.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import keras
from keras import layers, ops

from faceattr_lab.labels import resolve

from .heads import add_heads, compile_for
from .small_vgg import CITATION as _SMALL_VGG
from .small_vgg import small_vgg

# ImageNet statistics used by keras.applications' preprocess_input (imagenet_utils)
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
_TORCH_RGB_MEAN = (0.485, 0.456, 0.406)
_TORCH_RGB_STD = (0.229, 0.224, 0.225)
PREPROCESS_MODES = ("caffe", "tf", "torch", "none")


@keras.saving.register_keras_serializable(package="faceattr_lab")
class Preprocess(layers.Layer):
    """``keras.applications`` input preprocessing as a saveable layer. Lab 03.

    ``mode`` follows ``keras.applications.imagenet_utils``: "caffe" (RGB to BGR, minus the
    ImageNet BGR mean; VGG, ResNet50), "tf" (scale to [-1, 1]; ResNetV2, Xception, Inception,
    MobileNetV2), "torch" (scale to [0, 1], minus the mean, over the std; DenseNet), "none"
    (EfficientNet normalises inside itself).
    """

    def __init__(self, mode: str, **kwargs):
        super().__init__(**kwargs)
        if mode not in PREPROCESS_MODES:
            raise ValueError(f"mode={mode!r}; use one of {PREPROCESS_MODES}.")
        self.mode = mode

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.mode == "caffe":
            return ops.flip(x, axis=-1) - ops.convert_to_tensor(_CAFFE_BGR_MEAN, x.dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(_TORCH_RGB_MEAN, x.dtype)
            std = ops.convert_to_tensor(_TORCH_RGB_STD, x.dtype)
            return (x / 255.0 - mean) / std
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@dataclass(frozen=True)
class BackboneSpec:
    """A ``keras.applications`` constructor with its preprocessing, minimum size and paper."""

    name: str
    constructor: Callable
    preprocess: str
    min_size: int
    citation: str


def _app(module: str, constructor: str) -> Callable:
    """A constructor looked up when called, so importing this module builds nothing."""

    def build(**kwargs):
        return getattr(getattr(keras.applications, module), constructor)(**kwargs)

    build.__name__ = f"keras.applications.{module}.{constructor}"
    return build


_VGG = ("Simonyan & Zisserman (2015), Very Deep Convolutional Networks for Large-Scale Image "
        "Recognition, ICLR")
_RESNET = "He, Zhang, Ren & Sun (2016), Deep Residual Learning for Image Recognition, CVPR"
_RESNET_V2 = "He, Zhang, Ren & Sun (2016), Identity Mappings in Deep Residual Networks, ECCV"
_DENSENET = ("Huang, Liu, van der Maaten & Weinberger (2017), Densely Connected Convolutional "
             "Networks, CVPR")

BACKBONES: dict[str, BackboneSpec] = {spec.name: spec for spec in (
    BackboneSpec("VGG16", _app("vgg16", "VGG16"), "caffe", 32, _VGG),
    BackboneSpec("VGG19", _app("vgg19", "VGG19"), "caffe", 32, _VGG),
    BackboneSpec("ResNet50", _app("resnet50", "ResNet50"), "caffe", 32, _RESNET),
    BackboneSpec("ResNet50V2", _app("resnet_v2", "ResNet50V2"), "tf", 32, _RESNET_V2),
    BackboneSpec("ResNet152V2", _app("resnet_v2", "ResNet152V2"), "tf", 32, _RESNET_V2),
    BackboneSpec("Xception", _app("xception", "Xception"), "tf", 71,
                 "Chollet (2017), Xception: Deep Learning with Depthwise Separable "
                 "Convolutions, CVPR"),
    BackboneSpec("InceptionResNetV2", _app("inception_resnet_v2", "InceptionResNetV2"), "tf", 75,
                 "Szegedy, Ioffe, Vanhoucke & Alemi (2017), Inception-v4, Inception-ResNet and "
                 "the Impact of Residual Connections on Learning, AAAI"),
    BackboneSpec("MobileNetV2", _app("mobilenet_v2", "MobileNetV2"), "tf", 32,
                 "Sandler, Howard, Zhu, Zhmoginov & Chen (2018), MobileNetV2: Inverted "
                 "Residuals and Linear Bottlenecks, CVPR"),
    BackboneSpec("DenseNet121", _app("densenet", "DenseNet121"), "torch", 32, _DENSENET),
    BackboneSpec("DenseNet201", _app("densenet", "DenseNet201"), "torch", 32, _DENSENET),
    BackboneSpec("EfficientNetB0", _app("efficientnet", "EfficientNetB0"), "none", 32,
                 "Tan & Le (2019), EfficientNet: Rethinking Model Scaling for Convolutional "
                 "Neural Networks, ICML"),
    # the kit's own: no ImageNet weights; pretrained on synthetic faces by fl.pretraining
    BackboneSpec("SmallVGG", small_vgg, "tf", 16, _SMALL_VGG),
)}


def _spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}.")
    return BACKBONES[name]


def backbone(name: str, input_shape=(224, 224, 3), weights="imagenet", pooling: str | None = "avg",
             trainable: bool = False) -> keras.Model:
    """A backbone (``keras.applications`` or the kit's SmallVGG) taking [0, 255] images. Lab 03.

    The model is ``Preprocess(mode) -> <application, include_top=False>`` and is named after
    the backbone in lower case (``"resnet50v2"``); the application inside it is a nested model
    that :func:`unfreeze` opens layer by layer. ``pooling`` "avg"/"max" gives a feature vector,
    None the spatial feature map. ``weights``: "imagenet" (keras downloads them once into
    ``~/.keras/models``), None (random), or a local file: a ``.weights.h5`` saved from a model
    built by this function (``model.save_weights``) loads into the whole model; any other
    ``.h5`` (e.g. a downloaded ``*_notop.h5`` ImageNet file) goes to the application itself.
    ``trainable=False`` freezes it (BatchNorm then runs in inference mode). Citations are in
    ``BACKBONES[name].citation``.
    """
    spec = _spec(name)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"input_shape={input_shape}; pass (height, width, 3).")
    if min(input_shape[:2]) < spec.min_size:
        raise ValueError(f"{name} needs images of at least {spec.min_size}x{spec.min_size} px, "
                         f"got {input_shape[:2]}; use image_size >= {spec.min_size}.")
    if pooling not in ("avg", "max", None):
        raise ValueError(f"pooling={pooling!r}; use 'avg', 'max' or None.")
    model_file = None
    if weights not in ("imagenet", None):
        path = os.fspath(weights)
        if not os.path.isfile(path):
            raise ValueError(f"weights={path!r} is not a file; pass 'imagenet', None or the "
                             "path of a weights file saved earlier.")
        if path.endswith(".weights.h5"):
            model_file, weights = path, None
        else:
            weights = path
    application = spec.constructor(include_top=False, weights=weights, input_shape=input_shape,
                                   pooling=pooling)
    application.name = f"{name.lower()}_application"
    images = keras.Input(input_shape, name="image")
    features = application(Preprocess(spec.preprocess, name="preprocess")(images))
    model = keras.Model(images, features, name=name.lower())
    if model_file is not None:
        model.load_weights(model_file)
    model.trainable = trainable
    return model


def transfer_model(name: str, input_shape, schemes, weights="imagenet", dropout: float = 0.0,
                   hidden: int = 0, pooling: str = "avg", trainable: bool = False) -> keras.Model:
    """End-to-end transfer model: a backbone with one parallel head per scheme. Lab 03.

    Study B (three parallel softmax heads for gender, age group and race on an ImageNet
    backbone) and the multi-task models of study E. The backbone is frozen by default; train
    the heads, then call :func:`unfreeze` to fine-tune. See :func:`backbone` for ``weights``.
    """
    schemes = resolve(schemes)
    base = backbone(name, input_shape, weights=weights, pooling=pooling, trainable=trainable)
    images = keras.Input(tuple(input_shape), name="image")
    features = base(images)
    outputs = add_heads(features, schemes, hidden=hidden, dropout=dropout)
    return keras.Model(images, outputs, name=f"{name.lower()}_transfer")


def _find_layer(model: keras.Model, layer):
    """The nested model to (un)freeze: a layer, a layer name, or the only nested model."""
    if isinstance(layer, layers.Layer):
        return layer
    nested = [sub for sub in model.layers if isinstance(sub, keras.Model)]
    if layer is None:
        if len(nested) != 1:
            raise ValueError(f"the model has {len(nested)} nested models "
                             f"({[sub.name for sub in nested]}); name the backbone to change.")
        return nested[0]
    names = [sub.name for sub in model.layers]
    if layer in names:
        return model.get_layer(layer)
    if isinstance(layer, str) and layer.lower() in names:  # a BACKBONES key, e.g. "ResNet50V2"
        return model.get_layer(layer.lower())
    raise ValueError(f"no layer named {layer!r}; the model's layers are {names}.")


def _recompile(model: keras.Model, learning_rate: float | None) -> None:
    """Compile again after a ``trainable`` change, with the model's own compile settings."""
    remembered = getattr(model, "_faceattr_compile_args", None)
    if remembered is not None:
        arguments = dict(remembered)
        if learning_rate is not None:
            arguments["learning_rate"] = learning_rate
        compile_for(model, **arguments)
    elif model.compiled:
        config = model.get_compile_config()
        model.compile_from_config(config)
        if learning_rate is not None:
            model.optimizer.learning_rate = learning_rate
    # a model never compiled has nothing to keep: its first compile() sees the new setting


def freeze(model: keras.Model, backbone_name_or_layer=None,
           learning_rate: float | None = None) -> keras.Model:
    """Freeze a nested backbone (by layer, name or the only one) and re-compile. Lab 03.

    The re-compile keeps the model's losses, metrics, loss weights and optimizer type
    (``learning_rate`` replaces the learning rate if given); the optimizer starts fresh.
    Returns the model.
    """
    target = _find_layer(model, backbone_name_or_layer)
    target.trainable = False
    _recompile(model, learning_rate)
    return model


def unfreeze(model: keras.Model, n_layers: int | str | None = None, from_layer: str | None = None,
             keep_batchnorm_frozen: bool = True, learning_rate: float | None = None,
             backbone_name_or_layer=None) -> keras.Model:
    """Make (part of) a nested backbone trainable and re-compile, for fine-tuning. Lab 03.

    ``n_layers=None`` or "all" unfreezes every layer; an int unfreezes the last ``n_layers``;
    ``from_layer`` (a layer name) unfreezes that layer and all after it. Layers before stay
    frozen. With ``keep_batchnorm_frozen`` BatchNormalization layers stay frozen (and in
    inference mode), as the Keras fine-tuning guide advises for small data sets. Pass a small
    ``learning_rate`` (e.g. 1e-5) for fine-tuning. Re-compiling is what makes the change count;
    the SupCon study skipped it and its encoder stayed frozen. Returns the model.
    """
    target = _find_layer(model, backbone_name_or_layer)
    set_trainable_from(target, n_layers=n_layers, from_layer=from_layer,
                       keep_batchnorm_frozen=keep_batchnorm_frozen)
    _recompile(model, learning_rate)
    return model


def _flat_layers(model: keras.Model) -> list:
    """The layers of a model in order, opening nested models (the application inside)."""
    flat = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            flat.extend(_flat_layers(layer))
        elif not isinstance(layer, layers.InputLayer):
            flat.append(layer)
    return flat


def set_trainable_from(model: keras.Model, n_layers: int | str | None = None,
                       from_layer: str | None = None, keep_batchnorm_frozen: bool = True) -> None:
    """Freeze a model's layers up to a point and make the rest trainable (no compile). Lab 04.

    The point is the last ``n_layers`` layers (negative: all but the first ``-n_layers``;
    None or "all": every layer) or ``from_layer`` by name. Nested models are opened.
    """
    if n_layers is not None and from_layer is not None:
        raise ValueError("pass n_layers or from_layer, not both.")
    flat = _flat_layers(model)
    if from_layer is not None:
        names = [layer.name for layer in flat]
        if from_layer not in names:
            raise ValueError(f"no layer {from_layer!r} in {model.name}; its last layers are "
                             f"{names[-10:]}.")
        start = names.index(from_layer)
    elif n_layers is None or n_layers == "all":
        start = 0
    elif isinstance(n_layers, int):
        start = len(flat) - n_layers if n_layers >= 0 else -n_layers
        start = min(max(start, 0), len(flat))
    else:
        raise ValueError(f"n_layers={n_layers!r}; pass None, 'all' or an int.")
    model.trainable = True  # also sets every nested layer; then freeze those before `start`
    for index, layer in enumerate(flat):
        frozen_batchnorm = keep_batchnorm_frozen and isinstance(layer, layers.BatchNormalization)
        layer.trainable = index >= start and not frozen_batchnorm
