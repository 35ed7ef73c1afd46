"""``python -m autograder grade SUBMISSIONS --out RESULTS``: grade a whole class.

Pipeline (each step resumable; per-student results are written atomically)::

    collect      find each student's files (folders, zips, one LMS bulk download), check them
                 without running anything                                  -> autograder.collect
    normalize    copy ONLY the known files into RESULTS/course/submitted/<id>/hand_in_3/
    judge        run every student's functions in a sandboxed child, compare outside,
                 2 in parallel                  -> RESULTS/verdicts/<key>.json (key: hash of the modules)
    autograde    ONE real `nbgrader autograde hand_in_3` over the students (re)graded in this run,
                 started alongside the judges: grading.ipynb's grade cells wait for each
                 verdict and read it                                       -> RESULTS/course/gradebook.db
    report       RESULTS/grades.csv (scores read back from the gradebook) and
                 RESULTS/feedback/<id>.html

RESULTS/course is an ordinary nbgrader course directory, so ``nbgrader formgrader``
(for the report's hand-graded answers) and ``nbgrader export`` work there.

Exit code 0 when grading ran, whatever the students' results; 2 when the grader
itself cannot run (no bubblewrap without --no-sandbox, bad arguments, nbgrader failed).
"""
import argparse
import csv
import dataclasses
import io
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import ASSIGNMENT, KIT_ROOT
from . import collect as collecting
from . import sandbox
from .cell import VERDICT_WAIT_SECONDS, WAIT_ENV
from .course import CourseBuildError
from .files import write_atomically
from .gate import ReleaseLeakError
from .judge import cache

PARTS = ("collage", "mixup", "cross_entropy", "network", "frozen_finetuning")
CSV_COLUMNS = ("student_id",) + PARTS + ("total", "max_total", "status")
VERDICTS_ENV = "HANDIN3_VERDICTS"  # where grading.ipynb's grade cells find the verdicts


class GraderError(RuntimeError):
    """The grader itself cannot run (not a student's fault)."""


# ----------------------------------------------------------------------------- small file helpers

def read_json(path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------- the layout of RESULTS

class Results:
    """Paths inside the RESULTS folder."""

    def __init__(self, root):
        self.root = Path(root).resolve()
        self.course = self.root / "course"
        self.verdicts = self.root / "verdicts"
        self.feedback = self.root / "feedback"
        self.csv = self.root / "grades.csv"

    @property
    def autograded_keys(self):
        """``{student id: verdict key}`` of the students whose nbgrader autograde finished."""
        return self.root / "autograded.json"

    def submitted(self, student_id):
        return self.course / "submitted" / student_id / ASSIGNMENT

    def autograded(self, student_id):
        return self.course / "autograded" / student_id / ASSIGNMENT

    @property
    def release(self):
        return self.course / "release" / ASSIGNMENT


# ----------------------------------------------------------------------------- steps

def prepare_course(results):
    """Build the nbgrader course (source, release, gradebook) once; later runs reuse it."""
    from .course import build_course

    if not (results.release / "grading.ipynb").is_file():
        build_course(results.course, force=True)
    if not (results.release / "grading.ipynb").is_file():
        raise GraderError(f"{results.release} has no grading.ipynb: the course build did not include "
                          "autograder/grading.ipynb")


def judge_all(submissions, results, workers, use_sandbox, force, progress, time_limit=None):
    """Judge the students whose verdict is not cached yet (or all with ``force``), ``workers`` at a time.

    The work happens in sandboxed children, so threads suffice here; each verdict is
    stored in the judge's cache (keyed by the modules' bytes) the moment it arrives.

    Returns:
        the student ids judged in this run.
    """
    from .judge.core import DEFAULT_LIMITS, HiddenInputs, judge_submission

    todo = [s for s in submissions if needs_judging(results, s, force)]
    if not todo:
        return []
    progress.reset(total=len(todo))
    if len(todo) < len(submissions) and not force:
        progress.write(f"{len(submissions) - len(todo)} student(s) already judged with the same files: "
                       "skipped (use --force)")
    inputs = HiddenInputs(cache_dir=results.verdicts)
    limits = DEFAULT_LIMITS if time_limit is None else dataclasses.replace(
        DEFAULT_LIMITS, wall_seconds=time_limit, cpu_seconds=int(time_limit))

    def one(submission):
        handin = handin_of(results, submission)
        try:
            verdict = judge_submission(handin, sandbox=use_sandbox, inputs=inputs, limits=limits)
        except Exception as error:  # a bug or resource problem in the grader itself: report, keep going
            message = f"{submission.student_id}: the judge failed: {type(error).__name__}: {error}"
            progress.write(message)
            cache.store_failure(cache.verdict_key(handin, cache_dir=results.verdicts), message,
                                cache_dir=results.verdicts)
            return submission
        cache.store(verdict, handin, cache_dir=results.verdicts)
        return submission

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for submission in pool.map(one, todo):
            progress.update(1)
            progress.set_postfix_str(submission.student_id)
    return [s.student_id for s in todo]


def handin_of(results, submission):
    return results.submitted(submission.student_id) / "handin"


def nbgrader_environment(results, use_sandbox):
    """nbgrader runs ``alembic`` by PATH; the grade cells find the kit and the verdicts through these."""
    environment = dict(os.environ)
    environment["HANDIN3_KIT"] = str(KIT_ROOT)
    environment["HANDIN3_SANDBOX"] = "1" if use_sandbox else "0"
    environment["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), environment.get("PATH", "")])
    environment[VERDICTS_ENV] = str(results.verdicts)
    return environment


def start_autograde(results, student_ids, use_sandbox):
    """Start ONE real ``nbgrader autograde hand_in_3`` for the given students, in the background.

    It runs while the judges work: its grade cells wait for each verdict (``HANDIN3_VERDICT_WAIT``).
    nbgrader skips students that already have an autograded folder, so removing those of
    ``student_ids`` first makes the run cover exactly them. Returns the process, or None.
    """
    if not student_ids:
        return None
    for student_id in student_ids:
        shutil.rmtree(results.autograded(student_id), ignore_errors=True)
    command = [sys.executable, "-m", "nbgrader", "autograde", ASSIGNMENT, f"--CourseDirectory.root={results.course}"]
    environment = {**nbgrader_environment(results, use_sandbox), WAIT_ENV: str(VERDICT_WAIT_SECONDS)}
    log = open(results.root / "nbgrader-autograde.log", "w")
    return subprocess.Popen(command, cwd=results.course, env=environment, stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT)


def finish_autograde(process, results, student_ids):
    """Wait for nbgrader; every student must have been autograded."""
    if process is None:
        return
    returncode = process.wait()
    missing = [s for s in student_ids if not results.autograded(s).is_dir()]
    if missing:
        raise GraderError(f"`nbgrader autograde` did not grade {', '.join(missing)} (exit {returncode}); "
                          f"see {results.root / 'nbgrader-autograde.log'}")


def gradebook_scores(results):
    """Per-student, per-part scores as nbgrader recorded them: {student: {part: points}}."""
    from nbgrader.api import Gradebook

    scores = {}
    with Gradebook(f"sqlite:///{results.course / 'gradebook.db'}") as gradebook:
        for submission in gradebook.assignment_submissions(ASSIGNMENT):
            per_part = scores.setdefault(submission.student_id, {part: 0.0 for part in PARTS})
            for notebook in submission.notebooks:
                for grade in notebook.grades:
                    part = next((p for p in PARTS if grade.name.startswith(p + "_")), None)
                    if part is not None:
                        per_part[part] += grade.score or 0.0
    return scores


def max_scores():
    from .judge.points import POINTS
    return {part: float(sum(POINTS[part].values())) for part in PARTS}


#: Statuses of the judge's parts that become the CSV status, most telling first.
RUN_STATUSES = ("timeout", "memory_limit", "crashed", "import_error", "unreadable", "invalid_output")


def run_status(verdict):
    """How the student's code ran, from the judge's part statuses (import errors count as crashed)."""
    if verdict is None:
        return "crashed"
    statuses = {part.get("status") for part in verdict.get("parts", {}).values()}
    for status in RUN_STATUSES:
        if status in statuses:
            return "crashed" if status in ("import_error", "unreadable", "invalid_output") else status
    return "ok"


def final_status(submission, verdict):
    """The CSV status: problems with the files first, then how the code ran; a missing report comes last."""
    if not submission.gradable:
        return submission.status
    ran = run_status(verdict)
    if submission.status == f"missing_file:{collecting.REPORT}" and ran != "ok":
        return ran
    return submission.status if submission.status != "ok" else ran


def write_csv(results, submissions, scores, verdicts):
    maxima = max_scores()
    rows = []
    for submission in submissions:
        per_part = scores.get(submission.student_id, {}) if submission.gradable else {}
        row = {"student_id": submission.student_id}
        row.update({part: _points(per_part.get(part, 0.0)) for part in PARTS})
        row["total"] = _points(sum(per_part.get(part, 0.0) for part in PARTS))
        row["max_total"] = _points(sum(maxima.values()))
        row["status"] = final_status(submission, verdicts.get(submission.student_id))
        rows.append(row)
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    write_atomically(results.csv, text.getvalue())
    return rows


def _points(value):
    return int(value) if float(value).is_integer() else round(float(value), 2)


# ----------------------------------------------------------------------------- the command

class PhaseClock:
    """Seconds per phase of a run, saved to ``RESULTS/run.json`` after each phase (for the bench and TAs)."""

    def __init__(self, path):
        self.path, self.phases, self.last = path, {}, time.monotonic()

    def lap(self, name, **counts):
        now = time.monotonic()
        self.phases[name] = {"seconds": round(now - self.last, 2), **counts}
        self.last = now
        write_atomically(self.path, json.dumps(self.phases, indent=1))


def grade(submissions_dir, out, force=False, use_sandbox=True, workers=2, lms_regexp=collecting.LMS_REGEXP,
          time_limit=None, quiet=False, allow_unenforced_limits=False):
    """Grade every submission in ``submissions_dir`` into ``out``; returns the CSV rows.

    Refuses to start (``SandboxUnavailable``) when a sandbox limit cannot be enforced here,
    unless ``allow_unenforced_limits``; which limits hold, and how, goes into ``run.json``.
    """
    from tqdm import tqdm

    from .feedback import write_feedback

    submissions_dir = Path(submissions_dir).resolve()
    if not submissions_dir.is_dir():
        raise GraderError(f"{submissions_dir} is not a folder of submissions (give the folder that holds "
                          "<id>/ folders, <id>.zip files or an LMS download)")
    limits = {"sandbox": "off (--no-sandbox)"}
    if use_sandbox:
        sandbox.check_sandbox_support()
        limits = sandbox.require_limits(allow_unenforced_limits)
        unenforced = [name for name, entry in limits.items() if entry["mechanism"] is None]
        if unenforced:
            print(f"grade: grading WITHOUT these limits (--allow-unenforced-limits): {', '.join(unenforced)}",
                  file=sys.stderr)
        sandbox.cleanup_stale()
    results = Results(out)
    results.root.mkdir(parents=True, exist_ok=True)
    if results.root == submissions_dir or submissions_dir in results.root.parents:
        raise GraderError(f"--out {results.root} must not be inside the submissions folder")
    staging = collecting.make_staging_dir(results.root)
    try:
        clock = PhaseClock(results.root / "run.json")
        clock.phases["limits"] = limits  # how each sandbox limit was enforced in this run
        submissions = collecting.collect(submissions_dir, staging, lms_regexp)
        prepare_course(results)
        clock.lap("collect_and_course")
        gradable = [s for s in submissions if s.gradable]
        for submission in gradable:  # cheap, and the copies must match what was handed in now
            collecting.normalize(submission, results.course, results.release)
        done = read_json(results.autograded_keys) or {}
        keys = {s.student_id: verdict_key(results, s) for s in gradable}
        to_judge = {s.student_id for s in gradable if needs_judging(results, s, force)}
        for student_id in to_judge:  # a failure of an earlier run must not cut this run's wait short
            cache.clear_failure(keys[student_id], results.verdicts)
        autograde_ids = sorted(to_judge | {i for i, key in keys.items() if done.get(i) != key})
        if not quiet and autograde_ids:
            print(f"nbgrader autograde: {len(autograde_ids)} student(s) in one run, alongside the judges",
                  file=sys.stderr)
        nbgrader = start_autograde(results, autograde_ids, use_sandbox)
        try:
            with tqdm(total=len(gradable), desc="judging", unit="student", disable=quiet,
                      dynamic_ncols=True) as bar:
                judged = judge_all(gradable, results, workers, use_sandbox, force, bar, time_limit)
                # The grade cells look verdicts up by the judge's current version: if the judge's code
                # changed meanwhile, judge again here, in parallel, rather than serially inside nbgrader.
                judged += judge_all(gradable, results, workers, use_sandbox, False, bar, time_limit)
            clock.lap("judge", students=len(set(judged)))
            finish_autograde(nbgrader, results, autograde_ids)
        finally:
            if nbgrader is not None and nbgrader.poll() is None:
                nbgrader.kill()
        done.update({i: keys[i] for i in autograde_ids})
        write_atomically(results.autograded_keys, json.dumps(done, indent=1, sort_keys=True))
        clock.lap("nbgrader_autograde_after_judging", students=len(autograde_ids))

        verdicts = {s.student_id: load_verdict(results, s, done.get(s.student_id)) for s in submissions}
        scores = gradebook_scores(results)
        rows = write_csv(results, submissions, scores, verdicts)
        for submission, row in zip(submissions, rows):
            write_feedback(results.feedback / f"{submission.student_id}.html", submission, row,
                           verdicts[submission.student_id])
        clock.lap("csv_and_feedback", students=len(rows))
        return rows
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def needs_judging(results, submission, force):
    """Whether to judge a student: always with ``force``, else when no verdict is cached for these files."""
    return force or cache.load_cached(handin_of(results, submission), cache_dir=results.verdicts) is None


def verdict_key(results, submission):
    return cache.verdict_key(handin_of(results, submission), cache_dir=results.verdicts)


def load_verdict(results, submission, graded_key=None):
    """The student's verdict: by the current key, else by the key recorded when it was autograded
    (the judge's version is part of the key; a judge edited since then changes it)."""
    if not submission.gradable:
        return None
    verdict = cache.load_cached(handin_of(results, submission), cache_dir=results.verdicts)
    if verdict is None and graded_key:
        verdict = cache.load_by_key(graded_key, results.verdicts)
    return verdict


def format_table(rows):
    """The grade table as aligned text."""
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) if rows else len(c) for c in CSV_COLUMNS}
    line = lambda values: "  ".join(str(values[c]).ljust(widths[c]) for c in CSV_COLUMNS)  # noqa: E731
    return "\n".join([line({c: c for c in CSV_COLUMNS})] + [line(r) for r in rows])


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m autograder grade", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("submissions", help="folder with <id>/ folders, <id>.zip files and/or one LMS download zip")
    parser.add_argument("--out", required=True, help="results folder (grades.csv, feedback/, course/ gradebook)")
    parser.add_argument("--force", action="store_true", help="grade again students already graded")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="run student code WITHOUT isolation (development only, trusted code only)")
    parser.add_argument("--allow-unenforced-limits", action="store_true",
                        help="grade even where a sandbox limit cannot be enforced (it is printed and recorded)")
    parser.add_argument("--workers", type=int, default=2, help="judge processes in parallel (default 2)")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="wall-clock and CPU seconds for one student's code run (default: the judge's)")
    parser.add_argument("--lms-regexp", default=collecting.LMS_REGEXP,
                        help="regexp with (?P<student_id>) and (?P<file_id>) for LMS bulk downloads")
    return parser.parse_args(argv)


def main(argv):
    options = parse_args(argv)
    started = time.monotonic()
    try:
        rows = grade(options.submissions, options.out, force=options.force, use_sandbox=not options.no_sandbox,
                     workers=options.workers, lms_regexp=options.lms_regexp, time_limit=options.time_limit,
                     allow_unenforced_limits=options.allow_unenforced_limits)
    except (sandbox.SandboxUnavailable, GraderError, CourseBuildError, ReleaseLeakError) as error:
        print(f"grade: {error}", file=sys.stderr)
        return 2
    print(format_table(rows))
    results = Results(options.out)
    print(f"\n{len(rows)} student(s) in {time.monotonic() - started:.0f} s. Grades: {results.csv}; "
          f"feedback: {results.feedback}/<student_id>.html; gradebook: {results.course / 'gradebook.db'}")
    return 0
