"""What the grade cells of ``grading.ipynb`` call: ``check(part, name)``.

A grade cell's hidden test is just::

    import os, sys
    sys.path.insert(0, os.environ["HANDIN3_KIT"])
    from autograder.cell import check
    check("collage", "quarters")

The grading kernel never imports student code. ``check`` finds the submission's
``handin/`` folder in the kernel's working directory (nbgrader runs the notebook
there), looks its verdict up in the cache outside the submission
(``$HANDIN3_VERDICTS``, keyed by the sha256 of the student's modules and the judge's
version) or, if it is not there, runs the judge in a separate ``python -I`` process
(sandboxed unless ``HANDIN3_SANDBOX=0``). A failed check raises
:class:`HiddenTestFailure`, whose traceback is only its message: no hidden source,
inputs or reference code reach the notebook or the feedback. The judge's stderr never
reaches the cell, so warnings cost no points.

Only the standard library is imported here.
"""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KIT_ENV = "HANDIN3_KIT"
SANDBOX_ENV = "HANDIN3_SANDBOX"
WAIT_ENV = "HANDIN3_VERDICT_WAIT"  # seconds to wait for a verdict the batch grader is computing
#: What the batch grader sets ``HANDIN3_VERDICT_WAIT`` to; after the wait, the cell judges by itself.
VERDICT_WAIT_SECONDS = 300
#: Upper bound for one uncached judge run (every part crashing and timing out in turn).
JUDGE_TIMEOUT_SECONDS = 660


class HiddenTestFailure(Exception):
    """A failed hidden test. IPython shows ``_render_traceback_`` instead of the real traceback."""

    def _render_traceback_(self):
        return str(self).splitlines()


def kit_root():
    return Path(__file__).resolve().parent.parent


def run_judge(handin_dir, cache_dir):
    """Judge ``handin_dir`` in a fresh isolated interpreter and store the verdict in ``cache_dir``."""
    sandbox = os.environ.get(SANDBOX_ENV, "1") != "0"
    bootstrap = ("import sys; sys.path.insert(0, sys.argv[1]); from autograder.judge.__main__ import main; "
                 "sys.exit(main(sys.argv[2:]))")
    with tempfile.TemporaryDirectory(prefix="handin3-cell-") as scratch:
        command = [sys.executable, "-I", "-c", bootstrap, str(kit_root()), "--handin", str(handin_dir),
                   "--out", str(Path(scratch) / "verdict.json"), "--cache", str(cache_dir)]
        if not sandbox:
            command.append("--no-sandbox")
        done = subprocess.run(command, cwd=scratch, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=JUDGE_TIMEOUT_SECONDS)
    if done.returncode != 0:
        last = (done.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the judge failed (exit {done.returncode}): {last[:300]}")


def verdict_for(handin_dir):
    """The cached verdict of ``handin_dir``, judging it first if needed."""
    from autograder.judge import cache

    folder = cache.verdicts_dir()
    key = cache.verdict_key(handin_dir)  # hashes the judge and the modules: once, not at every poll
    verdict = cache.load_by_key(key, folder)
    # the batch grader judges in parallel while nbgrader runs: wait for its verdict first,
    # unless it has reported that it could not judge these modules
    deadline = time.monotonic() + float(os.environ.get(WAIT_ENV) or 0)
    while verdict is None and time.monotonic() < deadline and not cache.judge_failed(key, folder):
        time.sleep(0.2)
        verdict = cache.load_by_key(key, folder)
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


def check(part, name, handin_dir=None):
    """Pass silently (printing the score) or raise :class:`HiddenTestFailure` with the reason."""
    handin_dir = Path(handin_dir or Path.cwd() / "handin")
    try:
        passed, text = check_result(verdict_for(handin_dir), part, name)
    except Exception as error:  # noqa: BLE001 - any grader problem becomes a readable 0, never a hidden traceback
        raise HiddenTestFailure(f"{part} · {name}: could not be graded: {error}") from None
    if not passed:
        raise HiddenTestFailure(text)
    # One write, not print()'s two: the kernel could send the text and the newline as two outputs.
    sys.stdout.write(text + "\n")
