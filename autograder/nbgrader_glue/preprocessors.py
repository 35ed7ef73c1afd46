"""The kit's nbgrader preprocessors other than execution (plugged in by ``nbgrader_config.py``).

* :class:`SanitizeNotebook` (``Autograde.sanitize_preprocessors`` and
  ``GenerateFeedback.preprocessors``): every student-written markdown and raw cell, saved
  output and metadata is made safe (:mod:`autograder.sanitize`), so the autograded
  notebook that formgrader shows and every feedback page carry no active HTML.
* :class:`ResetGradingNotebook` (sanitize step) replaces a submitted ``grading.ipynb`` by the
  instructor's source copy before anything runs, so extra cells a student adds to it
  never execute in the grading kernel.
* :class:`RenderReport` (``Autograde.autograde_preprocessors``): the report notebook is
  not executed; this fills its figure and findings cells with outputs drawn in the grader
  by the kit's own code from the student's validated ``results/experiment.json``
  (:mod:`autograder.report`), and puts a notice at the top when the file is missing or
  unusable. The outcome is also kept in the notebook's metadata (``handin3_report``) for
  the kit's feedback page. Under the batch grader (``drawn_dir``, ``await_settled``) it waits
  until the student is settled and reads the figures the batch grader drew meanwhile.
* :class:`QuickCheckCellMetadata` is nbgrader's ``CheckCellMetadata`` with the same checks,
  except that nbgrader's (fixed) metadata schema is itself checked once per process, not
  once per cell (``jsonschema.validate`` does that, and it was a tenth of the autograde pass).
"""

import copy
import functools
import json
import traceback
from pathlib import Path

import jsonschema
import nbformat
from nbformat.notebooknode import NotebookNode
from nbgrader.nbgraderformat import MetadataValidator, ValidationError
from nbgrader.nbgraderformat.common import BaseMetadataValidator
from nbgrader.preprocessors import CheckCellMetadata, NbGraderPreprocessor
from traitlets import Bool, Unicode

from .. import report
from ..sanitize import clean_notebook
from .execute import settled_students

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
    drawn_dir = Unicode("", help="Folder of reports already drawn (report.drawn_results); empty: draw here.").tag(
        config=True
    )
    await_settled = Bool(
        False, help="First wait until stdin says the student is settled (SettledStudents; the batch grader)."
    ).tag(config=True)

    def preprocess(self, nb, resources):
        if resources.get("nbgrader", {}).get("notebook") != self.notebook_name:
            return nb, resources
        if not self.source_notebook:
            raise ValueError(
                "RenderReport.source_notebook is not set: point it at "
                "source/<assignment>/3_report.ipynb in nbgrader_config.py"
            )
        results_path = Path(resources.get("metadata", {}).get("path") or ".") / report.RESULTS_FILE
        if self.await_settled:  # the batch grader draws it meanwhile, alongside the judges
            settled_students().wait_for(resources.get("nbgrader", {}).get("student"))
        try:
            if self.drawn_dir:
                results = report.drawn_results(results_path, self.drawn_dir)
            else:
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


class ResetGradingNotebook(NbGraderPreprocessor):
    """Replace the submitted grading notebook by the instructor's source copy (cells and metadata)."""

    notebook_name = Unicode("grading", help="Notebook id (file name without .ipynb) to reset.").tag(config=True)
    source_notebook = Unicode("", help="Path of the instructor's source copy of that notebook.").tag(config=True)

    def preprocess(self, nb, resources):
        if resources.get("nbgrader", {}).get("notebook") != self.notebook_name:
            return nb, resources
        if not self.source_notebook:
            raise ValueError(
                "ResetGradingNotebook.source_notebook is not set: point it at "
                "source/<assignment>/grading.ipynb in nbgrader_config.py"
            )
        source = nbformat.read(self.source_notebook, as_version=4)
        nb.cells = [NotebookNode(cell) for cell in source.cells]
        nb.metadata = source.metadata
        return nb, resources


@functools.cache
def metadata_schema_validator(schema_version, schema_text):
    """A jsonschema validator for nbgrader's metadata schema, the schema checked once."""
    schema = json.loads(schema_text)
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


class SchemaCheckedOnce(BaseMetadataValidator):
    """nbgrader's schema step of a cell's validation (``jsonschema.validate``) with a cached validator."""

    def validate_cell(self, cell):
        if "nbgrader" not in cell.metadata:
            return
        metadata = cell.metadata["nbgrader"]
        if metadata.get("schema_version", 0) != self.schema_version:
            return super().validate_cell(cell)  # nbgrader's own SchemaTooOld/TooNewError
        validator = metadata_schema_validator(self.schema_version, json.dumps(self.schema, sort_keys=True))
        error = jsonschema.exceptions.best_match(validator.iter_errors(metadata))
        if error is not None:
            raise error


class QuickMetadataValidator(MetadataValidator, SchemaCheckedOnce):
    """nbgrader's current ``MetadataValidator``; its ``super()`` schema step is :class:`SchemaCheckedOnce`'s."""


class QuickCheckCellMetadata(CheckCellMetadata):
    """nbgrader's ``CheckCellMetadata`` with :class:`QuickMetadataValidator` (the same checks and errors)."""

    def preprocess(self, nb, resources):
        try:
            QuickMetadataValidator().validate_nb(nb)
        except ValidationError:
            self.log.error(traceback.format_exc())
            message = "Notebook failed to validate; the nbgrader metadata may be corrupted."
            self.log.error(message)
            raise ValidationError(message) from None
        return nb, resources
