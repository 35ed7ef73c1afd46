"""Everything that connects the kit to nbgrader, in one place.

* :mod:`.course`: builds the nbgrader course (source, release, gradebook) from ``solutions/``.
* :mod:`.grading_notebook`: writes ``grading.ipynb`` (one hidden grade cell per check of
  :data:`autograder.judge.points.POINTS`); ``python -m autograder.nbgrader_glue.grading_notebook``.
* :mod:`.cell`: what those grade cells call, ``check(part, name)``, reading the judge's verdict.
  The grading kernel imports it, so it and this package import only the standard library.
* ``nbgrader_config.py``: the course's nbgrader configuration, copied to the course root.
* :mod:`.execute`: how notebooks are executed in ``autograde`` (deadlines, grade cells
  evaluated from verdicts without a kernel).
* :mod:`.preprocessors`: the other preprocessors (sanitizing student HTML, resetting a
  submitted grading notebook, drawing the report's figures, quick metadata checks).

The judge (:mod:`autograder.judge`) knows nothing of nbgrader; the batch grader
(:mod:`autograder.batch`) runs the judge first, then one ``nbgrader autograde`` pass.
"""
