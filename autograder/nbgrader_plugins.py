"""The kit's nbgrader preprocessors for what reaches a browser (plugged in by ``nbgrader_config.py``).

* :class:`SanitizeNotebook` (``Autograde.sanitize_preprocessors`` and
  ``GenerateFeedback.preprocessors``): every student-written markdown and raw cell, saved
  output and metadata is made safe (:mod:`autograder.sanitize`), so the autograded
  notebook that formgrader shows and every feedback page carry no active HTML.
* :class:`RenderReport` (``Autograde.autograde_preprocessors``): the report notebook is
  not executed; this fills its figure and findings cells with outputs drawn in the grader
  by the kit's own code from the student's validated ``results/experiment.json``
  (:mod:`autograder.report`), and puts a notice at the top when the file is missing or
  unusable. The outcome is also kept in the notebook's metadata (``handin3_report``) for
  the kit's feedback page.
"""

import copy
from pathlib import Path

import nbformat
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Unicode

from . import report
from .sanitize import clean_notebook

#: Where :class:`RenderReport` records its outcome: ``{"status", "notes", "quick"}``.
REPORT_METADATA = "handin3_report"


class SanitizeNotebook(NbGraderPreprocessor):
    """Remove active HTML, scripts and active outputs from a student's notebook (see :mod:`autograder.sanitize`)."""

    def preprocess(self, nb, resources):
        return clean_notebook(nb), resources


class RenderReport(NbGraderPreprocessor):
    """Fill the report's figure and findings cells from the validated results file, with the kit's code."""

    notebook_name = Unicode("3_report", help="Notebook id (file name without .ipynb) of the report.").tag(config=True)
    source_notebook = Unicode("", help="Path of the instructor's source copy of the report.").tag(config=True)

    def preprocess(self, nb, resources):
        if resources.get("nbgrader", {}).get("notebook") != self.notebook_name:
            return nb, resources
        if not self.source_notebook:
            raise ValueError(
                "RenderReport.source_notebook is not set: point it at "
                "source/<assignment>/3_report.ipynb in nbgrader_config.py"
            )
        results_path = Path(resources.get("metadata", {}).get("path") or ".") / report.RESULTS_FILE
        try:
            results = report.grade_results(results_path)
        except Exception as error:  # a fault of the grader: say so, and never stop the other notebooks
            self.log.exception("Drawing the report from %s failed", results_path)
            results = report.ReportResults(
                "invalid", [f"The grader could not draw the report ({type(error).__name__}); tell the course staff."]
            )
        kit_notebook = nbformat.read(self.source_notebook, as_version=4)
        if results.status == "ok":
            place_kit_cells(nb, kit_notebook, results.outputs)
        notice = report.notice_markdown(results)
        if notice:
            nb.cells.insert(0, nbformat.v4.new_markdown_cell(notice, id="handin3-report-notice"))
        nb.metadata[REPORT_METADATA] = {"status": results.status, "notes": results.notes, "quick": results.quick}
        return nb, resources


def kit_cell_positions(kit_notebook):
    """``{marker of report.REPORT_CELLS: index of the kit's code cell whose source contains it}``."""
    positions = {}
    for marker in report.REPORT_CELLS:
        matches = [
            index for index, cell in enumerate(kit_notebook.cells) if cell.cell_type == "code" and marker in cell.source
        ]
        if len(matches) != 1:
            raise ValueError(
                f"the kit's report notebook has {len(matches)} code cells containing {marker!r}; "
                "autograder/report.py REPORT_CELLS must name exactly one each"
            )
        positions[marker] = matches[0]
    return positions


def place_kit_cells(nb, kit_notebook, outputs):
    """Put the kit's version of every output cell, with the grader's outputs, into the student's notebook.

    The student may have edited, moved or deleted these cells: the kit's cell (source
    and id) replaces the student's cell with the same id, or is inserted after the
    nearest earlier kit cell that the student's notebook still has (at the end if none).
    """
    for marker, kit_index in kit_cell_positions(kit_notebook).items():
        cell = NotebookNode(copy.deepcopy(dict(kit_notebook.cells[kit_index])))
        cell.outputs = [nbformat.from_dict(output) for output in outputs[marker]]
        cell.execution_count = None
        cell.metadata = {}
        ids = [student_cell.get("id") for student_cell in nb.cells]
        if cell.get("id") in ids:
            nb.cells[ids.index(cell.id)] = cell
            continue
        earlier = [kit_cell.get("id") for kit_cell in kit_notebook.cells[:kit_index]]
        anchors = [ids.index(cell_id) for cell_id in reversed(earlier) if cell_id in ids]
        nb.cells.insert(anchors[0] + 1 if anchors else len(nb.cells), cell)
