"""Releasing the labs: student copies are written only when proven (checks pass on the
teacher's solutions, no solution leaks, outputs cleared) and install the course's kit."""

from __future__ import annotations

import time

import nbformat
import pytest

from faceattr_lab import cli, config
from faceattr_lab.course import release

INSTALL = ('import sys\n\nif "google.colab" in sys.modules:\n'
           '    KIT_URL = "git+https://github.com/faceattr-lab/faceattr-lab"  # where your course '
           'hosts the kit\n    %pip install -q "faceattr-lab @ {KIT_URL}"\n\n'
           "from typing import Optional\n\nimport faceattr_lab as fl")
PARAMETERS = ('PROFILE: str = "quick"  # quick or full\n'
              'OUTPUT_DIR: Optional[str] = None  # where results.json goes')
SETTINGS = 'run = fl.config.settings("98_release", PROFILE, output=OUTPUT_DIR)'
SHARE = """def majority_share(labels) -> float:
    ### BEGIN SOLUTION
    counts = {value: labels.count(value) for value in labels}
    return max(counts.values()) / len(labels)
    ### END SOLUTION


fl.checks.majority_share(majority_share)"""


def _lab(folder, name="98_release.ipynb", share=SHARE, output=None):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    for source in (INSTALL, PARAMETERS, SETTINGS, share):
        cell = nbformat.v4.new_code_cell(source)
        if source == PARAMETERS:
            cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    if output:  # a teacher copy saved after a run
        nb.cells[-1].outputs = [nbformat.v4.new_output("stream", text=output)]
        nb.cells[-1].execution_count = 3
    path = folder / name
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture
def unproven(monkeypatch):
    """Skip running the checks: these tests are about leaks and the install cell."""
    monkeypatch.setattr(release, "prove_checks", lambda lab, timeout=120.0: [])


def test_kit_url_lands_in_every_student_copy(tmp_path, unproven):
    labs = [_lab(tmp_path / "labs", f"9{i}_release.ipynb") for i in range(3)]
    url = "git+https://github.com/my-course/faceattr-lab@v1.0"
    written = release.build_student(tmp_path / "out", labs, kit_url=url)
    assert [p.name for p in written] == [p.name for p in labs]
    for path in written:
        install = nbformat.read(path, as_version=4).cells[0].source
        assert f'    KIT_URL = "{url}"  # where your course hosts the kit' in install
        assert '%pip install -q "faceattr-lab @ {KIT_URL}"' in install
        assert "github.com/faceattr-lab/faceattr-lab" not in install
    # a PyPI requirement is installed as it is
    (path,) = release.build_student(tmp_path / "pypi", labs[:1], kit_url="faceattr-lab==0.1.0")
    install = nbformat.read(path, as_version=4).cells[0].source
    assert 'KIT_URL = "faceattr-lab==0.1.0"' in install and '%pip install -q "{KIT_URL}"' in install
    # without a kit_url the labs' own stays
    (path,) = release.build_student(tmp_path / "same", labs[:1])
    install = nbformat.read(path, as_version=4).cells[0].source
    assert "github.com/faceattr-lab/faceattr-lab" in install


@pytest.mark.parametrize("url", ["https://github.com/my-course/faceattr-lab",  # no git+
                                 "git+http://example.org/faceattr-lab",  # not https
                                 "https://example.org/faceattr_lab.tar.gz", "numpy==1.0",
                                 'git+https://github.com/x/y"; import os', ""])
def test_a_bad_kit_url_says_what_to_pass(tmp_path, unproven, url):
    with pytest.raises(ValueError, match="git\\+https://.*whl.*faceattr-lab==0.1.0"):
        release.build_student(tmp_path / "out", [_lab(tmp_path)], kit_url=url)
    assert not (tmp_path / "out").exists()


def test_kit_url_shapes():
    assert release.kit_requirement("https://course.org/w/faceattr_lab-0.1.0-py3-none-any.whl") \
        == "faceattr-lab @ https://course.org/w/faceattr_lab-0.1.0-py3-none-any.whl"
    assert release.kit_requirement(" faceattr_lab>=0.1 ") == "faceattr_lab>=0.1"


def test_broken_markers_fail_naming_the_lab(tmp_path, unproven):
    unclosed = _lab(tmp_path, "97_unclosed.ipynb", SHARE.replace("    ### END SOLUTION\n", ""))
    with pytest.raises(release.ReleaseFailed, match="97_unclosed.ipynb, cell 3: .*never closed"):
        release.build_student(tmp_path / "out", [unclosed])
    misspelt = _lab(tmp_path, "96_misspelt.ipynb",
                    SHARE.replace("### END SOLUTION", "###END SOLUTION"))
    with pytest.raises(release.ReleaseFailed, match="96_misspelt.ipynb.*not a solution marker"):
        release.build_student(tmp_path / "out", [misspelt])
    stray = _lab(tmp_path, "95_stray.ipynb", SHARE.replace("    ### BEGIN SOLUTION\n", ""))
    with pytest.raises(release.ReleaseFailed, match="95_stray.ipynb.*without ### BEGIN"):
        release.build_student(tmp_path / "out", [stray])
    assert not (tmp_path / "out").exists()  # nothing is written when any lab fails


def test_leaks_name_the_solution_line_and_outputs(tmp_path):
    teacher = nbformat.read(_lab(tmp_path, output="majority_share: pass\n"), as_version=4)
    student = release.student_version(teacher)
    assert release.leaks(teacher, student) == []
    # a copy made by hand that kept a solution line (e.g. pasted in a hint) and an output
    student.cells[3].source += "\n# hint:\n    return max(counts.values()) / len(labels)"
    student.cells[3].outputs = teacher.cells[3].outputs
    assert release.leaks(teacher, student) == [
        "cell 3 keeps the solution line 'return max(counts.values()) / len(labels)'",
        "cell 3 keeps its outputs or execution count"]


def test_a_wrong_teacher_solution_fails_the_build_naming_the_check(tmp_path):
    pytest.importorskip("faceattr_lab.course.verdicts")
    wrong = _lab(tmp_path, share=SHARE.replace("/ len(labels)", ""))  # the count, not the share
    with pytest.raises(release.ReleaseFailed) as failed:
        release.build_student(tmp_path / "out", [wrong])
    (problem,) = failed.value.problems
    assert problem.startswith("98_release: check majority_share fails on the teacher's solution: ")
    assert "majority_share([0, 0, 1]) returned 2" in problem
    assert not (tmp_path / "out").exists()
    right = _lab(tmp_path / "right")
    assert release.prove_checks(right) == []


@pytest.mark.slow
def test_all_real_labs_build_cleanly(tmp_path, monkeypatch):
    """Every real lab releases: no solution line, no output, the course's URL. Each lab's checks
    are proven on its solution by tests/test_verdicts.py, with the same ``decide(lab, lab)``
    that ``prove_checks`` calls, so here the proof is only recorded, not run a second time."""
    pytest.importorskip("faceattr_lab.course.verdicts")
    proven = []
    monkeypatch.setattr(release, "prove_checks",
                        lambda lab, timeout=120.0: proven.append(lab.stem) or [])
    start = time.perf_counter()
    url = "git+https://github.com/my-course/faceattr-lab@v1.0"
    written = release.build_student(tmp_path, kit_url=url)
    assert sorted(proven) == sorted(p.stem for p in written)
    seconds = time.perf_counter() - start
    print(f"released {len(written)} labs in {seconds:.1f} s")
    assert len(written) == len(list((config.repo_root() / "labs").glob("[0-9][0-9]_*.ipynb")))
    for path in written:
        nb = nbformat.read(path, as_version=4)
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        assert release.BEGIN not in code and f'KIT_URL = "{url}"' in code
        assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code")
    assert seconds < 120, f"the release took {seconds:.0f} s"


def test_cli_labs_student_passes_the_kit_url_and_reports_failures(tmp_path, monkeypatch, capsys):
    seen = []

    def fake(output=None, labs=None, kit_url=None):
        seen.append((output, kit_url))
        if kit_url == "git+https://x.org/bad/faceattr-lab":
            raise release.ReleaseFailed(["00_quickstart: check majority_share fails on the "
                                         "teacher's solution: majority_share: not yet."])
        return [tmp_path / "00_quickstart.ipynb"]

    monkeypatch.setattr(release, "build_student", fake)
    url = "git+https://github.com/my-course/faceattr-lab@v1.0"
    assert cli.main(["labs", "student", "--output", str(tmp_path), "--kit-url", url]) == 0
    assert seen[-1] == (str(tmp_path), url)
    assert cli.main(["labs", "student", "--kit-url", "git+https://x.org/bad/faceattr-lab"]) == 1
    assert "check majority_share fails" in capsys.readouterr().err
