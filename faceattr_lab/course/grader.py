"""Grading students' submissions headlessly: isolated runs, verdicts decided outside. Lab 00.

A *submission* is a student's copy of a lab (``make student`` builds the copies to hand out)
with the exercises filled in. :func:`grade` grades a folder of them, ``jobs`` at a time or on a
Dask cluster; :func:`grade_one` grades one:

* **The verdicts cannot be forged from the notebook.** The checks and the objects they check
  are read from the **teacher's** lab; :func:`faceattr_lab.course.verdicts.decide` reads the
  submission's code as source (its imports, functions and classes), runs it in a sandbox
  process and calls each teacher check in the grading process through a proxy, so nothing the
  notebook prints, writes or patches, and no edited check cell, changes a verdict.
* **One submission costs only its own row.** The notebook runs (papermill, in the grading
  profile: the quick one with one epoch per training) from a working copy in its own folder,
  in a child process under a wall-clock timeout and a memory cap, in a kernel that refuses
  writes outside that folder and new processes; its executed notebook, outputs capped, is what
  the student gets back. Statuses: ``ok``, ``errors``, ``timeout``, ``killed``, ``memory``,
  ``invalid``, each with a reason.

The score is the share of checks passed, from the code, whatever the run's status (the status
says what else went wrong). ``grades.csv`` has one row per submission, appended as each
finishes; ``<student>/verdicts.json`` holds each check's verdict and message; at the end
:func:`faceattr_lab.course.cohort.report` writes the instructor's view.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from faceattr_lab.course.checks import GRADING_ENV, grading
from faceattr_lab.course.verdicts import lab_checks

GRADES_FILE = "grades.csv"


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


STATUSES = ("ok", "errors", "timeout", "killed", "memory", "invalid")
DEFAULT_TIMEOUT = 1800
OUTPUT_LIMIT = 100_000  # characters kept of each output of an executed notebook
VERDICTS_FILE = "verdicts.json"
_RUN_STATE = "run.json"


def grade_one(teacher, student: str, submission, folder, parameters: dict | None = None,
              timeout: float | None = DEFAULT_TIMEOUT, memory_mb: int | None = None,
              check_timeout: float = 120.0, output_limit: int = OUTPUT_LIMIT) -> dict:
    """Grade one submission in its own process and folder; its ``grades.csv`` row. Lab 00.

    The notebook runs (papermill, grading mode, ``FACEATTR_LAB_GRADING=1``) from a working
    copy in ``folder/work/``, in a child process watched for ``timeout`` wall-clock seconds
    and ``memory_mb`` of resident memory (the child, its kernel and their processes); its
    kernel refuses file writes outside ``folder/work/`` (and the temp and data folders) and
    new processes (:func:`faceattr_lab.course.verdicts.install_guard`). The executed notebook
    (``folder/<lab>.ipynb``, each output capped at ``output_limit`` characters) ends with a
    feedback cell. The verdicts come from :func:`faceattr_lab.course.verdicts.decide`, outside
    the kernel, and go to ``folder/verdicts.json``. Runs where the caller sends it: a
    process pool, a Dask worker.
    """
    import json
    import shutil

    import nbformat

    from faceattr_lab.course import runner, verdicts

    teacher, submission, folder = Path(teacher), Path(submission), Path(folder)
    calls = lab_checks(teacher)
    names = list(dict.fromkeys(name for name, _ in calls))
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    def finish(status, reason, checks, notebook=None, errors=""):
        (folder / VERDICTS_FILE).write_text(json.dumps(checks, indent=1))
        return _row(student, names, checks, status, reason, round(time.perf_counter() - start, 1),
                    errors, notebook)

    try:
        nb = nbformat.read(submission, as_version=4)
        nbformat.validate(nb)
    except Exception as exc:  # noqa: BLE001 - not a notebook: graded 0 with the reason
        return finish("invalid", f"not a valid notebook: {type(exc).__name__}: {exc}"[:300], {})
    known = _parameters_of(nb)
    wanted = {"PROFILE": "grading", **(parameters or {})}
    missing = sorted(set(wanted) - set(known or {}))
    if known is None or missing:
        return finish("invalid", "not a notebook of this lab: " + (
            "no cell tagged 'parameters'" if known is None else
            f"its parameters cell lacks {missing} (restore it from the lab you were given)"), {})
    work = folder / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    prepared = work / teacher.name
    nbformat.write(nb, prepared)
    if "OUTPUT_DIR" in known:
        wanted.setdefault("OUTPUT_DIR", str(work / "outputs"))
    executed = folder / teacher.name
    status, reason = _run_watched(prepared, executed, wanted, work, timeout, memory_mb)
    errors = _cell_errors(executed)
    refused = [e for e in errors if "grading: " in e and "not allowed" in e]
    if refused:
        status, reason = "invalid", f"tried to write outside its folder or start a process " \
                                    f"(refused): {refused[0][:200]}"
    elif status in ("ok", "errors") and errors:  # one numbering: the executed notebook's
        status, reason = "errors", f"{len(errors)} cell(s) raised, the first: {errors[0]}"[:300]
    try:
        checks = verdicts.decide(teacher, submission, timeout=check_timeout)
    except Exception as exc:  # noqa: BLE001 - e.g. the grading machine ran out of something
        checks = {name: {"passed": False, "message": f"not graded: {type(exc).__name__}: {exc}"}
                  for name in names}
    if executed.is_file():
        _cap_and_feedback(executed, checks, output_limit, status, reason)
    return finish(status, reason, checks, str(executed) if executed.is_file() else None,
                  "; ".join(errors))


def _parameters_of(nb) -> dict | None:
    import papermill

    if not any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells):
        return None
    try:
        return papermill.inspect_notebook(nb)  # accepts a NotebookNode
    except Exception:  # noqa: BLE001 - papermill could not read the cell
        return {}


_CHILD = """import json, sys
from faceattr_lab.course import runner, verdicts
source, executed, parameters, timeout = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), None
error = runner.execute(source, executed, parameters, env=json.loads(sys.argv[4]),
                       timeout=None, allow_errors=True, kernel_arguments=json.loads(sys.argv[5]))
open(sys.argv[6], "w").write(json.dumps({"error": error}))
"""


def _run_watched(prepared: Path, executed: Path, parameters: dict, work: Path,
                 timeout, memory_mb) -> tuple[str, str]:
    """Run ``prepared`` in a child process under a wall-clock and memory watchdog."""
    import json
    import subprocess
    import sys

    import psutil

    from faceattr_lab import config
    from faceattr_lab.course import verdicts

    state = executed.parent / _RUN_STATE
    state.unlink(missing_ok=True)
    roots = os.pathsep.join([str(work), str(config.data_dir())])
    (work / ".tmp").mkdir(exist_ok=True)
    env = {GRADING_ENV: "1", verdicts.GUARD_ROOTS_ENV: roots, "MPLCONFIGDIR": str(work / ".mpl"),
           "TMPDIR": str(work / ".tmp"),
           config.OUTPUT_ENV: str(work / "outputs"), "CUDA_VISIBLE_DEVICES": ""}
    guard = ("import faceattr_lab.course.verdicts as _grading_guard; "
             "_grading_guard.install_guard(); del _grading_guard")
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(prepared), str(executed), json.dumps(parameters),
         json.dumps(env), json.dumps([f"--IPKernelApp.exec_lines={[guard]!r}"]), str(state)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=open(executed.parent / "runner.log", "w"), start_new_session=True)
    started, verdict = time.monotonic(), None
    parent = psutil.Process(child.pid)
    while child.poll() is None:
        if timeout is not None and time.monotonic() - started > timeout:
            verdict = ("timeout", f"ran past the {timeout:g} s timeout")
        elif memory_mb is not None:
            try:
                rss = sum(p.memory_info().rss for p in [parent, *parent.children(recursive=True)])
            except psutil.Error:
                rss = 0
            if rss > memory_mb * 2**20:
                verdict = ("memory", f"used {rss / 2**20:.0f} MB, over the {memory_mb} MB cap")
        if verdict:
            _kill_tree(parent)
            break
        time.sleep(0.2)
    child.wait()
    if verdict:
        return verdict
    try:
        error = json.loads(state.read_text())["error"]
    except (OSError, ValueError, KeyError):
        return "killed", f"the grading process ended with code {child.returncode}"
    if error and ("DeadKernel" in error or "died" in error.lower()):
        return "killed", "the kernel died (the notebook killed it or crashed it)"
    if error:
        return "errors", error[:300]
    return "ok", ""


def _kill_tree(process) -> None:
    import psutil

    try:
        family = [process, *process.children(recursive=True)]
    except psutil.Error:
        family = [process]
    for p in family:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(family, timeout=10)


def _cap_and_feedback(executed: Path, checks: dict, limit: int, status: str, reason: str) -> None:
    """Cap each output of the executed notebook at ``limit`` characters; add the verdicts."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                output["text"] = _capped(output.get("text", ""), limit)
            for kind, value in list(output.get("data", {}).items()):
                if isinstance(value, str) and len(value) > limit:
                    output["data"][kind] = _capped(value, limit)
    lines = [("PASS  " if v["passed"] else "FAIL  ") + v["message"] for v in checks.values()]
    if status != "ok":
        lines.append(f"run: {status}" + (f" ({reason})" if reason else ""))
    cell = nbformat.v4.new_code_cell(
        "# Added by faceattr_lab.course.grader: the teacher's self-checks, run on your code "
        "outside this notebook.")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="\n".join(lines) + "\n")]
    nb.cells.append(cell)
    nbformat.write(nb, executed)


def _capped(text, limit: int) -> str:
    text = "".join(text) if isinstance(text, list) else str(text)
    if len(text) <= limit:
        return text
    return (text[:limit] + f"\n[... {len(text) - limit} more characters cut by the grader: "
            f"outputs are capped at {limit} characters]\n")


def _hash_files(paths) -> dict:
    import hashlib

    found = {}
    for root in paths:
        root = Path(root)
        for path in ([root] if root.is_file() else sorted(root.rglob("*"))):
            if path.is_file():
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def grade(lab, submissions, output=None, parameters: dict | None = None,
          timeout: float | None = DEFAULT_TIMEOUT, echo: bool = True, *, jobs: int = 1,
          memory_mb: int | None = None, force: bool = False, scheduler: str | None = None,
          check_timeout: float = 120.0, output_limit: int = OUTPUT_LIMIT):
    """Grade every submission of ``lab``: one row each in ``grades.csv``. Lab 00.

    ``submissions`` is a folder (see :func:`find_submissions`). Each is graded by
    :func:`grade_one` in ``<output>/<student>/`` (default output: ``grades/<lab>`` in the output
    folder), in the quick profile unless ``parameters`` say otherwise, ``jobs`` at a time
    (processes), or on a Dask cluster at ``scheduler`` (``"tcp://host:8786"``). Rows are
    appended to ``<output>/grades.csv`` as each finishes; students already there are skipped
    unless ``force``. Returns the whole table. The teacher lab and the submissions folder are
    hashed before and after; a changed file is restored and its grader run marked invalid.
    At the end ``fl.course.cohort.report`` writes the instructor's view beside grades.csv.
    """
    import concurrent.futures as cf
    import multiprocessing
    import shutil

    import pandas as pd

    from faceattr_lab import config
    from faceattr_lab.course import runner

    teacher = runner.find_lab(lab)
    calls = lab_checks(teacher)
    if not calls:
        raise ValueError(f"{teacher.name} calls no fl.checks self-check; nothing to grade.")
    if not (isinstance(jobs, int) and not isinstance(jobs, bool) and jobs >= 1):
        raise ValueError(f"jobs={jobs!r}; pass a whole number of submissions at once, e.g. 2.")
    for name, value in (("timeout", timeout), ("memory_mb", memory_mb)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or value <= 0):
            raise ValueError(f"{name}={value!r}; pass a number above 0 (seconds for timeout, "
                             "megabytes for memory_mb), or None for no limit.")
    names = list(dict.fromkeys(name for name, _ in calls))
    out = Path(output) if output else config.output_dir("grades") / teacher.stem
    out.mkdir(parents=True, exist_ok=True)
    found = find_submissions(submissions, teacher)
    csv = out / GRADES_FILE
    columns = ["student", "score", *names, "status", "reason", "seconds", "errors", "notebook"]
    done = pd.read_csv(csv, dtype={"student": str}) if csv.is_file() else pd.DataFrame(
        columns=columns)
    if force:
        done = done[~done["student"].isin(list(found))]
        done.to_csv(csv, index=False)
    todo = {s: p for s, p in found.items() if s not in set(done["student"])}
    if echo and len(todo) < len(found):
        print(f"{len(found) - len(todo)} already graded in {csv} (--force grades them again)")
    pristine = out / ".pristine"
    shutil.rmtree(pristine, ignore_errors=True)
    (pristine / "labs").mkdir(parents=True)
    for lab_file in runner.list_labs(teacher.parent) + [teacher]:
        shutil.copy2(lab_file, pristine / "labs" / lab_file.name)
    watched = sorted(set(runner.list_labs(teacher.parent) + [teacher])) + [Path(submissions)]
    before = _hash_files(watched)

    def record(row):
        changed = sorted(p for p, h in _hash_files(watched).items() if before.get(p) != h)
        changed += sorted(set(before) - set(_hash_files(watched)))
        if changed:
            _restore(changed, teacher.parent, pristine / "labs", Path(submissions), found)
            row.update(status="invalid", reason=f"wrote outside its folder: {changed[:3]}",
                       score=0.0, **{n: "fail" for n in names})
        pd.DataFrame([row], columns=columns).to_csv(csv, mode="a", index=False,
                                                    header=not csv.is_file() or
                                                    csv.stat().st_size == 0)
        if echo:
            print(f"{row['student']}: score {row['score']:.2f} ({row['status']}"
                  + (f": {row['reason']}" if row["reason"] else "") + ")", flush=True)

    kwargs = dict(parameters=parameters, timeout=timeout, memory_mb=memory_mb,
                  check_timeout=check_timeout, output_limit=output_limit)
    args = {s: (str(teacher), s, str(p), str(out / s)) for s, p in todo.items()}
    if scheduler:
        from distributed import Client, as_completed

        with Client(scheduler) as client:
            futures = [client.submit(grade_one, *a, **kwargs, key=f"grade-{s}-{time.time_ns()}",
                                     pure=False) for s, a in args.items()]
            for future in as_completed(futures):
                record(future.result())
    elif jobs == 1:
        for a in args.values():
            record(grade_one(*a, **kwargs))
    else:
        with cf.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(grade_one, *a, **kwargs) for a in args.values()]
            for future in cf.as_completed(futures):
                record(future.result())
    shutil.rmtree(pristine, ignore_errors=True)
    table = pd.read_csv(csv, dtype={"student": str}, keep_default_na=False)
    table = table[table["student"].isin(list(found))].reset_index(drop=True)
    from faceattr_lab.course import cohort

    written = cohort.report(out)  # the instructor's view, beside grades.csv
    if echo:
        with pd.option_context("display.max_colwidth", 60, "display.width", 200):
            print(table.drop(columns=["notebook", "errors"]).to_string(index=False))
        print(f"grades: {csv}\ncohort view: {written['check_pass_rates']}, "
              f"{written['score_histogram']}, {written['common_errors']}, "
              f"{len(written['feedback'])} feedback files in {out / 'feedback'}")
    return table


def _restore(changed, labs, pristine_labs, submissions, found) -> None:
    """Put the teacher's labs back from the pristine copy (submissions are reported only)."""
    import shutil

    for path in changed:
        path = Path(path)
        with contextlib.suppress(ValueError, OSError):
            relative = path.relative_to(labs)
            if (pristine_labs / relative).is_file():
                shutil.copy2(pristine_labs / relative, path)
            elif path.is_file():
                path.unlink()


def _row(student, names, checks, status, reason, seconds, errors, notebook) -> dict:
    passed = {name: bool((checks.get(name) or {}).get("passed")) for name in names}
    return {"student": student, "score": round(sum(passed.values()) / len(names), 3),
            **{name: "pass" if ok else ("fail" if name in checks else "not run")
               for name, ok in passed.items()},
            "status": status, "reason": reason or "", "seconds": seconds, "errors": errors or "",
            "notebook": notebook or ""}


def _cell_errors(notebook) -> list[str]:
    """``"cell N: Name: message"`` for every cell of an executed notebook that raised."""
    import nbformat

    if notebook is None or not Path(notebook).is_file():
        return []
    nb = nbformat.read(notebook, as_version=4)
    return [f"cell {index}: {output.ename}: {output.evalue}"
            for index, cell in enumerate(nb.cells) if cell.cell_type == "code"
            for output in cell.get("outputs", []) if output.output_type == "error"]


__all__ = ["GRADING_ENV", "GRADES_FILE", "VERDICTS_FILE", "STATUSES",
           "OUTPUT_LIMIT", "grading", "lab_checks", "find_submissions",
           "grade_one", "grade"]
