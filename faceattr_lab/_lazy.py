"""Lazy re-exports for subpackages: names load their module on first use (no import-time work)."""

from __future__ import annotations

import importlib
import sys


def lazy_exports(package: str, exports: dict[str, str]):
    """``__getattr__`` and ``__dir__`` for ``package`` that import ``exports[name]`` on demand.

    The value is cached in the package's namespace, so a later look-up returns the function
    even after Python has set the submodule of the same name as a package attribute.
    """

    def __getattr__(name: str):
        if name in exports:
            module = importlib.import_module(f"{package}.{exports[name]}")
            value = getattr(module, name)
            setattr(sys.modules[package], name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(exports)

    return __getattr__, __dir__
