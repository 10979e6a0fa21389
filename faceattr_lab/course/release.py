"""Teacher and student notebooks: clean form, conventions, and the student copy. Lab 00.

The teacher lab is the one source. Exercise solutions sit between ``### BEGIN SOLUTION`` and
``### END SOLUTION``; the student copy replaces them with a stub that raises
``NotImplementedError``, keeping the indentation, so nothing is kept by hand twice.
"""

from __future__ import annotations

import re
from pathlib import Path

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
STUB = ["# YOUR CODE HERE", "raise NotImplementedError()"]


def strip_solutions(source: str) -> str:
    """Replace each solution block in a cell's source with a stub. Lab 00."""
    lines, out, inside, indent = source.splitlines(), [], False, ""
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise ValueError(f"line {number}: {BEGIN} inside another solution; close the "
                                 f"first with {END}.")
            inside, indent = True, line[: len(line) - len(line.lstrip())]
            out.extend(indent + stub for stub in STUB)
        elif stripped == END:
            if not inside:
                raise ValueError(f"line {number}: {END} without {BEGIN}; add the opening line.")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"a solution opened with {BEGIN} is never closed; add {END}.")
    return "\n".join(out)


def clean(nb):
    """Remove outputs, execution counts and run metadata from a notebook in place. Lab 00."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        for key in ("execution", "papermill", "collapsed", "scrolled"):
            cell.metadata.pop(key, None)
    nb.metadata.pop("papermill", None)
    return nb


def student_version(nb):
    """A student copy of a teacher notebook: solutions stubbed, outputs removed. Lab 00."""
    import copy

    nb = clean(copy.deepcopy(nb))
    for cell in nb.cells:
        if cell.cell_type == "code" and BEGIN in cell.source:
            cell.source = strip_solutions(cell.source)
    return nb


def build_student(output: str | Path | None = None, labs=None) -> list[Path]:
    """Write the student versions of the labs (all by default) to ``output``. Lab 00."""
    import nbformat

    from faceattr_lab import config
    from faceattr_lab.course import runner

    folder = Path(output) if output else config.output_dir("student")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for path in [runner.find_lab(name) for name in labs] if labs else runner.list_labs():
        nb = nbformat.read(path, as_version=4)
        target = folder / path.name
        nbformat.write(student_version(nb), target)
        written.append(target)
    return written


_IMPORT = re.compile(r"^\s*(import|from)\s+\S+")


def lint_lab(path: str | Path) -> list[str]:
    """The ways a lab breaks the kit's notebook conventions (empty when it keeps them). Lab 00."""
    import nbformat

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    problems = []
    if not re.match(r"^\d\d_[a-z0-9_]+\.ipynb$", path.name):
        problems.append("name is not NN_slug.ipynb")
    if nb.metadata.get("kernelspec", {}).get("name") not in (None, "python3"):
        problems.append("kernelspec is not python3")
    cells = nb.cells
    if not cells or cells[0].cell_type != "markdown" or not cells[0].source.startswith("# "):
        problems.append("first cell is not a markdown title ('# ...')")
    else:
        head = cells[0].source.lower()
        for word in ("objectives", "runtime"):
            if word not in head:
                problems.append(f"first cell does not state the {word}")
    for cell in cells:
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count")):
            problems.append("committed with outputs or execution counts")
            break
    tagged = [i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])]
    if len(tagged) != 1:
        problems.append(f"{len(tagged)} cells tagged 'parameters' (need exactly one)")
    else:
        params = cells[tagged[0]].source.splitlines()
        for line in params:
            code = line.split("#", 1)[0].strip()
            if not code:
                continue
            if not re.match(r"^[A-Z][A-Z0-9_]*\s*:\s*[^=]+=", code):
                problems.append(f"parameter line is not 'NAME: type = value  # help': {line!r}")
            elif "#" not in line:
                problems.append(f"parameter has no comment: {line!r}")
        try:
            import papermill

            found = set(papermill.inspect_notebook(str(path)))
        except Exception as exc:  # a parameters cell papermill cannot read is the finding
            problems.append(f"papermill cannot read the parameters: {exc}")
            found = None
        declared = {ln.split(":", 1)[0].strip() for ln in params
                    if re.match(r"^[A-Z][A-Z0-9_]*\s*:", ln)}
        if found is not None and declared - found:
            problems.append(f"papermill does not see parameter(s) {sorted(declared - found)}: "
                            "write annotations it parses, e.g. Optional[int], not int | None")
        first_code = next(i for i, c in enumerate(cells) if c.cell_type == "code")
        imports = cells[first_code].source
        if "import faceattr_lab as fl" not in imports:
            problems.append("the first code cell does not 'import faceattr_lab as fl'")
        if tagged[0] <= first_code:
            problems.append("the parameters cell comes before the imports")
    for cell in cells:
        if cell.cell_type != "code":
            continue
        for line in cell.source.splitlines():
            if _IMPORT.match(line) and line.rstrip().endswith("*"):
                problems.append(f"star import: {line.strip()!r}")
        if cell.source.count(BEGIN) != cell.source.count(END):
            problems.append("a solution block is not closed")
    if "fl.results.record(" not in "".join(c.source for c in cells if c.cell_type == "code"):
        problems.append("no fl.results.record(...) call")
    last = cells[-1] if cells else None
    if last is None or last.cell_type != "markdown" or "takeaway" not in last.source.lower():
        problems.append("last cell is not the takeaways")
    return problems


__all__ = ["BEGIN", "END", "strip_solutions", "clean", "student_version", "build_student",
           "lint_lab"]
