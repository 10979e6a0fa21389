"""Grading a cohort: crafted submissions each cost only their own row, and none forges a verdict."""

from __future__ import annotations

import json
import time

import nbformat
import pandas as pd
import pytest

from faceattr_lab.course import grader, release

from tiny_lab import IMPORTS, PARAMETERS, SETTINGS, SHARE, YEARS
from tiny_lab import notebook as _notebook

WRONG_YEARS = YEARS.replace("return mae * max_age", "return mae / max_age")


def _solved(*extra, years=YEARS):
    return _notebook(IMPORTS, PARAMETERS, SETTINGS, SHARE, years, *extra)


# student -> (status, score): worked out by hand from what each hands in
EXPECTED = {
    "correct": ("ok", 1.0),
    "partly_wrong": ("ok", 0.5),
    "raising": ("errors", 0.0),
    "looping": ("timeout", 1.0),         # its functions are right; a top-level cell loops
    "killing": ("killed", 1.0),
    "hungry": ("memory", 1.0),
    "chatty": ("ok", 1.0),
    "broken_json": ("invalid", 0.0),
    "trespasser": ("invalid", 1.0),      # refused: the target stays as it was
    "patches_checks": ("ok", 0.5),       # fl.checks.mae_to_years replaced to always pass
    "forges_files": ("ok", 0.5),         # results.json and verdicts.json full of passes
    "prints_pass": ("ok", 0.5),
    "patches_when_called": ("ok", 0.0),  # its functions patch the checks, then answer wrongly
}


@pytest.fixture
def cohort(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEATTR_LAB_OUTPUT", str(tmp_path / "outputs"))
    labs = tmp_path / "labs"
    labs.mkdir()
    teacher = labs / "99_tiny.ipynb"
    nbformat.write(_solved(), teacher)
    subs = tmp_path / "submissions"
    subs.mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_text("original")
    write = {
        "correct": _solved(),
        "partly_wrong": _solved(years=WRONG_YEARS),
        "raising": release.student_version(nbformat.read(teacher, as_version=4)),
        "looping": _solved("while True:\n    pass"),
        "killing": _solved("import os\nos.kill(os.getpid(), 9)"),
        "hungry": _solved("import time\nblob = b'x' * (1500 * 2**20)\ntime.sleep(30)"),
        "chatty": _solved("print('x' * 3_000_000)"),
        "trespasser": _solved(f"open({str(outside)!r}, 'w').write('pwned')",
                              f"open({str(teacher)!r}, 'w').write('{{}}')"),
        "patches_checks": _solved(
            "fl.checks.mae_to_years = lambda fn, strict=True: print('mae_to_years: pass') or True\n"
            "import faceattr_lab.course.checks as c\nc.mae_to_years = fl.checks.mae_to_years",
            years=WRONG_YEARS),
        "forges_files": _solved(
            "import json, os\n"
            "verdicts = {'majority_share': {'passed': True, 'message': 'pass'},\n"
            "            'mae_to_years': {'passed': True, 'message': 'pass'}}\n"
            "fl.results.record('check:mae_to_years', {'passed': True, 'message': 'pass'})\n"
            "json.dump(verdicts, open('verdicts.json', 'w'))\n"
            "json.dump({'check:mae_to_years': {'passed': True}}, "
            "open(os.path.join(OUTPUT_DIR or '.', 'results.json'), 'w'))",
            years=WRONG_YEARS),
        "prints_pass": _solved("print('PASS  mae_to_years: pass')", years=WRONG_YEARS),
        "patches_when_called": _notebook(IMPORTS, PARAMETERS, SETTINGS, """
def _cheat():
    import faceattr_lab.course.checks as checks
    for name in ("majority_share", "mae_to_years", "_verdict", "_close"):
        setattr(checks, name, lambda *a, **k: True)


def majority_share(labels):
    _cheat()
    return 0.0


def mae_to_years(mae, max_age=116.0):
    _cheat()
    return -1.0"""),
    }
    for student, nb in write.items():
        nbformat.write(nb, subs / f"{student}.ipynb")
    (subs / "broken_json.ipynb").write_text('{"cells": [ not json')
    return teacher, subs, tmp_path / "grades", outside


def test_a_cohort_of_crafted_submissions_gets_the_right_rows(cohort):
    teacher, subs, out, outside = cohort
    teacher_bytes = teacher.read_bytes()
    start = time.perf_counter()
    table = grader.grade(teacher, subs, output=out, echo=False, jobs=2, timeout=25,
                         memory_mb=900, check_timeout=10, output_limit=10_000)
    seconds = time.perf_counter() - start
    table = table.set_index("student")
    got = {s: (table.loc[s, "status"], float(table.loc[s, "score"])) for s in table.index}
    assert got == EXPECTED, (got, table["reason"].to_dict())
    assert seconds < 240
    assert outside.read_text() == "original" and teacher.read_bytes() == teacher_bytes
    assert "refused" in table.loc["trespasser", "reason"]
    assert "timeout" in table.loc["looping", "reason"]
    assert "MB" in table.loc["hungry", "reason"]
    # a raising run's reason names its first error as the errors column numbers it
    assert table.loc["raising", "errors"].split("; ")[0] in table.loc["raising", "reason"]
    # the stored notebook of a chatty submission is capped, with a note
    chatty = nbformat.read(table.loc["chatty", "notebook"], as_version=4)
    text = "".join(o.get("text", "") for c in chatty.cells for o in c.get("outputs", []))
    assert len(text) < 20_000 and "cut by the grader" in text
    # verdicts.json holds every verdict; the feedback cell closes the executed notebook
    verdicts = json.loads((out / "patches_checks" / grader.VERDICTS_FILE).read_text())
    assert verdicts["majority_share"]["passed"] and not verdicts["mae_to_years"]["passed"]
    assert "expected 7.8068" in verdicts["mae_to_years"]["message"]
    feedback = nbformat.read(table.loc["partly_wrong", "notebook"], as_version=4).cells[-1]
    assert "FAIL  mae_to_years: not yet." in feedback.outputs[0]["text"]
    saved = pd.read_csv(out / grader.GRADES_FILE)
    assert sorted(saved["student"]) == sorted(EXPECTED)
    assert list(saved.columns[:4]) == ["student", "score", "majority_share", "mae_to_years"]


def test_resume_skips_graded_students_and_force_regrades(cohort, capsys):
    teacher, subs, out, _ = cohort
    for path in subs.glob("*.ipynb"):
        if path.stem not in ("correct", "partly_wrong"):
            path.unlink()
    first = grader.grade(teacher, subs, output=out, echo=False, timeout=60)
    assert sorted(first["student"]) == ["correct", "partly_wrong"]
    # an interrupted batch: a third student arrives; the two graded ones are not run again
    nbformat.write(_solved(), subs / "late.ipynb")
    stamp = (out / "correct" / grader.VERDICTS_FILE).stat().st_mtime_ns
    second = grader.grade(teacher, subs, output=out, echo=True, timeout=60)
    assert sorted(second["student"]) == ["correct", "late", "partly_wrong"]
    assert (out / "correct" / grader.VERDICTS_FILE).stat().st_mtime_ns == stamp
    assert "2 already graded" in capsys.readouterr().out
    assert len(pd.read_csv(out / grader.GRADES_FILE)) == 3
    third = grader.grade(teacher, subs, output=out, echo=False, timeout=60, force=True)
    assert len(third) == 3 and len(pd.read_csv(out / grader.GRADES_FILE)) == 3
    assert (out / "correct" / grader.VERDICTS_FILE).stat().st_mtime_ns != stamp


def test_grade_rejects_bad_batch_settings(cohort):
    teacher, subs, out, _ = cohort
    for bad in ({"jobs": 0}, {"timeout": -1}, {"memory_mb": "lots"}):
        with pytest.raises(ValueError, match="pass"):
            grader.grade(teacher, subs, output=out, echo=False, **bad)


def test_grade_on_a_dask_cluster(cohort):
    distributed = pytest.importorskip("distributed")
    teacher, subs, out, _ = cohort
    for path in subs.glob("*.ipynb"):
        if path.stem not in ("correct", "partly_wrong", "broken_json"):
            path.unlink()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        table = grader.grade(teacher, subs, output=out, echo=False, timeout=60,
                             scheduler=cluster.scheduler_address).set_index("student")
    assert table["status"].to_dict() == {"correct": "ok", "partly_wrong": "ok",
                                         "broken_json": "invalid"}
    assert table["score"].to_dict() == {"correct": 1.0, "partly_wrong": 0.5, "broken_json": 0.0}
