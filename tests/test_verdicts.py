"""Verdicts decided outside the submission's kernel: teacher solutions pass, forgeries do not."""

from __future__ import annotations

import os
import pickle

import nbformat
import pytest

from faceattr_lab.course import runner, verdicts


def _notebook(*sources):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    return nb


@pytest.mark.parametrize("lab", [p.stem for p in runner.list_labs()])
def test_every_teacher_solution_passes_every_check_of_its_lab(lab):
    decided = verdicts.decide(lab, lab)
    assert decided and all(v["passed"] for v in decided.values()), decided


def test_extract_definitions_keeps_imports_and_the_last_definitions():
    nb = _notebook("import math\n%matplotlib inline\nx = heavy()\ndef f():\n    return 1",
                   "def f(:\n  broken", "def f():\n    return 2\nprint('side effect')",
                   "g = lambda v: v + 1\nclass C:\n    pass")
    nb.cells.append(nbformat.v4.new_markdown_cell("def f(): return 3"))
    source = verdicts.extract_definitions(nb)
    assert "import math" in source and "return 2" in source and "return 1" not in source
    assert "heavy" not in source and "print" not in source and "lambda" in source
    assert "class C" in source and "return 3" not in source


def test_a_call_that_loops_times_out_and_an_exception_comes_back_by_name(tmp_path):
    source = ("def slow(x):\n    while True:\n        pass\n\n"
              "def bad(x):\n    raise KeyError('nope')\n\n"
              "def grows(items):\n    items.append(4)\n    return len(items)\n")
    with verdicts.Sandbox(source, timeout=3) as box:
        items = [1, 2, 3]
        assert box.call("grows", (items,)) == 4 and items == [1, 2, 3, 4]  # change copied back
        with pytest.raises(verdicts.StudentError, match="nope") as raised:
            box.call("bad", (1,))
        assert type(raised.value).__name__ == "KeyError"
        with pytest.raises(verdicts.StudentError, match="not defined"):
            box.call("missing", ())
        with pytest.raises(verdicts.SandboxTimeout, match="timed out"):
            box.call("slow", (1,))


def test_sandboxed_code_cannot_write_outside_its_folder_or_start_processes(tmp_path):
    target = tmp_path / "target.txt"
    source = (f"def write():\n    open({str(target)!r}, 'w').write('x')\n\n"
              "def spawn():\n    import subprocess\n    subprocess.run(['true'])\n")
    with verdicts.Sandbox(source, timeout=10) as box:
        with pytest.raises(verdicts.StudentError, match="outside"):
            box.call("write")
        with pytest.raises(verdicts.StudentError, match="not allowed"):
            box.call("spawn")
    assert not target.exists()


def test_a_crafted_result_pickle_cannot_run_code_in_the_grader(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "owned"),))

    with pytest.raises(pickle.UnpicklingError, match="may not hold"):
        verdicts.safe_loads(pickle.dumps(Evil()))
    assert not (tmp_path / "owned").exists()
    import numpy as np

    value = {"a": [1, 2.5, "s", (None, True)], "b": np.arange(3), "c": {1, 2}}
    back = verdicts.safe_loads(pickle.dumps(value))
    assert back["a"] == value["a"] and back["b"].tolist() == [0, 1, 2] and back["c"] == {1, 2}


def test_decide_ignores_forgeries_and_catches_a_looping_exercise(tmp_path):
    teacher = tmp_path / "99_tiny.ipynb"
    nbformat.write(_notebook("import faceattr_lab as fl",
                             "def majority_share(labels):\n"
                             "    return max(labels.count(v) for v in set(labels)) / len(labels)\n"
                             "fl.checks.majority_share(majority_share)",
                             "def mae_to_years(mae, max_age=116.0):\n    return mae * max_age\n"
                             "fl.checks.mae_to_years(mae_to_years)"), teacher)
    forged = _notebook(
        "import faceattr_lab as fl\nfl.checks.majority_share = lambda fn, strict=True: True",
        "def majority_share(labels):\n    import faceattr_lab.course.checks as c\n"
        "    c._close = lambda a, b, tol=0: True\n    return 0.0",
        "def mae_to_years(mae, max_age=116.0):\n    while True:\n        pass")
    forged.cells[0].outputs = [nbformat.v4.new_output("stream", text="majority_share: pass")]
    decided = verdicts.decide(teacher, forged, timeout=3)
    assert not decided["majority_share"]["passed"]
    assert "expected" in decided["majority_share"]["message"]
    assert not decided["mae_to_years"]["passed"]
    assert "timed out" in decided["mae_to_years"]["message"]
    with pytest.raises(ValueError, match="above 0"):
        verdicts.decide(teacher, forged, timeout=0)
