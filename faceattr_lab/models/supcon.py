"""The three models of supervised contrastive learning (study A): encoder, projection, classifier.

Khosla et al. (2020), "Supervised Contrastive Learning", NeurIPS, as the study applies it: one
encoder, one projection head per task trained with the SupCon loss, then classifier heads on
the frozen encoder. ``faceattr_lab.train`` runs the phases; ``faceattr_lab.losses`` has the loss.
"""

from __future__ import annotations

import keras
from keras import layers

from .backbones import BACKBONES, backbone
from .cnn import cnn_encoder
from faceattr_lab.labels import resolve

from .heads import add_heads


def supcon_encoder(backbone_name_or_cnn="ResNet50V2", input_shape=(112, 112, 3), weights=None,
                   pooling: str = "avg", name: str = "encoder", **cnn_options) -> keras.Model:
    """The SupCon encoder, image -> embedding vector. Lab 05.

    ``backbone_name_or_cnn``: a ``BACKBONES`` name (the study trains "ResNet50V2" from
    scratch, ``weights=None``), "cnn" for the kit's small custom CNN (``cnn_encoder``; pass its
    options such as ``conv_filters``), or a ``keras.Model`` mapping images to a vector, used
    as it is. Khosla et al. (2020), "Supervised Contrastive Learning", NeurIPS.
    """
    if isinstance(backbone_name_or_cnn, keras.Model):
        encoder = backbone_name_or_cnn
        if len(encoder.output.shape) != 2:
            raise ValueError(f"the encoder must output a vector (B, D); it outputs "
                             f"{encoder.output.shape}. Add a pooling layer.")
        return encoder
    if backbone_name_or_cnn == "cnn":
        return cnn_encoder(input_shape, name=name, **cnn_options)
    if backbone_name_or_cnn not in BACKBONES:
        raise ValueError(f"unknown encoder {backbone_name_or_cnn!r}; use 'cnn', a keras.Model or "
                         f"one of {sorted(BACKBONES)}.")
    if cnn_options:
        raise ValueError(f"{sorted(cnn_options)} only apply to the 'cnn' encoder.")
    encoder = backbone(backbone_name_or_cnn, input_shape, weights=weights, pooling=pooling,
                       trainable=True)
    encoder.name = name
    return encoder


def _images_like(encoder: keras.Model):
    return keras.Input(tuple(encoder.input.shape[1:]), name="image")


PROJECTION_HEADS = ("keras_io", "supcontrast")


def projection_model(encoder: keras.Model, schemes, dim: int = 128, head: str = "keras_io",
                     name: str = "supcon_projection") -> keras.Model:
    """Encoder plus one projection head per task, for the SupCon phase. Lab 05.

    ``head`` picks the projection head, named for where it comes from:

    - ``"keras_io"`` (default): ``Dense(dim, relu)``, as in the keras.io example "Supervised
      Contrastive Learning" (Khalid Salama), which study A's repository
      (ltkhang/supcon-gender-age-race-classification) adapted: **study A used this head**.
      It ends in a ReLU, so every projection is >= 0 (all pairs have cosine >= 0).
    - ``"supcontrast"``: the authors' head (HobbitLong/SupContrast, ``SupConResNet``,
      ``head="mlp"``): ``Dense(d, relu) -> Dense(dim)`` with ``d`` the encoder's output size,
      then L2-normalised (``UnitNormalization``). It ends linear, so projections can be
      negative and spread over the whole unit sphere.

    Returns image -> ``{scheme.output: projection (B, dim)}``; train it with
    ``faceattr_lab.losses`` SupCon losses (the study weighs each task 0.1; the losses
    normalise either way). The layer named after the output is the head's last layer and
    computes in float32, so the projections stay float32 under ``mixed_float16``. The encoder
    is shared, not copied: :func:`classifier_model` on the same encoder reuses what it learned.
    Khosla et al. (2020), "Supervised Contrastive Learning", NeurIPS.
    """
    if head not in PROJECTION_HEADS:
        raise ValueError(f"head={head!r}; use 'keras_io' (Dense(dim, relu), study A's) or "
                         "'supcontrast' (Dense -> ReLU -> Dense -> L2 norm, Khosla et al.'s).")
    schemes = resolve(schemes)
    images = _images_like(encoder)
    embedding = encoder(images)
    outputs = {}
    for scheme in schemes:
        if head == "keras_io":
            outputs[scheme.output] = layers.Dense(dim, activation="relu", dtype="float32",
                                                  name=scheme.output)(embedding)
        else:
            hidden = layers.Dense(embedding.shape[-1], activation="relu",
                                  name=f"{scheme.output}_projection_hidden")(embedding)
            linear = layers.Dense(dim, dtype="float32",
                                  name=f"{scheme.output}_projection_linear")(hidden)
            outputs[scheme.output] = layers.UnitNormalization(
                axis=-1, dtype="float32", name=scheme.output)(linear)
    return keras.Model(images, outputs, name=name)


def classifier_model(encoder: keras.Model, schemes, hidden: int = 512, dropout: float = 0.5,
                     trainable_encoder: bool = False,
                     name: str = "supcon_classifier") -> keras.Model:
    """Classifier heads on the (frozen) SupCon encoder, for the second phase. Lab 05.

    Each head is ``Dropout(dropout) -> Dense(hidden, relu) -> Dropout(dropout) -> softmax``,
    as in the study (and the keras.io SupCon example). ``trainable_encoder`` sets the shared
    encoder's ``trainable``; compile (``compile_for``) after any later change, or use
    ``unfreeze``, which re-compiles. With ``trainable_encoder=True`` and a fresh encoder this
    is the study's cross-entropy baseline. Khosla et al. (2020), NeurIPS.
    """
    schemes = resolve(schemes)
    encoder.trainable = trainable_encoder
    images = _images_like(encoder)
    embedding = encoder(images)
    return keras.Model(images, add_heads(embedding, schemes, hidden=hidden, dropout=dropout),
                       name=name)
