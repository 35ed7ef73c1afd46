"""The autograder's test submissions: ``tests/submissions.toml``, read by :mod:`autograder.examples`.

``ALL`` in the file's order, ``BY_NAME``, and the file's groups by kind (``BUGS``,
``VARIANTS``, ``TAMPERS``). Each is an :class:`autograder.examples.Example`.
"""

from pathlib import Path

from autograder.examples import load

TOML = Path(__file__).with_name("submissions.toml")

BY_NAME = load(TOML)
ALL = list(BY_NAME.values())
BUGS = [submission for submission in ALL if submission.kind == "bug"]
VARIANTS = [submission for submission in ALL if submission.kind == "variant"]
TAMPERS = [submission for submission in ALL if submission.kind == "tamper"]
