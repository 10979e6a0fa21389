"""Recording a run's key numbers to ``results.json``. Lab 00.

Tests, the headless runner and the grader read a lab's numbers from the file, never by
scraping a notebook's text. ``fl.config.settings(...)`` starts a fresh results file in the
lab's output folder; ``record(name, value)`` adds one entry and shows it.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

RESULTS_FILE = "results.json"
_current: Path | None = None


def start(output_dir: str | Path) -> Path:
    """Begin a fresh ``results.json`` in ``output_dir`` (called by ``fl.config.settings``). Lab 00."""
    global _current
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    _current = folder / RESULTS_FILE
    _write(_current, {})
    return _current


def started() -> bool:
    """True once ``start`` (or ``fl.config.settings``) chose this run's results file. Lab 00."""
    return _current is not None


def path() -> Path:
    """The results file that ``record`` writes to. Lab 00."""
    if _current is None:
        raise ValueError("no results file yet: call fl.config.settings(...) first (every lab's "
                         "settings cell does), or fl.results.start(folder).")
    return _current


def to_jsonable(value):
    """Convert numpy/pandas values to plain JSON types; NaN and inf become ``None``. Lab 00."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency
        np = None
    if hasattr(value, "to_dict") and hasattr(value, "columns"):  # pandas DataFrame
        return [to_jsonable(r) for r in value.to_dict(orient="records")]
    if hasattr(value, "to_dict") and hasattr(value, "index"):  # pandas Series
        return {str(k): to_jsonable(v) for k, v in value.to_dict().items()}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v) for v in value]
    if np is not None and isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if np is not None and isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    raise ValueError(
        f"cannot record a value of type {type(value).__name__}; record numbers, strings, "
        "lists, dicts, numpy values or pandas tables."
    )


def record(name: str, value, *, display: bool = True) -> None:
    """Record ``value`` under ``name`` in the run's ``results.json`` and show it. Lab 00."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}.")
    clean = to_jsonable(value)
    file = path()
    data = load(file)
    data[name] = clean
    _write(file, data)
    if display:
        _show(name, clean)


def load(file: str | Path | None = None) -> dict:
    """Read a ``results.json`` (a file or the folder holding it). Lab 00."""
    file = Path(file) if file is not None else path()
    if file.is_dir():
        file = file / RESULTS_FILE
    if not file.exists():
        return {}
    return json.loads(file.read_text(encoding="utf-8"))


def _write(file: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=".results-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
    os.replace(tmp, file)


def _show(name: str, value) -> None:
    text = json.dumps(value) if not isinstance(value, str) else value
    if len(text) > 200:
        text = text[:197] + "..."
    try:
        from IPython import get_ipython
        from IPython.display import display

        if get_ipython() is not None:  # Markdown in JupyterLab, plain text in text views
            display({"text/markdown": f"**recorded** `{name}` = `{text}`",
                     "text/plain": f"recorded {name} = {text}"}, raw=True)
            return
    except ImportError:  # pragma: no cover
        pass
    print(f"recorded {name} = {text}")


__all__ = ["RESULTS_FILE", "start", "path", "record", "load", "to_jsonable"]
