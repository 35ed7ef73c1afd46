"""What the grade cells of ``grading.ipynb`` call: ``check(part, name)``.

A grade cell's hidden test is just::

    import os, sys
    sys.path.insert(0, os.environ["HANDIN3_KIT"])
    from autograder.nbgrader_glue.cell import check
    check("collage", "quarters")

The grading kernel never imports student code. ``check`` finds the submission's
``handin/`` folder in the kernel's working directory (nbgrader runs the notebook
there) and reads its verdict from the cache outside the submission
(``$HANDIN3_VERDICTS``, keyed by the sha256 of the student's modules and the judge's
version). It never waits: under the batch grader, nbgrader grades a student only once told
that the student's judging has ended, and ``HANDIN3_CELL_JUDGES=0`` is set, so a missing
verdict fails the cell at once (a grader error). Run by hand without that variable, a cell whose verdict is missing
runs the judge itself in a separate ``python -I`` process (sandboxed unless
``HANDIN3_SANDBOX=0``). A failed check raises
:class:`HiddenTestFailure`, whose traceback is only its message: no hidden source,
inputs or reference code reach the notebook or the feedback. The judge's stderr never
reaches the cell, so warnings cost no points.

Only the standard library is imported here.
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from .. import CELL_JUDGES_ENV, KIT_ROOT, SANDBOX_ENV

#: Upper bound for one uncached judge run (every part crashing and timing out in turn).
JUDGE_TIMEOUT_SECONDS = 660


class HiddenTestFailure(Exception):
    """A failed hidden test. IPython shows ``_render_traceback_`` instead of the real traceback."""

    def _render_traceback_(self):
        return str(self).splitlines()


def run_judge(handin_dir, cache_dir):
    """Judge ``handin_dir`` in a fresh isolated interpreter and store the verdict in ``cache_dir``."""
    sandbox = os.environ.get(SANDBOX_ENV, "1") != "0"
    bootstrap = (
        "import sys; sys.path.insert(0, sys.argv[1]); from autograder.judge.__main__ import main; "
        "sys.exit(main(sys.argv[2:]))"
    )
    with tempfile.TemporaryDirectory(prefix="handin3-cell-") as scratch:
        command = [
            sys.executable,
            "-I",
            "-c",
            bootstrap,
            str(KIT_ROOT),
            "--handin",
            str(handin_dir),
            "--out",
            str(Path(scratch) / "verdict.json"),
            "--cache",
            str(cache_dir),
        ]
        if not sandbox:
            command.append("--no-sandbox")
        done = subprocess.run(
            command,
            cwd=scratch,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=JUDGE_TIMEOUT_SECONDS,
        )
    if done.returncode != 0:
        last = (done.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the judge failed (exit {done.returncode}): {last[:300]}")


class MissingVerdict(RuntimeError):
    """The batch grader has no verdict for these modules: a fault of the grader, not of the student."""


def verdict_for(handin_dir):
    """The cached verdict of ``handin_dir``; judged here only when the cell may judge (see module doc)."""
    from autograder.judge import cache

    folder = cache.verdicts_dir()
    key = cache.verdict_key(handin_dir)
    verdict = cache.load_by_key(key, folder)
    if verdict is None and os.environ.get(CELL_JUDGES_ENV, "1") == "0":
        raise MissingVerdict(
            "the grader has no verdict for these modules (a grader error, not yours; the TA will grade again)"
        )
    if verdict is None:
        run_judge(handin_dir, folder)
        verdict = cache.load_by_key(key, folder)
    if verdict is None:
        raise RuntimeError(f"no verdict in {folder} after judging")
    return verdict


def check_result(verdict, part, name):
    """``(passed, text)`` for one check of a verdict."""
    entry = verdict["parts"][part]
    result = next(item for item in entry["checks"] if item["name"] == name)
    head = f"{part} · {name}: {result['points']:g}/{result['max']:g} points"
    if result["passed"]:
        return True, f"{head}. Passed."
    return False, f"{head}.\n{result['message']}"


def not_graded(part, name, error):
    """The failure of a check that could not be graded (``error``: the grader's problem)."""
    return HiddenTestFailure(f"{part} · {name}: could not be graded: {error}")


def check_text(part, name, handin_dir=None, verdict=None):
    """The line a passing check prints; raises :class:`HiddenTestFailure` with the reason otherwise.

    ``verdict``: the verdict of ``handin_dir`` if the caller already has it (else it is looked up).
    """
    handin_dir = Path(handin_dir or Path.cwd() / "handin")
    try:
        passed, text = check_result(verdict or verdict_for(handin_dir), part, name)
    except Exception as error:  # noqa: BLE001 - any grader problem becomes a readable 0, never a hidden traceback
        raise not_graded(part, name, error) from None
    if not passed:
        raise HiddenTestFailure(text)
    return text


def check(part, name, handin_dir=None):
    """Pass silently (printing the score) or raise :class:`HiddenTestFailure` with the reason."""
    text = check_text(part, name, handin_dir)
    # One write, not print()'s two: the kernel could send the text and the newline as two outputs.
    sys.stdout.write(text + "\n")
