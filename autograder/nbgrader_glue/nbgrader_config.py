"""nbgrader configuration for the hand_in_3 course (copied to the course root by ``build_course``).

What it changes, and why:

* ``Autograde.exclude_overwriting``: nbgrader would overwrite the student's modules with
  the instructor's copies; the three student modules are excluded, the provided ones
  are overwritten (students cannot change the kit's training code).
* ``SanitizeNotebook`` (sanitize step and feedback): student-written markdown, raw cells,
  saved outputs and metadata lose every active part (scripts, event handlers, HTML/JS/SVG
  outputs), so no student HTML runs in formgrader or a feedback page.
* ``RenderReport`` (autograde step): the report notebook gets its figures and findings,
  drawn by the kit's own code from the student's validated ``results/experiment.json``,
  or a notice at the top saying what is missing and why.
* ``ResetGradingNotebook`` (sanitize step): a submitted ``grading.ipynb`` is replaced by
  the instructor's source copy, so cells a student adds to it never run.
* ``VerdictExecute`` (a ``GuardedExecute``) replaces ``Execute``: the kit's own grading
  notebook, when every code cell is exactly a kit grade cell, is evaluated in nbgrader's
  process from the cached verdicts (no kernel start per student; the same outputs a
  kernel gives); every other notebook runs in a kernel with a per-cell timeout, a
  whole-notebook deadline and a kernel restart after a timeout (a loop that swallows
  KeyboardInterrupt ends as a 0, not a crashed batch); notebooks without autograded tests
  are not executed. ``--VerdictExecute.in_process=False`` always uses a kernel.
* ``QuickCheckCellMetadata`` replaces ``CheckCellMetadata``: the same checks, with
  nbgrader's metadata schema checked once instead of once per cell.
* ``Exporter.optimistic_validation``: each notebook is validated against nbformat's schema
  once, after all the preprocessors, instead of after each of them (a tenth of the pass).
* ``IgnorePattern`` drops every stderr output of the executed cells: warnings never cost points.
* ``ClearHiddenTests`` in ``GenerateFeedback``: the feedback shows no hidden-test source.
* Kernels shut down immediately after a notebook.

Environment for the grading kernel (config files are Python; kernels inherit nbgrader's
environment): ``HANDIN3_KIT`` (where ``autograder/`` lives), and, set by the batch grader,
``HANDIN3_VERDICTS`` (verdict cache) and ``HANDIN3_SANDBOX`` (``0`` disables the sandbox).
"""

import os
import sys
from pathlib import Path

from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import (
    AssignLatePenalties,
    ClearHiddenTests,
    ClearOutput,
    DeduplicateIds,
    GetGrades,
    IgnorePattern,
    LimitOutput,
    OverwriteCells,
    OverwriteKernelspec,
    SaveAutoGrades,
)

ASSIGNMENT = "hand_in_3"
COURSE_ROOT = Path(__file__).resolve().parent
#: ``autograder.KIT_ENV``, spelled out: this file runs before the kit can be imported.
KIT_ENV = "HANDIN3_KIT"


def find_kit():
    """The kit root: ``$HANDIN3_KIT``, else the parent of this file or of the venv that holds the kit's ``cell.py``."""
    if os.environ.get(KIT_ENV):
        return Path(os.environ[KIT_ENV]).resolve()
    for folder in [*Path(__file__).resolve().parents, *Path(sys.prefix).resolve().parents]:
        if (folder / "autograder" / "nbgrader_glue" / "cell.py").is_file():
            return folder
    raise RuntimeError(f"{__file__}: cannot find the course kit; set {KIT_ENV} to the folder that holds autograder/")


KIT = find_kit()
os.environ[KIT_ENV] = str(KIT)
if str(KIT) not in sys.path:
    sys.path.insert(0, str(KIT))

from autograder import STUDENT_MODULES  # noqa: E402
from autograder.nbgrader_glue.cell import JUDGE_TIMEOUT_SECONDS  # noqa: E402
from autograder.nbgrader_glue.execute import VerdictExecute  # noqa: E402
from autograder.nbgrader_glue.preprocessors import (  # noqa: E402
    QuickCheckCellMetadata,
    RenderReport,
    ResetGradingNotebook,
    SanitizeNotebook,
)  # noqa: E402

c = get_config()  # noqa: F821 - provided by traitlets when nbgrader loads this file

c.Autograde.exclude_overwriting = {ASSIGNMENT: [f"handin/{name}" for name in STUDENT_MODULES]}

c.Autograde.sanitize_preprocessors = [
    ClearOutput,
    DeduplicateIds,
    OverwriteKernelspec,
    ResetGradingNotebook,
    SanitizeNotebook,
    OverwriteCells,
    QuickCheckCellMetadata,
]
c.ResetGradingNotebook.source_notebook = str(COURSE_ROOT / "source" / ASSIGNMENT / "grading.ipynb")

c.Autograde.autograde_preprocessors = [
    VerdictExecute,
    IgnorePattern,
    ClearMetadataPreprocessor,
    RenderReport,
    LimitOutput,
    SaveAutoGrades,
    AssignLatePenalties,
    QuickCheckCellMetadata,
]
c.RenderReport.source_notebook = str(COURSE_ROOT / "source" / ASSIGNMENT / "3_report.ipynb")
# Under the batch grader a grade cell only reads a verdict (well under a second). Run by hand, the
# first cell may judge the submission itself: one judge run must fit in one cell.
c.GuardedExecute.timeout = JUDGE_TIMEOUT_SECONDS + 40
c.GuardedExecute.notebook_timeout = JUDGE_TIMEOUT_SECONDS + 240  # the whole notebook (later cells read the cache)
c.GuardedExecute.interrupt_on_timeout = True
c.GuardedExecute.shutdown_kernel = "immediate"
c.GuardedExecute.kernel_name = "python3"

c.Exporter.optimistic_validation = True  # validate once per notebook, after the last preprocessor

c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = r"(?s)."  # any stderr text

# formgrader checks nbgrader's exchange folder (by default /usr/local/share/nbgrader/exchange, which a TA
# cannot write: "Unwritable directory"). The kit never uses the exchange, so it is a folder of the course.
c.Exchange.root = str(COURSE_ROOT / "exchange")
os.makedirs(c.Exchange.root, exist_ok=True)

c.GenerateFeedback.preprocessors = [GetGrades, ClearHiddenTests, SanitizeNotebook, CSSHTMLHeaderPreprocessor]
c.ClearHiddenTests.enforce_metadata = True
