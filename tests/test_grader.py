"""The grader: submissions run headlessly and are scored by the teacher lab's self-checks."""

from __future__ import annotations

import nbformat
import pandas as pd
import pytest

from faceattr_lab.course import grader, release

from tiny_lab import IMPORTS, PARAMETERS, SETTINGS, SHARE, YEARS
from tiny_lab import notebook as _notebook


@pytest.fixture
def classroom(tmp_path, monkeypatch):
    """A tiny teacher lab and four submissions, each with a known right score."""
    monkeypatch.setenv("FACEATTR_LAB_OUTPUT", str(tmp_path / "outputs"))
    teacher = tmp_path / "99_tiny.ipynb"
    nbformat.write(_notebook(IMPORTS, PARAMETERS, SETTINGS, SHARE, YEARS), teacher)
    subs = tmp_path / "submissions"
    (subs / "alice").mkdir(parents=True)
    # alice hands in the lab solved, in a folder of her own
    nbformat.write(_notebook(IMPORTS, PARAMETERS, SETTINGS, SHARE, YEARS),
                   subs / "alice" / "99_tiny.ipynb")
    # bob hands in the student copy untouched: both stubs raise
    nbformat.write(release.student_version(nbformat.read(teacher, as_version=4)),
                   subs / "bob.ipynb")
    # carol solves the first; her second divides, and she edits its check to pass anyway
    wrong = YEARS.replace("return mae * max_age", "return mae / max_age").replace(
        "fl.checks.mae_to_years(mae_to_years)",
        "fl.checks.mae_to_years(lambda mae, max_age=116.0: mae * max_age)")
    nbformat.write(_notebook(IMPORTS, PARAMETERS, SETTINGS, SHARE, wrong), subs / "carol.ipynb")
    # dave breaks the settings cell and deletes the first exercise; the second is right
    nbformat.write(_notebook(IMPORTS, PARAMETERS, SETTINGS.replace("settings", "setings"), YEARS),
                   subs / "dave.ipynb")
    return teacher, subs, tmp_path / "grades"


def test_lab_checks_reads_the_teachers_calls(classroom):
    teacher, _, _ = classroom
    assert grader.lab_checks(teacher) == [("majority_share", "majority_share"),
                                          ("mae_to_years", "mae_to_years")]


def test_lab_checks_of_a_committed_lab():
    assert grader.lab_checks("02") == [("mae_to_years", "mae_to_years"),
                                       ("one_factor_configs", "one_factor_configs"),
                                       ("mean_std", "mean_std")]


def test_find_submissions_names_students(classroom):
    teacher, subs, _ = classroom
    (subs / ".ipynb_checkpoints").mkdir()
    nbformat.write(nbformat.v4.new_notebook(), subs / ".ipynb_checkpoints" / "bob-checkpoint.ipynb")
    assert sorted(grader.find_submissions(subs, teacher)) == ["alice", "bob", "carol", "dave"]
    with pytest.raises(ValueError, match="not a folder"):
        grader.find_submissions(subs / "nobody", teacher)


def test_grade_scores_each_submission_by_the_teachers_checks(classroom):
    teacher, subs, out = classroom
    table = grader.grade(teacher, subs, output=out, echo=False).set_index("student")
    # expected scores, worked out by hand from what each student handed in
    assert table["score"].to_dict() == {"alice": 1.0, "bob": 0.0, "carol": 0.5, "dave": 0.5}
    assert table.loc["alice", ["majority_share", "mae_to_years"]].tolist() == ["pass", "pass"]
    assert table.loc["alice", "status"] == "ok" and table.loc["alice", "errors"] == ""
    assert table.loc["bob", "status"] == "errors"
    assert "NotImplementedError" in table.loc["bob", "errors"]
    assert table.loc["carol", "mae_to_years"] == "fail"  # her edited check cell does not count
    assert table.loc["dave", ["majority_share", "mae_to_years"]].tolist() == ["fail", "pass"]
    assert "AttributeError" in table.loc["dave", "errors"]
    saved = pd.read_csv(out / grader.GRADES_FILE)
    assert sorted(saved["student"]) == ["alice", "bob", "carol", "dave"]
    executed = nbformat.read(table.loc["carol", "notebook"], as_version=4)
    feedback = "".join(o.get("text", "") for o in executed.cells[-1].outputs)
    assert "PASS  majority_share: pass" in feedback and "FAIL  mae_to_years: not yet." in feedback


def test_grade_refuses_a_lab_without_checks(tmp_path):
    lab = tmp_path / "98_none.ipynb"
    nbformat.write(_notebook(IMPORTS, PARAMETERS, SETTINGS), lab)
    (tmp_path / "subs").mkdir()
    with pytest.raises(ValueError, match="no fl.checks"):
        grader.grade(lab, tmp_path / "subs", output=tmp_path / "grades", echo=False)


NOISY = """import os, warnings
import tensorflow as tf
tf.config.list_physical_devices("GPU")  # where TensorFlow logs its cuInit error on a CPU
os.write(2, b"written by C code to fd 2\\n")
print("env", os.environ["TF_CPP_MIN_LOG_LEVEL"], os.environ["FACEATTR_LAB_QUIET"],
      os.environ["FACEATTR_LAB_GRADING"])
warnings.warn("a warning the student should act on")"""


@pytest.mark.slow
def test_grade_runs_a_quiet_kernel_of_its_own(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEATTR_LAB_OUTPUT", str(tmp_path / "outputs"))
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)  # no Makefile around
    monkeypatch.delenv("FACEATTR_LAB_QUIET", raising=False)
    teacher = tmp_path / "97_noisy.ipynb"
    nbformat.write(_notebook(IMPORTS, PARAMETERS, SETTINGS, NOISY, SHARE), teacher)
    (tmp_path / "subs").mkdir()
    nbformat.write(_notebook(IMPORTS, PARAMETERS, SETTINGS, NOISY, SHARE),
                   tmp_path / "subs" / "erin.ipynb")
    table = grader.grade(teacher, tmp_path / "subs", output=tmp_path / "grades", echo=False)
    assert table["score"].tolist() == [1.0]
    executed = nbformat.read(table.loc[0, "notebook"], as_version=4)
    text = "".join(o.get("text", "") for cell in executed.cells if cell.cell_type == "code"
                   for o in cell.get("outputs", []))
    assert "env 2 1 1" in text  # quiet logs and grading mode, set by the grader itself
    assert "UserWarning: a warning the student should act on" in text
    assert "written by C code" not in text
    for word in ("cuda", "cuInit", "oneDNN", "absl", "cpu_feature_guard", "I0000", "E0000"):
        assert word.lower() not in text.lower(), word
