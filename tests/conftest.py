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
    from faceattr_lab import results
    from faceattr_lab.course import runner

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


@pytest.fixture()
def face_table(tmp_path):
    """``face_table(n, size)``: a table of ``n`` hand-made PNG faces of ``size`` px.

    Gender alternates 0, 1, 0, ... and gender 1 is 100 grey levels brighter (a cue a tiny
    model learns in one epoch); ages are 1, 3, 5, ... years; age_group and race are <NA>.
    """
    import numpy as np
    import pandas as pd
    from PIL import Image

    def make(n: int = 48, size: int = 32):
        rng = np.random.default_rng(0)
        rows = []
        for i in range(n):
            gender = i % 2
            pixels = rng.integers(0, 128, (size, size, 3)) + 100 * gender
            path = tmp_path / f"face{i}.png"
            Image.fromarray(pixels.astype(np.uint8)).save(path)
            rows.append({"path": str(path), "gender": gender, "age": 2 * i + 1})
        df = pd.DataFrame(rows).astype({"gender": "Int64", "age": "Int64"})
        df["age_group"] = pd.array([pd.NA] * n, dtype="string")
        df["race"] = pd.array([pd.NA] * n, dtype="string")
        return df

    return make
