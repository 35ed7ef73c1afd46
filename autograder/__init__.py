"""Hand-in 3 course tooling: release generation, the judge, the sandbox and batch grading.

Run ``python -m autograder --help`` for the commands.

This file names what the whole kit shares: its root, the assignment, the student modules and
the environment variables it reads. Standard library only: the grading kernel imports it
(through ``autograder.nbgrader_glue.cell``). The points and part names live in :mod:`autograder.judge.points`.
"""

from pathlib import Path

KIT_ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "hand_in_3"
#: The modules that students write; everything else in ``handin/`` is provided code.
STUDENT_MODULES = ("augmentations.py", "network.py", "utils.py")

# Environment variables (``nbgrader_config.py`` spells out KIT_ENV itself: it runs before the kit is importable).
#: The kit root, for the grading kernel's cells (``sys.path``) and nbgrader's config.
KIT_ENV = "HANDIN3_KIT"
#: The folder of the verdict cache (default ``build/verdicts`` in the kit).
VERDICTS_ENV = "HANDIN3_VERDICTS"
#: ``0``: a grade cell judges nothing itself; the batch grader judged the student before nbgrader grades it.
CELL_JUDGES_ENV = "HANDIN3_CELL_JUDGES"
#: ``0``: a grade cell that judges runs the judge without the sandbox.
SANDBOX_ENV = "HANDIN3_SANDBOX"
#: ``0``: the sandbox never uses cgroups, even where they work (exercises the fallback).
CGROUPS_ENV = "HANDIN3_CGROUPS"
#: ``0``: the sandbox starts every child cold instead of forking it from the warm runner.
WARM_ENV = "HANDIN3_WARM"
#: The sandbox's state folder (slots, locks), instead of the default.
SANDBOX_STATE_ENV = "HANDIN3_SANDBOX_STATE"
