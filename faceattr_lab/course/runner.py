"""Headless lab runs with papermill, for `make labs`, instructors and CI. Lab 00.

Each lab runs in a fresh kernel with its parameters checked against the notebook's
``parameters`` cell (papermill itself only warns about unknown names). The executed copy and
its ``results.json`` land in ``<output>/<lab>/``, never in ``labs/``. The kernel's environment
is set here (:func:`kernel_environment`), not left to the shell, and what its C code prints
(TensorFlow's start-up lines) goes to ``kernel.log`` there rather than into the notebook.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from faceattr_lab import config
from faceattr_lab.config import QUIET_ENV


def labs_dir() -> Path:
    """The folder holding the teacher labs. Lab 00."""
    root = config.repo_root()
    if root is None:
        raise ValueError("the labs live in a checkout of faceattr-lab; clone the repository "
                         "and run from there (see README).")
    return root / "labs"


def list_labs(folder: str | Path | None = None) -> list[Path]:
    """The lab notebooks ``NN_slug.ipynb`` in number order. Lab 00."""
    folder = Path(folder) if folder else labs_dir()
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def find_lab(name: str | Path, folder: str | Path | None = None) -> Path:
    """Resolve ``"00"``, ``"00_quickstart"`` or a path to a lab notebook. Lab 00."""
    path = Path(name)
    if path.suffix == ".ipynb" and path.exists():
        return path
    matches = [p for p in list_labs(folder) if p.stem == str(name) or p.stem.startswith(f"{name}_")]
    if len(matches) != 1:
        options = ", ".join(p.stem for p in list_labs(folder))
        raise ValueError(f"no single lab matches {name!r}; choose one of: {options}.")
    return matches[0]


def lab_parameters(path: str | Path) -> dict:
    """The names, types, defaults and help of a lab's ``parameters`` cell. Lab 00."""
    import papermill

    return papermill.inspect_notebook(str(path))


# TensorFlow's C++ log level for lab kernels (2: errors only) unless the caller's shell sets one
TF_LOG_LEVEL = "2"
KERNEL_LOG = "kernel.log"
# Off, the kernel no longer copies what C code writes to file descriptors 1 and 2 into the
# notebook; those lines (TensorFlow's start-up banner, cuInit errors: printed before absl
# logging starts, so TF_CPP_MIN_LOG_LEVEL cannot quiet them) go to the kernel's log instead.
# Python's own output, warnings included, still reaches the notebook.
KERNEL_ARGUMENTS = ("--IPKernelApp.capture_fd_output=False",)
# run_labs' summary; load: the 1-minute load average when the lab started (os.getloadavg)
SUMMARY_COLUMNS = ["lab", "status", "seconds", "load", "key results"]


def kernel_environment(env: dict | None = None) -> dict:
    """The environment of a headless lab kernel: this one, quieted, plus ``env``. Lab 00.

    Sets ``$FACEATTR_LAB_QUIET`` (one log line per epoch) and, unless already set,
    ``$TF_CPP_MIN_LOG_LEVEL``; ``env`` wins over both. :func:`run_lab` and the grader use it.
    """
    base = dict(os.environ)
    base.setdefault("TF_CPP_MIN_LOG_LEVEL", TF_LOG_LEVEL)
    base[QUIET_ENV] = "1"
    for name, value in (env or {}).items():
        if not isinstance(name, str) or value is None:
            raise ValueError(f"env[{name!r}]={value!r}; pass string names and values, e.g. "
                             f"{{{QUIET_ENV!r}: '1'}}.")
        base[name] = str(value)
    return base


def _kernel_manager_class(env: dict, log):
    """A kernel manager that starts its kernel with ``env`` and its own output going to ``log``."""
    from jupyter_client import AsyncKernelManager

    class LabKernelManager(AsyncKernelManager):
        async def _async_start_kernel(self, **kw):
            kw.setdefault("env", env)
            kw.setdefault("stdout", log)
            kw.setdefault("stderr", log)
            return await super()._async_start_kernel(**kw)

        start_kernel = _async_start_kernel

    return LabKernelManager


def execute(source: str | Path, executed: str | Path, parameters: dict | None = None, *,
            env: dict | None = None, timeout: int | None = 1800,
            allow_errors: bool = False, kernel_arguments=()) -> str | None:
    """Run a notebook with papermill in a quiet kernel; None when it ran, else the error. Lab 00.

    ``kernel_arguments`` are added to the kernel's command line (the grader's start-up guard).
    The kernel gets :func:`kernel_environment` (``env`` added) and writes what its C code
    prints (TensorFlow's start-up lines) to ``kernel.log`` beside ``executed``, not into the
    notebook. The shared core of :func:`run_lab` and ``fl.course.grader.grade``.
    """
    import papermill

    executed = Path(executed)
    executed.parent.mkdir(parents=True, exist_ok=True)
    log_path = executed.parent / KERNEL_LOG
    with open(log_path, "w") as log:
        try:
            papermill.execute_notebook(
                str(source), str(executed), parameters=dict(parameters or {}),
                cwd=str(Path(source).parent), kernel_name="python3", progress_bar=False,
                log_output=False, execution_timeout=timeout, allow_errors=allow_errors,
                extra_arguments=[*KERNEL_ARGUMENTS, *kernel_arguments],
                kernel_manager_class=_kernel_manager_class(kernel_environment(env), log),
            )
        except papermill.PapermillExecutionError as exc:
            return f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
        except Exception as exc:  # a kernel death or timeout is a failed lab, not a crashed run
            return f"{type(exc).__name__}: {exc} (the kernel's own messages: {log_path})"
    return None


def run_lab(lab: str | Path, parameters: dict | None = None, output: str | Path | None = None,
            timeout: int | None = 1800, *, env: dict | None = None,
            allow_errors: bool = False) -> dict:
    """Execute one lab with papermill; return its status, seconds and recorded results. Lab 00.

    ``env`` adds environment variables for the kernel (see :func:`kernel_environment`);
    ``allow_errors=True`` runs every cell even after one raises (the grader's mode), and the
    status is still "failed". The row also gives the 1-minute load average at the start, so
    the seconds can be quoted with the machine's load.
    """
    from faceattr_lab import results

    path = find_lab(lab)
    parameters = dict(parameters or {})
    known = lab_parameters(path)
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise ValueError(f"{path.stem} has no parameter(s) {unknown}; its parameters are "
                         f"{sorted(known)}.")
    out_dir = Path(output) if output else config.output_dir("labs")
    lab_out = out_dir / path.stem
    lab_out.mkdir(parents=True, exist_ok=True)
    if "OUTPUT_DIR" in known:
        parameters.setdefault("OUTPUT_DIR", str(lab_out))
    executed = lab_out / path.name
    load = load_average()
    start = time.perf_counter()
    error = execute(path, executed, parameters, env=env, timeout=timeout,
                    allow_errors=allow_errors)
    return {
        "lab": path.stem, "status": "failed" if error else "ok",
        "seconds": round(time.perf_counter() - start, 1), "load": load,
        "results": results.load(lab_out), "error": error, "notebook": str(executed),
    }


def load_average() -> float | None:
    """The machine's 1-minute load average (None where the OS has none, e.g. Windows). Lab 00."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def key_results(values: dict, limit: int = 4) -> str:
    """A one-line digest of a lab's scalar results for the summary table. Lab 00."""
    parts = []
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        parts.append(f"{name}={value:.3g}" if isinstance(value, float) else f"{name}={value}")
        if len(parts) == limit:
            break
    return ", ".join(parts)


def run_labs(labs=None, parameters: dict | None = None, output: str | Path | None = None,
             echo: bool = True):
    """Run labs (all by default) headlessly and return a summary table. Lab 00.

    One row per lab: status, seconds, ``load`` (the 1-minute load average when it started)
    and its key results.
    """
    import pandas as pd

    paths = [find_lab(name) for name in labs] if labs else list_labs()
    rows = []
    for path in paths:
        if echo:
            print(f"running {path.stem} ...", flush=True)
        row = run_lab(path, parameters=parameters, output=output)
        if echo:
            print(f"  {row['status']} in {row['seconds']} s at load {_load_text(row['load'])}"
                  + (f": {row['error']}" if row["error"] else ""), flush=True)
        rows.append(row)
    table = pd.DataFrame(
        [{"lab": r["lab"], "status": r["status"], "seconds": r["seconds"],
          "load": r["load"],
          "key results": key_results(r["results"]) if r["status"] == "ok" else r["error"]}
         for r in rows],
        columns=SUMMARY_COLUMNS,
    )
    if echo:
        with pd.option_context("display.max_colwidth", 120, "display.width", 200):
            print(table.to_string(index=False))
        folder = Path(output) if output else config.output_dir("labs")
        cpus = os.cpu_count()
        print(f"load: the 1-minute load average when the lab started, on {cpus} CPUs (above "
              f"{cpus}, the lab shared them and ran slower than on a quiet machine)")
        print(f"executed notebooks and results.json files: {folder}")
    return table


def _load_text(load) -> str:
    return "n/a" if load is None else f"{load:.2f}"


__all__ = ["TF_LOG_LEVEL", "KERNEL_LOG", "KERNEL_ARGUMENTS", "SUMMARY_COLUMNS", "labs_dir",
           "list_labs", "find_lab", "lab_parameters", "kernel_environment", "execute", "run_lab",
           "load_average", "run_labs", "key_results"]
