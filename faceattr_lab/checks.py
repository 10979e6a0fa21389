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


__all__ = ["CheckFailed", "majority_share"]
