"""Hand-in 3 course tooling: release generation, the judge, the sandbox and batch grading.

Run ``python -m autograder --help`` for the commands.
"""
from pathlib import Path

KIT_ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "hand_in_3"
#: The modules that students write; everything else in ``handin/`` is provided code.
STUDENT_MODULES = ("augmentations.py", "network.py", "utils.py")
