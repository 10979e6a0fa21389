"""The course's operations beside the ML core: running labs, grading, releasing, self-checks.

- :mod:`~faceattr_lab.course.checks`: the exercises' self-checks (labs call them as
  ``fl.checks.<name>``);
- :mod:`~faceattr_lab.course.runner`: headless lab runs with papermill (``make labs``, CI);
- :mod:`~faceattr_lab.course.grader`: grading students' submissions;
- :mod:`~faceattr_lab.course.release`: student copies built from the teacher labs, and the
  labs' conventions.

They use the ML core (``faceattr_lab.config``, ``results``, the models the checks build); the
core never imports them. Importing this package imports none of its modules.
"""
