"""nbgrader preprocessors that ``nbgrader_config.py`` plugs into ``nbgrader autograde``.

* :class:`GuardedExecute` replaces nbgrader's ``Execute``: it does not run notebooks
  without autograded tests (the report and the exercise notebooks hold student code
  that earns no automatic points, so running it only costs time and risk), it adds a
  whole-notebook deadline to the per-cell timeout, and after a timeout it restarts the
  kernel, so a loop that swallows ``KeyboardInterrupt`` ends as a graded 0 for that
  cell instead of a stuck or crashed batch.
* :class:`ResetGradingNotebook` replaces a submitted ``grading.ipynb`` by the
  instructor's source copy before anything runs, so extra cells a student adds to it
  never execute in the grading kernel.
"""
import math
from time import monotonic

import nbformat
from nbclient.util import run_sync
from nbformat.notebooknode import NotebookNode
from nbgrader import utils
from nbgrader.preprocessors import Execute, NbGraderPreprocessor
from traitlets import Bool, Integer, Unicode

NOTEBOOK_DEADLINE_ERROR = {
    "output_type": "error", "ename": "NotebookTimeoutError", "evalue": "",
    "traceback": ["NotebookTimeoutError: the notebook ran out of its time budget before this cell"],
}


def has_autograded_tests(nb):
    """True if some code cell is an autograder test (a grade cell that is not a solution)."""
    return any(cell.cell_type == "code" and utils.is_grade(cell) and not utils.is_solution(cell)
               for cell in nb.cells)


class GuardedExecute(Execute):
    """nbgrader's ``Execute`` with a whole-notebook deadline and recovery from swallowed interrupts."""

    notebook_timeout = Integer(900, help="Seconds for the whole notebook; later cells get a timeout error.").tag(
        config=True)
    skip_without_tests = Bool(True, help="Do not execute notebooks that have no autograded test cells.").tag(
        config=True)
    # After a timeout the kernel is restarted, so waiting for the interrupted cell's
    # remaining output must not abort the whole notebook.
    raise_on_iopub_timeout = Bool(False).tag(config=True)

    _deadline = None
    _timed_out = False

    def preprocess(self, nb, resources=None, km=None):
        if self.skip_without_tests and not has_autograded_tests(nb):
            self.log.info("Not executing %s: it has no autograded tests",
                          (resources or {}).get("nbgrader", {}).get("notebook", "the notebook"))
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


class ResetGradingNotebook(NbGraderPreprocessor):
    """Replace the submitted grading notebook by the instructor's source copy (cells and metadata)."""

    notebook_name = Unicode("grading", help="Notebook id (file name without .ipynb) to reset.").tag(config=True)
    source_notebook = Unicode("", help="Path of the instructor's source copy of that notebook.").tag(config=True)

    def preprocess(self, nb, resources):
        if resources.get("nbgrader", {}).get("notebook") != self.notebook_name:
            return nb, resources
        if not self.source_notebook:
            raise ValueError("ResetGradingNotebook.source_notebook is not set: point it at "
                             "source/<assignment>/grading.ipynb in nbgrader_config.py")
        source = nbformat.read(self.source_notebook, as_version=4)
        nb.cells = [NotebookNode(cell) for cell in source.cells]
        nb.metadata = source.metadata
        return nb, resources
