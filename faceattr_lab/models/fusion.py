"""Study B's gender-specific fusion: a gender classifier routes each face to a gender's expert."""

from __future__ import annotations

import keras
from keras import layers, ops

MALE, FEMALE = 0, 1  # the kit's gender coding (ARCHITECTURE.md: 0 male, 1 female)


@keras.saving.register_keras_serializable(package="faceattr_lab")
class GenderRoute(layers.Layer):
    """Per sample, the female expert's output where gender's argmax is female, else the male's.

    Inputs ``[gender_probabilities (B, 2), male_output (B, ...), female_output (B, ...)]``.
    Lab 07.
    """

    def call(self, inputs):
        gender_probabilities, male_output, female_output = inputs
        is_female = ops.argmax(gender_probabilities, axis=-1) == FEMALE
        is_female = ops.reshape(is_female, (-1,) + (1,) * (len(male_output.shape) - 1))
        return ops.where(is_female, female_output, male_output)

    def compute_output_shape(self, input_shapes):
        return input_shapes[1]


def _outputs_of(model: keras.Model, role: str) -> dict:
    if not isinstance(model.output, dict):
        raise ValueError(f"the {role} model must return a dict of outputs (as the kit's models "
                         "do); build it with faceattr_lab.models.")
    return model.output


def gender_fusion(gender_model: keras.Model, male_model: keras.Model,
                  female_model: keras.Model, name: str = "gender_fusion") -> keras.Model:
    """One saveable model that routes each face to its gender's age+race expert. Lab 07.

    Study B's gender-specific fusion: ``gender_model`` (with a "gender" softmax output,
    0 male, 1 female) predicts the gender; the face then gets the outputs of ``male_model`` or
    ``female_model``, each trained only on its gender's faces (see :func:`split_by_gender`).
    Both experts run on every face and ``keras.ops.where`` picks per sample, so the fused
    model is a plain Functional model that saves as ``.keras``. Outputs: "gender" (the
    classifier's probabilities) and every non-gender output the experts share. The three
    models become nested layers named "gender_classifier", "male_expert", "female_expert"
    (their ``name`` is changed to that). The fused outputs are float32 under any dtype policy.
    """
    gender_outputs = _outputs_of(gender_model, "gender")
    male_outputs = _outputs_of(male_model, "male")
    female_outputs = _outputs_of(female_model, "female")
    if "gender" not in gender_outputs or gender_outputs["gender"].shape[-1] != 2:
        raise ValueError("gender_model needs a 'gender' output with 2 classes (male, female); "
                         f"it has {sorted(gender_outputs)}.")
    routed = sorted(set(male_outputs) - {"gender"})
    if not routed or set(routed) != set(female_outputs) - {"gender"}:
        raise ValueError(f"the experts must share their outputs: male has {sorted(male_outputs)}, "
                         f"female {sorted(female_outputs)}.")
    for key in routed:
        if tuple(male_outputs[key].shape[1:]) != tuple(female_outputs[key].shape[1:]):
            raise ValueError(f"output {key!r} differs in shape between the experts: "
                             f"{male_outputs[key].shape} vs {female_outputs[key].shape}.")
    shapes = {tuple(model.input.shape[1:]) for model in (gender_model, male_model, female_model)}
    if len(shapes) != 1:
        raise ValueError(f"the three models take different image shapes {shapes}; build them "
                         "for the same image_size.")

    gender_model.name, male_model.name, female_model.name = (
        "gender_classifier", "male_expert", "female_expert")
    images = keras.Input(shapes.pop(), name="image")
    gender = gender_model(images)["gender"]
    male, female = male_model(images), female_model(images)
    # float32 output layers: under mixed_float16 a policy-following layer would cast the
    # experts' float32 outputs down to float16 (Keras' mixed precision guide: last layer float32)
    outputs = {"gender": layers.Identity(dtype="float32", name="gender")(gender)}
    for key in routed:
        outputs[key] = GenderRoute(dtype="float32", name=key)([gender, male[key], female[key]])
    return keras.Model(images, outputs, name=name)


def split_by_gender(df):
    """``(male_rows, female_rows)`` of a dataset table, for training the two experts. Lab 07.

    Raises ``ValueError`` if some rows have no gender (filter them first, e.g. with
    ``fl.labels.select(df, schemes)``), so no row is dropped silently.
    """
    missing = int(df["gender"].isna().sum())
    if missing:
        raise ValueError(f"{missing} rows have no gender; drop or label them before splitting "
                         "(e.g. df = df[df['gender'].notna()]).")
    return df[df["gender"] == MALE], df[df["gender"] == FEMALE]
