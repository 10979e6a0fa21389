"""The four real face datasets as they lie on disk, a synthetic stand-in, and downloads.

Each loader returns a pandas DataFrame, one row per usable image (see ARCHITECTURE.md for the
columns): an image with at least one usable label, ``<NA>`` in the labels it lacks. Everything
it did not load is in ``df.attrs["excluded"]`` with a reason (a row per reason); images kept
with a note, such as "kept without gender: ...", are in ``df.attrs["notes"]``.
``datasets.md`` at the top of the repository describes each dataset, its layout and defects.
"""

from __future__ import annotations

from faceattr_lab._lazy import lazy_exports

# public name -> submodule that defines it (imported on first use: no import-time work)
_EXPORTS = {
    "load_utkface": "utkface",
    "load_fairface": "fairface",
    "load_afad": "afad",
    "load_adience": "adience",
    "load": "common",
    "DatasetWarning": "common",
    "verify_images": "common",
    "exclusion_report": "common",
    "excluded_count": "common",
    "make_synthetic": "synthetic",
    "synthetic_dataset": "synthetic",
    "render_face": "synthetic",
    "download": "downloads",
    "REGISTRY": "downloads",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
