"""The kit's own plumbing: folders, results, settings, install files, runner and notebooks."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest

import faceattr_lab as fl
from faceattr_lab import config, notebooks, results, runner

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _folders(tmp_path, monkeypatch):
    monkeypatch.setenv(config.DATA_ENV, str(tmp_path / "data"))
    monkeypatch.setenv(config.OUTPUT_ENV, str(tmp_path / "out"))


def test_import_has_no_side_effects():
    code = ("import sys, faceattr_lab as fl; "
            "heavy = [m for m in ('tensorflow', 'keras', 'pandas', 'matplotlib') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_folders_follow_environment(tmp_path):
    assert config.data_dir() == tmp_path / "data"
    assert config.output_dir("lab") == tmp_path / "out" / "lab"
    assert (tmp_path / "out" / "lab").is_dir()


def test_settings_profiles_and_overrides(tmp_path):
    quick = config.settings("99_test", "quick")
    assert (quick.dataset, quick.image_size) == ("synthetic", 32)
    full = config.settings("99_test", "full", lab_defaults={"full": {"image_size": 224}})
    assert (full.dataset, full.image_size, full.weights) == ("utkface", 224, "imagenet")
    mine = config.settings("99_test", "full", image_size=100, epochs=None, custom=3)
    assert mine.image_size == 100 and mine.epochs == 30 and mine["custom"] == 3
    assert mine.output_dir == tmp_path / "out" / "99_test"
    # a full-profile run offline asks for random weights; a file path passes through
    assert config.settings("99_test", "full", weights="random").weights is None
    assert config.settings("99_test", "full", weights="my.weights.h5").weights == "my.weights.h5"


def test_settings_quiets_only_the_retracing_warning(tmp_path):
    import logging

    fl.config.settings("00_quickstart", output=tmp_path)
    logger, records = logging.getLogger("tensorflow"), []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        logger.warning("5 out of the last 5 calls to <function f> triggered tf.function "
                       "retracing. Tracing is expensive")
        logger.warning("something else")
    finally:
        logger.removeHandler(handler)
    assert [r.getMessage() for r in records] == ["something else"]


@pytest.mark.parametrize("kwargs, word", [
    ({"profile": "fast"}, "PROFILE"), ({"dataset": "celeba"}, "DATASET"),
    ({"epochs": 0}, "EPOCHS"), ({"image_size": 64.5}, "IMAGE_SIZE"), ({"weights": 3}, "WEIGHTS"),
])
def test_settings_reject_bad_values(kwargs, word):
    with pytest.raises(ValueError, match=word):
        config.settings("99_test", **kwargs)


def test_record_writes_json_safe_values(tmp_path):
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    results.start(tmp_path / "run")
    results.record("acc", np.float32(0.5), display=False)
    results.record("counts", np.array([1, 2]), display=False)
    results.record("table", pd.DataFrame({"a": [1], "b": ["x"]}), display=False)
    results.record("nan", float("nan"), display=False)
    data = json.loads((tmp_path / "run" / "results.json").read_text())
    assert data == {"acc": 0.5, "counts": [1, 2], "table": [{"a": 1, "b": "x"}], "nan": None}
    with pytest.raises(ValueError, match="cannot record"):
        results.record("bad", object(), display=False)


def test_set_seed_rejects_bad_seed():
    with pytest.raises(ValueError, match="non-negative"):
        fl.set_seed(-1)


def test_set_seed_repeats_python_numpy_and_keras_draws():
    import random

    import keras
    import numpy as np

    def draws(seed):
        fl.set_seed(seed)
        return (random.random(), np.random.rand(3).tolist(),
                keras.ops.convert_to_numpy(keras.random.uniform((3,))).tolist(),
                keras.ops.convert_to_numpy(keras.initializers.GlorotUniform()((2, 2))).tolist())

    first = draws(7)
    assert draws(7) == first  # every source repeats after the same seed
    other = draws(8)
    assert all(a != b for a, b in zip(first, other))  # and each one follows the seed


def test_environment_yml_agrees_with_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = (ROOT / "environment.yml").read_text()
    python_floor = re.search(r">=\s*([\d.]+)", project["requires-python"]).group(1)
    assert re.search(rf"-\s*python\s*>=\s*{re.escape(python_floor)}\b", env)
    assert re.search(r"-\s*pip\s*$", env, re.M)
    assert re.search(r"-\s*-e\s+\.\[dev\]", env)
    names = {re.split(r"[<>=\[ ]", dep)[0].lower() for dep in project["dependencies"]}
    for required in ("tensorflow", "keras", "jupyterlab", "ipykernel", "ipywidgets", "matplotlib",
                     "seaborn", "pandas", "scikit-learn", "papermill"):
        assert required in names
    assert all(">=" in dep for dep in project["dependencies"]), "pin lower bounds"
    dev = {re.split(r"[<>=\[ ]", d)[0].lower() for d in project["optional-dependencies"]["dev"]}
    assert {"pytest", "nbval"} <= dev
    assert project["scripts"]["faceattr-lab"] == "faceattr_lab.cli:main"


def test_readme_gives_the_two_commands_and_ci_runs_make_test():
    readme = (ROOT / "README.md").read_text()
    assert "make labs" in readme and "make test" in readme and "Colab" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_strip_solutions_keeps_indentation():
    source = "def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\nprint(f)"
    assert notebooks.strip_solutions(source) == (
        "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()\nprint(f)")
    with pytest.raises(ValueError, match="never closed"):
        notebooks.strip_solutions("### BEGIN SOLUTION\nx = 1")
    with pytest.raises(ValueError, match="without"):
        notebooks.strip_solutions("x = 1\n### END SOLUTION")


PARAMS = ("EPOCHS: int = 1  # epochs to train\n"
          "OUTPUT_DIR: Optional[str] = None  # where results go (None: the output folder)")


def _lab(tmp_path, name="00_demo.ipynb", params=PARAMS):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Demo\n\nObjectives: learn.\n\nRuntime: 1 s."),
        nbformat.v4.new_code_cell("from typing import Optional\n\nimport faceattr_lab as fl"),
        cell,
        nbformat.v4.new_code_cell(
            "fl.config.settings('00_demo', output=OUTPUT_DIR)\n"
            "def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n"
            "fl.results.record('double', double(EPOCHS))"),
        nbformat.v4.new_markdown_cell("## Takeaways\n- none"),
    ]
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


def test_lint_lab_accepts_a_conventional_lab_and_flags_breaks(tmp_path):
    assert notebooks.lint_lab(_lab(tmp_path)) == []
    bad = notebooks.lint_lab(_lab(tmp_path, "demo.ipynb", params="EPOCHS = 1"))
    assert any("NN_slug" in p for p in bad) and any("NAME: type" in p for p in bad)
    unseen = notebooks.lint_lab(_lab(tmp_path, "01_demo.ipynb", params="N: int | None = 1  # n"))
    assert any("papermill does not see" in p for p in unseen)


def test_student_version_stubs_solutions(tmp_path):
    nb = nbformat.read(_lab(tmp_path), as_version=4)
    student = notebooks.student_version(nb)
    assert "return 2 * x" not in student.cells[3].source
    assert "raise NotImplementedError()" in student.cells[3].source
    assert "return 2 * x" in nb.cells[3].source  # the teacher copy is untouched


@pytest.mark.slow
def test_runner_executes_a_lab_and_reads_its_results(tmp_path, monkeypatch):
    lab = _lab(tmp_path)
    row = runner.run_lab(lab, parameters={"EPOCHS": 4}, output=tmp_path / "runs")
    assert row["status"] == "ok", row["error"]
    assert row["results"] == {"double": 8}
    with pytest.raises(ValueError, match="no parameter"):
        runner.run_lab(lab, parameters={"EPOCH": 4})


def test_committed_labs_keep_the_conventions():
    labs = runner.list_labs(ROOT / "labs")
    assert labs, "no labs found"
    for path in labs:
        assert notebooks.lint_lab(path) == [], path.name


def test_labs_have_exercises_with_self_checks_and_student_stubs():
    for path in runner.list_labs(ROOT / "labs"):
        nb = nbformat.read(path, as_version=4)
        code = [c.source for c in nb.cells if c.cell_type == "code"]
        solutions = sum(src.count(notebooks.BEGIN) for src in code)
        assert solutions >= (1 if path.name.startswith("00_") else 2), path.name
        assert sum("fl.checks." in src for src in code) >= solutions, path.name
        student = notebooks.student_version(nb)
        student_code = "\n".join(c.source for c in student.cells if c.cell_type == "code")
        assert notebooks.BEGIN not in student_code
        assert student_code.count("raise NotImplementedError()") == solutions
