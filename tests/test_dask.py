"""``grade --scheduler``: the same class graded here and on a real Dask ``LocalCluster`` gives the same grades.

The cluster has two worker processes (one thread each, loopback only) that judge with
the real sandbox. The buggy student, ``wrong_quadrant_waits``, blocks in ``collage`` on a
``sleep`` process with a unique argument until the test kills that process, then goes on.
In the cluster run the test kills the WORKER that runs it instead, the first time; Dask
gives the task to another worker, where the test then kills the ``sleep``. Every step
waits for an event (a process appears, a run ends), never for a timer. Both runs start
from one course build and one course secret (same hidden inputs), as a course's runs do.
"""

import csv
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from processes import dask_worker_pids, processes_running

from autograder import KIT_ROOT
from autograder.examples import Edit, Example, assemble
from autograder.judge import cache
from autograder.judge.points import PARTS
from autograder.sandbox import bubblewrap_path

distributed = pytest.importorskip("distributed")
pytestmark = pytest.mark.skipif(bubblewrap_path() is None, reason="bubblewrap is not installed")

TIME_LIMIT = 45  # CPU seconds per judge child (90 s wall); `waits` is released by the test long before
SLEEP_ARGUMENT = f"{90000 + os.getpid() % 9000}.5"  # seconds; unique to this test run
DEADLINE_SECONDS = 600  # a safety net against a hung run, not a measurement
COLLAGE_LINE = "    half = batch_i.shape[-1] // 2\n"
WAITS = (
    f"    import os, subprocess\n"
    f"    if not os.environ.get('WAITED'):\n"
    f"        os.environ['WAITED'] = '1'\n"
    f"        subprocess.run(['sleep', '{SLEEP_ARGUMENT}'])\n"
)


@pytest.fixture(scope="module")
def class_folder(tmp_path_factory):
    """The reference, the untouched stubs, a bug (the student who waits) and a crash."""
    root = tmp_path_factory.mktemp("class")
    students = [
        Example("reference"),
        Example("stub", base="stubs"),
        Example(
            "wrong_quadrant_waits",
            edit=[
                Edit("augmentations.py", COLLAGE_LINE, WAITS + COLLAGE_LINE),
                Edit(
                    "augmentations.py",
                    "result[:, :half, :half] = batch_j[:, :half, :half]",
                    "result[:, :half, half:] = batch_j[:, :half, half:]",
                ),
            ],
        ),
        Example(
            "exits", edit=[Edit("augmentations.py", COLLAGE_LINE, "    import os\n    os._exit(3)\n" + COLLAGE_LINE)]
        ),
    ]
    for student in students:
        assemble(student, root)
    return root


@pytest.fixture(scope="module")
def fresh_results(tmp_path_factory, results_with_course):
    """``new() -> RESULTS folder`` holding a copy of one course build and one course secret."""
    template = results_with_course(tmp_path_factory.mktemp("template"))
    cache.course_seed(template / "verdicts")

    def new(name):
        out = tmp_path_factory.mktemp(name) / "results"
        shutil.copytree(template, out)
        return out

    return new


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes with one thread each, on loopback, and their pids by address."""
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None, memory_limit=0
    ) as local_cluster:
        yield local_cluster


def ancestors(pid):
    """The parent, grandparent, ... of ``pid``."""
    chain = []
    while pid > 1:
        try:
            pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
        chain.append(pid)
    return chain


def grade(class_folder, out, on_sleep, *options):
    """``python -m autograder grade``; calls ``on_sleep(pid)`` once for each new waiting ``sleep``."""
    command = [
        sys.executable,
        "-m",
        "autograder",
        "grade",
        str(class_folder),
        "--out",
        str(out),
        "--time-limit",
        str(TIME_LIMIT),
        *options,
    ]
    run = subprocess.Popen(command, cwd=KIT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen, started = set(), time.monotonic()
    try:
        while run.poll() is None:
            assert time.monotonic() - started < DEADLINE_SECONDS, "the grade run hung"
            for pid in processes_running("sleep", SLEEP_ARGUMENT):
                if pid not in seen:
                    seen.add(pid)
                    on_sleep(pid)
            time.sleep(0.2)
    finally:
        if run.poll() is None:
            run.kill()
        output = run.communicate()[0].decode(errors="replace")
    assert run.returncode == 0, output
    return seen


def release(pid):
    os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def local_run(class_folder, fresh_results):
    out = fresh_results("local")
    waited = grade(class_folder, out, release, "--workers", "2")
    assert len(waited) == 1
    return out


def gradebook_submissions(out):
    with sqlite3.connect(out / "course" / "gradebook.db") as database:
        return database.execute(
            "SELECT student.id FROM submitted_assignment JOIN student ON submitted_assignment.student_id = student.id"
        ).fetchall()


def test_cluster_grades_equal_local_grades_after_a_worker_dies(class_folder, fresh_results, local_run, cluster):
    out = fresh_results("cluster")
    workers = dask_worker_pids(cluster)
    killed = []

    def kill_worker_once(pid):
        if killed:
            return release(pid)  # the retry on another worker
        worker = next(p for p in ancestors(pid) if p in workers)
        os.kill(worker, signal.SIGKILL)
        killed.append(worker)

    waited = grade(class_folder, out, kill_worker_once, "--scheduler", cluster.scheduler_address)

    assert len(killed) == 1 and len(waited) == 2  # killed mid-task, then judged again elsewhere
    assert not Path(f"/proc/{killed[0]}").exists()
    assert (out / "grades.csv").read_text() == (local_run / "grades.csv").read_text()
    rows = {row["student_id"]: row for row in csv.DictReader((out / "grades.csv").open())}
    assert rows["reference"]["total"] == rows["reference"]["max_total"]
    assert rows["exits"]["status"] == "crashed" and rows["stub"]["status"] == "not_implemented"
    buggy = rows["wrong_quadrant_waits"]
    assert buggy["status"] == "ok" and float(buggy["collage"]) < float(rows["reference"]["collage"])
    assert float(buggy["total"]) == float(rows["reference"]["total"]) - float(rows["reference"]["collage"]) + float(
        buggy["collage"]
    )  # only collage loses points
    students = [student for (student,) in gradebook_submissions(out)]
    assert sorted(students) == sorted(rows)  # each student exactly once
    assert sorted(json.loads((out / "autograded.json").read_text())) == sorted(rows)


def test_a_worker_that_runs_another_kit_is_a_grader_error(tmp_path):
    from autograder.distributed import ClusterFault, accept
    from autograder.judge import cache

    handin = tmp_path / "handin"
    handin.mkdir()
    (handin / "utils.py").write_text("x = 1\n")
    verdict = {"key": "0" * 64, "judge_version": "other", "parts": {part: {} for part in PARTS}}
    with pytest.raises(ClusterFault, match="another version of the kit"):
        accept(json.dumps({"host": "h", "verdict": verdict}), handin, seed=7)
    verdict["key"] = cache.verdict_key(handin, 7)
    assert accept(json.dumps({"host": "h", "verdict": verdict}), handin, seed=7) == verdict
    with pytest.raises(ClusterFault, match="bwrap"):
        accept(json.dumps({"host": "h", "fault": "the sandbox failed on h: bwrap"}), handin, seed=7)


def test_an_unreachable_scheduler_is_a_clear_error(monkeypatch):
    from autograder import distributed as on_dask

    monkeypatch.setattr(on_dask, "CONNECT_SECONDS", 2)
    with pytest.raises(ConnectionError, match="Start one with `dask scheduler`"):
        on_dask.connect("tcp://127.0.0.1:9")
