"""Real ``nbgrader autograde`` on every test submission of ``tests/submissions.toml``.

One course is built with the release generator (real ``generate_assignment``), every
submission becomes a student in ``submitted/``, the judge precomputes all verdicts in
parallel (2 workers, sandboxed) into a cache outside the submissions, and ONE
``nbgrader autograde hand_in_3`` grades everybody; the grade cells read the cache.
Then ``generate_feedback`` and ``export`` run on the result, and one student is graded
again with an empty cache (the grade cells judge it themselves) to show identical scores.

Submissions tested (see ``tests/submissions.toml`` for the code of each):

* reference solution (full marks) and untouched stubs (0, with reasons);
* buggy: wrong quadrant, interpolation 0.25, collage in place, hard-coded 28×28, integer
  canvas, λ not returned, swapped mixup weights, α ignored, constant λ, mixup in place,
  sum instead of mean, mean over classes, nll of argmax, ``.item()`` loss, wrong head,
  missing relu, ``F.dropout2d`` always on, no log_softmax, log_softmax over the batch,
  features detached (the convolutions get no gradient), all parameters finetuned, pretrainer
  finetuned, generalizer bias forgotten;
* equivalent-correct: relu before max-pool, dropout after the pool / none / functional
  with ``training=self.training``, ``[weight, bias]`` list, ``...`` indexing (float32),
  fresh float64 array, torch inside collage and mixup (float32), mixup drawing its own
  weight with ``torch.distributions.Beta``, float64 copies, float64 einsum loss,
  ``torch.mean`` of ``torch.sum``, warnings on stderr;
* tamper: monkeypatched comparison functions, IPython input transformer (in a module
  and as extra cells in grading.ipynb and notebook 1), ``sys.exit(0)`` and
  ``os._exit(0)`` at import, printing a fake score, faking the runner's output files,
  replacing the runner's functions with forged outputs, rewriting the scratch's files,
  wrapping the kit's ``finetune`` to hide a finetuning bug, overwriting cached verdicts,
  and correct code that crashes or loops forever in one part.
"""

import csv
import os
import shutil
import subprocess
import sys

import nbformat
import pytest
from submissions import ALL, BY_NAME

from autograder import ASSIGNMENT, KIT_ROOT
from autograder.examples import write_assignment
from autograder.judge import cache
from autograder.judge.core import judge_submissions
from autograder.judge.points import PARTS, POINTS, cell_id, part_max
from autograder.nbgrader_glue.course import release_dir
from autograder.sandbox import Limits

# A correct child needs 1-5 s of CPU; the one that loops forever uses all 10 (the wall clock is for a busy machine).
LIMITS = Limits(wall_seconds=120, cpu_seconds=10, memory_bytes=3 * 2**30)
CELL_PART = {cell_id(part, name): part for part, checks in POINTS.items() for name in checks}
HIDDEN_TEXT = (
    "BEGIN HIDDEN TESTS",
    "END HIDDEN TESTS",
    "HANDIN3_KIT",
    "autograder",
    "sys.path.insert",
    "check(",
    "runner.py",
    "reference.py",
    "ReferenceNet",
    "Traceback (most recent call last)",
    "c0_i",
    "allow_pickle",
)
REGRADED = "net_dropout_always_on"


def nbgrader(course, *args, verdicts):
    env = dict(
        os.environ,
        PATH=f"{os.path.dirname(sys.executable)}:{os.environ.get('PATH', '')}",
        HANDIN3_KIT=str(KIT_ROOT),
        HANDIN3_VERDICTS=str(verdicts),
        HANDIN3_SANDBOX="1",
    )
    done = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args, f"--CourseDirectory.root={course}"],
        cwd=course,
        env=env,
        capture_output=True,
        text=True,
    )
    assert "Exception while loading config file" not in done.stderr, done.stderr[-3000:]
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def answer_report(folder):
    """Write an answer into every hand-graded cell of the report, as a student would."""
    path = folder / "3_report.ipynb"
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source += "\n\nMy answer: see my plots."
    nbformat.write(notebook, path)


def part_scores(course, student):
    """``{part: score}`` from the gradebook's grade cells of grading.ipynb."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course}/gradebook.db") as gradebook:
        notebook = gradebook.find_submission_notebook("grading", ASSIGNMENT, student)
        scores = dict.fromkeys(PARTS, 0.0)
        for grade in notebook.grades:
            scores[CELL_PART[grade.name]] += grade.score
        return scores


@pytest.fixture(scope="session")
def graded(tmp_path_factory, course_template):
    course = shutil.copytree(course_template / "course", tmp_path_factory.mktemp("autograde") / "course")
    verdicts = shutil.copytree(course_template / "verdicts", course / "verdicts")  # the secret and hidden inputs
    for submission in ALL:
        folder = write_assignment(submission, release_dir(course), course / "submitted" / submission.name / ASSIGNMENT)
        if submission.name == "reference":
            answer_report(folder)
        if not submission.notebooks.get("grading.ipynb"):
            # What the batch grader does: the released grading notebook, whatever the student sent.
            shutil.copyfile(release_dir(course) / "grading.ipynb", folder / "grading.ipynb")
    handins = [course / "submitted" / s.name / ASSIGNMENT / "handin" for s in ALL]
    judge_submissions(handins, workers=2, sandbox=True, limits=LIMITS, cache_dir=verdicts)
    nbgrader(course, "autograde", ASSIGNMENT, verdicts=verdicts)
    return course, verdicts


def verdict_of(course, verdicts, name):
    return cache.load_cached(course / "autograded" / name / ASSIGNMENT / "handin", cache_dir=verdicts)


@pytest.mark.parametrize("name", [s.name for s in ALL])
def test_scores_through_nbgrader(graded, name):
    course, verdicts = graded
    submission = BY_NAME[name]
    scores = part_scores(course, name)
    verdict = verdict_of(course, verdicts, name)
    assert scores == {part: float(verdict["parts"][part]["score"]) for part in PARTS}, "nbgrader agrees with the judge"
    lost = {part for part in PARTS if scores[part] < part_max(part)}
    if submission.max_total is not None:
        assert sum(scores.values()) <= submission.max_total, f"{name} gained points: {scores}"
    else:
        assert set(submission.lose) <= lost <= set(submission.lose) | set(submission.may_lose), scores
    for part, status in submission.status.items():
        assert verdict["parts"][part]["status"] == status, verdict["parts"][part]
        assert verdict["parts"][part]["reason"]


def test_reference_and_variants_get_full_marks(graded):
    course, _ = graded
    for submission in ALL:
        if submission.kind in ("reference", "variant"):
            assert sum(part_scores(course, submission.name).values()) == 50, submission.name


def grading_outputs(course, name):
    notebook = nbformat.read(course / "autograded" / name / ASSIGNMENT / "grading.ipynb", as_version=4)
    return {
        cell.metadata["nbgrader"]["grade_id"]: cell.outputs
        for cell in notebook.cells
        if cell.metadata.get("nbgrader", {}).get("grade")
    }


def test_stubs_score_zero_with_clear_reasons(graded):
    course, _ = graded
    assert sum(part_scores(course, "stub").values()) == 0
    for grade_id, outputs in grading_outputs(course, "stub").items():
        errors = [output for output in outputs if output.output_type == "error"]
        assert len(errors) == 1 and errors[0].ename == "HiddenTestFailure", grade_id
        assert "NotImplementedError" in "\n".join(errors[0].traceback), grade_id
        assert not any(marker in "\n".join(errors[0].traceback) for marker in HIDDEN_TEXT), grade_id


def test_passing_cells_only_print_their_score(graded):
    course, _ = graded
    for grade_id, outputs in grading_outputs(course, "reference").items():
        assert {(output.output_type, output.get("name")) for output in outputs} == {("stream", "stdout")}, grade_id
        assert "".join(output.text for output in outputs).endswith("Passed.\n"), grade_id


def test_feedback_has_no_hidden_tests(graded):
    course, verdicts = graded
    nbgrader(course, "generate_feedback", ASSIGNMENT, "--CourseDirectory.student_id=[st]*", verdicts=verdicts)
    pages = sorted((course / "feedback").glob(f"*/{ASSIGNMENT}/grading.html"))
    assert {page.parts[-3] for page in pages} == {s.name for s in ALL if s.name[0] in "st"}
    for page in pages:
        html = page.read_text()
        leaked = [marker for marker in HIDDEN_TEXT if marker in html]
        assert not leaked, f"{page}: {leaked}"
    assert "NotImplementedError" in (course / "feedback" / "stub" / ASSIGNMENT / "grading.html").read_text()


def test_export_lists_every_student(graded):
    course, verdicts = graded
    nbgrader(course, "export", verdicts=verdicts)
    with open(course / "grades.csv") as handle:
        rows = {row["student_id"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {s.name for s in ALL}
    assert float(rows["stub"]["score"]) == 0
    assert float(rows["reference"]["score"]) >= 50  # plus nothing yet for the hand-graded report


def test_report_questions_wait_for_manual_grading(graded):
    from nbgrader.api import Gradebook

    course, _ = graded
    with Gradebook(f"sqlite:///{course}/gradebook.db") as gradebook:
        report = gradebook.find_notebook("3_report", ASSIGNMENT)
        assert len(report.grade_cells) >= 5 and all(not cell.cell_type == "code" for cell in report.grade_cells)
        answered = gradebook.find_submission_notebook("3_report", ASSIGNMENT, "reference")
        assert answered.needs_manual_grade
        assert gradebook.find_submission_notebook("grading", ASSIGNMENT, "reference").score == 50


def test_grading_again_without_the_cache_gives_identical_scores(graded):
    """The grade cells judge the submission themselves (sandboxed) when no verdict is cached."""
    course, verdicts = graded
    before = part_scores(course, REGRADED)
    fresh = course / "fresh-verdicts"
    fresh.mkdir()
    shutil.copy2(verdicts / cache.SECRET_NAME, fresh / cache.SECRET_NAME)  # the same course: the same secret
    nbgrader(course, "autograde", ASSIGNMENT, f"--CourseDirectory.student_id={REGRADED}", "--force", verdicts=fresh)
    assert len(list(fresh.glob("*.json"))) == 1
    assert part_scores(course, REGRADED) == before
    assert verdict_of(course, fresh, REGRADED)["parts"] == verdict_of(course, verdicts, REGRADED)["parts"]
