"""Shared fixtures. Lab tests read the results a lab recorded, running the lab only once.

`make test` executes every lab under nbval with ``$FACEATTR_LAB_OUTPUT`` pointing at one folder,
then runs the tests marked ``lab`` with ``$FACEATTR_LAB_RESULTS_FROM`` naming that folder, so
each lab runs once per test session. Run alone (``pytest tests/test_lab01.py``), a lab test
executes its lab with papermill into a temporary folder instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

RESULTS_ENV = "FACEATTR_LAB_RESULTS_FROM"


@pytest.fixture(scope="session")
def lab_results(tmp_path_factory):
    """``lab_results("01")`` -> the dict the lab recorded in its ``results.json``."""
    from faceattr_lab import results, runner

    cache: dict[str, dict] = {}

    def get(lab: str) -> dict:
        if lab in cache:
            return cache[lab]
        notebook = runner.find_lab(lab)
        folder = os.environ.get(RESULTS_ENV)
        file = Path(folder) / notebook.stem / results.RESULTS_FILE if folder else None
        if file is not None and file.exists() and file.stat().st_mtime >= notebook.stat().st_mtime:
            cache[lab] = results.load(file)
        else:
            row = runner.run_lab(notebook, output=tmp_path_factory.mktemp("labs"))
            assert row["status"] == "ok", f"{notebook.stem} failed: {row['error']}"
            cache[lab] = row["results"]
        return cache[lab]

    return get
