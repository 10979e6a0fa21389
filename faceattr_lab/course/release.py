"""Teacher and student notebooks: clean form, conventions, and the student copy. Lab 00.

The teacher lab is the one source. Exercise solutions sit between ``### BEGIN SOLUTION`` and
``### END SOLUTION``; the student copy replaces them with a stub that raises
``NotImplementedError``, keeping the indentation, so nothing is kept by hand twice.

:func:`build_student` releases the copies only when they are proven: every self-check passes
on the teacher's solution, no solution line reaches a student copy, outputs are cleared, and
the Colab install cell points at the course's own copy of the kit (``kit_url``).
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


class ReleaseFailed(Exception):
    """The student copies were not written: what is wrong, one line per problem. Lab 00."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("the student versions were not written:\n"
                         + "\n".join(f"- {p}" for p in self.problems))


# the Colab install cell's line that names where pip gets the kit (every lab has one)
_KIT_URL_LINE = re.compile(r"^(?P<head>\s*KIT_URL\s*=\s*)(?P<q>[\"'])(?P<url>[^\"']*)(?P=q)",
                           re.MULTILINE)
_PIP_LINE = re.compile(r"^(?P<head>\s*%pip install\b.*?)[\"']faceattr-lab @ \{KIT_URL\}[\"']",
                       re.MULTILINE)
_GIT_URL = re.compile(r"^git\+https://[A-Za-z0-9.-]+(:\d+)?/[^\s\"'{}]+$")
_WHEEL_URL = re.compile(r"^https://[A-Za-z0-9.-]+(:\d+)?/[^\s\"'{}]+\.whl$")
KIT_URL_HELP = ("pass the kit's install source as git+https://HOST/OWNER/REPO[@TAG] (e.g. "
                "git+https://github.com/my-course/faceattr-lab@v1.0), a wheel URL "
                "https://.../faceattr_lab-VERSION-py3-none-any.whl, or a PyPI requirement such "
                "as faceattr-lab==0.1.0")


def kit_requirement(kit_url: str) -> str:
    """The pip requirement that installs the kit from ``kit_url``; ValueError if unusable. Lab 00.

    ``kit_url`` is a ``git+https://`` URL (a fork or a tag), an ``https://...whl`` URL, or a
    PyPI requirement on ``faceattr-lab`` (``faceattr-lab==0.1.0``).
    """
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    url = str(kit_url).strip() if kit_url is not None else ""
    if _GIT_URL.match(url) or _WHEEL_URL.match(url):
        return f"faceattr-lab @ {url}"
    try:
        requirement = Requirement(url)
    except InvalidRequirement:
        requirement = None
    if (requirement is not None and requirement.url is None and not requirement.marker
            and canonicalize_name(requirement.name) == "faceattr-lab"
            and not re.search(r"[\"'{}\s]", url)):
        return url
    raise ValueError(f"kit_url={kit_url!r} is not an install source; {KIT_URL_HELP}.")


def set_kit_url(nb, kit_url: str, name: str = "the lab"):
    """Point a notebook's Colab install cell (``KIT_URL = ...``) at ``kit_url``, in place. Lab 00.

    A PyPI requirement is installed as it is, so the ``%pip install`` line then names it
    alone. ValueError when the notebook has no ``KIT_URL = "..."`` line.
    """
    requirement = kit_requirement(kit_url)
    url = str(kit_url).strip()
    found = 0
    for cell in nb.cells:
        if cell.cell_type != "code" or "KIT_URL" not in cell.source:
            continue
        source, count = _KIT_URL_LINE.subn(
            lambda m: f"{m['head']}{m['q']}{url}{m['q']}", cell.source)
        if count and requirement == url:  # a PyPI requirement, not a URL
            source = _PIP_LINE.sub(lambda m: f'{m["head"]}"{{KIT_URL}}"', source)
        cell.source, found = source, found + count
    if not found:
        raise ValueError(f"{name} has no Colab install cell with a KIT_URL = \"...\" line; add "
                         "the install cell that every lab starts with (see labs/00_quickstart).")
    return nb


def solution_lines(nb, name: str = "the lab") -> list[str]:
    """The non-blank lines between the solution markers of a teacher notebook. Lab 00.

    ValueError (naming the lab and cell) for a marker that is misspelt, unmatched or never
    closed: the student copy would then keep the solution.
    """
    lines = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        inside = False
        for number, line in enumerate(cell.source.splitlines(), start=1):
            stripped = line.strip()
            where = f"{name}, cell {index}, line {number}"
            if stripped in (BEGIN, END):
                if (stripped == BEGIN) == inside:
                    raise ValueError(f"{where}: {stripped} "
                                     + ("inside another solution; close the first with "
                                        f"{END}." if inside else f"without {BEGIN}; add it."))
                inside = stripped == BEGIN
            elif re.match(r"^#+\s*(BEGIN|END)\s*SOLUTION", stripped, re.IGNORECASE):
                raise ValueError(f"{where}: {stripped!r} is not a solution marker; write "
                                 f"{BEGIN!r} or {END!r} exactly.")
            elif inside and stripped:
                lines.append(stripped)
        if inside:
            raise ValueError(f"{name}, cell {index}: a solution opened with {BEGIN} is never "
                             f"closed, so it would reach the students; add {END}.")
    return lines


def leaks(teacher, student) -> list[str]:
    """What of ``teacher``'s solutions and outputs a student copy still holds. Lab 00.

    Each entry names the cell: a solution line (stripped) found in it, an output or an
    execution count. Empty when the copy is safe to hand out.
    """
    solutions = set(solution_lines(teacher))
    found = []
    for index, cell in enumerate(student.cells):
        for line in cell.source.splitlines():
            if line.strip() in solutions:
                found.append(f"cell {index} keeps the solution line {line.strip()!r}")
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count")):
            found.append(f"cell {index} keeps its outputs or execution count")
    return found


def prove_checks(lab, timeout: float = 120.0) -> list[str]:
    """Every self-check of a teacher lab run on the teacher's own solution: what fails. Lab 00.

    Each problem reads ``"<lab>: check <name> fails on the teacher's solution: <message>"``;
    empty when all pass (or the lab calls no check). Uses
    ``fl.course.verdicts.decide(lab, lab)``.
    """
    from faceattr_lab.course import grader, runner, verdicts

    path = runner.find_lab(lab)
    if not grader.lab_checks(path):
        return []
    decided = verdicts.decide(path, path, timeout=timeout)
    return [f"{path.stem}: check {name} fails on the teacher's solution: "
            f"{(verdict or {}).get('message') or 'no message'}"
            for name, verdict in decided.items() if not (verdict or {}).get("passed")]


def build_student(output: str | Path | None = None, labs=None, kit_url: str | None = None,
                  timeout: float = 120.0) -> list[Path]:
    """Write the proven student versions of the labs (all by default) to ``output``. Lab 00.

    Before writing anything, every lab's self-checks must pass on the teacher's solution
    (:func:`prove_checks`), and every student copy must hold no solution line and no output
    (:func:`leaks`). ``kit_url`` (see :func:`kit_requirement`) replaces the Colab install
    cell's ``KIT_URL``, so students install the course's own copy of the kit. Raises
    :class:`ReleaseFailed` naming each lab, check and message that stops the release.
    """
    import nbformat

    from faceattr_lab import config
    from faceattr_lab.course import runner

    if kit_url is not None:
        kit_requirement(kit_url)  # a bad URL fails before any check runs
    paths = [runner.find_lab(name) for name in labs] if labs else runner.list_labs()
    problems, copies = [], []
    for path in paths:
        teacher = nbformat.read(path, as_version=4)
        try:
            solution_lines(teacher, path.name)
            student = student_version(teacher)
            if kit_url is not None:
                set_kit_url(student, kit_url, path.name)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        problems += [f"{path.name}: {leak}" for leak in leaks(teacher, student)]
        problems += prove_checks(path, timeout=timeout)
        copies.append((path.name, student))
    if problems:
        raise ReleaseFailed(problems)
    folder = Path(output) if output else config.output_dir("student")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, student in copies:
        nbformat.write(student, folder / name)
        written.append(folder / name)
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


__all__ = ["BEGIN", "END", "ReleaseFailed", "strip_solutions", "clean", "student_version",
           "kit_requirement", "set_kit_url", "solution_lines", "leaks", "prove_checks",
           "build_student", "lint_lab"]
