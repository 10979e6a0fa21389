"""Headless lab runs with papermill, for `make labs`, instructors and CI. Lab 00.

Each lab runs in a fresh kernel with its parameters checked against the notebook's
``parameters`` cell (papermill itself only warns about unknown names). The executed copy and
its ``results.json`` land in ``<output>/<lab>/``, never in ``labs/``.
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


def run_lab(lab: str | Path, parameters: dict | None = None, output: str | Path | None = None,
            timeout: int | None = 1800, *, env: dict | None = None,
            allow_errors: bool = False) -> dict:
    """Execute one lab with papermill; return its status, seconds and recorded results. Lab 00.

    ``env`` adds environment variables for the kernel; ``allow_errors=True`` runs every cell
    even after one raises (the grader's mode), and the status is still "failed".
    """
    import papermill

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
    # line-based logs in the kernel, which inherits this process's environment
    kernel_env = {QUIET_ENV: "1", **(env or {})}
    previous = {name: os.environ.get(name) for name in kernel_env}
    os.environ.update({name: str(value) for name, value in kernel_env.items()})
    start = time.perf_counter()
    error = None
    try:
        papermill.execute_notebook(
            str(path), str(executed), parameters=parameters, cwd=str(path.parent),
            kernel_name="python3", progress_bar=False, log_output=False,
            execution_timeout=timeout, allow_errors=allow_errors,
        )
        status = "ok"
    except papermill.PapermillExecutionError as exc:
        status, error = "failed", f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
    except Exception as exc:  # a kernel death or timeout is a failed lab, not a crashed run
        status, error = "failed", f"{type(exc).__name__}: {exc}"
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return {
        "lab": path.stem, "status": status, "seconds": round(time.perf_counter() - start, 1),
        "results": results.load(lab_out), "error": error, "notebook": str(executed),
    }


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
    """Run labs (all by default) headlessly and return a summary table. Lab 00."""
    import pandas as pd

    paths = [find_lab(name) for name in labs] if labs else list_labs()
    rows = []
    for path in paths:
        if echo:
            print(f"running {path.stem} ...", flush=True)
        row = run_lab(path, parameters=parameters, output=output)
        if echo:
            print(f"  {row['status']} in {row['seconds']} s" + (f": {row['error']}" if row["error"]
                                                              else ""), flush=True)
        rows.append(row)
    table = pd.DataFrame(
        [{"lab": r["lab"], "status": r["status"], "seconds": r["seconds"],
          "key results": key_results(r["results"]) if r["status"] == "ok" else r["error"]}
         for r in rows],
        columns=["lab", "status", "seconds", "key results"],
    )
    if echo:
        with pd.option_context("display.max_colwidth", 120, "display.width", 200):
            print(table.to_string(index=False))
        folder = Path(output) if output else config.output_dir("labs")
        print(f"executed notebooks and results.json files: {folder}")
    return table


__all__ = ["labs_dir", "list_labs", "find_lab", "lab_parameters", "run_lab", "run_labs",
           "key_results"]
