"""The instructor's view of a graded lab: pass rates, scores, common errors, feedback. Lab 00.

:func:`report` reads what ``fl.course.grader.grade`` wrote in a grades folder (``grades.csv``
and each ``<student>/verdicts.json``) and writes beside ``grades.csv``:

* ``check_pass_rates.csv``: per check, how many students passed, failed or never ran it;
* ``score_histogram.png``: the cohort's scores, with the mean and median marked;
* ``common_errors.csv``: the commonest cell errors, the same error in different cells or
  notebooks grouped together, with example students;
* ``feedback/<student>.md``: a short note per student to send back (:func:`feedback_name`
  maps a student id such as ``group1/alice`` to a safe file name).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import quote, unquote

GRADES_FILE = "grades.csv"
VERDICTS_FILE = "verdicts.json"
PASS_RATES_FILE = "check_pass_rates.csv"
HISTOGRAM_FILE = "score_histogram.png"
ERRORS_FILE = "common_errors.csv"
FEEDBACK_DIR = "feedback"
# grades.csv columns that are not checks; every other column is one check's verdict
INFO_COLUMNS = ("student", "score", "status", "reason", "seconds", "errors", "notebook")
VERDICTS = ("pass", "fail", "not run")
EXAMPLE_STUDENTS = 3  # students named per common error
_CELL_ERROR = re.compile(r"(?:^|;\s+)(?=cell \d+: )")


def feedback_name(student: str) -> str:
    """A file name for a student id (``group1/alice`` -> ``group1%2Falice.md``). Lab 00.

    Percent-encoding keeps letters, digits and ``_.-~``; ``unquote`` of the stem gives the id.
    """
    return quote(str(student), safe="") + ".md"


def student_of(filename: str | Path) -> str:
    """The student id of a feedback file name (the inverse of :func:`feedback_name`). Lab 00."""
    return unquote(Path(filename).name.removesuffix(".md"))


def read_grades(grades_dir: str | Path):
    """``grades.csv`` of a grades folder as a table, and its check columns. Lab 00.

    Text stays text (a student ``007`` keeps its zeros); ``score`` and ``seconds`` are
    numbers; a missing ``reason`` column reads as empty.
    """
    import pandas as pd

    path = Path(grades_dir) / GRADES_FILE
    if not path.is_file():
        raise ValueError(f"no {GRADES_FILE} in {grades_dir}; pass the folder that "
                         "`faceattr-lab labs grade` wrote (outputs/grades/<lab>).")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "student" not in table.columns or "score" not in table.columns:
        raise ValueError(f"{path} has no student or score column; pass a grades.csv that "
                         "the grader wrote.")
    for column in INFO_COLUMNS:
        if column not in table.columns:
            table[column] = ""
    table["score"] = pd.to_numeric(table["score"], errors="coerce").fillna(0.0)
    table["seconds"] = pd.to_numeric(table["seconds"], errors="coerce")
    checks = [c for c in table.columns if c not in INFO_COLUMNS]
    for check in checks:
        table[check] = table[check].str.strip().str.lower()
        odd = sorted(set(table[check]) - set(VERDICTS))
        if odd:
            raise ValueError(f"column {check!r} of {path} holds {odd}; a check column holds "
                             f"only {list(VERDICTS)}.")
    return table, checks


def read_verdicts(grades_dir: str | Path, student: str) -> dict:
    """A student's ``{check: {"passed", "message"}}`` (empty when none was written). Lab 00."""
    path = Path(grades_dir) / student / VERDICTS_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text()) or {}
    except (OSError, ValueError):
        return {}


def pass_rates(table, checks) -> "pd.DataFrame":
    """Per check: students who passed, failed, never ran it, and the pass rate. Lab 00."""
    import pandas as pd

    rows = []
    for check in checks:
        counts = table[check].value_counts()
        passed, failed, missed = (int(counts.get(v, 0)) for v in VERDICTS)
        rows.append({"check": check, "passed": passed, "failed": failed, "not_run": missed,
                     "pass_rate": round(passed / len(table), 3) if len(table) else 0.0})
    return pd.DataFrame(rows, columns=["check", "passed", "failed", "not_run", "pass_rate"])


def score_histogram(table, checks, title: str | None = None):
    """A histogram of the scores, one bar per possible score, mean and median marked. Lab 00.

    With ``n`` checks a score is ``k / n``, so the figure has ``n + 1`` bars (empty ones
    included); returns the figure without showing it.
    """
    import numpy as np
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    from faceattr_lab import plots

    scores = table["score"].astype(float).to_numpy()
    n = max(len(checks), 1)
    edges = (np.arange(n + 2) - 0.5) / n
    fig, ax = plots._figure(figsize=(max(5.5, 2.5 + 0.45 * (n + 1)), 3.6))
    counts, _, bars = ax.hist(scores, bins=edges, rwidth=0.85, color="tab:blue",
                              edgecolor="white", label="students")
    for text in ax.bar_label(bars, labels=[str(int(c)) if c else "" for c in counts],
                             fontsize=8, padding=2):  # readable where a mean line crosses
        text.set(bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5}, zorder=5)
    mean, median = float(np.mean(scores)), float(np.median(scores))
    ax.axvline(mean, color=plots.BASELINE_COLOR, linestyle="--", linewidth=1.2,
               label=f"mean {mean:.0%}")
    ax.axvline(median, color="tab:orange", linestyle=":", linewidth=1.6,
               label=f"median {median:.0%}")
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xticks(np.arange(n + 1) / n)
    ax.xaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0, max(counts.max() * 1.15, 1))
    ax.set_xlabel(f"score (share of the {len(checks)} self-checks passed)")
    ax.set_ylabel("students")
    ax.set_title(title or f"Scores of {len(scores)} students")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def split_errors(text: str) -> list[str]:
    """The separate errors of a grades.csv ``errors`` field (``"cell N: ...; cell M: ..."``)."""
    text = (text or "").strip()
    if not text:
        return []
    return [part.strip() for part in _CELL_ERROR.split(text) if part.strip()]


def normalise_error(error: str) -> str:
    """An error without what differs between cells and students (cell number, paths,
    addresses, numbers), so the same mistake groups together. Lab 00."""
    text = re.sub(r"^cell \d+:\s*", "", error.strip())
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # colour codes of a traceback
    text = re.sub(r"0x[0-9a-fA-F]+", "0x…", text)
    text = re.sub(r"(?:[A-Za-z]:)?(?:/[^\s'\":,;()]+){2,}", "<path>", text)
    text = re.sub(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e-?\d+)?(?!\w|\.\d)", "<n>", text)
    text = re.sub(r"\s+", " ", text).strip()
    return text[:300]


def common_errors(table) -> "pd.DataFrame":
    """The cohort's cell errors grouped by :func:`normalise_error`, commonest first. Lab 00.

    Columns: ``error``, ``students`` (how many had it), ``occurrences``, ``example_students``
    and ``example`` (one error as it was raised).
    """
    import pandas as pd

    groups: dict[str, dict] = {}
    for student, errors in zip(table["student"], table["errors"]):
        for error in split_errors(errors):
            key = normalise_error(error)
            group = groups.setdefault(key, {"students": [], "occurrences": 0, "example": error})
            group["occurrences"] += 1
            if student not in group["students"]:
                group["students"].append(student)
    rows = [{"error": key, "students": len(g["students"]), "occurrences": g["occurrences"],
             "example_students": ", ".join(g["students"][:EXAMPLE_STUDENTS]),
             "example": g["example"]} for key, g in groups.items()]
    columns = ["error", "students", "occurrences", "example_students", "example"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values(["students", "occurrences"], ascending=False, kind="stable",
                             ignore_index=True)


def feedback(row, checks, verdicts: dict) -> str:
    """A student's feedback in markdown: score, status, passed, what is off, first error. Lab 00."""
    passed = [c for c in checks if row[c] == "pass"]
    status = row["status"] + (f" ({row['reason']})" if row.get("reason") else "")
    lines = [f"# Feedback for {row['student']}", "",
             f"- Score: {float(row['score']):.0%} ({len(passed)} of {len(checks)} checks passed)",
             f"- Status: {status}"]
    if row.get("notebook"):
        lines.append(f"- Your executed notebook: `{row['notebook']}`")
    lines += ["", "## Passed", ""]
    lines += [f"- {c}" for c in passed] or ["- none yet"]
    off = [c for c in checks if row[c] != "pass"]
    lines += ["", "## To work on", ""]
    for check in off:
        message = ((verdicts.get(check) or {}).get("message") or "").strip()
        if row[check] == "not run":
            message = message or ("never checked: the notebook stopped before this check, or "
                                  "the exercise's function is missing")
        message = message or "failed (no message recorded)"
        lines.append(f"- **{check}**: {' '.join(message.split())}")
    if not off:
        lines.append("- nothing: every check passes")
    errors = split_errors(row.get("errors", ""))
    lines += ["", "## First error", "", f"`{errors[0]}`" if errors else "none"]
    return "\n".join(lines) + "\n"


def report(grades_dir: str | Path) -> dict:
    """Write the cohort's pass rates, score histogram, common errors and feedback. Lab 00.

    Reads ``<grades_dir>/grades.csv`` and each ``<grades_dir>/<student>/verdicts.json``;
    writes beside grades.csv. Returns the written paths: ``{"check_pass_rates": path,
    "score_histogram": path, "common_errors": path, "feedback": {student: path}}``.
    """
    from faceattr_lab import plots

    folder = Path(grades_dir)
    table, checks = read_grades(folder)
    written = {"check_pass_rates": folder / PASS_RATES_FILE,
               "score_histogram": folder / HISTOGRAM_FILE,
               "common_errors": folder / ERRORS_FILE, "feedback": {}}
    pass_rates(table, checks).to_csv(written["check_pass_rates"], index=False)
    # the lab: the executed notebooks' file name (grades/<lab>/<student>/<lab>.ipynb), else
    # the folder's name
    notebooks = {Path(str(n)).stem for n in table.get("notebook", []) if str(n).endswith(".ipynb")}
    lab = notebooks.pop() if len(notebooks) == 1 else folder.name
    plots.save(score_histogram(table, checks, title=f"Scores of {len(table)} students, {lab}"),
               written["score_histogram"])
    common_errors(table).to_csv(written["common_errors"], index=False)
    (folder / FEEDBACK_DIR).mkdir(exist_ok=True)
    for _, row in table.iterrows():
        path = folder / FEEDBACK_DIR / feedback_name(row["student"])
        path.write_text(feedback(row, checks, read_verdicts(folder, row["student"])))
        written["feedback"][row["student"]] = path
    return written


__all__ = ["GRADES_FILE", "VERDICTS_FILE", "feedback_name", "student_of", "read_grades",
           "read_verdicts", "pass_rates", "score_histogram", "split_errors", "normalise_error",
           "common_errors", "feedback", "report"]
