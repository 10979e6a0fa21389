"""The course's operations beside the ML core: running labs, grading, releasing, self-checks.

- :mod:`~faceattr_lab.course.checks`: the exercises' self-checks (labs call them as
  ``fl.checks.<name>``);
- :mod:`~faceattr_lab.course.runner`: headless lab runs with papermill (``make labs``, CI);
- :mod:`~faceattr_lab.course.grader`: grading students' submissions, each in its own process
  and working copy, in parallel or on a Dask cluster;
- :mod:`~faceattr_lab.course.verdicts`: the checks' verdicts, decided outside the student's
  kernel;
- :mod:`~faceattr_lab.course.cohort`: the instructor's view of a graded cohort (pass rates, a
  score histogram, common errors, feedback per student);
- :mod:`~faceattr_lab.course.release`: student copies built from the teacher labs (every check
  proven on the teacher's solution, no solution text leaked, the course's install source),
  and the labs' conventions.

They use the ML core (``faceattr_lab.config``, ``results``, the models the checks build); the
core never imports them. Importing this package imports none of its modules.
"""
