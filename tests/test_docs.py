"""Documentation points at things that exist: labs named in docstrings, README's lab tables,
and sources a student can open (never the kit's private reference notes)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "faceattr_lab"
LABS = ROOT / "labs"
LAB_REF = re.compile(r"\bLab (\d\d)\b")
TABLE_LAB = re.compile(r"^\|\s*`(\d\d)_[A-Za-z0-9_]+`\s*\|")
# "lab 04", "Labs 00-05", "labs 04 and 05", "labs 02, 03 and 04": every number counts
LAB_MENTION = re.compile(r"\b[Ll]abs? (\d\d(?:(?:\s*[-\u2013,]\s*|\s+(?:and|or|to)\s+)\d\d)*)\b")
NEXT_LINE = re.compile(r"\*\*Next[.:]?\*\*:?(.*)")


def docstrings() -> list[tuple[str, str]]:
    """(module.qualname, docstring) for every module, class and function under faceattr_lab/.

    Parsed with ast, so nothing is imported (no TensorFlow start-up). Definitions nested in
    functions, classes or ``if``/``try`` blocks count too."""
    defs = (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)

    def visit(node, qualname, found):
        has_doc = isinstance(node, (ast.Module, *defs))
        doc = ast.get_docstring(node, clean=False) if has_doc else None
        if doc:
            found.append((qualname, doc))
        for child in ast.iter_child_nodes(node):
            visit(child, f"{qualname}.{child.name}" if isinstance(child, defs) else qualname, found)

    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        visit(tree, ".".join(parts), found)
    return found


def readme_section(title: str) -> list[str]:
    """The lines of README.md under ``## title``, up to the next ``## `` heading."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = lines.index(f"## {title}") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start:end]


def tables(lines: list[str]) -> list[tuple[str, list[str]]]:
    """Each markdown table in ``lines``: (the text between it and the table before, its rows)."""
    found, current, before = [], None, []
    for line in lines:
        if line.startswith("|"):
            if current is None:
                current = []
                found.append((" ".join(before), current))
                before = []
            current.append(line)
        else:
            current = None
            before.append(line)
    return found


def table_labs(rows: list[str]) -> dict[str, str]:
    """{"04": "04_single_vs_multitask", ...} from a table's first column."""
    labs = {}
    for row in rows:
        match = TABLE_LAB.match(row)
        if match:
            labs[match.group(1)] = row.split("`")[1]
    return labs


def lab_tables() -> tuple[dict[str, str], dict[str, str]]:
    """README's table of existing labs and its "Labs to come" table (empty when none is left)."""
    found = tables(readme_section("The labs"))
    existing = [rows for before, rows in found if "Labs to come" not in before
                and rows[0].replace(" ", "").startswith("|lab|")]
    planned = [rows for before, rows in found if "Labs to come" in before]
    assert existing, "README's '## The labs' has no table whose first column is 'lab'"
    assert len(planned) <= 1, "README's '## The labs' has more than one 'Labs to come' table"
    return table_labs(existing[0]), (table_labs(planned[0]) if planned else {})


def existing_labs() -> dict[str, str]:
    return {path.stem[:2]: path.stem for path in sorted(LABS.glob("[0-9][0-9]_*.ipynb"))}


def mentioned_labs(text: str) -> list[str]:
    """Every two-digit lab number a text names ("lab 04", "labs 00-05", "labs 04 and 05")."""
    return [number for match in LAB_MENTION.finditer(text)
            for number in re.findall(r"\d\d", match.group(1))]


def test_mentioned_labs_reads_single_lists_and_ranges():
    text = "Lab 03 and labs 04 and 05; labs 00-02, lab 7 and Labs 06, 08 or 09 (table 12)"
    assert mentioned_labs(text) == ["03", "04", "05", "00", "02", "06", "08", "09"]


def test_every_lab_a_docstring_names_is_a_lab():
    on_disk = existing_labs()
    found = docstrings()
    assert len(found) > 100, f"only {len(found)} docstrings found under {PACKAGE}"
    missing = [f"{where}: Lab {number} is not a notebook labs/{number}_*.ipynb"
               for where, doc in found for number in LAB_REF.findall(doc)
               if number not in on_disk]
    assert not missing, "\n".join(missing)


def test_readme_and_architecture_name_only_labs_that_exist():
    """Outside README's "Labs to come" table (the plan), every lab they name is a notebook."""
    on_disk = existing_labs()
    planned_rows = next((rows for b, rows in tables(readme_section("The labs"))
                         if "Labs to come" in b), [])  # no such table once every lab exists
    problems = []
    for name in ("README.md", "ARCHITECTURE.md"):
        for number_, line in enumerate((ROOT / name).read_text(encoding="utf-8").splitlines(), 1):
            if line in planned_rows:
                continue
            problems += [f"{name}:{number_}: lab {n} is not in labs/"
                         for n in mentioned_labs(line) if n not in on_disk]
    assert not problems, "\n".join(problems)


def test_each_lab_ends_with_a_next_line_to_a_lab_that_exists():
    """Every lab but the last has one "**Next:**" line, and the labs it names exist."""
    on_disk = existing_labs()
    import nbformat

    problems = []
    for number, stem in on_disk.items():
        nb = nbformat.read(LABS / f"{stem}.ipynb", as_version=4)
        text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        nexts = NEXT_LINE.findall(text)
        if number == max(on_disk):
            problems += [f"{stem}: the last lab names a next lab ({n})"
                         for line in nexts for n in mentioned_labs(line) if n not in on_disk]
            continue
        if len(nexts) != 1:
            problems.append(f"{stem}: {len(nexts)} '**Next:**' lines, want 1")
            continue
        named = mentioned_labs(nexts[0])
        if not named:
            problems.append(f"{stem}: its Next line names no lab: {nexts[0][:60]!r}")
        problems += [f"{stem}: its Next line names lab {n}, which is not in labs/"
                     for n in named if n not in on_disk]
        if named and named[0] != f"{int(number) + 1:02d}":
            problems.append(f"{stem}: its Next line names lab {named[0]}, not the next one")
    assert not problems, "\n".join(problems)


def test_readme_lab_table_lists_exactly_the_labs():
    listed, planned = lab_tables()
    on_disk = existing_labs()
    assert sorted(listed.values()) == sorted(on_disk.values()), (
        f"README's lab table lists {sorted(listed.values())}; "
        f"labs/ holds {sorted(on_disk.values())}")
    built = sorted(set(planned) & set(on_disk))
    assert not built, (f"labs {built} exist now: move them from 'Labs to come' to the lab table")


def test_no_lab_or_package_file_cites_the_private_notes():
    files = [*sorted(LABS.glob("*.ipynb")),
             *(p for p in sorted(PACKAGE.rglob("*"))
               if p.is_file() and "__pycache__" not in p.parts)]
    citing = [str(p.relative_to(ROOT)) for p in files
              if "studies.md" in p.read_text(encoding="utf-8", errors="ignore")]
    assert not citing, (f"{citing} mention studies.md, the kit's private notes; cite the primary "
                        "source (paper or repository) instead, or describe the study")
