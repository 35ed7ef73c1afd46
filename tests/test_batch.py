"""``python -m autograder grade`` on one class folder that holds every malformed and hostile case.

One session-scoped batch run (real bubblewrap, real ``nbgrader autograde``, real SQLite
gradebook) is shared by every assertion; a second run checks that resuming skips
everyone. Building the class folder takes the modules from ``solutions/handin`` and
the release's stubs, edited the way ``examples/examples.toml`` edits them
(:mod:`autograder.examples`).
"""

import csv
import hashlib
import io
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from processes import processes_named

from autograder import KIT_ROOT
from autograder.batch import CSV_COLUMNS, grade
from autograder.examples import Edit, Example, assemble
from autograder.sandbox import bubblewrap_path

pytestmark = pytest.mark.skipif(bubblewrap_path() is None, reason="bubblewrap is not installed")

TIME_LIMIT = 10  # CPU seconds per judge child (20 s wall): a correct one needs 1-4 s; the two hostile loops use all
COLLAGE_LINE = "    half = batch_i.shape[-1] // 2\n"


def in_collage(code):
    """An edit that runs ``code`` at the start of collage (so only collage is affected)."""
    body = "".join(f"    {line}\n" for line in code.strip().splitlines())
    return [Edit("augmentations.py", COLLAGE_LINE, body + COLLAGE_LINE)]


HOSTILE = {
    "fork_bomb": in_collage("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"),
    "memory_bomb": in_collage("hoard = []\nwhile True:\n    hoard.append(b'x' * 2**27)"),
    "ignores_sigint": in_collage(
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True:\n    pass"
    ),
    "exits": in_collage("import os\nos._exit(0)"),
    "huge_file": in_collage("with open('huge', 'wb') as f:\n    while True:\n        f.write(bytes(2**20))"),
    "daemon": in_collage(
        "import ctypes, os, time\nif os.fork() == 0:\n    os.setsid()\n"
        "    ctypes.CDLL(None).prctl(15, b'h3daemon', 0, 0, 0)\n    while True:\n"
        "        time.sleep(0.1)"
    ),
    "flood": in_collage("import sys\nfor _ in range(3000):\n    sys.stdout.write('x' * 65536)"),
    "vandal": in_collage(
        "import glob, os, shutil, socket\n"
        "here = os.getcwd()\n"
        "for path in glob.glob('../*') + ['/work/main/solutions', '/etc/passwd']:\n"
        "    if os.path.abspath(path) != here:\n"
        "        shutil.rmtree(path, ignore_errors=True)\n"
        "        try:\n            os.remove(path)\n        except OSError:\n            pass\n"
        "try:\n    socket.create_connection(('1.1.1.1', 80), timeout=2)\n"
        "    raise SystemExit('network reached')\nexcept OSError:\n    pass"
    ),
}


def report_notebook(folder):
    released = KIT_ROOT / "notebooks" / "3_report.ipynb"
    if released.is_file():
        shutil.copyfile(released, Path(folder) / "3_report.ipynb")


def student(root, name, base="solution", edit=(), nest=None):
    """Assemble one submission; ``nest`` moves it one or two folders down."""
    folder = assemble(Example(name, base=base, edit=list(edit)), root)
    report_notebook(folder)
    if nest:
        inner = folder / nest
        inner.mkdir(parents=True)
        for path in [folder / "handin", folder / "3_report.ipynb"]:
            if path.exists():
                shutil.move(path, inner / path.name)
    return folder


def zip_folder(folder, archive, rename=None):
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                name = str(path.relative_to(folder))
                bundle.write(path, (rename or {}).get(name, name))
    shutil.rmtree(folder)


def tree_digest(root):
    digest = hashlib.sha256()
    for path in sorted(Path(root).rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="session")
def class_folder(tmp_path_factory):
    """The class: well-formed, buggy, malformed and hostile submissions side by side."""
    if not (KIT_ROOT / "handin" / "augmentations.py").is_file():
        pytest.skip("the student release handin/ is missing: run `make release`")
    root = tmp_path_factory.mktemp("class")
    # well-formed, nested, with junk an OS or Jupyter leaves behind
    ref = student(root, "ref", nest="My Work/hand_in_3")
    for junk in (
        "__MACOSX/handin/network.py",
        "My Work/.ipynb_checkpoints/utils.py",
        "My Work/hand_in_3/handin/__pycache__/utils.py",
        ".DS_Store",
    ):
        (ref / junk).parent.mkdir(parents=True, exist_ok=True)
        (ref / junk).write_text("raise SystemExit('junk must be ignored')\n")
    student(root, "stubs", base="stubs")
    quadrant = student(
        root,
        "quadrant",
        edit=[
            Edit(
                "augmentations.py",
                "result[:, :half, :half] = batch_j[:, :half, :half]",
                "result[:, :half, half:] = batch_j[:, :half, half:]",
            )
        ],
    )
    zip_folder(quadrant, root / "quadrant.zip")
    casey = student(root, "casey")
    zip_folder(
        casey,
        root / "casey.zip",
        rename={"handin/network.py": "handin/Network.py", "handin/utils.py": "handin/UTILS.PY"},
    )
    (student(root, "nomodule") / "handin" / "network.py").unlink()
    broken = student(root, "syntax")
    utils = broken / "handin" / "utils.py"
    utils.write_text(utils.read_text().replace("def one_hot(labels", "def one_hot(labels,, "))
    latin = student(root, "latin")
    network = latin / "handin" / "network.py"
    network.write_bytes(b"# Gr\xf6\xdfe der Bilder: 28 \xd7 28\n" + network.read_bytes())
    (root / "corrupt.zip").write_bytes(b"PK\x03\x04 this is not really a zip file")
    (root / "empty").mkdir()
    (root / "empty" / "notes.txt").write_text("I will hand in later\n")
    student(root, "dup")
    zip_folder(student(root / "staging", "dup"), root / "dup.zip")
    # one LMS bulk download: one student as a folder, one as a zip inside
    lms = root / "staging" / "lms"
    student(lms, "Ann Lee_1001_assignsubmission_file_")
    inner = student(
        root / "staging",
        "inner",
        edit=[Edit("utils.py", "return -(target * pred).sum(dim=1).mean()", "return -(target * pred).sum()")],
    )
    (lms / "Max Mu_1002_assignsubmission_file_").mkdir()
    zip_folder(inner, lms / "Max Mu_1002_assignsubmission_file_" / "submission.zip")
    zip_folder(lms, root / "moodle-download.zip")
    shutil.rmtree(root / "staging")
    for name, edit in HOSTILE.items():
        student(root, name, edit=edit)
    return root


@pytest.fixture(scope="session")
def graded(class_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    before = tree_digest(class_folder)
    rows = grade(class_folder, out, time_limit=TIME_LIMIT, quiet=True)
    return {"rows": {row["student_id"]: row for row in rows}, "out": out, "before": before}


def full(row):
    return [row[p] for p in ("collage", "mixup", "cross_entropy", "network", "frozen_finetuning")]


OK = "ok" if (KIT_ROOT / "notebooks" / "3_report.ipynb").is_file() else "missing_file:3_report.ipynb"


def test_statuses_of_every_case(graded):
    rows = graded["rows"]
    expected = {
        "ref": OK,
        "quadrant": OK,
        "casey": OK,
        "latin": OK,
        "1001": OK,
        "1002": OK,
        "nomodule": "missing_file:network.py",
        "corrupt": "bad_archive",
        "empty": "empty_submission",
        "dup": "duplicate_id",
        "fork_bomb": "timeout",
        "memory_bomb": "memory_limit",
        "ignores_sigint": "timeout",
        "exits": "crashed",
        "huge_file": OK,
        "daemon": OK,
        "flood": OK,
        "vandal": OK,
    }
    assert {s: rows[s]["status"] for s in expected} == expected
    assert rows["stubs"]["status"] in (OK, "not_implemented")  # not_implemented once the judge reports stubs
    assert rows["syntax"]["status"].startswith("syntax_error:utils.py:")
    line = int(rows["syntax"]["status"].rsplit(":", 1)[1])
    source = (graded["out"] / "course" / "submitted" / "syntax" / "hand_in_3" / "handin" / "utils.py").read_text()
    assert "def one_hot(labels,, " in source.splitlines()[line - 1]


def test_scores(graded):
    rows = graded["rows"]
    for name in ("ref", "casey", "latin", "1001", "daemon", "flood", "vandal"):
        assert full(rows[name]) == [10] * 5, name
    assert full(rows["stubs"]) == [0] * 5
    assert rows["quadrant"]["collage"] < 10 and full(rows["quadrant"])[1:] == [10] * 4
    assert rows["1002"]["cross_entropy"] < 10 and rows["1002"]["collage"] == 10
    assert full(rows["nomodule"])[:3] == [10, 10, 10] and full(rows["nomodule"])[3:] == [0, 0]
    assert rows["syntax"]["cross_entropy"] == 0 and rows["syntax"]["network"] == 10
    for name in ("fork_bomb", "memory_bomb", "ignores_sigint", "exits", "huge_file"):
        assert rows[name]["collage"] == 0 and full(rows[name])[1:] == [10] * 4, name
    for name in ("corrupt", "empty", "dup"):
        assert rows[name]["total"] == 0


def test_csv_and_gradebook(graded):
    text = (graded["out"] / "grades.csv").read_text()
    table = list(csv.DictReader(io.StringIO(text)))
    assert tuple(table[0]) == CSV_COLUMNS
    assert {row["student_id"] for row in table} == set(graded["rows"])
    assert all(row["max_total"] == "50" for row in table)
    course = graded["out"] / "course"
    export = course / "export.csv"
    environment = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "HANDIN3_KIT": str(KIT_ROOT),
    }
    subprocess.run(
        [sys.executable, "-m", "nbgrader", "export", f"--to={export}"],
        cwd=course,
        env=environment,
        check=True,
        capture_output=True,
    )
    exported = {row["student_id"]: float(row["raw_score"]) for row in csv.DictReader(export.open())}
    for student_id in ("ref", "quadrant", "fork_bomb", "1002"):
        assert exported[student_id] >= float(graded["rows"][student_id]["total"])


def test_originals_untouched_and_nothing_escaped(graded, class_folder):
    assert tree_digest(class_folder) == graded["before"]
    assert (KIT_ROOT / "solutions" / "handin" / "network.py").is_file()
    assert not processes_named("h3daemon"), "a sandboxed daemon outlived the batch"


def test_feedback_explains_and_hides_hidden_tests(graded):
    feedback = graded["out"] / "feedback"
    pages = {path.stem: path.read_text() for path in feedback.glob("*.html")}
    assert set(pages) == set(graded["rows"])
    assert "Network.py was accepted as network.py" in pages["casey"]
    assert "not UTF-8" in pages["latin"]
    assert "network.py is missing" in pages["nomodule"]
    assert "SyntaxError" in pages["syntax"]
    assert "not a readable zip" in pages["corrupt"]
    assert "dup.zip" in pages["dup"] and "folder dup/" in pages["dup"]
    assert "none of the expected files" in pages["empty"]
    assert "more memory" in pages["memory_bomb"] and "time limit" in pages["fork_bomb"]
    assert pages["quadrant"].count("<table class='picture'>") == 2  # collage and mixup pictures
    assert pages["quadrant"].count("data:image/png;base64,") == 10  # i, j, expected, got, difference
    secret_lines = {
        line.strip()
        for name in ("hidden.py", "reference.py", "checks.py", "runner.py")
        for line in (KIT_ROOT / "autograder" / "judge" / name).read_text().splitlines()
        if len(line.strip()) > 24 and not line.strip().startswith(("#", '"""', "def ", "import", "from"))
    }
    for name, page in pages.items():
        leaked = [line for line in secret_lines if line in page]
        assert not leaked, (name, leaked[:3])


def test_rerun_resumes_without_regrading(graded, class_folder):
    out = graded["out"]
    stamps = {p: p.stat().st_mtime_ns for p in (out / "course" / "autograded").glob("*/hand_in_3/grading.ipynb")}
    rows = grade(class_folder, out, time_limit=TIME_LIMIT, quiet=True)
    assert {row["student_id"]: row for row in rows} == graded["rows"]
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}


def test_refuses_without_bubblewrap(class_folder, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", str(class_folder), "--out", str(tmp_path)],
        cwd=KIT_ROOT,
        env={**os.environ, "PATH": "/nonexistent"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "bubblewrap" in done.stderr and "--no-sandbox" in done.stderr
    assert not (tmp_path / "grades.csv").exists()
