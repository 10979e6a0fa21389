"""Output heads, the CORAL ordinal layer, and compiling a model from its label schemes.

Every model in ``faceattr_lab.models`` ends in :func:`add_heads`, so one label scheme decides
both the head (softmax, linear, CORAL) and, in :func:`compile_for`, its loss and metrics.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from faceattr_lab import losses
from faceattr_lab.labels import resolve
from faceattr_lab.losses import coral_predict

REGRESSION_ACTIVATIONS = (None, "linear", "relu", "sigmoid")
# an ordinal scheme's head: CORAL (one shared weight vector) or OR-CNN (one per threshold)
ORDINAL_HEADS = ("coral", "independent")


@keras.saving.register_keras_serializable(package="faceattr_lab")
class CoralOutput(layers.Layer):
    """CORAL ordinal output: K-1 binary logits sharing ONE weight vector. Lab 06.

    Cao, Mirjalili & Raschka (2020), "Rank consistent ordinal regression for neural networks
    with application to age estimation", Pattern Recognition Letters 140: 325-331.

    The task "is the rank above k?" for k = 0..K-2 uses the same weight vector ``w`` and its own
    bias ``b_k``: ``logit_k = w . x + b_k``. Sharing ``w`` is what makes the K-1 answers rank
    consistent (with biases ordered, the probabilities decrease with k). The layer holds exactly
    two weights: the kernel ``(features, 1)`` of a bias-free ``Dense(1)`` and the biases
    ``(K-1,)``, initialised decreasing from 1 to 1/(K-1) as in the authors' ``coral-pytorch``.
    It returns the logits ``(B, K-1)``; read them with ``fl.losses.coral_predict`` and
    ``fl.losses.coral_probabilities``.
    """

    def __init__(self, num_classes: int, **kwargs):
        super().__init__(**kwargs)
        if int(num_classes) < 2:
            raise ValueError(f"CoralOutput needs num_classes >= 2, got {num_classes}; an ordinal "
                             "scheme has at least two ranks.")
        self.num_classes = int(num_classes)
        # the inner Dense follows this layer's dtype policy (float32 as an output layer)
        self.linear = layers.Dense(1, use_bias=False, dtype=self.dtype_policy,
                                   name="shared_weights")

    def build(self, input_shape):
        self.linear.build(input_shape)
        steps = self.num_classes - 1
        initial = np.arange(steps, 0, -1, dtype="float32") / steps
        self.biases = self.add_weight(
            name="biases", shape=(steps,),
            initializer=keras.initializers.Constant(initial), trainable=True,
        )

    def call(self, inputs):
        return self.linear(inputs) + self.biases

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.num_classes - 1)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


def _coral_absolute_error(y_true, y_pred):
    rank = ops.cast(coral_predict(y_pred), "float32")
    y_true = ops.reshape(ops.cast(y_true, "float32"), ops.shape(rank))
    return ops.abs(rank - y_true)


@keras.saving.register_keras_serializable(package="faceattr_lab")
class CoralRankMAE(keras.metrics.MeanMetricWrapper):
    """Mean absolute error, in ranks, of ``fl.losses.coral_predict`` against true ranks. Lab 06."""

    def __init__(self, name: str = "mae", dtype=None):
        super().__init__(_coral_absolute_error, name=name, dtype=dtype)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


def _masked_metric_functions():
    return {
        "accuracy": (keras.metrics.sparse_categorical_accuracy, "up"),
        "binary_accuracy": (keras.metrics.binary_accuracy, "up"),
        "mae": (keras.metrics.mean_absolute_error, "down"),
        "coral_mae": (_coral_absolute_error, "down"),
    }


MASKED_METRICS = ("accuracy", "binary_accuracy", "mae", "coral_mae")


@keras.saving.register_keras_serializable(package="faceattr_lab")
class MaskedMetric(keras.metrics.MeanMetricWrapper):
    """A head's metric over the rows that have its label (issue #9). Lab 02.

    ``metric``: ``"accuracy"`` (sparse categorical), ``"binary_accuracy"`` (one sigmoid unit),
    ``"mae"`` (regression) or ``"coral_mae"`` (ranks of ``fl.losses.coral_predict``). ``kind``
    says which labels are missing, as in ``fl.losses.labelled_rows`` (-1 / NaN for
    classification and ordinal, NaN for regression). A missing row gets weight 0; the result is
    the weighted mean ``sum(m * w * v) / sum(m * w)`` over the rows seen, ``w`` the sample
    weights Keras passes (1 without), as Keras' own mean metrics. ``compile_for`` uses one per
    head, named ``name`` (default: ``metric``, or ``"mae"`` for ``"coral_mae"``).
    """

    def __init__(self, metric: str = "accuracy", kind: str = "classification", name=None,
                 dtype=None):
        functions = _masked_metric_functions()
        if metric not in functions:
            raise ValueError(f"metric={metric!r}; use one of {MASKED_METRICS}.")
        if kind not in losses.MASK_KINDS:
            raise ValueError(f"kind must be one of {losses.MASK_KINDS}, got {kind!r}.")
        fn, direction = functions[metric]
        super().__init__(fn, name=name or ("mae" if metric == "coral_mae" else metric),
                         dtype=dtype)
        self.metric, self.kind = metric, kind
        self._direction = direction

    def update_state(self, y_true, y_pred, sample_weight=None):
        labelled, filled = losses.labelled_rows(y_true, self.kind)
        weights = ops.cast(labelled, self.dtype)
        if sample_weight is not None:
            weights = weights * ops.reshape(ops.cast(sample_weight, self.dtype), (-1,))
        return super().update_state(filled, y_pred, sample_weight=weights)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "metric": self.metric,
                "kind": self.kind}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def add_heads(features, schemes, hidden: int = 0, dropout: float = 0.0, name_prefix: str = "",
              regression_activation: str | None = None, binary_sigmoid: bool = False,
              ordinal: str = "coral") -> dict:
    """One output head per label scheme on a feature tensor; returns ``{scheme.output: tensor}``.

    Each head is ``Dropout(dropout) -> Dense(hidden, relu) -> Dropout(dropout) -> output`` when
    ``hidden > 0``, else ``Dropout(dropout) -> output`` (dropout 0 adds no layer). The output
    follows the scheme's kind: softmax ``Dense(num_classes)`` for classification, ``Dense(1)``
    with ``regression_activation`` (None/linear, "relu" or "sigmoid" for targets in [0, 1]) for
    regression, :class:`CoralOutput` logits for ordinal. ``binary_sigmoid=True`` gives a
    two-class scheme one sigmoid unit ``Dense(1, sigmoid)`` instead (study C's gender head);
    :func:`compile_for` then picks binary cross-entropy. ``ordinal="independent"`` gives an
    ordinal scheme Niu et al.'s (2016) OR-CNN output instead of CORAL's: ``Dense(K-1)`` logits,
    each threshold its own weight vector and bias, trained with the same CORAL loss (Lab 06).
    Layers are named after the output
    (``"age"``, ``"age_hidden"`` ...), with ``name_prefix`` in front of the hidden layers.

    Every output layer computes in float32 (``dtype="float32"``), so under the
    ``mixed_float16`` policy probabilities and CORAL logits stay float32, as Keras' mixed
    precision guide requires of a model's last layer. Lab 02.
    """
    schemes = resolve(schemes)
    if regression_activation not in REGRESSION_ACTIVATIONS:
        raise ValueError(f"regression_activation={regression_activation!r}; "
                         f"use one of {REGRESSION_ACTIVATIONS}.")
    if hidden < 0 or not 0.0 <= dropout < 1.0:
        raise ValueError(f"hidden={hidden}, dropout={dropout}; use hidden >= 0 and "
                         "0 <= dropout < 1.")
    if ordinal not in ORDINAL_HEADS:
        raise ValueError(f"ordinal={ordinal!r}; use one of {ORDINAL_HEADS} (CORAL's shared "
                         "weights, or OR-CNN's independent ones).")
    outputs = {}
    for scheme in schemes:
        prefix = f"{name_prefix}{scheme.output}"
        x = features
        if dropout > 0:
            x = layers.Dropout(dropout, name=f"{prefix}_dropout")(x)
        if hidden > 0:
            x = layers.Dense(hidden, activation="relu", name=f"{prefix}_hidden")(x)
            if dropout > 0:
                x = layers.Dropout(dropout, name=f"{prefix}_hidden_dropout")(x)
        if scheme.kind == "classification" and binary_sigmoid and scheme.num_classes == 2:
            head = layers.Dense(1, activation="sigmoid", dtype="float32", name=scheme.output)
        elif scheme.kind == "classification":
            head = layers.Dense(scheme.num_classes, activation="softmax", dtype="float32",
                                name=scheme.output)
        elif scheme.kind == "regression":
            head = layers.Dense(1, activation=regression_activation, dtype="float32",
                                name=scheme.output)
        elif ordinal == "independent":  # OR-CNN: K-1 binary classifiers, own weights each
            head = layers.Dense(scheme.num_classes - 1, dtype="float32", name=scheme.output)
        else:
            head = CoralOutput(scheme.num_classes, dtype="float32", name=scheme.output)
        outputs[scheme.output] = head(x)
    return outputs


def _loss_and_metrics(scheme, units: int | None = None):
    """The head's masked loss and metrics: missing labels (-1 / NaN) count for nothing."""
    kind = scheme.kind
    if kind == "classification" and units == 1 and scheme.num_classes == 2:
        base, metric = keras.losses.BinaryCrossentropy(), "binary_accuracy"
    elif kind == "classification":
        base, metric = keras.losses.SparseCategoricalCrossentropy(), "accuracy"
    elif kind == "regression":
        base, metric = keras.losses.MeanSquaredError(), "mae"
    else:
        base, metric = losses.CoralLoss(), "coral_mae"
    return (losses.MaskedLoss(base, kind),
            [MaskedMetric(metric, kind, name="accuracy" if "accuracy" in metric else "mae")])


def compile_for(model: keras.Model, schemes, optimizer="adam",
                learning_rate: float | None = None, loss_weights: dict | None = None,
                jit_compile=False) -> keras.Model:
    """Compile ``model`` with each head's loss and metrics taken from its scheme. Lab 02.

    classification: sparse categorical cross-entropy, accuracy (a two-class head with one
    sigmoid unit: binary cross-entropy, binary accuracy); regression: MSE, MAE;
    ordinal: CORAL loss (``faceattr_lab.losses.CoralLoss``), MAE in ranks of the CORAL
    prediction. Every loss is wrapped in ``fl.losses.MaskedLoss`` and every metric is a
    :class:`MaskedMetric`, so a head learns and is scored only on the rows that have its label
    (-1 for classification and ordinal, NaN for regression marks a missing one, as
    ``make_dataset(..., missing="mask")`` yields them): a multi-task model learns from the
    union of its tasks' rows. With every label present the losses equal the plain Keras ones
    (sample weights included: the mean over labelled rows of ``weight * loss``).
    ``optimizer`` is a name ("adam", "rmsprop", "sgd", ...) or an optimizer class or instance.
    ``learning_rate=None`` means 1e-3 for a name or class and the instance's own rate for an
    instance; a rate passed explicitly is always used, also for an instance (whose
    ``learning_rate`` is then set to it; an instance built with a ``LearningRateSchedule``
    raises ``ValueError``: change the schedule instead). ``loss_weights`` maps output names to
    weights (study C weighs age 2). The arguments are remembered on the model, so
    :func:`faceattr_lab.models.freeze` / ``unfreeze`` re-compile it the same way. Returns it.
    """
    schemes = resolve(schemes)
    model_outputs = set(model.output) if isinstance(model.output, dict) else set(
        model.output_names)
    missing = [scheme.output for scheme in schemes if scheme.output not in model_outputs]
    if missing:
        raise ValueError(f"the model has no output(s) {missing}; it has {sorted(model_outputs)}. "
                         "Pass the schemes the model was built with.")
    if loss_weights is not None:
        unknown = sorted(set(loss_weights) - {scheme.output for scheme in schemes})
        if unknown:
            raise ValueError(f"loss_weights names {unknown}, which are not heads; use keys from "
                             f"{[scheme.output for scheme in schemes]}.")
    if isinstance(optimizer, str):
        try:
            optimizer_instance = keras.optimizers.get(optimizer)
        except ValueError as error:
            raise ValueError(f"unknown optimizer {optimizer!r}; use e.g. 'adam', 'rmsprop', "
                             "'sgd', or a keras.optimizers.Optimizer.") from error
        optimizer_instance.learning_rate = 1e-3 if learning_rate is None else learning_rate
    elif isinstance(optimizer, type):
        optimizer_instance = optimizer(
            learning_rate=1e-3 if learning_rate is None else learning_rate)
    elif isinstance(optimizer, keras.optimizers.Optimizer):
        optimizer_instance = optimizer
        if learning_rate is not None:  # passed explicitly: honoured, not silently dropped
            try:
                optimizer_instance.learning_rate = learning_rate
            except TypeError as error:  # Keras: a schedule-driven rate cannot be set
                raise ValueError(
                    f"learning_rate={learning_rate!r}, but the optimizer follows a "
                    "LearningRateSchedule; leave learning_rate=None and change the schedule, "
                    "or pass an optimizer with a fixed rate.") from error
    elif isinstance(optimizer, dict):  # a serialized optimizer (how re-compiling passes one)
        optimizer_instance = keras.optimizers.deserialize(optimizer)
        if learning_rate is not None:
            optimizer_instance.learning_rate = learning_rate
    else:
        raise ValueError(f"optimizer={optimizer!r}; pass a name such as 'adam' or a "
                         "keras.optimizers.Optimizer.")
    loss_by_head, metrics = {}, {}
    for scheme in schemes:
        loss_by_head[scheme.output], metrics[scheme.output] = _loss_and_metrics(
            scheme, _output_units(model, scheme.output))
    model.compile(
        optimizer=optimizer_instance, loss=loss_by_head, metrics=metrics,
        loss_weights=None if loss_weights is None else {
            scheme.output: float(loss_weights.get(scheme.output, 1.0)) for scheme in schemes},
        jit_compile=jit_compile,
    )
    # remembered for freeze()/unfreeze(), which must re-compile after changing `trainable`;
    # an optimizer instance is kept as its config (a fresh one is built on re-compiling)
    model._faceattr_compile_args = dict(
        schemes=tuple(schemes),
        optimizer=keras.optimizers.serialize(optimizer_instance)
        if isinstance(optimizer, (keras.optimizers.Optimizer, dict)) else optimizer,
        learning_rate=None if isinstance(optimizer, (keras.optimizers.Optimizer, dict))
        else learning_rate,
        loss_weights=None if loss_weights is None else dict(loss_weights),
        jit_compile=jit_compile,
    )
    return model


def _output_units(model: keras.Model, output: str) -> int | None:
    """Size of the last axis of one model output (1 for a sigmoid gender head), or None."""
    tensor = model.output[output] if isinstance(model.output, dict) else dict(
        zip(model.output_names, model.outputs)).get(output)
    shape = getattr(tensor, "shape", None)
    return None if not shape else shape[-1]


def count_params(model: keras.Model) -> dict:
    """``{"trainable", "non_trainable", "total"}`` parameter counts of a model. Lab 03."""
    trainable = int(sum(np.prod(weight.shape) for weight in model.trainable_weights))
    non_trainable = int(sum(np.prod(weight.shape) for weight in model.non_trainable_weights))
    return {"trainable": trainable, "non_trainable": non_trainable,
            "total": trainable + non_trainable}
