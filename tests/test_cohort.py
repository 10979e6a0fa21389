"""The instructor's view of a graded lab, on a hand-made grades folder."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from faceattr_lab import cli
from faceattr_lab.course import cohort

CHECKS = ["majority_share", "mae_to_years", "mean_std"]
# student, verdicts per check, status, seconds, errors (as the grader writes them)
ROWS = [
    ("alice", ["pass", "pass", "pass"], "ok", 50.1, ""),
    ("bob", ["fail", "fail", "pass"], "errors", 48.0,
     "cell 5: NotImplementedError: ; cell 9: NameError: name 'mae' is not defined"),
    ("group1/carol", ["pass", "fail", "not run"], "errors", 47.2,
     "cell 7: NameError: name 'mae' is not defined"),
    ("group1/dave", ["not run", "not run", "not run"], "timeout", 120.0, ""),
    ("007", ["pass", "fail", "fail"], "errors", 51.3,
     "cell 6: ValueError: shapes (3, 4) and (5,) not aligned; "
     "cell 12: NotImplementedError: "),
]
MESSAGES = {
    "mae_to_years": "mae_to_years: not yet. mae_to_years(0.1) returned 0.0009, expected 11.6000.",
    "majority_share": "majority_share: not yet. majority_share([0, 0, 1]) returned 2, expected "
                      "0.6667 (return its share).",
}


@pytest.fixture
def grades(tmp_path):
    """A grades folder as the grader leaves it; dave timed out (no verdicts.json, no reason
    column: today's grader does not write one)."""
    folder = tmp_path / "grades" / "00_quickstart"
    rows = []
    for student, verdicts, status, seconds, errors in ROWS:
        score = round(verdicts.count("pass") / len(CHECKS), 3)
        rows.append({"student": student, "score": score, **dict(zip(CHECKS, verdicts)),
                     "status": status, "seconds": seconds, "errors": errors,
                     "notebook": f"{folder}/{student}/00_quickstart.ipynb"})
        if status == "timeout":
            continue
        (folder / student).mkdir(parents=True)
        record = {check: {"passed": v == "pass",
                          "message": f"{check}: pass" if v == "pass" else MESSAGES.get(check, "")}
                  for check, v in zip(CHECKS, verdicts) if v != "not run"}
        (folder / student / "verdicts.json").write_text(json.dumps(record))
    pd.DataFrame(rows).to_csv(folder / "grades.csv", index=False)
    return folder


def test_pass_rates_match_counts_by_hand(grades):
    written = cohort.report(grades)
    rates = pd.read_csv(written["check_pass_rates"]).set_index("check")
    assert list(rates.index) == CHECKS
    #                       passed failed not run (by hand from ROWS)
    assert rates.loc["majority_share", ["passed", "failed", "not_run"]].tolist() == [3, 1, 1]
    assert rates.loc["mae_to_years", ["passed", "failed", "not_run"]].tolist() == [1, 3, 1]
    assert rates.loc["mean_std", ["passed", "failed", "not_run"]].tolist() == [2, 1, 2]
    assert rates["pass_rate"].tolist() == [0.6, 0.2, 0.4]


def test_histogram_has_one_bar_per_possible_score(grades):
    table, checks = cohort.read_grades(grades)
    fig = cohort.score_histogram(table, checks)
    ax = fig.axes[0]
    heights = [bar.get_height() for bar in ax.patches]
    assert heights == [1, 3, 0, 1]  # scores 0, 1/3, 2/3, 1: dave; bob, carol, 007; -; alice
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert sorted(labels) == ["mean 40%", "median 33%", "students"]
    assert ax.get_xlabel() and ax.get_ylabel() == "students"
    png = cohort.report(grades)["score_histogram"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_common_errors_group_the_same_mistake(grades):
    errors = pd.read_csv(cohort.report(grades)["common_errors"], keep_default_na=False)
    top = errors.iloc[:2].set_index("error")
    # two students, different cells: one group each
    assert top.loc["NameError: name 'mae' is not defined", "students"] == 2
    assert top.loc["NameError: name 'mae' is not defined", "example_students"] == \
        "bob, group1/carol"
    assert top.loc["NotImplementedError:", "students"] == 2
    assert len(errors) == 3
    shapes = errors.iloc[2]
    assert shapes["error"] == "ValueError: shapes (<n>, <n>) and (<n>,) not aligned"
    assert shapes["example_students"] == "007"
    assert cohort.split_errors("cell 1: KeyError: 'a; b'; cell 2: OSError: x") == [
        "cell 1: KeyError: 'a; b'", "cell 2: OSError: x"]


def test_feedback_per_student(grades):
    written = cohort.report(grades)["feedback"]
    assert set(written) == {student for student, *_ in ROWS}
    carol = written["group1/carol"]
    assert carol.parent == grades / "feedback" and carol.name == "group1%2Fcarol.md"
    assert cohort.student_of(carol) == "group1/carol"
    text = carol.read_text()
    assert "# Feedback for group1/carol" in text
    assert "- Score: 33% (1 of 3 checks passed)" in text
    assert "- Status: errors" in text
    assert "## Passed\n\n- majority_share\n" in text
    assert "- **mae_to_years**: " + MESSAGES["mae_to_years"] in text
    assert "- **mean_std**: never checked" in text
    assert "`cell 7: NameError: name 'mae' is not defined`" in text
    assert f"`{grades}/group1/carol/00_quickstart.ipynb`" in text
    dave = written["group1/dave"].read_text()
    assert "- Status: timeout" in dave and "- none yet" in dave and "First error\n\nnone" in dave
    assert "nothing: every check passes" in written["alice"].read_text()
    assert written["007"].name == "007.md"


def test_reason_column_is_used_when_present(grades):
    table = pd.read_csv(grades / "grades.csv", dtype=str, keep_default_na=False)
    table["reason"] = ["", "", "", "ran past 120 s", ""]
    table.to_csv(grades / "grades.csv", index=False)
    text = cohort.report(grades)["feedback"]["group1/dave"].read_text()
    assert "- Status: timeout (ran past 120 s)" in text


def test_bad_folder_says_what_to_pass(tmp_path):
    with pytest.raises(ValueError, match="labs grade"):
        cohort.report(tmp_path)
    (tmp_path / "grades.csv").write_text("student,score,x,status\na,1,maybe,ok\n")
    with pytest.raises(ValueError, match="only"):
        cohort.report(tmp_path)


def test_cli_labs_report(grades, capsys):
    assert cli.main(["labs", "report", str(grades)]) == 0
    out = capsys.readouterr().out
    assert "check_pass_rates.csv" in out and "group1%2Fcarol.md" in out
