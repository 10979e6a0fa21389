"""A tiny teacher lab for the grader's tests: two exercises with self-checks, no training."""

from __future__ import annotations

import nbformat

IMPORTS = "from typing import Optional\n\nimport faceattr_lab as fl"
PARAMETERS = ('PROFILE: str = "quick"  # quick or full\n'
              'OUTPUT_DIR: Optional[str] = None  # where results.json goes')
SETTINGS = 'run = fl.config.settings("99_tiny", PROFILE, output=OUTPUT_DIR)'
SHARE = """def majority_share(labels) -> float:
    ### BEGIN SOLUTION
    return max(labels.count(v) for v in set(labels)) / len(labels)
    ### END SOLUTION


fl.checks.majority_share(majority_share)"""
YEARS = """def mae_to_years(mae: float, max_age: float = 116.0) -> float:
    ### BEGIN SOLUTION
    return mae * max_age
    ### END SOLUTION


fl.checks.mae_to_years(mae_to_years)"""


def notebook(*sources):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    for source in sources:
        cell = nbformat.v4.new_code_cell(source)
        if source == PARAMETERS:
            cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    return nb
