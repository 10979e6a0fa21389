"""The kit's own plumbing: folders, results, settings, install files, runner and release."""

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
from faceattr_lab import config, results
from faceattr_lab.course import release
from faceattr_lab.course import runner

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
    mine = tmp_path / "my.weights.h5"
    mine.write_bytes(b"")
    assert config.settings("99_test", "full", weights=str(mine)).weights == str(mine)
    with pytest.raises(ValueError, match="does not exist"):
        config.settings("99_test", "full", weights=str(tmp_path / "gone.weights.h5"))


def test_grading_profile_is_the_quick_one_with_one_epoch_per_training(tmp_path):
    lab = {"quick": {"epochs": 8, "cv_epochs": 8, "head_epochs": 5, "fine_tune_epochs": 0,
                     "n_faces": 1200, "patience": 10},
           "full": {"epochs": 50}}
    quick = config.settings("99_test", "quick", lab_defaults=lab)
    graded = config.settings("99_test", "grading", lab_defaults=lab)
    assert graded.profile == "quick"  # a lab's `run.profile == "quick"` branches run as quick
    assert (graded.dataset, graded.image_size, graded.n_images) == (
        quick.dataset, quick.image_size, quick.n_images)
    assert graded.epochs == 1 and graded["cv_epochs"] == 1 and graded["head_epochs"] == 1
    # zero stays zero (a phase switched off), and what is not an epoch count is untouched
    assert graded["fine_tune_epochs"] == 0 and graded["n_faces"] == 1200
    assert graded["patience"] == 10
    # an explicit value still wins
    assert config.settings("99_test", "grading", epochs=3, lab_defaults=lab).epochs == 3


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
    assert release.strip_solutions(source) == (
        "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()\nprint(f)")
    with pytest.raises(ValueError, match="never closed"):
        release.strip_solutions("### BEGIN SOLUTION\nx = 1")
    with pytest.raises(ValueError, match="without"):
        release.strip_solutions("x = 1\n### END SOLUTION")


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
    assert release.lint_lab(_lab(tmp_path)) == []
    bad = release.lint_lab(_lab(tmp_path, "demo.ipynb", params="EPOCHS = 1"))
    assert any("NN_slug" in p for p in bad) and any("NAME: type" in p for p in bad)
    unseen = release.lint_lab(_lab(tmp_path, "01_demo.ipynb", params="N: int | None = 1  # n"))
    assert any("papermill does not see" in p for p in unseen)


def test_student_version_stubs_solutions(tmp_path):
    nb = nbformat.read(_lab(tmp_path), as_version=4)
    student = release.student_version(nb)
    assert "return 2 * x" not in student.cells[3].source
    assert "raise NotImplementedError()" in student.cells[3].source
    assert "return 2 * x" in nb.cells[3].source  # the teacher copy is untouched


@pytest.mark.slow
def test_runner_executes_a_lab_and_reads_its_results(tmp_path, monkeypatch):
    lab = _lab(tmp_path)
    row = runner.run_lab(lab, parameters={"EPOCHS": 4}, output=tmp_path / "runs")
    assert row["status"] == "ok", row["error"]
    assert row["results"] == {"double": 8}
    assert row["load"] is None or row["load"] >= 0
    with pytest.raises(ValueError, match="no parameter"):
        runner.run_lab(lab, parameters={"EPOCH": 4})


def _outputs_text(notebook) -> str:
    nb = nbformat.read(notebook, as_version=4)
    return "".join(output.get("text", "") + json.dumps(output.get("data", {}))
                   for cell in nb.cells if cell.cell_type == "code"
                   for output in cell.get("outputs", []))


# a line written straight to file descriptor 2, as TensorFlow's C++ start-up code does
C_LEVEL = "written by C code to fd 2"
TENSORFLOW_CELL = f"""import os, sys, warnings
import tensorflow as tf
tf.config.list_physical_devices("GPU")  # where TensorFlow logs its cuInit error on a CPU
os.write(2, b"{C_LEVEL}\\n")
print("env", os.environ["TF_CPP_MIN_LOG_LEVEL"], os.environ["FACEATTR_LAB_QUIET"],
      os.environ.get("EXTRA"))
print("python stderr line", file=sys.stderr)
warnings.warn("a warning the student should act on")
"""


@pytest.mark.slow
def test_headless_kernel_keeps_tensorflow_start_up_lines_out_of_the_notebook(tmp_path,
                                                                             monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)  # a student's shell, no Makefile
    monkeypatch.delenv(config.QUIET_ENV, raising=False)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    params = nbformat.v4.new_code_cell("X: int = 1  # x")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(TENSORFLOW_CELL)]
    lab = tmp_path / "99_tf.ipynb"
    nbformat.write(nb, lab)
    row = runner.run_lab(lab, output=tmp_path / "runs", env={"EXTRA": "yes"})
    assert row["status"] == "ok", row["error"]
    text = _outputs_text(row["notebook"])
    # what the student is meant to see: the cell's prints and Python warnings
    assert "env 2 1 yes" in text  # the runner set the kernel's environment itself
    assert "python stderr line" in text
    assert "UserWarning: a warning the student should act on" in text
    # what they are not: C-level output, TensorFlow's start-up lines among it
    assert C_LEVEL not in text
    for word in ("cuda", "cuInit", "oneDNN", "absl", "cpu_feature_guard", "I0000", "E0000"):
        assert word.lower() not in text.lower(), word
    # it went to the kernel's log beside the executed notebook, not lost
    log = (Path(row["notebook"]).parent / runner.KERNEL_LOG).read_text()
    assert C_LEVEL in log


def test_kernel_environment_quiets_tensorflow_unless_the_caller_chose(monkeypatch):
    import os

    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    monkeypatch.setenv(config.QUIET_ENV, "0")
    monkeypatch.setenv("SOMETHING_ELSE", "kept")
    env = runner.kernel_environment()
    assert env["TF_CPP_MIN_LOG_LEVEL"] == "2" and env[config.QUIET_ENV] == "1"
    assert env["SOMETHING_ELSE"] == "kept"
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")  # a teacher debugging TensorFlow
    assert runner.kernel_environment()["TF_CPP_MIN_LOG_LEVEL"] == "0"
    mine = runner.kernel_environment({config.QUIET_ENV: "0", "N": 3})
    assert (mine[config.QUIET_ENV], mine["N"]) == ("0", "3")
    assert os.environ[config.QUIET_ENV] == "0"  # this process's own environment is untouched
    with pytest.raises(ValueError, match="string names and values"):
        runner.kernel_environment({"A": None})


def test_load_average_is_the_first_of_getloadavg(monkeypatch):
    import os

    monkeypatch.setattr(os, "getloadavg", lambda: (1.234, 5.0, 6.0))
    assert runner.load_average() == 1.23

    def unsupported():
        raise OSError("no load average here")

    monkeypatch.setattr(os, "getloadavg", unsupported)
    assert runner.load_average() is None


def test_run_labs_summary_gives_each_lab_its_load(monkeypatch, tmp_path, capsys):
    labs = [_lab(tmp_path, "00_a.ipynb"), _lab(tmp_path, "01_b.ipynb")]
    rows = {labs[0]: dict(status="ok", seconds=12.5, load=0.5, results={"acc": 0.9}, error=None),
            labs[1]: dict(status="failed", seconds=3.0, load=None, results={},
                          error="cell 2: ValueError: no")}
    monkeypatch.setattr(runner, "list_labs", lambda folder=None: labs)
    monkeypatch.setattr(runner, "run_lab", lambda path, **kw: {"lab": path.stem, **rows[path]})
    table = runner.run_labs(output=tmp_path)
    assert list(table.columns) == ["lab", "status", "seconds", "load", "key results"]
    assert table["lab"].tolist() == ["00_a", "01_b"]
    assert table["load"].tolist()[0] == 0.5 and pd_isna(table["load"].tolist()[1])
    assert table["key results"].tolist() == ["acc=0.9", "cell 2: ValueError: no"]
    printed = capsys.readouterr().out
    assert "ok in 12.5 s at load 0.50" in printed and "at load n/a" in printed
    assert "1-minute load average" in printed


def pd_isna(value) -> bool:
    return value is None or value != value


def test_committed_labs_keep_the_conventions():
    labs = runner.list_labs(ROOT / "labs")
    assert labs, "no labs found"
    for path in labs:
        assert release.lint_lab(path) == [], path.name


def test_labs_have_exercises_with_self_checks_and_student_stubs():
    for path in runner.list_labs(ROOT / "labs"):
        nb = nbformat.read(path, as_version=4)
        code = [c.source for c in nb.cells if c.cell_type == "code"]
        solutions = sum(src.count(release.BEGIN) for src in code)
        assert solutions >= (1 if path.name.startswith("00_") else 2), path.name
        assert sum("fl.checks." in src for src in code) >= solutions, path.name
        student = release.student_version(nb)
        student_code = "\n".join(c.source for c in student.cells if c.cell_type == "code")
        assert release.BEGIN not in student_code
        assert student_code.count("raise NotImplementedError()") == solutions
