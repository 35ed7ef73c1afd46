"""The kernel-free grading pass (``VerdictExecute``) gives what a kernel gives.

The same judged submissions (the reference, the untouched stubs, and correct code that
exits at import) are autograded twice by real ``nbgrader autograde``: once with a kernel
per student (``--VerdictExecute.in_process=False``) and once without. The gradebook's
scores, and every grade cell's outputs and execution count, must be the same; formgrader's
and the feedback's input is that notebook and that gradebook. A grading notebook with one
cell that is not exactly a kit grade cell is never evaluated in nbgrader's process.
``QuickCheckCellMetadata`` accepts and rejects the same notebooks as nbgrader's ``CheckCellMetadata``.
"""

import io
import os
import shutil
import subprocess
import sys

import nbformat
import pytest
from submissions import BY_NAME

from autograder import ASSIGNMENT, KIT_ROOT
from autograder.examples import write_assignment
from autograder.judge.core import judge_submissions
from autograder.nbgrader_glue.course import release_dir
from autograder.nbgrader_glue.execute import SettledStudents, VerdictExecute, check_calls
from autograder.sandbox import Limits

STUDENTS = ("reference", "stub", "correct_but_os_exit_in_network")
IN_PROCESS_LOG = "without a kernel, from the verdicts"
LIMITS = Limits(wall_seconds=120, cpu_seconds=30, memory_bytes=3 * 2**30)


def environment(verdicts):
    return dict(
        os.environ,
        PATH=f"{os.path.dirname(sys.executable)}:{os.environ.get('PATH', '')}",
        HANDIN3_KIT=str(KIT_ROOT),
        HANDIN3_VERDICTS=str(verdicts),
        HANDIN3_SANDBOX="1",
        HANDIN3_CELL_JUDGES="0",
    )


def autograde(course, verdicts, *options):
    done = subprocess.run(
        [sys.executable, "-m", "nbgrader", "autograde", ASSIGNMENT, f"--CourseDirectory.root={course}", *options],
        cwd=course,
        env=environment(verdicts),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


@pytest.fixture(scope="module")
def courses(tmp_path_factory, course_template):
    """``{"kernel": course, "in_process": course}``: the same judged class, autograded both ways."""
    root = tmp_path_factory.mktemp("verdict-execute")
    course = shutil.copytree(course_template / "course", root / "kernel")
    verdicts = shutil.copytree(course_template / "verdicts", root / "verdicts")  # the secret and hidden inputs
    for name in STUDENTS:
        folder = write_assignment(BY_NAME[name], release_dir(course), course / "submitted" / name / ASSIGNMENT)
        shutil.copyfile(release_dir(course) / "grading.ipynb", folder / "grading.ipynb")
    judge_submissions(
        [course / "submitted" / name / ASSIGNMENT / "handin" for name in STUDENTS],
        workers=2,
        sandbox=True,
        limits=LIMITS,
        cache_dir=verdicts,
    )
    in_process = root / "in_process"
    shutil.copytree(course, in_process)
    assert IN_PROCESS_LOG not in autograde(course, verdicts, "--VerdictExecute.in_process=False")
    assert autograde(in_process, verdicts).count(IN_PROCESS_LOG) == len(STUDENTS)
    return {"kernel": course, "in_process": in_process}


def grades(course):
    """``{(student, grade id): (auto score, max score)}`` from the real gradebook."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course}/gradebook.db") as gradebook:
        return {
            (student, grade.name): (grade.auto_score, grade.max_score)
            for student in STUDENTS
            for grade in gradebook.find_submission_notebook("grading", ASSIGNMENT, student).grades
        }


def executed_cells(course, student):
    """What executing the grading notebook wrote: per code cell its outputs and execution count."""
    notebook = nbformat.read(course / "autograded" / student / ASSIGNMENT / "grading.ipynb", as_version=4)
    cells = [
        (cell.id, cell.execution_count, cell.outputs, sorted(cell.metadata.get("execution", {})))
        for cell in notebook.cells
        if cell.cell_type == "code"
    ]
    return cells, notebook.metadata.get("language_info")


def test_same_gradebook_scores(courses):
    kernel, in_process = grades(courses["kernel"]), grades(courses["in_process"])
    assert in_process == kernel
    assert {score for (student, _), (score, _) in kernel.items() if student == "stub"} == {0.0}
    assert all(score == maximum for (student, _), (score, maximum) in kernel.items() if student == "reference")


@pytest.mark.parametrize("student", STUDENTS)
def test_same_notebook_outputs(courses, student):
    kernel, in_process = executed_cells(courses["kernel"], student), executed_cells(courses["in_process"], student)
    assert in_process == kernel
    cells, _ = kernel
    kinds = {output.output_type for _, _, outputs, _ in cells for output in outputs}
    assert kinds == {"stream"} if student == "reference" else "error" in kinds, kinds


def grading_notebook():
    return nbformat.read(KIT_ROOT / "autograder" / "nbgrader_glue" / "grading.ipynb", as_version=4)


def test_only_exact_kit_grade_cells_are_recognised():
    notebook = grading_notebook()
    assert len(check_calls(notebook)) == sum(cell.cell_type == "code" for cell in notebook.cells)
    notebook.cells[1].source = notebook.cells[1].source.replace("check(", "print(1); check(")
    assert check_calls(notebook) is None
    notebook = grading_notebook()
    notebook.cells.append(nbformat.v4.new_code_cell("import os\nprint(os.getpid())"))
    assert check_calls(notebook) is None


def test_an_unknown_cell_runs_in_a_kernel_not_in_process(courses, monkeypatch):
    """A grading notebook with an extra cell goes to a real kernel: the cell's pid is not this process's."""
    folder = courses["in_process"] / "submitted" / "reference" / ASSIGNMENT
    notebook = grading_notebook()
    notebook.cells.append(nbformat.v4.new_code_cell("import os\nprint(os.getpid())"))
    resources = {"nbgrader": {"notebook": "grading"}, "metadata": {"path": str(folder)}}
    executor = VerdictExecute(kernel_name="python3", shutdown_kernel="immediate")
    for name, value in environment(courses["in_process"].parent / "verdicts").items():
        monkeypatch.setenv(name, value)
    notebook, _ = executor.preprocess(notebook, resources)
    printed = notebook.cells[-1].outputs[0].text.strip()
    assert printed.isdigit() and int(printed) != os.getpid()
    assert notebook.cells[1].outputs[0].text.endswith("Passed.\n")


def metadata_variants():
    """The kit's grading notebook as is, and with nbgrader metadata broken in three ways."""

    def broken(change):
        notebook = grading_notebook()
        change(notebook.cells[1].metadata["nbgrader"])
        return notebook

    return {
        "valid": grading_notebook(),
        "points not a number": broken(lambda m: m.update(points="many")),
        "old schema": broken(lambda m: m.update(schema_version=1)),
        "grade cell without points": broken(lambda m: m.pop("points")),
    }


@pytest.mark.parametrize("variant", list(metadata_variants()))
def test_quick_metadata_check_decides_as_nbgrader_does(variant):
    from nbgrader.preprocessors import CheckCellMetadata

    from autograder.nbgrader_glue.preprocessors import QuickCheckCellMetadata

    def outcome(preprocessor):
        try:
            preprocessor.preprocess(metadata_variants()[variant], {})
        except Exception as error:  # noqa: BLE001 - the outcome compared is the exception's type and text
            return type(error).__name__, str(error)
        return "accepted"

    expected = outcome(CheckCellMetadata())
    assert outcome(QuickCheckCellMetadata()) == expected
    assert (expected == "accepted") == (variant == "valid"), expected


def test_settled_students_wait_for_their_own_line_or_the_end():
    """The batch grader's per-student signal: a student waits for its line, and for nothing after the end."""
    stream = io.StringIO('{"settled": "s002"}\n{"settled": "s001"}\n')
    settled = SettledStudents(stream)
    settled.wait_for("s001")
    assert settled.ids == {"s001", "s002"} and not settled.ended
    settled.wait_for("s002")  # already read: returns at once
    settled.wait_for("s003")  # never settled: returns at the end of the stream
    assert settled.ended and "s003" not in settled.ids
