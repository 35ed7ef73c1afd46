"""Hostile submissions graded between correct neighbours (issue 11, "Class-wide failure" and "Impersonation").

One real ``python -m autograder grade --workers 2`` run (bubblewrap, nbgrader, SQLite gradebook)
of a class with every input that once aborted the whole run or harmed another student (non-JSON
and deeply nested report, a planted ``grade_id``, unsafe ids, a 200 KB one-expression module, a
3.8 MB module, a folder of too many files, LMS impersonation and a doubly claimed LMS id, nested
and oversized zips) plus import-time hostiles (SysV shared memory left behind, forks left
behind, a memory bomb), each next to a copy of the reference solution: the first of them is
the first student of the run (a fresh sandbox slot), the last is the last one (nobody after it
to notice what it leaves, except the nbgrader pass and the report).

The run gives: exit 0, a complete grades.csv, full marks for every correct neighbour, the
submissions folder byte-identical. Fast collector-only tests cover the same classes in detail.
"""

import csv
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
from test_batch import tree_digest, zip_folder

from autograder import KIT_ROOT, batch
from autograder import collect as collecting
from autograder.examples import Example, assemble
from autograder.sandbox import bubblewrap_path

TIME_LIMIT = 30  # CPU seconds per judge child (60 s wall): a correct one needs ~5 s of CPU; ample on a busy machine
PARTS = batch.PARTS
SHM = """import ctypes
_libc = ctypes.CDLL(None, use_errno=True)
_libc.shmat.restype = ctypes.c_void_p
_libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
_id = _libc.shmget(0, 768 << 20, 0o1000 | 0o600)  # IPC_PRIVATE, IPC_CREAT: outlives the process
if _id >= 0:
    _address = _libc.shmat(_id, None, 0)
    if _address not in (None, ctypes.c_void_p(-1).value):
        ctypes.memset(_address, 1, 768 << 20)
"""
FORKS = """import os, time
try:
    for _ in range(10000):
        if os.fork() == 0:
            time.sleep(3600)
            os._exit(0)
except OSError:
    pass
"""
MEMORY = """_hoard = []
while True:
    _hoard.append(bytearray(2**27))
"""
#: Import-time hostiles: the code runs when the judge's child imports utils.py.
AT_IMPORT = {"shm": SHM, "forks": FORKS, "memory": MEMORY}
#: ``{id: the id of its correct neighbour}`` for each (students are taken in sorted order): the first and
#: the last student of the run, and one in between.
IMPORT_HOSTILE_IDS = {"000_shm": "001_ref", "r1_forks": "r1_ref", "zzz_memory": "zzy_ref"}


def correct(root, name):
    return assemble(Example(name), root)


def with_import_code(root, name, code):
    folder = correct(root, name)
    utils = folder / "handin" / "utils.py"
    utils.write_text(code + utils.read_text())
    return folder


def fake_grade_cell(folder):
    """A report with a planted grade cell (100 points) and a second copy of a real grade id."""
    path = folder / "3_report.ipynb"
    notebook = nbformat.read(path, as_version=4)
    planted = nbformat.v4.new_code_cell("print('full marks')")
    planted.metadata["nbgrader"] = {
        "grade": True,
        "grade_id": "fake",
        "points": 100,
        "solution": False,
        "locked": False,
        "schema_version": 3,
        "task": False,
    }
    notebook.cells.append(planted)
    real = next(c for c in notebook.cells if "grade_id" in c.metadata.get("nbgrader", {}))
    copy = nbformat.v4.new_markdown_cell("again")
    copy.metadata["nbgrader"] = dict(real.metadata["nbgrader"])
    notebook.cells.append(copy)
    nbformat.write(notebook, path)


def zip_of_zeros(path, megabytes, name="zeros.bin"):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bundle:
        with bundle.open(name, "w", force_zip64=True) as member:
            block = bytes(2**20)
            for _ in range(megabytes):
                member.write(block)


def lms_download(root, work):
    """A bulk download: a victim, an impersonator, a doubly claimed id, nested and oversized uploads."""
    lms = work / "lms"
    correct(lms, "Vic Tim_1005_assignsubmission_file_")
    (lms / "Vic Tim_1005_assignsubmission_onlinetext_").mkdir()  # another submission type: skipped
    (lms / "Vic Tim_1005_assignsubmission_onlinetext_" / "onlinetext.html").write_text("<p>see my files</p>")
    mallory = assemble(Example("Mal Lory_1006_assignsubmission_file_", base="stubs"), lms)
    planted = mallory / "Vic Tim_1005_assignsubmission_file_" / "handin"
    planted.mkdir(parents=True)
    for name in ("augmentations.py", "network.py", "utils.py"):
        (planted / name).write_text("raise SystemExit('impersonated')\n")
    correct(lms, "Bob A_1007_assignsubmission_file_")
    correct(lms, "Bob B_1007_assignsubmission_file_")
    nested = correct(work, "nested")
    zip_of_zeros(nested / "inner.zip", 64)  # a zip inside the student's zip: never opened
    (lms / "Ned_1008_assignsubmission_file_").mkdir()
    zip_folder(nested, lms / "Ned_1008_assignsubmission_file_" / "upload.zip")
    (lms / "Ola_1009_assignsubmission_file_").mkdir()
    zip_of_zeros(lms / "Ola_1009_assignsubmission_file_" / "upload.zip", 210)  # over the per-student cap
    zip_folder(lms, root / "moodle-download.zip")


def hostile_class(root, work):
    """Run 1's class; returns the correct neighbours' ids."""
    neighbours = ["00_ref", "mm_ref", "zz_ref"]
    for name in neighbours:
        correct(root, name)
    (correct(root, "nonjson") / "3_report.ipynb").write_text("this is not JSON {")
    (correct(root, "deepjson") / "3_report.ipynb").write_text("[" * 200_000 + "]" * 200_000)
    results = correct(root, "results") / "results"
    results.mkdir()
    (results / "experiment.json").write_text("[" * 200_000)  # copied, never parsed here
    fake_grade_cell(correct(root, "fakegrade"))
    for name in ("ab[c]", "=2+5", "x" * 240, "\x1b[2J\x1b[31mroot", "\u0430lice"):
        correct(root, name)
    (correct(root, "oneexpr") / "handin" / "utils.py").write_text("x = " + "1+" * 100_000 + "1\n")
    network = correct(root, "bigmodule") / "handin" / "network.py"
    network.write_text(network.read_text() + "#" * (3_800_000) + "\n")
    many = correct(root, "manyfiles") / "junk"
    many.mkdir()
    for number in range(collecting.MAX_SUBMISSION_FILES + 1):
        (many / f"{number}.txt").write_bytes(b"")
    zipped = work / "zipped"
    correct(zipped, "inner")
    zip_folder(zipped, work / "inner.zip")
    (root / "zipinzip").mkdir()
    os.replace(work / "inner.zip", root / "zipinzip" / "inner.zip")
    zip_folder(root / "zipinzip", root / "zipinzip.zip")
    lms_download(root, work)
    for (student_id, neighbour), code in zip(IMPORT_HOSTILE_IDS.items(), AT_IMPORT.values(), strict=True):
        with_import_code(root, student_id, code)
        correct(root, neighbour)
        neighbours.append(neighbour)
    return neighbours


def run_grade(submissions, out):
    """``python -m autograder grade`` as a TA runs it; ``(exit code, stdout, rows by id, digest before)``."""
    before = tree_digest(submissions)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "autograder",
            "grade",
            str(submissions),
            "--out",
            str(out),
            "--workers",
            "2",
            "--time-limit",
            str(TIME_LIMIT),
        ],
        cwd=KIT_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
    )
    assert tree_digest(submissions) == before, "the submissions were modified"
    rows = list(csv.DictReader(io.StringIO((out / "grades.csv").read_text())))
    return done, {row["student_id"]: row for row in rows}


def assert_full_marks(rows, names):
    for name in names:
        assert [rows[name][part] for part in PARTS] == ["10"] * 5, (name, rows[name])
        assert rows[name]["status"] == "ok", (name, rows[name])


needs_bubblewrap = pytest.mark.skipif(bubblewrap_path() is None, reason="bubblewrap is not installed")
needs_release = pytest.mark.skipif(
    not (KIT_ROOT / "handin" / "augmentations.py").is_file(),
    reason="the student release handin/ is missing: run `make release`",
)


@pytest.fixture(scope="module")
def run1(tmp_path_factory, results_with_course):
    root, work = tmp_path_factory.mktemp("hostile"), tmp_path_factory.mktemp("work")
    neighbours = hostile_class(root, work)
    out = results_with_course(tmp_path_factory.mktemp("results1"))
    done, rows = run_grade(root, out)
    return {"done": done, "rows": rows, "neighbours": neighbours, "out": out, "root": root}


@needs_bubblewrap
@needs_release
def test_run1_neighbours_get_full_marks_and_the_run_completes(run1):
    assert run1["done"].returncode == 0, run1["done"].stderr[-3000:]
    assert_full_marks(run1["rows"], run1["neighbours"] + ["1005"])
    assert len(run1["rows"]) == 3 + 4 + 5 + 3 + 1 + 5 + 2 * len(AT_IMPORT)  # every student has a row
    assert "\x1b" not in run1["done"].stdout, "a student's id reached the terminal raw"
    ids = sorted(run1["rows"])
    assert [ids[0], ids[-1]] == ["000_shm", "zzz_memory"], "an import-time hostile is first, and one is last"


@needs_bubblewrap
@needs_release
def test_run1_statuses(run1):
    rows = run1["rows"]
    by_prefix = {row["student_id"].rsplit("-", 1)[0]: row for row in rows.values() if row["status"] == "bad_id"}
    assert set(by_prefix) == {"ab-c", "2-5", "x" * 40, "2J-31mroot", "lice"}
    for row in by_prefix.values():
        assert [row[part] for part in PARTS] == ["10"] * 5 and "not a safe student id" in row["notes"]
    assert rows["oneexpr"]["status"] == "syntax_error:utils.py:0"
    assert rows["bigmodule"]["status"] == "file_too_large:network.py"
    assert rows["manyfiles"]["status"] == "too_large"
    assert rows["zipinzip"]["status"] == "empty_submission" and "not opened" in rows["zipinzip"]["notes"]
    assert rows["1007"]["status"] == "duplicate_id"
    assert rows["1009"]["status"] == "too_large"
    assert rows["1008"]["status"] == "ok" and rows["1008"]["total"] == "50"
    assert rows["1006"]["total"] == "0"  # the impersonator is graded on their own stubs
    for name in ("nonjson", "deepjson", "results", "fakegrade"):
        assert rows[name]["status"] == "ok" and rows[name]["total"] == "50", rows[name]
    assert "could not be used" in rows["nonjson"]["notes"] and "could not be used" in rows["deepjson"]["notes"]


@needs_bubblewrap
@needs_release
def test_run1_csv_cells_are_inert_and_files_land_where_expected(run1):
    text = (run1["out"] / "grades.csv").read_text()
    for row in csv.reader(io.StringIO(text)):
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
            assert all(ch.isprintable() for ch in cell), cell
    submitted = run1["out"] / "course" / "submitted"
    results = submitted / "results" / "hand_in_3" / "results" / "experiment.json"
    assert results.read_bytes() == (run1["root"] / "results" / "results" / "experiment.json").read_bytes()
    assert not (submitted / "nonjson" / "hand_in_3" / "3_report.ipynb").exists()
    report = nbformat.read(run1["out"] / "course" / "autograded" / "fakegrade" / "hand_in_3" / "3_report.ipynb", 4)
    grade_ids = [c.metadata["nbgrader"]["grade_id"] for c in report.cells if "nbgrader" in c.metadata]
    assert "fake" not in grade_ids and len(grade_ids) == len(set(grade_ids))
    victim = (submitted / "1005" / "hand_in_3" / "handin" / "network.py").read_text()
    assert victim == (KIT_ROOT / "solutions" / "handin" / "network.py").read_text()
    staged = sum(p.stat().st_size for p in (run1["out"]).rglob("*") if p.is_file())
    assert staged < 100 * 2**20, "nested or oversized zips were unpacked"


# ----------------------------------------------------------------------------- fast: the collector alone


def test_lms_ids_come_from_the_top_entry_only(tmp_path):
    root, work = tmp_path / "class", tmp_path / "work"
    root.mkdir()
    lms_download(root, work)
    found = {s.student_id: s for s in collecting.collect(root, tmp_path / "staging")}
    assert set(found) == {"1005", "1006", "1007", "1008", "1009"}
    assert found["1005"].status == "ok"
    assert found["1005"].origins == ["moodle-download.zip: Vic Tim_1005_assignsubmission_file_"]
    assert b"impersonated" not in found["1005"].files["network.py"].read_bytes()
    assert found["1007"].status == "duplicate_id" and not found["1007"].files
    assert found["1009"].status == "too_large"
    assert sum(p.stat().st_size for p in (tmp_path / "staging").rglob("*") if p.is_file()) < 10 * 2**20


def test_unsafe_ids_are_derived_never_merged(tmp_path):
    for name in ("ab[c]", "ab(c)", "-x", ".hidden", "=2+5", "a" * 65, "\u0430lice", "alice"):
        correct(tmp_path / "class", name)
    found = collecting.collect(tmp_path / "class", tmp_path / "staging")
    assert len(found) == 7  # ".hidden" is skipped like any dot entry
    assert {s.student_id for s in found if not s.bad_id} == {"alice"}
    for submission in found:
        assert collecting.SAFE_ID.fullmatch(submission.student_id), submission.student_id
        assert submission.status == "ok"
    assert len({collecting.safe_id("ab[c]"), collecting.safe_id("ab(c)")}) == 2


def test_a_derived_id_that_collides_is_a_duplicate(tmp_path):
    correct(tmp_path / "class", "ab[c]")
    correct(tmp_path / "class", collecting.safe_id("ab[c]"))
    (found,) = collecting.collect(tmp_path / "class", tmp_path / "staging")
    assert found.status == "duplicate_id" and len(found.origins) == 2


def test_caps_are_checked_before_reading(tmp_path):
    folder = correct(tmp_path / "class", "big")
    with open(folder / "handin" / "network.py", "ab") as handle:
        handle.truncate(collecting.MAX_MODULE_BYTES + 1)
    (folder / "3_report.ipynb").write_bytes(b" " * (collecting.MAX_REPORT_BYTES + 1))
    (found,) = collecting.collect(tmp_path / "class", tmp_path / "staging")
    assert found.status == "file_too_large:network.py"
    assert "network.py" not in found.files and "3_report.ipynb" not in found.files
    assert any("3_report.ipynb is larger than 20 MB" in note for note in found.notes)


def test_clean_report_keeps_only_the_sources_grade_cells(tmp_path):
    folder = correct(tmp_path, "s")
    fake_grade_cell(folder)
    source = KIT_ROOT / "solutions" / "notebooks" / "3_report.ipynb"
    text, problem = collecting.clean_report((folder / "3_report.ipynb").read_bytes(), source)
    assert problem is None
    cleaned = nbformat.reads(text, as_version=4)
    expected = [c.metadata["nbgrader"] for c in nbformat.read(source, 4).cells if "nbgrader" in c.metadata]
    assert [c.metadata["nbgrader"] for c in cleaned.cells if "nbgrader" in c.metadata] == expected
    assert collecting.clean_report(b"[" * 100_000, source)[0] is None
    assert collecting.clean_report(json.dumps({"cells": 1}).encode(), source)[0] is None


def test_csv_and_table_cells_are_inert():
    assert batch.inert("=2+5") == "'=2+5" and batch.inert("@SUM(A1)") == "'@SUM(A1)"
    assert batch.inert("\tx") == "\\tx" and batch.inert("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert batch.inert("x\u202eevil") == "x\\u202eevil" and batch.inert(7) == 7
    row = {column: "" for column in batch.CSV_COLUMNS} | {"student_id": "s", "notes": "\x1b]0;pwned\x07"}
    assert "\x1b" not in batch.format_table([row]) and "\x07" not in batch.format_table([row])


def test_statuses_from_verdicts():
    submission = collecting.Submission("s", [])
    verdict = {"parts": {part: {"status": "ok"} for part in PARTS}}
    assert batch.final_status(submission, verdict) == "ok"
    verdict["parts"]["mixup"]["status"] = "not_implemented"
    assert batch.final_status(submission, verdict) == "not_implemented"
    verdict["parts"]["collage"]["status"] = "timeout"
    assert batch.final_status(submission, verdict) == "timeout"
    assert batch.final_status(submission, verdict, fault="the sandbox failed") == "grader_error"
    submission.original_name = "ab[c]"
    assert batch.final_status(submission, verdict) == "bad_id"
    assert "status apart from the id: timeout" in batch.csv_row(submission, {}, verdict)["notes"]


@needs_bubblewrap
@needs_release
def test_a_sandbox_fault_is_a_grader_error_and_the_others_are_graded(
    tmp_path, monkeypatch, capsys, results_with_course
):
    from autograder.judge import core

    root = tmp_path / "class"
    correct(root, "fine")
    utils = correct(root, "unlucky") / "handin" / "utils.py"
    utils.write_text("# other bytes, so another verdict key than fine's\n" + utils.read_text())
    real_judge = core.judge_submission

    def judge(handin_dir, **options):
        if "unlucky" in str(handin_dir):
            raise batch.SandboxFault("bubblewrap could not start (planted by the test)")
        return real_judge(handin_dir, **options)

    monkeypatch.setattr(core, "judge_submission", judge)
    out = results_with_course(tmp_path / "results")
    code = batch.main([str(root), "--out", str(out), "--workers", "2", "--time-limit", str(TIME_LIMIT)])
    assert code == 1, "a grader fault must make the command fail"
    rows = {row["student_id"]: row for row in csv.DictReader((out / "grades.csv").open())}
    assert_full_marks(rows, ["fine"])
    assert rows["unlucky"]["status"] == "grader_error" and rows["unlucky"]["total"] == "0"
    assert "the sandbox failed: SandboxFault" in rows["unlucky"]["notes"]
    assert len(list((out / "verdicts").glob("*.json"))) == 1, "no verdict is cached for the fault"
    graded = nbformat.read(out / "course" / "autograded" / "unlucky" / "hand_in_3" / "grading.ipynb", 4)
    errors = [o for c in graded.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors and all("the grader has no verdict" in "".join(o.traceback) for o in errors)
    assert "grader failed on 1 student(s) (unlucky)" in capsys.readouterr().err


def test_folder_and_zip_limits(tmp_path):
    root = tmp_path / "class"
    with open(correct(root, "huge") / "data.bin", "wb") as handle:  # sparse: costs no disk
        handle.truncate(collecting.MAX_SUBMISSION_BYTES + 1)
    deep = correct(root, "deep")
    (deep / "a" / "b" / "c").mkdir(parents=True)
    os.replace(deep / "handin", deep / "a" / "b" / "c" / "handin")  # handin/utils.py 5 levels down
    os.replace(deep / "3_report.ipynb", deep / "a" / "b" / "c" / "handin" / "3_report.ipynb")
    with zipfile.ZipFile(root / "slip.zip", "w") as bundle:
        bundle.writestr("../outside.py", "x = 1\n")
    found = {s.student_id: s for s in collecting.collect(root, tmp_path / "staging")}
    assert found["huge"].status == "too_large" and "more than 200 MB" in found["huge"].notes[0]
    assert found["deep"].status == "empty_submission"  # 4 folders deep: beyond MAX_DEPTH
    assert found["slip"].status == "bad_archive" and "outside its folder" in found["slip"].notes[0]


def test_an_lms_that_names_files_groups_them_by_the_top_level_name(tmp_path):
    solution = KIT_ROOT / "solutions" / "handin"
    upload = correct(tmp_path / "work", "upload")
    zip_folder(upload, tmp_path / "upload.zip")
    (tmp_path / "class").mkdir()
    with zipfile.ZipFile(tmp_path / "class" / "canvas.zip", "w") as bulk:
        for name in ("augmentations.py", "network.py", "utils.py"):
            bulk.write(solution / name, f"smith_123_{name}")
        bulk.write(tmp_path / "upload.zip", "jones_124_upload.zip")
        bulk.writestr("jones_124_extra/smith_125_network.py", "raise SystemExit\n")  # not top-level: no id
    regexp = r".*/[a-z]+_(?P<student_id>\d+)_(?P<file_id>[^/]+)$"
    found = {s.student_id: s for s in collecting.collect(tmp_path / "class", tmp_path / "staging", regexp)}
    assert set(found) == {"123", "124"}
    assert found["123"].status == "missing_file:3_report.ipynb" and len(found["123"].files) == 3
    assert found["124"].status == "ok" and len(found["124"].files) == 4
