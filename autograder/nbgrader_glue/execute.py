"""How the kit executes notebooks in ``nbgrader autograde`` (plugged in by ``nbgrader_config.py``).

* :class:`GuardedExecute` replaces nbgrader's ``Execute``: it does not run notebooks
  without autograded tests (the report and the exercise notebooks hold student code
  that earns no automatic points, so running it only costs time and risk), it adds a
  whole-notebook deadline to the per-cell timeout, and after a timeout it restarts the
  kernel, so a loop that swallows ``KeyboardInterrupt`` ends as a graded 0 for that
  cell instead of a stuck or crashed batch.
* :class:`VerdictExecute` is ``GuardedExecute`` that grades the kit's own grading notebook
  without a kernel: when every code cell is exactly one of the grade cells that
  :mod:`autograder.nbgrader_glue.grading_notebook` writes (``check(part, name)`` and nothing else),
  each cell's check is evaluated in nbgrader's process from the cached verdict, and the
  cell gets exactly the output a kernel would give it (the passing line on stdout, or the
  ``HiddenTestFailure`` error). Any other notebook, or a grading notebook with one cell
  that is not such a grade cell, runs in a kernel as usual. Under the batch grader
  (``await_settled``) it first waits for the word that the student's judging has ended, so
  that nbgrader can work through the class while the judges still run.
"""

import functools
import json
import math
import sys
from datetime import datetime, timezone
from pathlib import Path
from time import monotonic

import nbformat
from nbclient.util import run_sync
from nbgrader import utils
from nbgrader.preprocessors import Execute
from traitlets import Bool, Integer, Unicode

from ..judge.points import POINTS
from .cell import HiddenTestFailure, check_text, not_graded, verdict_for
from .grading_notebook import grade_cell

NOTEBOOK_DEADLINE_ERROR = {
    "output_type": "error",
    "ename": "NotebookTimeoutError",
    "evalue": "",
    "traceback": ["NotebookTimeoutError: the notebook ran out of its time budget before this cell"],
}


def has_autograded_tests(nb):
    """True if some code cell is an autograder test (a grade cell that is not a solution)."""
    return any(cell.cell_type == "code" and utils.is_grade(cell) and not utils.is_solution(cell) for cell in nb.cells)


class GuardedExecute(Execute):
    """nbgrader's ``Execute`` with a whole-notebook deadline and recovery from swallowed interrupts."""

    notebook_timeout = Integer(900, help="Seconds for the whole notebook; later cells get a timeout error.").tag(
        config=True
    )
    skip_without_tests = Bool(True, help="Do not execute notebooks that have no autograded test cells.").tag(
        config=True
    )
    # After a timeout the kernel is restarted, so waiting for the interrupted cell's
    # remaining output must not abort the whole notebook.
    raise_on_iopub_timeout = Bool(False).tag(config=True)

    _deadline = None
    _timed_out = False

    def preprocess(self, nb, resources=None, km=None):
        if self.skip_without_tests and not has_autograded_tests(nb):
            self.log.info(
                "Not executing %s: it has no autograded tests",
                (resources or {}).get("nbgrader", {}).get("notebook", "the notebook"),
            )
            return nb, resources
        self._deadline = monotonic() + self.notebook_timeout
        return super().preprocess(nb, resources, km)

    def _remaining(self):
        return self._deadline - monotonic() if self._deadline is not None else float("inf")

    def _get_timeout(self, cell):
        timeout = super()._get_timeout(cell)
        remaining = self._remaining()
        if remaining == float("inf"):
            return timeout
        return max(1, math.ceil(min(timeout or remaining, remaining)))

    async def _async_handle_timeout(self, timeout, cell=None):
        self._timed_out = True
        return await super()._async_handle_timeout(timeout, cell)

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        if cell.cell_type == "code" and cell.source.strip() and self._remaining() <= 0:
            cell.outputs = [nbformat.from_dict(NOTEBOOK_DEADLINE_ERROR)]
            return cell
        cell = await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        if self._timed_out:
            # The interrupt may have been swallowed: start afresh so that later cells run.
            self._timed_out = False
            self.log.warning("Restarting the kernel after a timeout in cell %s", cell_index)
            await self.km.restart_kernel(now=True)
            await self.kc.wait_for_ready(timeout=self.startup_timeout)
        return cell

    # nbclient binds the synchronous wrapper to its own coroutine at class creation: rebind it.
    execute_cell = run_sync(async_execute_cell)


@functools.cache
def known_grade_cells():
    """``{exact source of a kit grade cell: (part, check name)}`` for every check in :data:`POINTS`."""
    return {
        grade_cell(part, name, points).source: (part, name)
        for part, checks in POINTS.items()
        for name, points in checks.items()
    }


def check_calls(nb):
    """``[(cell, (part, name))]`` for every code cell, or None if one code cell is not a kit grade cell."""
    known = known_grade_cells()
    calls = [(cell, known.get(cell.source)) for cell in nb.cells if cell.cell_type == "code"]
    return calls if calls and all(call is not None for _, call in calls) else None


#: What ipykernel reports as the notebook's language (``language_info`` of its kernel_info reply).
PYTHON_LANGUAGE_INFO = {
    "codemirror_mode": {"name": "ipython", "version": sys.version_info[0]},
    "file_extension": ".py",
    "mimetype": "text/x-python",
    "name": "python",
    "nbconvert_exporter": "python",
    "pygments_lexer": "ipython3",
    "version": sys.version.split()[0],
}


def error_output(failure):
    """The error output a kernel shows for a raised :class:`HiddenTestFailure` (its own short traceback)."""
    return nbformat.v4.new_output(
        "error", ename=type(failure).__name__, evalue=str(failure), traceback=failure._render_traceback_()
    )


def check_output(part, name, handin_dir, verdict):
    """The one output a kernel gives the grade cell ``check(part, name)`` for this verdict of ``handin_dir``."""
    try:
        text = check_text(part, name, handin_dir, verdict)
    except HiddenTestFailure as failure:
        return error_output(failure)
    return nbformat.v4.new_output("stream", name="stdout", text=text + "\n")


def now():
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


class SettledStudents:
    """The students whose judging the batch grader has ended, as it reports them on a stream (stdin).

    One JSON line per student, ``{"settled": "<student id>"}``, sent once the student's verdict
    is stored or its judging has failed for good: either way, looking the verdict up gives the
    final answer (a missing verdict fails at once). The end of the stream means no more will come.
    """

    def __init__(self, stream):
        self.stream, self.ids, self.ended = stream, set(), False

    def wait_for(self, student_id):
        """Return once ``student_id`` is settled, or the stream has ended."""
        while student_id not in self.ids and not self.ended:
            line = self.stream.readline()
            if not line:
                self.ended = True
            else:
                self.ids.add(json.loads(line)["settled"])


@functools.cache
def settled_students():
    return SettledStudents(sys.stdin)


class VerdictExecute(GuardedExecute):
    """``GuardedExecute`` that evaluates the kit's own grading notebook in this process (see module doc)."""

    grading_notebook = Unicode("grading", help="Notebook id whose kit grade cells are evaluated without a kernel.").tag(
        config=True
    )
    in_process = Bool(True, help="Evaluate the kit's grade cells without a kernel; False: always a kernel.").tag(
        config=True
    )
    await_settled = Bool(
        False,
        help="Before grading a student from the verdicts, wait until stdin says that student's judging "
        "has ended (SettledStudents; the batch grader's pipelined autograde).",
    ).tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        resources = resources if resources is not None else {}
        is_grading = resources.get("nbgrader", {}).get("notebook") == self.grading_notebook
        if is_grading and self.await_settled:  # in a kernel too, the grade cells read the verdict
            settled_students().wait_for(resources.get("nbgrader", {}).get("student"))
        calls = check_calls(nb) if self.in_process and is_grading else None
        if calls is None:
            if is_grading and self.in_process:
                self.log.warning(
                    "%s has cells that are not the kit's grade cells: running it in a kernel", self.grading_notebook
                )
            return super().preprocess(nb, resources, km)
        handin_dir = Path(resources.get("metadata", {}).get("path") or ".") / "handin"
        self.log.info("Grading %s without a kernel, from the verdicts", self.grading_notebook)
        nb.metadata["language_info"] = dict(PYTHON_LANGUAGE_INFO)
        verdict = None
        for execution_count, (cell, (part, name)) in enumerate(calls, start=1):
            started = now()
            try:  # looked up once; a lookup that failed is tried again by the next cell, as in a kernel
                verdict = verdict or verdict_for(handin_dir)
                cell.outputs = [check_output(part, name, handin_dir, verdict)]
            except Exception as error:  # noqa: BLE001 - what check() makes of it: a readable 0
                cell.outputs = [error_output(not_graded(part, name, error))]
            cell.execution_count = execution_count
            if self.record_timing:
                finished = now()
                cell.metadata["execution"] = {
                    "iopub.execute_input": started,
                    "iopub.status.busy": started,
                    "iopub.status.idle": finished,
                    "shell.execute_reply": finished,
                }
        return nb, resources
