"""Functional Keras 3 models for the five studies, each with its citation.

Every model takes float32 images ``(H, W, 3)`` in [0, 255] (it normalises inside) and returns a
dict of outputs keyed by the label scheme's ``output`` name (``"gender"``, ``"age"``, ``"race"``).
"""

from __future__ import annotations

from faceattr_lab._lazy import lazy_exports

# public name -> submodule that defines it (imported on first use: no import-time work)
_EXPORTS = {
    "custom_cnn": "cnn",
    "levi_hassner": "levi_hassner_cnn",
    "BACKBONES": "backbones",
    "backbone": "backbones",
    "transfer_model": "backbones",
    "freeze": "backbones",
    "unfreeze": "backbones",
    "add_heads": "heads",
    "compile_for": "heads",
    "CoralOutput": "heads",
    "gender_conditioned": "conditioned",
    "conditioned_heads": "conditioned",
    "gender_fusion": "fusion",
    "split_by_gender": "fusion",
    "cnn_encoder": "cnn",
    "LocalResponseNormalization": "levi_hassner_cnn",
    "supcon_encoder": "supcon",
    "projection_model": "supcon",
    "classifier_model": "supcon",
    "count_params": "heads",
    "ORDINAL_HEADS": "heads",
    "resnet34": "resnet",
    "export": "serving",
    "check_export": "serving",
    "load_served": "serving",
    "load_model": "serving",
    "RESNET34_BLOCKS": "resnet",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
