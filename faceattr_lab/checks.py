"""Self-checks for the labs' exercises: each says "pass" or exactly what is off. Lab 00.

A check calls the student's function on hand-made cases whose answers are written out here,
independently of the kit's own code, and prints one line per problem. It returns ``True`` on
success, so a grader can call the same function.
"""

from __future__ import annotations


class CheckFailed(AssertionError):
    """Raised by a self-check with ``strict=True`` when the exercise is not solved yet."""


def _verdict(name: str, problems: list[str], strict: bool) -> bool:
    if problems:
        text = f"{name}: not yet. " + " ".join(problems)
        if strict:
            raise CheckFailed(text)
        print(text)
        return False
    print(f"{name}: pass")
    return True


def _close(a, b, tol: float = 1e-6) -> bool:
    try:
        return abs(float(a) - float(b)) <= tol
    except (TypeError, ValueError):
        return False


def majority_share(fn, strict: bool = True) -> bool:
    """Check lab 00's ``majority_share(labels)`` on hand-made label lists. Lab 00."""
    cases = [([0, 0, 1], 2 / 3), (["a"], 1.0), ([1, 2, 3, 3], 0.5), ([5, 5, 5, 5], 1.0)]
    problems = []
    for labels, expected in cases:
        got = fn(labels)
        if not _close(got, expected):
            problems.append(f"majority_share({labels}) returned {got!r}, expected {expected:.4f}.")
    return _verdict("majority_share", problems, strict)


def balanced_accuracy_from_confusion(fn, strict: bool = True) -> bool:
    """Check lab 01's ``balanced_accuracy_from_confusion(cm)`` on hand-computed matrices. Lab 01.

    Rows of ``cm`` are true classes, columns predictions; the answer is the mean recall.
    """
    cases = [
        ([[8, 2], [1, 9]], 0.85),                        # recalls 0.8 and 0.9
        ([[50, 0, 0], [10, 0, 0], [5, 0, 0]], 1 / 3),    # always the majority: 1/k
        ([[3, 1, 0], [0, 2, 2], [1, 0, 4]], (3 / 4 + 2 / 4 + 4 / 5) / 3),
        ([[90, 10], [30, 70]], 0.8),                     # accuracy 0.8 too; balanced 0.8
        ([[99, 1], [9, 1]], (0.99 + 0.1) / 2),           # accuracy 0.909, balanced 0.545
    ]
    problems = []
    for cm, expected in cases:
        try:
            got = fn(cm)
        except Exception as error:  # report, do not crash the student's notebook
            problems.append(f"balanced_accuracy_from_confusion({cm}) raised "
                            f"{type(error).__name__}: {error}.")
            continue
        if not _close(got, expected):
            problems.append(f"balanced_accuracy_from_confusion({cm}) returned {got!r}, "
                            f"expected {expected:.4f} (the mean of each row's diagonal share).")
    return _verdict("balanced_accuracy_from_confusion", problems, strict)


def four_race_counts(fn, strict: bool = True) -> bool:
    """Check lab 01's ``four_race_counts(races)`` (FairFace's 4-race grouping). Lab 01."""
    zero = {"White": 0, "Black": 0, "Asian": 0, "Indian": 0, "excluded": 0}
    cases = [
        (["White", "East Asian", "Southeast Asian", "Indian", "Black", "Latino_Hispanic",
          "Middle Eastern", "East Asian"],
         {"White": 1, "Black": 1, "Asian": 3, "Indian": 1, "excluded": 2}),
        ([], dict(zero)),
        (["Middle Eastern", "Middle Eastern"], {**zero, "excluded": 2}),
        (["Southeast Asian"], {**zero, "Asian": 1}),
    ]
    problems = []
    for races, expected in cases:
        try:
            got = fn(races)
        except Exception as error:
            problems.append(f"four_race_counts({races}) raised {type(error).__name__}: {error}.")
            continue
        got = {str(k): int(v) for k, v in dict(got).items()} if hasattr(got, "items") else got
        if got != expected:
            problems.append(f"four_race_counts({races}) returned {got!r}, expected "
                            f"{expected!r}.")
    return _verdict("four_race_counts", problems, strict)


def to_fairface_group(fn, strict: bool = True) -> bool:
    """Check lab 01's ``to_fairface_group(age)``: left-closed bins at every boundary. Lab 01."""
    table = {0: "0-2", 2: "0-2", 3: "3-9", 9: "3-9", 10: "10-19", 19: "10-19", 20: "20-29",
             29: "20-29", 30: "30-39", 39: "30-39", 40: "40-49", 49: "40-49", 50: "50-59",
             59: "50-59", 60: "60-69", 69: "60-69", 70: "more than 70", 95: "more than 70"}
    problems = []
    for age, expected in table.items():
        try:
            got = fn(age)
        except Exception as error:
            problems.append(f"to_fairface_group({age}) raised {type(error).__name__}: {error}.")
            continue
        if got != expected:
            hint = " (a right-closed bin puts boundary ages one group low)" if age in (
                3, 10, 20, 30, 40, 50, 60, 70) else ""
            problems.append(f"to_fairface_group({age}) returned {got!r}, expected "
                            f"{expected!r}{hint}.")
    return _verdict("to_fairface_group", problems, strict)


__all__ = ["CheckFailed", "majority_share",
           "balanced_accuracy_from_confusion", "four_race_counts", "to_fairface_group"]
