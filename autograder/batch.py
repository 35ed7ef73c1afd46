"""``python -m autograder grade SUBMISSIONS --out RESULTS``: grade a whole class.

Pipeline (each step resumable; per-student results are written atomically)::

    collect      find each student's files (folders, zips, one LMS bulk download), check ids and
                 size caps, read only the needed files, without running anything -> autograder.collect
    normalize    write ONLY the known files into RESULTS/course/submitted/<id>/hand_in_3/
    judge        run every student's functions in a sandboxed child, compare outside,
                 2 in parallel                  -> RESULTS/verdicts/<key>.json (key: hash of the modules)
    autograde    ONE real `nbgrader autograde hand_in_3` over the students (re)graded in this run,
                 started with the judges: it grades each student once told that the student's
                 judging has ended (verdict stored, or failed) and its report is drawn (from
                 results/experiment.json, alongside the judges); grading.ipynb's grade cells only
                 read verdicts (HANDIN3_CELL_JUDGES=0), a missing one fails at once
                 -> RESULTS/course/gradebook.db
    report       RESULTS/feedback/<id>.html, then RESULTS/grades.csv (scores read back from the gradebook)

Each per-student step runs under a catch-all: a fault of the grader on one student becomes
that student's ``grader_error`` and the run goes on, so grades.csv always lists everybody.

RESULTS/course is an ordinary nbgrader course directory, so formgrader (for the report's
hand-graded answers) and ``nbgrader export`` work there.

Exit code 0 when grading ran, whatever the students' results; 1 when the grader failed on
some students (status ``grader_error``; the CSV is still complete); 2 when the grader itself
cannot run (no bubblewrap without --no-sandbox, bad arguments, the course cannot be built).
"""

import argparse
import csv
import dataclasses
import functools
import io
import json
import multiprocessing
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

from . import ASSIGNMENT, CELL_JUDGES_ENV, KIT_ENV, KIT_ROOT, SANDBOX_ENV, VERDICTS_ENV, sandbox
from . import collect as collecting
from .files import write_atomically
from .gate import ReleaseLeakError
from .judge import cache
from .judge.points import PARTS
from .nbgrader_glue.course import CourseBuildError
from .report import RESULTS_FILE, draw_into
from .sandbox import SandboxFault

CSV_COLUMNS = ("student_id",) + PARTS + ("total", "max_total", "status", "notes")
GRADING = collecting.GRADING


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
    def drawn_reports(self):
        """The report figures drawn from each results file (:func:`autograder.report.drawn_results`)."""
        return self.root / "drawn-reports"

    @property
    def release(self):
        return self.course / "release" / ASSIGNMENT


# ----------------------------------------------------------------------------- steps


def prepare_course(results):
    """Build the nbgrader course (source, release, gradebook) and the hidden inputs once; later runs reuse them.

    The hidden inputs depend only on the course secret and the judge's version; they are kept
    in ``RESULTS/verdicts`` (:func:`autograder.judge.core.stored_inputs`).
    """
    from .judge.core import HiddenInputs
    from .nbgrader_glue.course import build_course

    HiddenInputs(cache_dir=results.verdicts)

    if not (results.release / "grading.ipynb").is_file():
        build_course(results.course, force=True)
    if not (results.release / "grading.ipynb").is_file():
        raise GraderError(
            f"{results.release} has no grading.ipynb: the course build did not include "
            "autograder/nbgrader_glue/grading.ipynb"
        )


def time_limits(limits, cpu_seconds):
    """``limits`` with ``cpu_seconds`` of CPU time per run and twice that on the wall clock.

    The CPU limit is what stops an endless loop; the wall clock only has to outlast a correct
    run that waits for a core on a busy machine (the judge's defaults keep the same ratio).
    """
    return dataclasses.replace(limits, cpu_seconds=max(1, round(cpu_seconds)), wall_seconds=2 * cpu_seconds)


def judge_all(
    todo,
    results,
    workers,
    use_sandbox,
    progress,
    faults,
    time_limit=None,
    scheduler=None,
    allow_unenforced_limits=False,
    on_judged=lambda submission: None,
):
    """Judge the students ``todo``, ``workers`` at a time, or, with ``scheduler`` (a Dask
    address), one task per student on its workers (:mod:`.distributed`).

    The work happens in sandboxed children, so threads suffice here; each verdict is
    stored in the judge's cache (keyed by the modules' bytes) the moment it arrives. A
    fault of the judge or the sandbox on one student (``SandboxFault`` or any other
    exception) is recorded in ``faults`` and stores no verdict. ``on_judged(submission)``
    is called once the student's verdict is stored or its fault recorded (on Dask: for
    every student once all are done).
    """
    from .judge.core import DEFAULT_LIMITS, HiddenInputs, judge_submission

    if not todo:
        return
    progress.reset(total=len(todo))
    limits = DEFAULT_LIMITS if time_limit is None else time_limits(DEFAULT_LIMITS, time_limit)

    def record_fault(submission, message):
        faults[submission.student_id] = message
        progress.write(inert(f"{submission.student_id}: {message}"))

    if scheduler:
        from .distributed import judge_on_cluster

        judge_on_cluster(
            scheduler,
            todo,
            lambda submission: handin_of(results, submission),
            results.verdicts,
            limits=limits,
            use_sandbox=use_sandbox,
            allow_unenforced_limits=allow_unenforced_limits,
            progress=progress,
            record_fault=record_fault,
        )
        for submission in todo:
            on_judged(submission)
        return
    inputs = HiddenInputs(cache_dir=results.verdicts)

    def one(submission):
        handin = handin_of(results, submission)
        try:
            verdict = judge_submission(handin, sandbox=use_sandbox, inputs=inputs, limits=limits)
            cache.store(verdict, handin, cache_dir=results.verdicts)
        except Exception as error:  # noqa: BLE001 - the grader's fault, never the student's: report, go on
            kind = "the sandbox failed" if isinstance(error, SandboxFault) else "the judge failed"
            record_fault(submission, f"{kind}: {type(error).__name__}: {error}")
        on_judged(submission)
        return submission

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for submission in pool.map(one, todo):
            progress.update(1)
            progress.set_postfix_str(submission.student_id)


def handin_of(results, submission):
    return results.submitted(submission.student_id) / "handin"


def nbgrader_environment(results, use_sandbox):
    """nbgrader runs ``alembic`` by PATH; the grade cells find the kit and the verdicts through these."""
    environment = dict(os.environ)
    environment[KIT_ENV] = str(KIT_ROOT)
    environment[SANDBOX_ENV] = "1" if use_sandbox else "0"
    environment["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), environment.get("PATH", "")])
    environment[VERDICTS_ENV] = str(results.verdicts)
    environment[CELL_JUDGES_ENV] = "0"  # cells run once their student's judging ended: a missing verdict is an error
    return environment


class PipelinedAutograde:
    """The run's ONE real ``nbgrader autograde hand_in_3``, started before the judges.

    nbgrader works through ``student_ids`` in its own order while the judges run: before it
    draws a student's report or grades its grading notebook it waits (``await_settled``)
    until this object has announced the student as settled: a definitive signal, sent once the
    student's judging has ended (verdict stored, or the judge failed: the grade cells then fail
    at once, as before) and its report is drawn. The reports of the students who handed in a
    results file are drawn here meanwhile, ``workers`` processes at a time, into
    ``RESULTS/drawn-reports`` (nbgrader's ``RenderReport`` reads them there).
    nbgrader's start-up (imports, configuration) overlaps the judging.

    nbgrader skips students that already have an autograded folder, so removing those of
    ``student_ids`` first makes the run cover exactly them. Its output goes to
    ``RESULTS/nbgrader-autograde.log``.
    """

    def __init__(self, results, student_ids, judging, use_sandbox, workers):
        self.results, self.student_ids, self.process, self.drawing = results, list(student_ids), None, None
        self.started, self.seconds, self.cpu_seconds = time.monotonic(), 0.0, 0.0
        self.log = results.root / "nbgrader-autograde.log"
        self.messages = queue.SimpleQueue()  # written by a thread: a full pipe never blocks a judge
        self.lock = threading.Lock()
        if not self.student_ids:
            return
        for student_id in self.student_ids:
            shutil.rmtree(results.autograded(student_id), ignore_errors=True)
        launch = (
            f"import sys; sys.path.insert(0, {str(KIT_ROOT)!r}); "
            "from autograder.nbgrader_glue.launch import main; sys.exit(main(sys.argv[1:]))"
        )
        command = [sys.executable, "-c", launch, "autograde", ASSIGNMENT, f"--CourseDirectory.root={results.course}"]
        options = ["--VerdictExecute.await_settled=True", "--RenderReport.await_settled=True"]
        with open(self.log, "w") as output:
            self.process = subprocess.Popen(
                [*command, *options, f"--RenderReport.drawn_dir={results.drawn_reports}"],
                cwd=results.course,
                env=nbgrader_environment(results, use_sandbox),
                stdin=subprocess.PIPE,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        self.writer = threading.Thread(target=self._write_messages, daemon=True)
        self.writer.start()
        reports = {i: results.submitted(i) / RESULTS_FILE for i in self.student_ids}
        reports = {i: path for i, path in reports.items() if path.is_file()}
        self.pending = {i: {"judge"} if i in judging else set() for i in self.student_ids}
        for student_id in reports:
            self.pending[student_id].add("report")
        for student_id in [i for i, tasks in self.pending.items() if not tasks]:
            self._settled(student_id, None)
        if reports:
            self.drawing = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
            for student_id, path in reports.items():
                future = self.drawing.submit(draw_into, str(path), str(results.drawn_reports))
                future.add_done_callback(functools.partial(self._drawn, student_id))

    def _write_messages(self):
        try:
            while (line := self.messages.get()) is not None:
                self.process.stdin.write(line.encode())
                self.process.stdin.flush()
            self.process.stdin.close()
        except OSError:
            pass  # nbgrader has ended (it could not start): finish() records its students

    def _settled(self, student_id, task):
        """``task`` (``judge`` or ``report``) of the student has ended; announce the student once none is left."""
        with self.lock:
            tasks = self.pending.get(student_id)
            if tasks is None:
                return
            tasks.discard(task)
            if not tasks:
                del self.pending[student_id]
                self.messages.put(json.dumps({"settled": student_id}) + "\n")

    def _drawn(self, student_id, future):
        # a drawing that failed is only a lost head start: nbgrader's RenderReport draws it itself
        self._settled(student_id, "report")

    def judged(self, student_id):
        """The student's judging has ended (verdict stored, or failed for good)."""
        if self.process is not None:
            self._settled(student_id, "judge")

    def finish(self, faults):
        """Wait for nbgrader; a student it did not autograde is recorded in ``faults``."""
        if self.process is None:
            return
        self.messages.put(None)  # then stdin ends: nbgrader waits for nobody any more
        self.writer.join()
        if self.drawing is not None:
            self.drawing.shutdown()
        _, status, usage = os.wait4(self.process.pid, 0)  # wait() without its CPU time
        returncode = self.process.returncode = os.waitstatus_to_exitcode(status)
        self.seconds = round(time.monotonic() - self.started, 2)
        self.cpu_seconds = round(usage.ru_utime + usage.ru_stime, 2)
        for student_id in self.student_ids:
            if not (self.results.autograded(student_id) / GRADING).is_file():
                faults.setdefault(
                    student_id, f"`nbgrader autograde` did not grade this student (exit {returncode}); see {self.log}"
                )

    def stop(self):
        """End nbgrader if it still runs (the batch grader itself failed)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.drawing is not None:
            self.drawing.shutdown(cancel_futures=True)


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
RUN_STATUSES = ("timeout", "memory_limit", "crashed", "import_error", "unreadable", "invalid_output", "not_implemented")
CRASHED_LIKE = ("import_error", "unreadable", "invalid_output")


def run_status(verdict):
    """How the student's code ran, from the judge's part statuses (import errors count as crashed)."""
    if verdict is None:
        return "crashed"
    statuses = {part.get("status") for part in verdict.get("parts", {}).values()}
    for status in RUN_STATUSES:
        if status in statuses:
            return "crashed" if status in CRASHED_LIKE else status
    return "ok"


def files_status(submission, verdict):
    """Problems with the files first, then how the code ran; a missing report comes last."""
    if not submission.gradable:
        return submission.status
    ran = run_status(verdict)
    if submission.status == f"missing_file:{collecting.REPORT}" and ran != "ok":
        return ran
    return submission.status if submission.status != "ok" else ran


def final_status(submission, verdict, fault=None):
    """The CSV status: ``grader_error``, then ``duplicate_id``, then ``bad_id``, then :func:`files_status`."""
    if fault or submission.status == "grader_error":
        return "grader_error"
    if submission.bad_id and submission.status != "duplicate_id":
        return "bad_id"
    return files_status(submission, verdict)


def csv_row(submission, per_part, verdict, fault=None):
    """One CSV row; ``notes`` has the collection notes (and, for ``bad_id``, the status it hides)."""
    maxima = max_scores()
    row = {"student_id": submission.student_id}
    row.update({part: _points(per_part.get(part, 0.0)) for part in PARTS})
    row["total"] = _points(sum(per_part.get(part, 0.0) for part in PARTS))
    row["max_total"] = _points(sum(maxima.values()))
    row["status"] = final_status(submission, verdict, fault)
    notes = ([f"grader error: {fault}"] if fault else []) + list(submission.notes)
    if row["status"] == "bad_id":
        notes.append(f"status apart from the id: {files_status(submission, verdict)}")
    row["notes"] = " | ".join(notes)
    return row


def inert(value, limit=2000):
    """A cell value that a spreadsheet will not run and a terminal will not obey.

    Control characters (escape sequences, CR, tabs) are written as ``\\x..`` escapes, and a text
    starting with ``= + - @`` (a formula) gets a leading apostrophe.
    """
    if not isinstance(value, str):
        return value
    text = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in value[:limit])
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def write_csv(results, rows):
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    writer.writerows({column: inert(row[column]) for column in CSV_COLUMNS} for row in rows)
    write_atomically(results.csv, text.getvalue())


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


def grade(
    submissions_dir,
    out,
    force=False,
    use_sandbox=True,
    workers=2,
    lms_regexp=collecting.LMS_REGEXP,
    time_limit=None,
    quiet=False,
    allow_unenforced_limits=False,
    scheduler=None,
):
    """Grade every submission in ``submissions_dir`` into ``out``; returns the CSV rows.

    ``scheduler`` (a Dask scheduler's address) judges on its workers instead of here.

    Refuses to start (``SandboxUnavailable``) when a sandbox limit cannot be enforced here,
    unless ``allow_unenforced_limits``; which limits hold, and how, goes into ``run.json``.

    Every per-student step runs under :func:`guarded`: a fault on one student becomes
    that student's ``grader_error`` and the others go on, so the CSV is always complete.
    """
    from tqdm import tqdm

    submissions_dir = Path(submissions_dir).resolve()
    if not submissions_dir.is_dir():
        raise GraderError(
            f"{submissions_dir} is not a folder of submissions (give the folder that holds "
            "<id>/ folders, <id>.zip files or an LMS download)"
        )
    limits = {"sandbox": "off (--no-sandbox)"}
    if use_sandbox:
        sandbox.check_sandbox_support()
        limits = sandbox.require_limits(allow_unenforced_limits)
        unenforced = [name for name, entry in limits.items() if entry["mechanism"] is None]
        if unenforced:
            print(
                f"grade: grading WITHOUT these limits (--allow-unenforced-limits): {', '.join(unenforced)}",
                file=sys.stderr,
            )
        sandbox.cleanup_stale()
    results = Results(out)
    results.root.mkdir(parents=True, exist_ok=True)
    if results.root == submissions_dir or submissions_dir in results.root.parents:
        raise GraderError(f"--out {results.root} must not be inside the submissions folder")
    staging = collecting.make_staging_dir(results.root)
    autograde = None
    try:
        clock = PhaseClock(results.root / "run.json")
        clock.phases["limits"] = limits  # how each sandbox limit was enforced in this run
        submissions = collecting.collect(submissions_dir, staging, lms_regexp)
        prepare_course(results)
        clock.lap("collect_and_course")
        faults = {}  # student id -> what went wrong in the grader (CSV status grader_error)
        keys = {}
        for submission in submissions:  # cheap, and the copies must match what was handed in now
            if submission.gradable:
                guarded(faults, submission, collecting.normalize, submission, results.course, results.release)
                keys[submission.student_id] = guarded(faults, submission, verdict_key, results, submission)
        gradable = [s for s in submissions if s.gradable and s.student_id not in faults]
        todo = sorted((s for s in gradable if needs_judging(results, s, force)), key=lambda s: s.student_id)
        if len(todo) < len(gradable) and not force and not quiet:
            print(
                f"{len(gradable) - len(todo)} student(s) already judged with the same files: skipped (use --force)",
                file=sys.stderr,
            )
        done = read_json(results.autograded_keys) or {}
        judging = {s.student_id for s in todo}
        autograde_ids = sorted(
            s.student_id for s in gradable if s.student_id in judging or done.get(s.student_id) != keys[s.student_id]
        )
        if not quiet and autograde_ids:
            print(
                f"nbgrader autograde: {len(autograde_ids)} student(s) in one run, each once its judging has ended",
                file=sys.stderr,
            )
        autograde = PipelinedAutograde(results, autograde_ids, judging, use_sandbox, workers)
        with tqdm(total=len(gradable), desc="judging", unit="student", disable=quiet, dynamic_ncols=True) as bar:
            judge_all(
                todo,
                results,
                workers,
                use_sandbox,
                bar,
                faults,
                time_limit,
                scheduler,
                allow_unenforced_limits,
                on_judged=lambda submission: autograde.judged(submission.student_id),
            )
        clock.lap("judge", students=len(todo))

        autograde.finish(faults)
        done.update({i: keys[i] for i in autograde_ids if i not in faults})
        for student_id in faults:
            done.pop(student_id, None)  # graded again by the next run
        write_atomically(results.autograded_keys, json.dumps(done, indent=1, sort_keys=True))
        clock.lap("nbgrader_autograde_after_judging", students=len(autograde_ids))
        clock.phases["nbgrader_autograde_whole"] = {  # alongside the judges: not a lap
            "wall_seconds": autograde.seconds,
            "cpu_seconds": autograde.cpu_seconds,
            "students": len(autograde_ids),
        }

        rows = report(results, submissions, faults)
        clock.lap("csv_and_feedback", students=len(rows))
        return rows
    finally:
        if autograde is not None:
            autograde.stop()
        shutil.rmtree(staging, ignore_errors=True)


def guarded(faults, submission, step, *args):
    """``step(*args)``, or None with the fault recorded for ``submission`` if the grader raised."""
    try:
        return step(*args)
    except Exception as error:  # noqa: BLE001 - one student's fault must not stop the class
        faults.setdefault(submission.student_id, f"{step.__name__}: {type(error).__name__}: {error}")
        return None


def write_feedback_page(results, submission, row, verdict):
    """``RESULTS/feedback/<id>.html``; True once written."""
    from .feedback import write_feedback

    write_feedback(results.feedback / f"{submission.student_id}.html", submission, row, verdict)
    return True


def report(results, submissions, faults):
    """Feedback pages and ``grades.csv`` (written last, whole), from the verdicts and the gradebook."""
    scores = gradebook_scores(results)
    done = read_json(results.autograded_keys) or {}
    rows = []
    for submission in submissions:
        student_id = submission.student_id
        verdict = guarded(faults, submission, load_verdict, results, submission, done.get(student_id))
        if submission.gradable and verdict is None:
            faults.setdefault(student_id, "no verdict was stored for these modules")
        per_part = scores.get(student_id, {}) if submission.gradable and student_id not in faults else {}
        row = guarded(faults, submission, csv_row, submission, per_part, verdict, faults.get(student_id))
        if row is None or not guarded(faults, submission, write_feedback_page, results, submission, row, verdict):
            row = csv_row(submission, {}, None, faults.get(student_id, "the CSV row could not be made"))
        rows.append(row)
    write_csv(results, rows)
    return rows


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


def format_table(rows, notes_width=60):
    """The grade table as aligned text; student-made text is made :func:`inert` (no terminal escapes)."""
    shown = [{c: str(inert(r[c]))[: notes_width if c == "notes" else None] for c in CSV_COLUMNS} for r in rows]
    widths = {c: max(len(c), *(len(r[c]) for r in shown)) if shown else len(c) for c in CSV_COLUMNS}
    line = lambda values: "  ".join(str(values[c]).ljust(widths[c]) for c in CSV_COLUMNS).rstrip()  # noqa: E731
    return "\n".join([line({c: c for c in CSV_COLUMNS})] + [line(r) for r in shown])


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m autograder grade", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("submissions", help="folder with <id>/ folders, <id>.zip files and/or one LMS download zip")
    parser.add_argument("--out", required=True, help="results folder (grades.csv, feedback/, course/ gradebook)")
    parser.add_argument("--force", action="store_true", help="grade again students already graded")
    parser.add_argument(
        "--no-sandbox",
        action="store_true",
        help="run student code WITHOUT isolation (development only, trusted code only)",
    )
    parser.add_argument(
        "--allow-unenforced-limits",
        action="store_true",
        help="grade even where a sandbox limit cannot be enforced (it is printed and recorded)",
    )
    parser.add_argument("--workers", type=int, default=2, help="judge processes in parallel (default 2)")
    parser.add_argument(
        "--scheduler",
        metavar="tcp://HOST:8786",
        default=None,
        help="judge on the workers of this Dask scheduler, one task per student "
        '(docs/ta-guide.md, "Scale out on Dask"); --workers is then unused',
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="CPU seconds for one run of a student's code, and twice that on the wall clock "
        "(default: 60 s CPU, 120 s wall)",
    )
    parser.add_argument(
        "--lms-regexp",
        default=collecting.LMS_REGEXP,
        help="regexp with (?P<student_id>) and (?P<file_id>) for LMS bulk downloads",
    )
    return parser.parse_args(argv)


def main(argv):
    options = parse_args(argv)
    started = time.monotonic()
    try:
        rows = grade(
            options.submissions,
            options.out,
            force=options.force,
            use_sandbox=not options.no_sandbox,
            workers=options.workers,
            lms_regexp=options.lms_regexp,
            time_limit=options.time_limit,
            allow_unenforced_limits=options.allow_unenforced_limits,
            scheduler=options.scheduler,
        )
    except (sandbox.SandboxUnavailable, GraderError, CourseBuildError, ReleaseLeakError, ConnectionError) as error:
        print(f"grade: {error}", file=sys.stderr)
        return 2
    print(format_table(rows))
    results = Results(options.out)
    print(
        f"\n{len(rows)} student(s) in {time.monotonic() - started:.0f} s. Grades: {results.csv}; "
        f"feedback: {results.feedback}/<student_id>.html; gradebook: {results.course / 'gradebook.db'}"
    )
    faulty = [row["student_id"] for row in rows if row["status"] == "grader_error"]
    if faulty:
        print(
            f"grade: the grader failed on {len(faulty)} student(s) ({', '.join(faulty[:10])}); see the notes "
            "column of grades.csv. Fix the cause and run the same command again: only they are regraded.",
            file=sys.stderr,
        )
        return 1
    return 0
