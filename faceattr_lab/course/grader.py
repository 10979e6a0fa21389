"""Grading students' submissions headlessly: papermill runs, self-check verdicts, one CSV. Lab 00.

A *submission* is a student's copy of a lab (``make student`` builds the copies to hand out)
with the exercises filled in. :func:`grade` runs each submission in a fresh kernel, in the quick
profile, and scores it by the lab's self-checks (``fl.checks``):

* The checks and the objects they check are read from the **teacher's** lab, not from the
  submission, so deleting or editing a check cell does not change the grade.
* The kernel runs in grading mode (``FACEATTR_LAB_GRADING=1``): a failed check prints what is off
  instead of stopping the notebook, and a cell that raises does not stop the cells after it.
  It is started by ``fl.course.runner.execute``, as a lab run's is: quiet, whatever the shell sets.
* A grading cell appended to the submission calls every teacher check on the student's object
  (e.g. ``fl.checks.mae_to_years(mae_to_years)``) and records each verdict and its message in
  the run's ``results.json``. An object that is missing or raises fails its check, with the
  reason.

The score is the share of checks passed. ``grades.csv`` has one row per submission: student,
score, one column per check, status, seconds, every cell error, and the executed notebook a
student can be sent back.
"""

from __future__ import annotations

import ast
import contextlib
import io
from pathlib import Path

from faceattr_lab.course.checks import GRADING_ENV, grading

CHECK_PREFIX = "check:"
GRADES_FILE = "grades.csv"


def lab_checks(lab) -> list[tuple[str, str]]:
    """The self-checks a teacher lab calls, in order: ``[(check name, argument source)]``. Lab 00.

    ``fl.checks.mae_to_years(mae_to_years)`` gives ``("mae_to_years", "mae_to_years")``.
    """
    import nbformat

    from faceattr_lab.course import runner

    nb = nbformat.read(runner.find_lab(lab), as_version=4)
    calls = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(_without_magics(cell.source))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and ast.unparse(node.func.value) == "fl.checks" and node.args):
                calls.append((node.func.attr, ast.unparse(node.args[0])))
    return calls


def record_checks(calls, namespace: dict, results_dir=None) -> dict:
    """Run each ``(check, argument source)`` on ``namespace`` and record the verdicts. Lab 00.

    Called by the grading cell that :func:`grade` appends to a submission. Each verdict is
    recorded as ``"check:<name>"`` -> ``{"passed": bool, "message": str}``; returns them. When
    the notebook never reached its settings cell, the verdicts go to ``results_dir``.
    """
    from faceattr_lab import results
    from faceattr_lab.course import checks

    if not results.started() and results_dir is not None:
        results.start(results_dir)
    verdicts = {}
    for name, source in calls:
        output = io.StringIO()
        try:
            value = eval(source, namespace)  # noqa: S307 - the teacher's own argument expression
            with contextlib.redirect_stdout(output):
                passed = bool(getattr(checks, name)(value, strict=False))
            message = output.getvalue().strip()
        except Exception as exc:  # noqa: BLE001 - a student's error fails that check only
            passed, message = False, f"{name}: {type(exc).__name__}: {exc}"
        verdicts[name] = {"passed": passed, "message": message}
        results.record(CHECK_PREFIX + name, verdicts[name], display=False)
        print(("PASS  " if passed else "FAIL  ") + message)
    return verdicts


def find_submissions(folder, lab) -> dict[str, Path]:
    """Student id -> submitted notebook, for every ``.ipynb`` under ``folder``. Lab 00.

    ``folder/alice/02_custom_cnn_ablations.ipynb`` (the lab's own file name in a folder per
    student) is ``"alice"``; ``folder/bob.ipynb`` is ``"bob"``. Jupyter checkpoints are skipped.
    """
    from faceattr_lab.course import runner

    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder; pass the folder holding the submissions.")
    lab_name = runner.find_lab(lab).name
    found = {}
    for path in sorted(folder.rglob("*.ipynb")):
        relative = path.relative_to(folder)
        if ".ipynb_checkpoints" in relative.parts:
            continue
        student = str(relative.parent) if path.name == lab_name and relative.parent.parts \
            else str(relative.with_suffix(""))
        if student in found:
            raise ValueError(f"two submissions for {student!r}: {found[student]} and {path}; "
                             "keep one per student.")
        found[student] = path
    if not found:
        raise ValueError(f"no .ipynb files under {folder}.")
    return found


def grade(lab, submissions, output=None, parameters: dict | None = None,
          timeout: int | None = 1800, echo: bool = True):
    """Run every submission of ``lab`` and score it by the lab's self-checks. Lab 00.

    ``submissions`` is a folder (see :func:`find_submissions`). Each run goes to
    ``<output>/<student>/`` (default: the output folder's ``grades/<lab>``), in the quick
    profile unless ``parameters`` say otherwise. Writes ``<output>/grades.csv`` and returns the
    table (one row per student).
    """
    import nbformat
    import pandas as pd

    from faceattr_lab import config
    from faceattr_lab.course import runner

    teacher = runner.find_lab(lab)
    calls = lab_checks(teacher)
    if not calls:
        raise ValueError(f"{teacher.name} calls no fl.checks self-check; nothing to grade.")
    names = list(dict.fromkeys(name for name, _ in calls))
    out = Path(output) if output else config.output_dir("grades") / teacher.stem
    rows = []
    for student, path in find_submissions(submissions, teacher).items():
        if echo:
            print(f"grading {student} ...", flush=True)
        folder = out / student
        prepared = folder / "submission" / teacher.name
        prepared.parent.mkdir(parents=True, exist_ok=True)
        try:
            nb = nbformat.read(path, as_version=4)
        except Exception as exc:  # noqa: BLE001 - an unreadable file is graded 0 with the reason
            rows.append(_row(student, names, {}, "unreadable", 0.0, f"{type(exc).__name__}: {exc}",
                             None))
            continue
        nb.cells.append(nbformat.v4.new_code_cell(_grading_cell(calls, folder / prepared.stem)))
        nbformat.write(nb, prepared)
        try:
            run = runner.run_lab(prepared, parameters={"PROFILE": "quick", **(parameters or {})},
                                 output=folder, timeout=timeout, env={GRADING_ENV: "1"},
                                 allow_errors=True)
        except ValueError as exc:  # e.g. the student removed a parameter from its cell
            rows.append(_row(student, names, {}, "failed", 0.0, str(exc), None))
            continue
        errors = _cell_errors(run["notebook"])
        status = "ok" if run["status"] == "ok" else ("errors" if errors else "failed")
        rows.append(_row(student, names, run["results"], status, run["seconds"],
                         "; ".join(errors) or run["error"], run["notebook"]))
        if echo:
            print(f"  score {rows[-1]['score']:.2f} ({status})", flush=True)
    table = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / GRADES_FILE, index=False)
    if echo:
        with pd.option_context("display.max_colwidth", 80, "display.width", 200):
            print(table.drop(columns=["notebook", "errors"]).to_string(index=False))
        print(f"grades: {out / GRADES_FILE}")
    return table


def _grading_cell(calls, results_dir: Path) -> str:
    return ("# Added by faceattr_lab.course.grader: every self-check of the teacher's lab, on your code.\n"
            "import faceattr_lab.course.grader\n\n"
            f"faceattr_lab.course.grader.record_checks({calls!r}, globals(), {str(results_dir)!r})")


def _row(student, names, results, status, seconds, errors, notebook) -> dict:
    verdicts = {name: (results.get(CHECK_PREFIX + name) or {}).get("passed", False)
                for name in names}
    return {"student": student, "score": round(sum(verdicts.values()) / len(names), 3),
            **{name: "pass" if ok else ("fail" if CHECK_PREFIX + name in results else "not run")
               for name, ok in verdicts.items()},
            "status": status, "seconds": seconds, "errors": errors or "", "notebook": notebook}


def _cell_errors(notebook) -> list[str]:
    """``"cell N: Name: message"`` for every cell of an executed notebook that raised."""
    import nbformat

    if notebook is None or not Path(notebook).is_file():
        return []
    nb = nbformat.read(notebook, as_version=4)
    return [f"cell {index}: {output.ename}: {output.evalue}"
            for index, cell in enumerate(nb.cells) if cell.cell_type == "code"
            for output in cell.get("outputs", []) if output.output_type == "error"]


def _without_magics(source: str) -> str:
    """A cell's source with IPython magics and shell lines blanked, so ``ast`` can parse it."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                     for line in source.splitlines())


__all__ = ["GRADING_ENV", "CHECK_PREFIX", "GRADES_FILE", "grading", "lab_checks", "record_checks",
           "find_submissions", "grade"]
