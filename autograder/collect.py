"""Find every student's files in a submissions folder and lay them out for nbgrader.

A submissions folder may hold any mix of::

    alice/                      a folder per student (the kit's layout, nested up to two folders deep)
    bob.zip                     a zip per student (same layout inside)
    moodle-download.zip         one LMS bulk download: <Name>_<id>_assignsubmission_file_/...

:func:`collect` reads them without changing them and returns one
:class:`Submission` per student id: the files it found (by their canonical
name), a status for problems found before any code runs, and notes that explain
them in the feedback. :func:`normalize` then copies ONLY the known files into
``submitted/<id>/hand_in_3/`` of an nbgrader course.

Statuses decided here (the judge adds ``timeout``, ``memory_limit``, ``crashed``)::

    bad_archive                 the zip cannot be read, escapes its folder, or is too large
    duplicate_id                two submissions for one student id (none is graded)
    empty_submission            no known file at all
    missing_file:<name>         a student module or the report is missing
    syntax_error:<file>:<line>  ast.parse fails (code is parsed, never executed, here)

Accepted with a note (the status stays ``ok``): a file name in the wrong case
(``Network.py``), a module in a non-UTF-8 encoding (re-encoded from cp1252 in the
graded copy), extra files (ignored).
"""
import ast
import io
import re
import shutil
import tempfile
import tokenize
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from . import ASSIGNMENT, STUDENT_MODULES

REPORT = "3_report.ipynb"
GRADING = "grading.ipynb"
KNOWN_FILES = STUDENT_MODULES + (REPORT,)
JUNK_NAMES = {"__MACOSX", ".ipynb_checkpoints", "__pycache__", ".DS_Store", ".git", "Thumbs.db"}
MAX_DEPTH = 4  # e.g. "My Work/hand_in_3/handin/network.py": the kit's layout nested two folders deep
MAX_ARCHIVE_BYTES = 200 * 2**20  # uncompressed: a larger zip is refused (zip bombs)

#: Moodle's "download all submissions": one folder (or zip) per participant, named
#: ``<Full Name>_<participant id>_assignsubmission_file_``. Matched against the
#: absolute extracted path, as nbgrader's FileNameCollectorPlugin does.
LMS_REGEXP = r".*/[^/]*_(?P<student_id>\d+)_assignsubmission_file_/(?P<file_id>.+)$"


@dataclass
class Submission:
    """One student's files as found, before anything is executed."""
    student_id: str
    origins: list  # where it came from (folders, zips), for messages
    files: dict = field(default_factory=dict)  # canonical name -> host path of the found file
    status: str = "ok"
    notes: list = field(default_factory=list)

    def fail(self, status, note):
        """Record a problem; the first (most fundamental) status wins, every note is kept."""
        if self.status == "ok":
            self.status = status
        self.notes.append(note)

    @property
    def gradable(self):
        """Can the judge run? (Missing files and syntax errors still leave other parts gradable.)"""
        return self.status.split(":")[0] not in ("bad_archive", "duplicate_id", "empty_submission")


class BadArchive(Exception):
    pass


# ----------------------------------------------------------------------------- discovery

def collect(submissions_dir, staging_dir, lms_regexp=LMS_REGEXP):
    """Find every submission in ``submissions_dir``; archives are extracted under ``staging_dir``.

    Returns:
        list of :class:`Submission`, sorted by student id, one per id.
    """
    submissions_dir, staging_dir = Path(submissions_dir), Path(staging_dir)
    found = {}  # student id -> list of (origin description, root folder or None, error)
    for entry in sorted(submissions_dir.iterdir()):
        if entry.name in JUNK_NAMES or entry.name.startswith("."):
            continue
        if entry.is_dir():
            found.setdefault(entry.name, []).append((f"folder {entry.name}/", entry, None))
        elif entry.suffix.lower() == ".zip" and is_lms_download(entry, lms_regexp):
            for student_id, origin, root, error in _lms_students(entry, staging_dir / "lms", lms_regexp):
                found.setdefault(student_id, []).append((origin, root, error))
        elif entry.suffix.lower() == ".zip":
            root, error = _extract_or_error(entry, staging_dir / "zips" / entry.stem)
            found.setdefault(entry.stem, []).append((f"archive {entry.name}", root, error))
    return [_examine(student_id, candidates) for student_id, candidates in sorted(found.items())]


def _examine(student_id, candidates):
    submission = Submission(student_id, [origin for origin, _, _ in candidates])
    if len(candidates) > 1:
        submission.fail("duplicate_id", f"Two or more submissions for {student_id}: "
                        + ", ".join(submission.origins) + ". None was graded; keep one and grade again.")
        return submission
    origin, root, error = candidates[0]
    if error:
        submission.fail("bad_archive", f"{origin} could not be used: {error}")
        return submission
    submission.files = find_known_files(root, submission.notes)
    if not submission.files:
        submission.fail("empty_submission", f"{origin} holds none of the expected files "
                        f"({', '.join(KNOWN_FILES)}), at most {MAX_DEPTH - 1} folders deep.")
        return submission
    for name in STUDENT_MODULES:
        if name not in submission.files:
            submission.fail(f"missing_file:{name}", f"{name} is missing. The released stub was graded in its place.")
    for name in STUDENT_MODULES:
        if name in submission.files:
            _check_python(submission, name)
    if REPORT not in submission.files:  # last: the report is graded by hand, code problems matter more
        submission.fail(f"missing_file:{REPORT}", f"{REPORT} is missing: its questions get 0 points.")
    return submission


def walk_files(root):
    """Files under ``root`` at most :data:`MAX_DEPTH` levels deep, junk folders skipped, shallowest first."""
    root = Path(root)
    files = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if any(part in JUNK_NAMES or part.startswith("._") for part in relative.parts):
            continue
        if len(relative.parts) <= MAX_DEPTH and path.is_file() and not path.is_symlink():
            files.append(path)
    return sorted(files, key=lambda p: (len(p.relative_to(root).parts), str(p)))


def find_known_files(root, notes):
    """Map each known file name to the file that provides it, noting wrong case and extra copies."""
    chosen = {}
    for path in walk_files(root):
        canonical = next((name for name in KNOWN_FILES if name.lower() == path.name.lower()), None)
        if canonical is None:
            continue
        shown = path.relative_to(root)
        if canonical in chosen:
            notes.append(f"{shown} was ignored: {chosen[canonical].relative_to(root)} is used for {canonical}.")
            continue
        if path.name != canonical:
            notes.append(f"{shown} was accepted as {canonical} (the name should be exactly {canonical}).")
        chosen[canonical] = path
    return chosen


def _check_python(submission, name):
    """Parse (never run) a module: syntax errors and encodings are found here."""
    data = submission.files[name].read_bytes()
    graded = as_graded(data)
    if graded is not data:
        submission.notes.append(f"{name} is not UTF-8; it was read as cp1252 (Windows) and converted "
                                "to UTF-8 for grading. Save your files as UTF-8.")
    try:
        ast.parse(graded, filename=name)
    except (SyntaxError, ValueError) as error:
        line = getattr(error, "lineno", None) or 0
        submission.fail(f"syntax_error:{name}:{line}",
                        f"{name} line {line}: SyntaxError: {getattr(error, 'msg', error)}")


def _is_utf8(data):
    """UTF-8, or another encoding declared by a PEP 263 ``# coding:`` line (Python reads those fine)."""
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        pass
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError:
        return False
    return encoding != "utf-8"


def as_graded(data):
    """The bytes to grade for a module's bytes: ``data`` itself, or converted to UTF-8 when it is not UTF-8."""
    return data if _is_utf8(data) else data.decode("cp1252", errors="replace").encode("utf-8")


def graded_text(path):
    """The bytes to grade for a module file (see :func:`as_graded`)."""
    return as_graded(Path(path).read_bytes())


# ----------------------------------------------------------------------------- archives

def _extract_or_error(archive, target):
    try:
        safe_extract(archive, target)
        return target, None
    except BadArchive as error:
        return None, str(error)


def safe_extract(archive, target):
    """Extract a zip, refusing corrupt ones, paths that leave ``target`` and zip bombs.

    Raises:
        BadArchive: with a reason a student can act on.
    """
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = bundle.infolist()
            if sum(member.file_size for member in members) > MAX_ARCHIVE_BYTES:
                raise BadArchive(f"it unpacks to more than {MAX_ARCHIVE_BYTES // 2**20} MB")
            for member in members:
                path = Path(member.filename)
                if path.is_absolute() or ".." in path.parts:
                    raise BadArchive(f"it holds a path outside its folder: {member.filename}")
            if bundle.testzip() is not None:
                raise BadArchive("a file inside is corrupt (CRC mismatch)")
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            for member in members:
                if not member.is_dir() and not _is_symlink_member(member):
                    bundle.extract(member, target)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as error:
        raise BadArchive(f"not a readable zip file ({type(error).__name__}: {error})") from None


def _is_symlink_member(member):
    return (member.external_attr >> 16) & 0o170000 == 0o120000


def is_lms_download(archive, lms_regexp=LMS_REGEXP):
    """Is this zip an LMS bulk download (its members follow the LMS naming)?"""
    try:
        with zipfile.ZipFile(archive) as bundle:
            return any(re.match(lms_regexp, "/bulk/" + name) for name in bundle.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _lms_students(archive, staging, lms_regexp):
    """Extract an LMS bulk download with nbgrader's zip_collect plugins; yield each student's folder.

    Each student's folder (or zip inside it) is extracted by nbgrader's
    ``ExtractorPlugin``; ``FileNameCollectorPlugin`` with ``valid_ext`` including
    ``.py`` (its default keeps notebooks only) assigns every file to a student id.
    """
    from nbgrader.plugins.zipcollect import ExtractorPlugin, FileNameCollectorPlugin

    unpacked, extracted = staging / "unpacked", staging / "extracted"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        safe_extract(archive, unpacked)
    except BadArchive as error:
        yield archive.stem, f"LMS download {archive.name}", None, str(error)
        return
    _check_inner_zips(unpacked)
    ExtractorPlugin().extract(str(unpacked), str(extracted))
    collector = FileNameCollectorPlugin(named_regexp=lms_regexp, valid_ext=[".py", ".ipynb"])
    roots = {}
    for path in sorted(extracted.rglob("*")):
        info = collector.collect(str(path)) if path.is_file() else None
        if info:
            top = str(path)[: -len(info["file_id"])].rstrip("/")
            roots.setdefault(info["student_id"], Path(top))
    for folder in sorted(extracted.rglob("*_assignsubmission_file_")):
        match = re.match(lms_regexp, str(folder) + "/x")
        if match and match["student_id"] not in roots:  # a folder with no .py/.ipynb: an empty submission
            roots[match["student_id"]] = folder
    for student_id, root in sorted(roots.items()):
        marker = root / "BAD_ARCHIVE"
        error = f"{marker.read_text()} is not a readable zip file" if marker.exists() else None
        yield student_id, f"{archive.name}: {root.name}", root, error


def _check_inner_zips(unpacked):
    """Refuse zips inside the bulk download before nbgrader's extractor opens them."""
    for inner in unpacked.rglob("*.zip"):
        try:
            with zipfile.ZipFile(inner) as bundle:
                bad = bundle.testzip() is not None or sum(m.file_size for m in bundle.infolist()) > MAX_ARCHIVE_BYTES
        except (zipfile.BadZipFile, OSError):
            bad = True
        if bad:  # leave a marker so that this student's folder reads as a bad archive
            inner.unlink()
            (inner.parent / "BAD_ARCHIVE").write_text(inner.name)


# ----------------------------------------------------------------------------- layout for nbgrader

def normalize(submission, course_root, release_dir):
    """Write ``submitted/<id>/hand_in_3/`` with only the known files (+ the released grading.ipynb).

    Missing student modules get the released stub, so the other parts still import.
    The originals are only read.

    Returns:
        the assignment folder of the submission.
    """
    target = Path(course_root) / "submitted" / submission.student_id / ASSIGNMENT
    shutil.rmtree(target, ignore_errors=True)
    (target / "handin").mkdir(parents=True)
    for name in STUDENT_MODULES:
        source = submission.files.get(name, Path(release_dir) / "handin" / name)
        (target / "handin" / name).write_bytes(graded_text(source))
    if REPORT in submission.files:
        shutil.copyfile(submission.files[REPORT], target / REPORT)
    shutil.copyfile(Path(release_dir) / GRADING, target / GRADING)
    return target


def make_staging_dir(results_dir):
    """A private folder for extracted archives, inside RESULTS so that nothing leaks to /tmp."""
    staging = Path(results_dir) / ".staging"
    staging.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=staging))
