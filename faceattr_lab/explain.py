"""Why a model decided: Grad-CAM heat maps over the face. Lab 08.

Selvaraju, Cogswell, Das, Vedantam, Parikh & Batra (2017), "Grad-CAM: Visual Explanations from
Deep Networks via Gradient-based Localization", ICCV. For one head's score ``y`` and a
convolutional layer's maps ``A_k`` (k = channels), each channel gets the weight
``alpha_k = mean_ij dy / dA_k[i, j]`` (the gradient, averaged over the map) and the heat map is
``ReLU(sum_k alpha_k A_k)``: where, at that layer's resolution, evidence *for* the score sits.
It is bilinearly upsampled to the image and scaled to [0, 1] per face. With global average
pooling followed by one linear layer, Grad-CAM is exactly Zhou et al.'s (2016) CAM.

A kit model is a Functional model whose backbone is a nested model (``fl.models.backbone``:
``Preprocess`` then the ``<name>_application`` model), so the convolutional layer Grad-CAM
needs sits two models deep. Keras cannot return a nested layer's output from the outer model,
so :func:`grad_cam` runs the model's own graph itself, node by node (each nested model on the
way to the layer is opened and run the same way), takes the layer's output there, and
continues the same forward pass from it. Every layer runs once, in inference mode, with the
model's own weights: the maps and the score come from one pass, and the gradient links them.

This module uses models (``faceattr_lab.models``) and is used by nothing in the core; labs call
it as ``fl.explain.grad_cam`` and draw with ``fl.plots.gradcam_grid``.
"""

from __future__ import annotations

import inspect

import numpy as np


def grad_cam(model, images, output: str, class_index=None, layer=None,
             batch_size: int = 32) -> np.ndarray:
    """Grad-CAM heat maps of one head, float32 (N, H, W) in [0, 1]. Lab 08.

    Selvaraju et al. (2017), ICCV. ``images`` is float (N, H, W, 3) in [0, 255], the input of
    every kit model; ``output`` the head (``"gender"``, ``"age"``, ``"race"``).
    ``class_index``: None explains each face's predicted class; an int, or N ints, explains
    the given class (e.g. the true one). ``layer`` is a layer name or object, searched inside
    nested models too. None takes the last feature maps before global pooling: the last layer
    with a 4-D output, stepping back over local pooling layers that end the network (the paper
    used VGG-16's last convolutional layer, before its last max pool). In SmallVGG that is
    ``block4_relu2``, at 1/8 of the image size (4 x 4 cells for 32 x 32 faces).

    The score is the head's pre-softmax logit, as in the paper, for a softmax ``Dense`` head;
    for a one-unit sigmoid head (``binary_sigmoid=True``) the logit ``z`` of class 1 (and
    ``-z`` for class 0). Any other head is used as it is: a one-unit regression head's value
    (``class_index`` None or 0), or one output unit of a several-unit head (for CORAL the logit
    of "rank > k"). Each map is ``ReLU(sum_k alpha_k A_k)``, bilinearly resized to (H, W) and
    divided by its maximum; a map with no positive evidence stays all 0 (never NaN).
    """
    import tensorflow as tf

    images = _check_images(images)
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}; pass a positive int, e.g. 32.")
    probe = _record(model, images[:1])
    if output not in probe["outputs"]:
        raise ValueError(f"the model has no output {output!r}; its outputs are "
                         f"{sorted(probe['outputs'])}. Pass one of those as output=.")
    path = _target_path(model, layer, probe["steps"])
    head = _head_layer(model, output)
    units = int(np.prod(np.shape(probe["outputs"][output])[1:]))
    binary = _is_dense(head, "sigmoid") and units == 1
    n_classes = 2 if binary else units
    classes = _check_class_index(class_index, len(images), n_classes, output)

    maps = []
    for start in range(0, len(images), int(batch_size)):
        batch = tf.convert_to_tensor(images[start:start + batch_size])
        tapped = []  # the layer's output each time it runs (a model may call it twice)
        # Gradients need the backend: Keras 3 has no backend-neutral gradient call, and the
        # kit runs on TensorFlow, so tf.GradientTape it is. The tape watches the layer's
        # output tensor as the forward pass produces it.
        with tf.GradientTape() as tape:
            def tap(value):
                tape.watch(value)
                tapped.append(value)
                return value

            outputs = _forward(model, batch, path, tap, logits_of=head)
            score = tf.cast(tf.reshape(outputs[output], (len(batch), -1)), tf.float32)
            if classes is None:  # each face's predicted class
                chosen = _predicted(score, binary)
            else:
                chosen = classes[start:start + batch_size]
            score = _class_score(score, chosen, binary)
        activations, gradients = _feeding(tape, score, tapped, path[-1].name, output)
        weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)  # alpha_k per face
        cam = tf.nn.relu(tf.reduce_sum(weights * activations, axis=-1))  # (B, h, w)
        cam = tf.image.resize(cam[..., None], images.shape[1:3], method="bilinear")[..., 0]
        maps.append(_normalise(cam.numpy()))
    return np.concatenate(maps, axis=0).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Running a Functional model's graph with a tap on one (possibly nested) layer
# --------------------------------------------------------------------------------------------

def _forward(model, inputs, path, tap, logits_of=None):
    """Run Functional ``model`` on ``inputs`` node by node, in inference mode.

    ``path`` is the chain of layers from ``model`` down to the target: nested models, then the
    target layer. A nested model on the path is run the same way (recursively); the target's
    output goes through ``tap``, and what ``tap`` returns feeds the layers after it.
    ``logits_of`` (a softmax/sigmoid ``Dense`` head) is called without its activation.
    """
    first, rest = (path[0], path[1:]) if path else (None, ())

    def operation_fn(op):
        def call(*args, **kwargs):
            if op is first and rest:
                return _forward(op, args[0] if len(args) == 1 else list(args), rest, tap)
            if op is logits_of:
                result = _pre_activation(op, args[0])
            else:
                result = _call(op, args, kwargs)
            return tap(result) if op is first else result
        return call

    # Keras' own graph runner, the one Functional.call uses (a private method: Keras 3 has no
    # public way to intercept a nested layer; tests/test_explain.py checks that the pass
    # reproduces the model's outputs, so a change in Keras shows up there first)
    return model._run_through_graph(_as_list(inputs), operation_fn=operation_fn)


def _record(model, images) -> dict:
    """One forward pass on one image: every layer run, in order, with its path and rank."""
    steps = []

    def walk(current, inputs, prefix):
        def operation_fn(op):
            def call(*args, **kwargs):
                if _is_functional(op):
                    result = walk(op, args[0] if len(args) == 1 else list(args), (*prefix, op))
                else:
                    result = _call(op, args, kwargs)
                steps.append(((*prefix, op), len(getattr(result, "shape", ()))))
                return result
            return call

        return current._run_through_graph(_as_list(inputs), operation_fn=operation_fn)

    _check_functional(model)
    outputs = walk(model, images, ())
    if not isinstance(outputs, dict):
        names = getattr(model, "output_names", None) or [model.name]
        outputs = dict(zip(names, outputs if isinstance(outputs, (list, tuple)) else [outputs]))
    return {"steps": steps, "outputs": outputs}


def _target_path(model, layer, steps) -> tuple:
    """The chain of layers from ``model`` to the target layer (see :func:`grad_cam`)."""
    if layer is None:
        spatial = [path for path, rank in steps if rank == 4]
        if not spatial:
            raise ValueError(f"model {model.name!r} has no layer with a 4-D output (feature "
                             "maps); Grad-CAM needs a convolutional backbone.")
        while len(spatial) > 1 and _is_local_pooling(spatial[-1][-1]):
            spatial.pop()  # the paper's choice: the last conv maps, before a pool shrinks them
        return spatial[-1]
    matches = [path for path, _ in steps
               if path[-1] is layer or (isinstance(layer, str) and path[-1].name == layer)]
    if not matches:
        names = [path[-1].name for path, rank in steps if rank == 4]
        raise ValueError(f"no layer {getattr(layer, 'name', layer)!r} runs in {model.name!r}; "
                         f"layers with feature maps are {names[-8:]} (the last ones).")
    if len({id(p[-1]) for p in matches}) > 1:
        raise ValueError(f"several layers are named {layer!r}; pass the layer object.")
    return matches[0]


def _call(op, args, kwargs):
    """Call a layer or operation in inference mode (``training=False`` where it takes one)."""
    call = getattr(op, "call", None)
    if call is not None and "training" in inspect.signature(call).parameters:
        kwargs = {**kwargs, "training": False}
    return op(*args, **kwargs)


def _pre_activation(layer, x):
    """A Dense head's output before its softmax / sigmoid: ``x @ kernel + bias``."""
    from keras import ops

    x = ops.cast(x, layer.kernel.dtype)
    y = ops.matmul(x, layer.kernel)
    return y + layer.bias if layer.use_bias else y


def _head_layer(model, output):
    """The model's layer named ``output`` when it is a softmax/sigmoid Dense, else None."""
    try:
        layer = model.get_layer(output)
    except ValueError:
        return None
    if _is_dense(layer, "softmax") or _is_dense(layer, "sigmoid"):
        return layer
    return None


def _is_dense(layer, activation: str) -> bool:
    import keras

    return (isinstance(layer, keras.layers.Dense)
            and getattr(layer.activation, "__name__", "") == activation)


def _is_local_pooling(layer) -> bool:
    from keras import layers

    return isinstance(layer, (layers.MaxPooling2D, layers.AveragePooling2D))


def _is_functional(op) -> bool:
    import keras

    return isinstance(op, keras.Model) and hasattr(op, "_run_through_graph")


def _check_functional(model) -> None:
    if not _is_functional(model):
        raise ValueError(f"grad_cam needs a Functional keras.Model (every kit model is one), "
                         f"got {type(model).__name__}.")


def _as_list(inputs):
    return inputs if isinstance(inputs, (list, tuple)) else [inputs]


# --------------------------------------------------------------------------------------------
# Scores and maps
# --------------------------------------------------------------------------------------------

def _feeding(tape, score, tapped, name: str, output: str):
    """The layer's maps and their gradient where they feed the score (float32).

    A layer that runs more than once (e.g. a backbone called once per head) is fine when the
    runs see the same input: their gradients add up, as for one output used twice.
    """
    import tensorflow as tf

    if not tapped:
        raise ValueError(f"layer {name!r} did not run on the way to {output!r}; pick a layer "
                         "of the model's backbone.")
    pairs = [(a, g) for a, g in zip(tapped, tape.gradient(score, tapped)) if g is not None]
    if not pairs:
        raise ValueError(f"the {output!r} score does not depend on layer {name!r}; pick a "
                         "layer that feeds that head.")
    first = tf.cast(pairs[0][0], tf.float32)
    for a, _ in pairs[1:]:
        if a.shape != first.shape or not np.allclose(tf.cast(a, tf.float32).numpy(),
                                                     first.numpy(), atol=1e-5):
            raise ValueError(f"layer {name!r} runs {len(pairs)} times on different inputs "
                             f"on the way to {output!r}; pass a layer that runs once.")
    return first, tf.add_n([tf.cast(g, tf.float32) for _, g in pairs])


def _check_images(images) -> np.ndarray:
    images = np.asarray(images.numpy() if hasattr(images, "numpy") else images)
    if images.ndim == 3:
        raise ValueError(f"images has shape {images.shape}; pass a batch (N, H, W, 3), e.g. "
                         "images[None] for one face.")
    if images.ndim != 4 or images.shape[-1] != 3 or len(images) == 0:
        raise ValueError(f"images has shape {images.shape}; pass float (N, H, W, 3) in "
                         "[0, 255], as the pipeline yields them.")
    if not np.issubdtype(images.dtype, np.number):
        raise ValueError(f"images has dtype {images.dtype}; pass numbers in [0, 255].")
    return images.astype(np.float32)


def _check_class_index(class_index, n: int, n_classes: int, output: str):
    """None, or one class index per face after checking the range."""
    if class_index is None:
        return None
    values = np.asarray(class_index)
    if values.ndim == 0:
        values = np.full(n, values.item())
    if values.shape != (n,) or not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"class_index={class_index!r}; pass None (the predicted class), one "
                         f"int, or {n} ints (one per face).")
    if values.min() < 0 or values.max() >= n_classes:
        raise ValueError(f"class_index must lie in 0..{n_classes - 1} for the {output!r} head "
                         f"({n_classes} classes), got {sorted(set(values.tolist()))[:5]}; use "
                         "the scheme's class indices (scheme.classes.index(name)).")
    return values.astype(int)


def _predicted(score, binary: bool) -> np.ndarray:
    score = score.numpy()
    if binary:
        return (score[:, 0] > 0).astype(int)
    return score.argmax(axis=1)


def _class_score(score, classes, binary: bool):
    """The score of each face's class: a logit column, or +-z for a single sigmoid unit."""
    import tensorflow as tf

    classes = tf.constant(np.asarray(classes, dtype=np.int32))
    if binary:
        sign = tf.cast(2 * classes - 1, score.dtype)
        return tf.reduce_sum(score[:, 0] * sign)
    return tf.reduce_sum(tf.gather(score, classes, axis=1, batch_dims=1))


def _normalise(cam: np.ndarray) -> np.ndarray:
    """Each map divided by its maximum; a map without positive evidence stays 0."""
    cam = np.maximum(np.nan_to_num(cam, nan=0.0), 0.0)
    peak = cam.reshape(len(cam), -1).max(axis=1)
    scale = np.where(peak > 0, peak, 1.0)
    return np.clip(cam / scale[:, None, None], 0.0, 1.0)


__all__ = ["grad_cam"]
