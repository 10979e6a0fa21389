"""Multi-task models whose gender embedding conditions the age and race heads (study E)."""

from __future__ import annotations

import keras
from keras import layers

from .backbones import _flat_layers, backbone, set_trainable_from
from faceattr_lab.labels import resolve

from .heads import add_heads

MODES = ("plain", "gating", "attention")


def _weighted_layers(base: keras.Model) -> list:
    """The backbone's layers that ``frozen_until`` counts: those with weights, BatchNorm aside."""
    return [layer for layer in _flat_layers(base)
            if layer.weights and not isinstance(layer, layers.BatchNormalization)]


def _freeze_until(base: keras.Model, frozen_until) -> None:
    """Freeze the backbone's layers before ``frozen_until`` (see gender_conditioned)."""
    if frozen_until == "all":
        base.trainable = False
    elif frozen_until is None or frozen_until == 0:
        set_trainable_from(base, n_layers="all")
    elif isinstance(frozen_until, str):
        set_trainable_from(base, from_layer=frozen_until)
    elif isinstance(frozen_until, int) and not isinstance(frozen_until, bool):
        # Count layers WITH weights (BatchNorm aside, it stays frozen): rescaling, ReLU,
        # padding and pooling layers hold nothing to train, so counting them would make
        # frozen_until=-3 train a single conv layer. Training starts at the first counted
        # layer that is not frozen; layers after it without weights follow.
        weighted = _weighted_layers(base)
        first_trained = len(weighted) + frozen_until if frozen_until < 0 else frozen_until
        if first_trained >= len(weighted):
            base.trainable = False
        else:
            set_trainable_from(base, from_layer=weighted[max(first_trained, 0)].name)
    else:
        raise ValueError(f"frozen_until={frozen_until!r}; pass a layer index, a layer name, "
                         "'all' or None.")


def gender_conditioned(backbone_name: str, input_shape, schemes, mode: str = "gating",
                       embedding_dim: int = 32, frozen_until=-4, weights="imagenet",
                       hidden: int = 0, dropout: float = 0.0, num_heads: int = 4,
                       name: str | None = None) -> keras.Model:
    """A partially frozen backbone whose gender embedding steers the other heads. Lab 04.

    Study E: single-task vs multi-task VGG16/VGG19/ResNet50/DenseNet121 with transfer learning
    on UTKFace, whose partially frozen multi-task models pass a gender embedding to the age and
    race heads through gating or attention (a course project; no paper or repository is known
    to cite).

    The backbone's feature map feeds a gender branch, ``GlobalAveragePooling -> Dense(
    embedding_dim, relu)`` (the *gender embedding*) -> gender softmax. The other heads (age,
    race) see the features conditioned on that embedding:

    - ``mode="gating"``: a sigmoid gate ``Dense(channels, sigmoid)(embedding)`` multiplies the
      average-pooled features channel by channel;
    - ``mode="attention"``: ``MultiHeadAttention`` with the embedding as the query over the
      spatial positions of the feature map (keys and values), giving a gender-dependent pooling;
    - ``mode="plain"``: the control, nothing conditioned: the other heads read the pooled
      features directly (the same backbone, freezing and gender branch).

    ``frozen_until`` freezes the backbone up to a point, counting only layers WITH weights
    (convolutions, dense layers; not rescaling, activation, padding or pooling layers, and not
    BatchNorm, which stays frozen anyway): an int ``i >= 0`` freezes its first ``i`` such
    layers, ``-k`` all but the last ``k`` (default: the last 4 weighted layers train), a layer
    name freezes everything before that layer, "all" the whole backbone, None nothing.
    BatchNorm layers stay frozen. ``schemes`` must include one whose output is "gender".
    The outputs are the float32 heads of ``add_heads`` under any dtype policy.
    """
    gender, others = _check(schemes, mode)
    base = backbone(backbone_name, input_shape, weights=weights, pooling=None, trainable=True)
    _freeze_until(base, frozen_until)
    images = keras.Input(tuple(input_shape), name="image")
    outputs = _conditioned_outputs(base(images), gender, others, mode, embedding_dim, hidden,
                                   dropout, num_heads)
    return keras.Model(images, outputs,
                       name=name or f"{backbone_name.lower()}_gender_{mode}")


def conditioned_heads(feature_shape, schemes, mode: str = "gating", embedding_dim: int = 32,
                      hidden: int = 0, dropout: float = 0.0, num_heads: int = 4,
                      name: str | None = None) -> keras.Model:
    """:func:`gender_conditioned` without its backbone: feature map in, heads out. Lab 04.

    The same layers (gender embedding, gate or attention, heads) on an input of shape
    ``feature_shape`` = ``(height, width, channels)``, a backbone's feature map
    (``fl.models.backbone(..., pooling=None)``). With the whole backbone frozen, run it once
    over the images (``fl.evaluate.features``) and train these heads on the stored maps: the
    same model and gradients as ``gender_conditioned(..., frozen_until="all")``, at the cost
    of the heads alone ("fast feature extraction" in the Keras transfer-learning guide).
    """
    gender, others = _check(schemes, mode)
    feature_shape = tuple(feature_shape)
    if len(feature_shape) != 3:
        raise ValueError(f"feature_shape={feature_shape}; pass a feature map's (height, width, "
                         "channels), from a backbone built with pooling=None.")
    feature_map = keras.Input(feature_shape, name="feature_map")
    outputs = _conditioned_outputs(feature_map, gender, others, mode, embedding_dim, hidden,
                                   dropout, num_heads)
    return keras.Model(feature_map, outputs, name=name or f"gender_{mode}_heads")


def _check(schemes, mode: str):
    """The gender scheme and the others, after checking ``mode`` and ``schemes``."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}; use one of {MODES} ('plain' conditions nothing: "
                         "the control).")
    schemes = resolve(schemes)
    gender = [scheme for scheme in schemes if scheme.output == "gender"]
    others = [scheme for scheme in schemes if scheme.output != "gender"]
    if not gender or not others:
        raise ValueError("gender_conditioned needs a 'gender' scheme and at least one other "
                         f"(age, race); got outputs {[scheme.output for scheme in schemes]}.")
    return gender, others


def _conditioned_outputs(feature_map, gender, others, mode, embedding_dim, hidden, dropout,
                         num_heads) -> dict:
    """The gender branch and the conditioned heads on a feature-map tensor."""
    pooled = layers.GlobalAveragePooling2D(name="pooled_features")(feature_map)
    embedding = layers.Dense(embedding_dim, activation="relu", name="gender_embedding")(pooled)
    outputs = add_heads(embedding, gender)

    channels = feature_map.shape[-1]
    if mode == "plain":
        conditioned = pooled
    elif mode == "gating":
        gate = layers.Dense(channels, activation="sigmoid", name="gender_gate")(embedding)
        conditioned = layers.Multiply(name="gated_features")([pooled, gate])
    else:
        positions = layers.Reshape((-1, channels), name="spatial_positions")(feature_map)
        query = layers.Reshape((1, embedding_dim), name="gender_query")(embedding)
        attended = layers.MultiHeadAttention(
            num_heads=num_heads, key_dim=max(embedding_dim // num_heads, 8),
            output_shape=channels, name="gender_attention",
        )(query, positions)
        conditioned = layers.Flatten(name="attended_features")(attended)
    outputs.update(add_heads(conditioned, others, hidden=hidden, dropout=dropout))
    return outputs
