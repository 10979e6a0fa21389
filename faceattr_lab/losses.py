"""The kit's two special losses: supervised contrastive (SupCon) and CORAL ordinal regression.

Everything here is written with ``keras.ops`` only, so it runs on any Keras backend, and computes
in float32 even under a mixed-precision policy. Neither loss can return NaN: divisions are
guarded and log-softmaxes subtract the row maximum first.

- :func:`supcon_loss` / :class:`SupConLoss` / :func:`supcon_losses`: Khosla et al. (2020),
  with the keras.io example's "npairs" variant that the SupCon face-attribute study used. Lab 05.
- :func:`coral_loss` / :class:`CoralLoss` / :func:`coral_levels` / :func:`coral_probabilities`
  / :func:`coral_predict`: Cao, Mirjalili & Raschka (2020). Lab 06.
- :func:`masked` / :class:`MaskedLoss` / :func:`labelled_rows`: a head's loss over the rows that
  have its label (-1 or NaN marks a missing one), so a multi-task model learns from the union
  of its tasks' rows (issue #9). Lab 02.
"""

from __future__ import annotations

import keras
from keras import ops

SUPCON_VARIANTS = ("supcon", "npairs")

# Stand-in for minus infinity when masking logits before a row maximum: finite, so that
# `0 * masked` never turns into NaN, and far below any real logit (|logit| <= 1 / temperature).
_MASKED_LOGIT = -1e9
_TINY = 1e-12


# --------------------------------------------------------------------------------------------
# Supervised contrastive learning
# --------------------------------------------------------------------------------------------
def _anchor_views(labels, features):
    """Normalised anchors (V*B, D), in view-major order, and their labels (V*B, 1)."""
    features = ops.cast(ops.convert_to_tensor(features), "float32")
    if len(features.shape) == 2:
        features = ops.expand_dims(features, 1)
    if len(features.shape) != 3:
        raise ValueError(
            f"features must be (batch, dim) or (batch, views, dim), got shape {features.shape}; "
            "flatten the projection head's output to a vector per view first."
        )
    views = features.shape[1]
    features = ops.normalize(features, axis=-1, order=2)
    # View-major stacking, as torch.cat(torch.unbind(features, dim=1), dim=0) in SupContrast:
    # anchor v * B + i is view v of sample i.
    anchors = ops.reshape(ops.transpose(features, (1, 0, 2)), (-1, features.shape[-1]))
    # Labels MUST be a column before comparing with their transpose: a 1-D label vector
    # compared elementwise with itself would give a wrong (diagonal-only) mask.
    labels = ops.reshape(ops.convert_to_tensor(labels), (-1, 1))
    if labels.shape[0] is not None and features.shape[0] is not None \
            and labels.shape[0] != features.shape[0]:
        raise ValueError(
            f"labels hold {labels.shape[0]} values but features hold {features.shape[0]} "
            "samples; pass one label per sample (not per view)."
        )
    labels = ops.tile(labels, (views, 1))
    return anchors, labels, views


def supcon_per_sample(labels, features, temperature=0.1, base_temperature=0.07,
                      variant="supcon"):
    """Per-sample SupCon loss, shape (B,): each sample's anchor losses averaged over views. Lab 05.

    See :func:`supcon_loss` for the arguments; the mean of this vector is that loss.
    """
    if variant not in SUPCON_VARIANTS:
        raise ValueError(f"variant must be one of {SUPCON_VARIANTS}, got {variant!r}.")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}; the studies use 0.05-0.1.")
    anchors, labels, views = _anchor_views(labels, features)
    same_label = ops.cast(ops.equal(labels, ops.transpose(labels)), "float32")
    logits = ops.matmul(anchors, ops.transpose(anchors)) / temperature

    if variant == "npairs":
        # tfa.losses.npairs_loss(labels, f f^T / tau) as in the keras.io SupCon example: each row
        # is a softmax over the whole batch, the anchor itself included, and the target spreads
        # evenly over every sample with the anchor's label (the anchor included).
        targets = same_label / ops.sum(same_label, axis=1, keepdims=True)
        log_prob = ops.log_softmax(logits, axis=1)
        per_anchor = -ops.sum(targets * log_prob, axis=1)
    else:
        # Khosla et al. (2020), eq. 2 (L_out), as in HobbitLong/SupContrast losses.py.
        not_self = 1.0 - ops.eye(ops.shape(logits)[0], dtype="float32")
        positives = same_label * not_self
        # Stable log-softmax over the other anchors: subtract each row's maximum over j != i.
        others = ops.where(not_self > 0, logits, _MASKED_LOGIT)
        row_max = ops.stop_gradient(ops.max(others, axis=1, keepdims=True))
        shifted = logits - row_max
        denominator = ops.sum(ops.exp(others - row_max) * not_self, axis=1, keepdims=True)
        log_prob = shifted - ops.log(ops.maximum(denominator, _TINY))
        n_positives = ops.sum(positives, axis=1)
        # An anchor without a positive contributes 0 (and still counts in the mean).
        mean_log_prob_pos = ops.sum(positives * log_prob, axis=1) / ops.maximum(n_positives, 1.0)
        per_anchor = -(temperature / base_temperature) * mean_log_prob_pos

    # (V*B,) in view-major order -> (B,): average each sample's views.
    return ops.mean(ops.reshape(per_anchor, (views, -1)), axis=0)


def supcon_loss(labels, features, temperature=0.1, base_temperature=0.07, variant="supcon"):
    """Supervised contrastive loss (Khosla et al., 2020, "Supervised Contrastive Learning"). Lab 05.

    ``features``: (B, D) or (B, V, D) for V augmented views (L2-normalised here). ``labels``:
    (B,) or (B, 1) class indices. Every view of every sample is an anchor.

    - ``variant="supcon"``: eq. 2 (L_out) of the paper, as in the authors' SupContrast code:
      positives are the other anchors with the same label (self-pairs excluded from positives
      and from the denominator); the loss is scaled by ``temperature / base_temperature``; an
      anchor with no positive contributes 0 and the mean runs over all anchors.
    - ``variant="npairs"``: the keras.io SupCon example's loss (``tfa.losses.npairs_loss`` on
      ``f f^T / temperature``), which the face-attribute SupCon study used: a softmax over the
      whole row, the anchor counting as its own positive; ``base_temperature`` is unused.

    With V views, the result equals the one-view loss on the V*B stacked anchors with tiled
    labels, so two views can also be fed as a doubled batch.
    """
    return ops.mean(supcon_per_sample(labels, features, temperature, base_temperature, variant))


@keras.saving.register_keras_serializable(package="faceattr_lab")
class SupConLoss(keras.losses.Loss):
    """:func:`supcon_loss` as a Keras loss: ``y_true`` labels, ``y_pred`` projected features. Lab 05.

    Contrasts the samples of one batch (per replica under a distribution strategy): use
    batches of 64 or more so most labels have a positive.
    """

    def __init__(self, temperature=0.1, base_temperature=0.07, variant="supcon",
                 name="supcon", **kwargs):
        super().__init__(name=name, **kwargs)
        if variant not in SUPCON_VARIANTS:
            raise ValueError(f"variant must be one of {SUPCON_VARIANTS}, got {variant!r}.")
        self.temperature = temperature
        self.base_temperature = base_temperature
        self.variant = variant

    def call(self, y_true, y_pred):
        return supcon_per_sample(y_true, y_pred, self.temperature, self.base_temperature,
                                 self.variant)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature,
                "base_temperature": self.base_temperature, "variant": self.variant}


def supcon_losses(schemes, weights=0.1, temperature=0.1, base_temperature=0.07,
                  variant="supcon"):
    """Per-output SupCon losses and loss weights for a multi-task projection model. Lab 05.

    ``schemes``: label schemes (or output names). ``weights``: one float for every output (the
    study used 0.1 each) or a dict by output. Returns ``(losses, loss_weights)``, two dicts to
    pass to ``model.compile(loss=losses, loss_weights=loss_weights)``.
    """
    outputs = [getattr(scheme, "output", scheme) for scheme in schemes]
    if not outputs or not all(isinstance(name, str) for name in outputs):
        raise ValueError("schemes must be a non-empty list of label schemes or output names.")
    if isinstance(weights, dict):
        missing = set(outputs) - set(weights)
        if missing:
            raise ValueError(f"weights has no entry for outputs {sorted(missing)}.")
        loss_weights = {name: float(weights[name]) for name in outputs}
    else:
        loss_weights = {name: float(weights) for name in outputs}
    losses = {name: SupConLoss(temperature, base_temperature, variant, name=f"supcon_{name}")
              for name in outputs}
    return losses, loss_weights


# --------------------------------------------------------------------------------------------
# CORAL: consistent rank logits (Cao, Mirjalili & Raschka, 2020)
# --------------------------------------------------------------------------------------------
def coral_levels(labels, num_classes):
    """Extended binary labels (B, K-1): ``levels[:, k] = 1[rank > k]``. Lab 06.

    ``labels``: integer ranks 0..K-1, shape (B,) or (B, 1).
    """
    if int(num_classes) < 2:
        raise ValueError(f"num_classes must be >= 2 for ordinal regression, got {num_classes!r}.")
    ranks = ops.cast(ops.reshape(ops.convert_to_tensor(labels), (-1, 1)), "float32")
    thresholds = ops.cast(ops.arange(int(num_classes) - 1), "float32")
    return ops.cast(ops.greater(ranks, thresholds[None, :]), "float32")


def coral_per_sample(labels, logits, importance=None):
    """Per-sample CORAL loss, shape (B,). See :func:`coral_loss`. Lab 06."""
    logits = ops.cast(ops.convert_to_tensor(logits), "float32")
    if len(logits.shape) != 2:
        raise ValueError(f"logits must be (batch, K-1), got shape {logits.shape}.")
    levels = coral_levels(labels, logits.shape[-1] + 1)
    log_p = ops.log_sigmoid(logits)            # log P(rank > k)
    log_not_p = log_p - logits                 # log (1 - P(rank > k)) = log sigmoid(-z)
    terms = log_p * levels + log_not_p * (1.0 - levels)
    if importance is not None:
        importance = ops.cast(ops.convert_to_tensor(importance), "float32")
        if importance.shape[-1] != logits.shape[-1]:
            raise ValueError(
                f"importance needs one weight per binary task ({logits.shape[-1]}), got shape "
                f"{importance.shape}."
            )
        terms = terms * ops.reshape(importance, (1, -1))
    return -ops.sum(terms, axis=1)


def coral_loss(labels, logits, importance=None):
    """CORAL loss (Cao, Mirjalili & Raschka, 2020, "Rank consistent ordinal regression"). Lab 06.

    ``labels``: integer ranks (B,) or (B, 1); ``logits``: (B, K-1) from a CORAL head (one shared
    weight vector, K-1 biases). The loss is the binary cross-entropy summed over the K-1 tasks
    "rank > k", optionally weighted by ``importance`` (K-1,), averaged over the batch.
    """
    return ops.mean(coral_per_sample(labels, logits, importance))


@keras.saving.register_keras_serializable(package="faceattr_lab")
class CoralLoss(keras.losses.Loss):
    """:func:`coral_loss` as a Keras loss (``y_true`` ranks, ``y_pred`` K-1 logits). Lab 06."""

    def __init__(self, importance=None, name="coral", **kwargs):
        super().__init__(name=name, **kwargs)
        self.importance = None if importance is None else [float(w) for w in importance]

    def call(self, y_true, y_pred):
        return coral_per_sample(y_true, y_pred, self.importance)

    def get_config(self):
        return {**super().get_config(), "importance": self.importance}


# --------------------------------------------------------------------------------------------
# Masked losses: each head learns from the rows that have its label
# --------------------------------------------------------------------------------------------
MASK_KINDS = ("classification", "regression", "ordinal")


def labelled_rows(y_true, kind: str = "classification"):
    """Which rows have a label, and the labels with the missing ones replaced by 0. Lab 02.

    Returns ``(labelled, filled)``: ``labelled`` bool ``(B,)``, ``filled`` float32 with
    ``y_true``'s shape. A label is missing where it is NaN, and, for ``kind`` classification
    or ordinal, where it is negative (``fl.labels.MASK_INDEX``, -1); regression targets are
    missing only where NaN. A row of several values (e.g. one-hot) is missing if any value is.
    The 0 put in a missing label's place keeps the base loss and its gradient finite.
    """
    if kind not in MASK_KINDS:
        raise ValueError(f"kind must be one of {MASK_KINDS} (the scheme's kind), got {kind!r}.")
    values = ops.cast(ops.convert_to_tensor(y_true), "float32")
    missing = ops.isnan(values)
    if kind != "regression":
        missing = ops.logical_or(missing, ops.less(values, 0.0))
    filled = ops.where(missing, ops.zeros_like(values), values)
    if len(values.shape) > 1:
        missing = ops.any(missing, axis=tuple(range(1, len(values.shape))))
    return ops.logical_not(missing), filled


def _distribution_scale(value):
    """Keras' own division by the replicas in sync (tf.distribute), as its losses do."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            value = value * (1.0 / replicas)
    return value


@keras.saving.register_keras_serializable(package="faceattr_lab")
class MaskedLoss(keras.losses.Loss):
    """A head's loss over the rows that have its label (issue #9). Lab 02.

    ``MaskedLoss(loss, kind)`` wraps a Keras loss (an instance such as
    ``keras.losses.SparseCategoricalCrossentropy()``, ``BinaryCrossentropy()``,
    ``MeanSquaredError()``, :class:`CoralLoss`: a loss class instance, not a name such as
    ``"mse"``). Per batch:

    - the base loss per sample (its ``call``, i.e. reduction ``"none"``), computed with each
      missing label replaced by 0 (see :func:`labelled_rows`: -1 / NaN for classification and
      ordinal, NaN for regression), so the value and its gradient stay finite;
    - ``loss = sum_i m_i * w_i * l_i / max(sum_i m_i, 1)``, with ``m_i`` 1 for a labelled row and
      0 for a missing one, and ``w_i`` the sample weight (1 without; ``fl.train.fit(
      class_weight=...)`` and ``make_dataset(sample_weights=True)`` feed them per output). That
      is the mean over the LABELLED rows of ``weight * loss``: Keras' own rule (the sum of
      ``weight * loss`` divided by the batch size) with the batch restricted to the rows that
      have this head's label, not divided by the full batch. With nothing missing it equals the
      base loss exactly, weights included; a batch with no labelled row gives 0 (never NaN)
      and zero gradients for this head.

    ``compile_for`` wraps every head's loss in one. Saved ``.keras`` models load it back
    (registered as ``faceattr_lab>MaskedLoss``). Under ``tf.distribute`` each replica averages
    its own labelled rows, and the result is divided by the replicas as Keras' losses are.
    """

    def __init__(self, loss, kind: str = "classification", name=None, dtype=None,
                 reduction="sum_over_batch_size"):
        if isinstance(loss, dict):  # a serialized base loss (from get_config / a .keras file)
            loss = keras.losses.deserialize(loss)
        if not isinstance(loss, keras.losses.Loss):
            raise ValueError(f"MaskedLoss needs a keras.losses.Loss instance, got {loss!r}; "
                             "e.g. MaskedLoss(keras.losses.MeanSquaredError(), 'regression') "
                             "rather than 'mse'.")
        if isinstance(loss, MaskedLoss):
            raise ValueError("the loss is masked already; pass its base loss (.loss).")
        if kind not in MASK_KINDS:
            raise ValueError(f"kind must be one of {MASK_KINDS} (the scheme's kind), got "
                             f"{kind!r}.")
        if reduction != "sum_over_batch_size":
            raise ValueError(f"MaskedLoss averages over labelled rows; reduction={reduction!r} "
                             "is not supported (leave the default).")
        super().__init__(name=name or f"masked_{loss.name}", reduction=reduction, dtype=dtype)
        self.loss = loss
        self.kind = kind

    def per_sample(self, y_true, y_pred):
        """``(labelled, losses)``: bool ``(B,)`` and the base loss per sample ``(B,)``, 0 where
        the label is missing. Lab 02."""
        y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
        labelled, filled = labelled_rows(y_true, self.kind)
        values = ops.cast(self.loss.call(ops.cast(filled, self.dtype), y_pred), self.dtype)
        if len(values.shape) > 1:  # (B, 1) or per-element losses: one value per sample
            values = ops.mean(values, axis=tuple(range(1, len(values.shape))))
        return labelled, ops.where(labelled, values, ops.zeros_like(values))

    def __call__(self, y_true, y_pred, sample_weight=None):
        with keras.name_scope(self.name):
            labelled, values = self.per_sample(y_true, y_pred)
            weights = ops.cast(labelled, self.dtype)
            if sample_weight is not None:
                sample_weight = ops.cast(ops.convert_to_tensor(sample_weight), self.dtype)
                weights = weights * ops.reshape(sample_weight, (-1,))
            count = ops.maximum(ops.sum(ops.cast(labelled, self.dtype)), 1.0)
            return _distribution_scale(ops.sum(values * weights) / count)

    def call(self, y_true, y_pred):
        return self.per_sample(y_true, y_pred)[1]

    def get_config(self):
        return {"name": self.name, "kind": self.kind, "dtype": self.dtype,
                "loss": keras.losses.serialize(self.loss)}


def masked(loss, kind: str = "classification") -> MaskedLoss:
    """``loss`` averaged over the rows that have a label: a :class:`MaskedLoss`. Lab 02.

    ``kind`` is the scheme's kind: classification and ordinal labels are missing where -1
    (or any negative value) or NaN, regression targets where NaN.
    """
    return MaskedLoss(loss, kind)


def coral_probabilities(logits, classwise: bool = False):
    """CORAL probabilities from logits ``(B, K-1)``. Lab 06.

    By default the cumulative probabilities ``P(rank > k)`` for k = 0..K-2 (the sigmoids).
    With ``classwise=True`` the per-rank probabilities ``(B, K)``: ``1 - s_0``, ``s_{k-1} - s_k``,
    ``s_{K-2}`` (they sum to 1; rank consistency keeps them non-negative once trained).
    """
    cumulative = ops.sigmoid(ops.cast(ops.convert_to_tensor(logits), "float32"))
    if not classwise:
        return cumulative
    batch = ops.shape(cumulative)[0]
    ones = ops.ones((batch, 1), dtype=cumulative.dtype)
    zeros = ops.zeros((batch, 1), dtype=cumulative.dtype)
    upper = ops.concatenate([ones, cumulative], axis=-1)
    lower = ops.concatenate([cumulative, zeros], axis=-1)
    return upper - lower


def coral_predict(logits):
    """Predicted rank: the number of tasks with P(rank > k) > 0.5 (int32, shape (B,)). Lab 06."""
    return ops.sum(ops.cast(coral_probabilities(logits) > 0.5, "int32"), axis=-1)


__all__ = ["SUPCON_VARIANTS", "supcon_loss", "supcon_per_sample", "SupConLoss", "supcon_losses",
           "coral_levels", "coral_loss", "coral_per_sample", "CoralLoss", "coral_probabilities",
           "coral_predict", "MASK_KINDS", "labelled_rows", "MaskedLoss", "masked"]
