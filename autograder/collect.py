"""Find every student's files in a submissions folder and lay them out for nbgrader.

A submissions folder may hold any mix of::

    alice/                      a folder per student (the kit's layout, nested up to two folders deep)
    bob.zip                     a zip per student (same layout inside)
    moodle-download.zip         one LMS bulk download: <Name>_<id>_assignsubmission_file_/...

:func:`collect` reads them without changing them and returns one
:class:`Submission` per student id. Nothing is extracted wholesale: a source is
first *listed* (a folder walked at most :data:`MAX_DEPTH` levels deep, a zip's
member list), the caps below are checked on that listing, and only the few files
the grader needs are read, each under its own size cap, into a private staging
folder. :func:`normalize` then writes ``submitted/<id>/hand_in_3/`` of an nbgrader course.

A name that is not a safe student id (:data:`SAFE_ID`) is graded under a derived id
(:func:`safe_id`) and flagged (:attr:`Submission.bad_id`; the batch grader's status
``bad_id``). Statuses decided here (the judge adds ``timeout``, ``memory_limit``,
``crashed``, ``not_implemented``; the batch grader adds ``grader_error``)::

    bad_archive                 the zip cannot be read, or holds a path that leaves its folder
    too_large                   more than MAX_SUBMISSION_FILES files or MAX_SUBMISSION_BYTES bytes
    duplicate_id                two submissions for one student id (none is graded)
    empty_submission            no known file at all
    file_too_large:<name>       a module over MAX_MODULE_BYTES (not parsed; the released stub is graded)
    missing_file:<name>         a student module or the report is missing
    syntax_error:<file>:<line>  ast.parse fails (code is parsed, never executed, here)

Accepted with a note (the status stays as it is): a file name in the wrong case
(``Network.py``), a module in a non-UTF-8 encoding (re-encoded from cp1252 in the
graded copy), extra files (ignored), a report or results file over its cap or a
report that is not a notebook (left out; the code parts are graded as usual).
"""

import ast
import hashlib
import io
import os
import re
import shutil
import stat
import tempfile
import tokenize
import unicodedata
import zipfile
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath

import nbformat

from . import ASSIGNMENT, STUDENT_MODULES
from .judge.cache import MAX_MODULE_BYTES  # one cap for the collector and the judge
from .report import MAX_RESULTS_BYTES  # one cap for the collector and the report's validator
from .sanitize import clean_notebook

REPORT = "3_report.ipynb"
GRADING = "grading.ipynb"
RESULTS_FILE = "results/experiment.json"  # the report's results, next to handin/
KNOWN_FILES = STUDENT_MODULES + (REPORT,)
JUNK_NAMES = {"__MACOSX", ".ipynb_checkpoints", "__pycache__", ".DS_Store", ".git", "Thumbs.db"}
MAX_DEPTH = 4  # e.g. "My Work/hand_in_3/handin/network.py": the kit's layout nested two folders deep

#: Caps, all checked on a listing or a declared size BEFORE anything is read or parsed.
MAX_REPORT_BYTES = 20 * 2**20
MAX_SUBMISSION_BYTES = 200 * 2**20  # one student's files within MAX_DEPTH (a folder, or a zip unpacked)
MAX_SUBMISSION_FILES = 10_000  # one student's files (or zip members)
MAX_BULK_MEMBERS = 500_000  # members of one LMS bulk download
CAPS = {
    **{name: MAX_MODULE_BYTES for name in STUDENT_MODULES},
    REPORT: MAX_REPORT_BYTES,
    RESULTS_FILE: MAX_RESULTS_BYTES,
}

#: A student id is used in file names, nbgrader's globs, CSV cells and HTML: only these characters.
SAFE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")

#: Moodle's "download all submissions": one folder (or zip) per participant, named
#: ``<Full Name>_<participant id>_assignsubmission_file_``. Matched against ``/bulk/`` plus the
#: FIRST path component of each member (and a placeholder file name), so a folder deeper down,
#: inside a student's own upload, can never name a student.
LMS_REGEXP = r".*/[^/]*_(?P<student_id>\d+)_assignsubmission_file_/(?P<file_id>.+)$"


@dataclass
class Submission:
    """One student's files as found, before anything is executed."""

    student_id: str
    origins: list  # where it came from (folders, zips), for messages
    files: dict = field(default_factory=dict)  # canonical name -> staged copy of the found file
    status: str = "ok"
    notes: list = field(default_factory=list)
    original_name: str = ""  # the folder/zip/LMS name the id came from, when it was not a safe id

    def fail(self, status, note):
        """Record a problem; the first (most fundamental) status wins, every note is kept."""
        if self.status == "ok":
            self.status = status
        self.notes.append(note)

    @property
    def bad_id(self):
        return bool(self.original_name)

    @property
    def gradable(self):
        """Can the judge run? (Missing files and syntax errors still leave other parts gradable.)"""
        return self.status.split(":")[0] not in (
            "bad_archive",
            "too_large",
            "duplicate_id",
            "empty_submission",
            "grader_error",
        )


class BadArchive(Exception):
    """A zip that cannot be used: unreadable, or a path that leaves its folder."""


class TooLarge(Exception):
    """A submission over :data:`MAX_SUBMISSION_FILES` or :data:`MAX_SUBMISSION_BYTES`."""


@dataclass
class Entry:
    """One file of a listing: its path relative to the submission's top, its declared size, how to read it."""

    path: str
    size: int
    read: callable  # read(cap) -> bytes, at most cap + 1 of them


# ----------------------------------------------------------------------------- student ids


def safe_id(name):
    """``name`` if it is a safe id, else a derived one: an ASCII slug of it plus 8 hex of its sha256."""
    if SAFE_ID.fullmatch(name):
        return name
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", ascii_name).strip(".-")[:40] or "id"
    return f"{slug}-{hashlib.sha256(name.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"


def shown(text):
    """``text`` safe to print or put in a CSV cell or a note: control characters and non-ASCII as escapes."""
    return ascii(str(text))[1:-1]


# ----------------------------------------------------------------------------- discovery


def collect(submissions_dir, staging_dir, lms_regexp=LMS_REGEXP):
    """Find every submission in ``submissions_dir``; the files it needs are copied under ``staging_dir``.

    Returns:
        list of :class:`Submission`, sorted by student id, one per id. One broken
        submission never stops the others: a fault of the collector itself on one
        student becomes that student's ``grader_error``.
    """
    submissions_dir, staging_dir = Path(submissions_dir), Path(staging_dir)
    found = {}  # student id -> list of (name it came from, origin description, lister)
    for entry in sorted(submissions_dir.iterdir()):
        if entry.name in JUNK_NAMES or entry.name.startswith("."):
            continue
        if entry.is_dir() and not entry.is_symlink():
            found.setdefault(safe_id(entry.name), []).append(
                (entry.name, f"folder {entry.name}/", lambda root=entry: folder_listing(root))
            )
        elif entry.suffix.lower() == ".zip" and entry.is_file() and is_lms_download(entry, lms_regexp):
            for name, student_id, origin, lister in lms_students(entry, staging_dir / "lms", lms_regexp):
                found.setdefault(safe_id(student_id), []).append((name, origin, lister))
        elif entry.suffix.lower() == ".zip" and entry.is_file():
            found.setdefault(safe_id(entry.stem), []).append(
                (entry.stem, f"archive {entry.name}", lambda archive=entry: zip_listing(archive))
            )
    submissions = []
    for number, (student_id, candidates) in enumerate(sorted(found.items())):
        submission = Submission(student_id, [shown(origin) for _, origin, _ in candidates])
        try:
            examine(submission, candidates, staging_dir / "files" / str(number))
        except Exception as error:  # noqa: BLE001 - a collector bug on one student must not stop the class
            submission.status = "grader_error"
            submission.notes.append(
                f"The grader failed while reading these files ({type(error).__name__}: "
                f"{shown(error)[:300]}). Not your fault; the TA has been told."
            )
        submissions.append(submission)
    return submissions


def examine(submission, candidates, staging):
    """Check one student's candidates: id, duplicates, caps, known files, syntax."""
    names = sorted({name for name, _, _ in candidates})
    if any(safe_id(name) != name for name in names):
        submission.original_name = " | ".join(names)
        submission.notes.append(
            f"The name '{shown(submission.original_name)}' is not a safe student id "
            f"(letters, digits, '_', '.', '-', at most 64, not starting with '.' or '-'); "
            f"graded as {submission.student_id}."
        )
    if len(candidates) > 1:
        submission.status = "duplicate_id"
        submission.notes.append(
            f"Two or more submissions for {submission.student_id}: "
            + ", ".join(submission.origins)
            + ". None was graded; keep one and grade again."
        )
        return
    _, origin, lister = candidates[0]
    try:
        entries = lister()
    except BadArchive as error:
        submission.status = "bad_archive"
        submission.notes.append(f"{shown(origin)} could not be used: {error}")
        return
    except TooLarge as error:
        submission.status = "too_large"
        submission.notes.append(f"{shown(origin)} was not graded: {error}")
        return
    chosen = choose_files(entries, submission.notes)
    if not any(name in chosen for name in KNOWN_FILES):
        inner = [e.path for e in entries if e.path.lower().endswith(".zip")]
        hint = f" (zips inside a submission are not opened: {shown(inner[0])})" if inner else ""
        submission.status = "empty_submission"
        submission.notes.append(
            f"{shown(origin)} holds none of the expected files "
            f"({', '.join(KNOWN_FILES)}), at most {MAX_DEPTH - 1} folders deep{hint}."
        )
        return
    submission.files = stage_files(chosen, staging, submission)
    for name in STUDENT_MODULES:
        if name not in chosen:
            submission.fail(f"missing_file:{name}", f"{name} is missing. The released stub was graded in its place.")
    for name in STUDENT_MODULES:
        if name in submission.files:
            _check_python(submission, name)
    if REPORT not in chosen:  # last: the report is graded by hand, code problems matter more
        submission.fail(f"missing_file:{REPORT}", f"{REPORT} is missing: its questions get 0 points.")


def is_junk(parts):
    return any(part in JUNK_NAMES or part.startswith("._") for part in parts)


def choose_files(entries, notes):
    """Map each known file name (and :data:`RESULTS_FILE`) to the shallowest entry that provides it."""
    chosen = {}
    for entry in sorted(entries, key=lambda e: (len(PurePosixPath(e.path).parts), e.path)):
        parts = PurePosixPath(entry.path).parts
        if len(parts) > MAX_DEPTH or is_junk(parts):
            continue
        canonical = next((name for name in KNOWN_FILES if name.lower() == parts[-1].lower()), None)
        if canonical is None and len(parts) >= 2 and "/".join(parts[-2:]) == RESULTS_FILE:
            canonical = RESULTS_FILE
        if canonical is None:
            continue
        if canonical in chosen:
            notes.append(f"{shown(entry.path)} was ignored: {shown(chosen[canonical].path)} is used for {canonical}.")
            continue
        if parts[-1] != PurePosixPath(canonical).name:
            notes.append(f"{shown(entry.path)} was accepted as {canonical} (the name should be exactly {canonical}).")
        chosen[canonical] = entry
    return chosen


def stage_files(chosen, staging, submission):
    """Read each chosen file under its cap into ``staging``; ``{canonical name: staged path}``."""
    staging.mkdir(parents=True, exist_ok=True)
    staged = {}
    for canonical, entry in chosen.items():
        cap = CAPS[canonical]
        data = entry.read(cap) if entry.size <= cap else None
        if data is None or len(data) > cap:
            message = f"{shown(entry.path)} is larger than {cap // 2**20} MB and was not read"
            if canonical in STUDENT_MODULES:
                submission.fail(
                    f"file_too_large:{canonical}",
                    f"{message}: the released stub was graded in its place. Submit only your code.",
                )
            else:
                submission.notes.append(f"{message}.")
            continue
        target = staging / canonical.replace("/", "_")
        target.write_bytes(data)
        staged[canonical] = target
    return staged


def _check_python(submission, name):
    """Parse (never run) a module below the size cap: syntax errors and encodings are found here."""
    data = submission.files[name].read_bytes()
    graded = as_graded(data)
    if graded is not data:
        submission.notes.append(
            f"{name} is not UTF-8; it was read as cp1252 (Windows) and converted "
            "to UTF-8 for grading. Save your files as UTF-8."
        )
    try:
        ast.parse(graded, filename=name)
    except (SyntaxError, ValueError) as error:
        line = getattr(error, "lineno", None) or 0
        submission.fail(
            f"syntax_error:{name}:{line}",
            f"{name} line {line}: SyntaxError: {shown(getattr(error, 'msg', error))[:300]}",
        )
    except (MemoryError, RecursionError) as error:
        submission.fail(
            f"syntax_error:{name}:0",
            f"{name}: Python cannot compile it ({type(error).__name__}: "
            "an expression nested or chained too deeply). Split it into smaller statements.",
        )


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


# ----------------------------------------------------------------------------- listings


def read_regular_file(path, cap):
    """At most ``cap + 1`` bytes of ``path``; a symlink or non-regular file reads as empty."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return b""
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            return b""
        return handle.read(cap + 1)


def folder_listing(root):
    """The regular files under ``root`` at most :data:`MAX_DEPTH` levels deep (symlinks and junk skipped).

    Raises:
        TooLarge: more than :data:`MAX_SUBMISSION_FILES` files or :data:`MAX_SUBMISSION_BYTES` bytes.
    """
    root = Path(root)
    entries, total = [], 0
    for folder, subfolders, names in os.walk(root):
        relative = Path(folder).relative_to(root).parts
        subfolders[:] = sorted(s for s in subfolders if not is_junk([s])) if len(relative) < MAX_DEPTH - 1 else []
        if len(entries) + len(names) > MAX_SUBMISSION_FILES:
            raise TooLarge(f"more than {MAX_SUBMISSION_FILES} files within {MAX_DEPTH - 1} folders")
        for name in sorted(names):
            path = Path(folder) / name
            info = os.lstat(path)
            if is_junk([name]) or not stat.S_ISREG(info.st_mode):
                continue
            total += info.st_size
            if total > MAX_SUBMISSION_BYTES:
                raise TooLarge(f"more than {MAX_SUBMISSION_BYTES // 2**20} MB of files")
            entries.append(
                Entry("/".join((*relative, name)), info.st_size, lambda cap, path=path: read_regular_file(path, cap))
            )
    return entries


def _is_symlink_member(member):
    return (member.external_attr >> 16) & 0o170000 == 0o120000


def zip_members(archive, max_members):
    """The ``ZipInfo`` of every member, after checking the count and that no path leaves the zip."""
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = bundle.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as error:
        raise BadArchive(f"not a readable zip file ({type(error).__name__}: {shown(error)[:200]})") from None
    if len(members) > max_members:
        raise TooLarge(f"more than {max_members} files in the zip")
    for member in members:
        path = PurePosixPath(member.filename)
        if path.is_absolute() or ".." in path.parts:
            raise BadArchive(f"it holds a path outside its folder: {shown(member.filename)}")
    return members


def read_member(archive, member, cap):
    """At most ``cap + 1`` bytes of one member (zipfile checks the CRC when a member is read whole)."""
    try:
        with zipfile.ZipFile(archive) as bundle, bundle.open(member) as handle:
            return handle.read(cap + 1)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError, RuntimeError) as error:
        raise BadArchive(f"{shown(member.filename)} inside is corrupt or encrypted ({type(error).__name__})") from None


def zip_listing(archive, prefix=""):
    """The files of a per-student zip (members under ``prefix``, which is stripped), checked against the caps.

    Raises:
        BadArchive, TooLarge.
    """
    members = [
        m
        for m in zip_members(archive, MAX_BULK_MEMBERS if prefix else MAX_SUBMISSION_FILES)
        if m.filename.startswith(prefix) and not m.is_dir() and not _is_symlink_member(m)
    ]
    if len(members) > MAX_SUBMISSION_FILES:
        raise TooLarge(f"more than {MAX_SUBMISSION_FILES} files")
    if sum(m.file_size for m in members) > MAX_SUBMISSION_BYTES:
        raise TooLarge(f"it unpacks to more than {MAX_SUBMISSION_BYTES // 2**20} MB")
    return [
        Entry(m.filename[len(prefix) :], m.file_size, lambda cap, m=m: read_member(archive, m, cap)) for m in members
    ]


# ----------------------------------------------------------------------------- LMS bulk downloads


def lms_owner(first, is_folder, lms_regexp):
    """``(student id, file id)`` that the top-level entry ``first`` of a bulk download names, or None."""
    match = re.match(lms_regexp, f"/bulk/{first}/x" if is_folder else f"/bulk/{first}")
    return (match["student_id"], match["file_id"]) if match else None


def _top_entries(archive):
    """``{first path component: is a folder}`` of a zip's members."""
    tops = {}
    for member in zip_members(archive, MAX_BULK_MEMBERS):
        first, _, rest = member.filename.partition("/")
        if first and not is_junk([first]):
            tops[first] = tops.get(first, False) or bool(rest)
    return tops


def is_lms_download(archive, lms_regexp=LMS_REGEXP):
    """Is this zip an LMS bulk download? Some top-level entry follows the LMS naming."""
    try:
        tops = _top_entries(archive)
    except (BadArchive, TooLarge):
        return False
    return any(lms_owner(first, folder, lms_regexp) for first, folder in tops.items())


def lms_students(archive, staging, lms_regexp):
    """``(name, student id, origin, lister)`` for each top-level entry of an LMS bulk download.

    The student id comes only from the entry's own name; top-level entries that do not follow
    the naming (e.g. Moodle's ``..._assignsubmission_onlinetext_``) are skipped. A student's
    upload that is a zip (at any depth inside the entry) is listed from a checked copy; zips
    inside it are not opened.
    """
    try:
        tops = _top_entries(archive)
    except (BadArchive, TooLarge) as error:

        def refuse(error=error):
            raise error

        yield archive.stem, archive.stem, f"LMS download {archive.name}", refuse
        return
    flat = {}  # student id -> [(top-level file, file id)]: an LMS that names files, not folders
    for number, (first, is_folder) in enumerate(sorted(tops.items())):
        owner = lms_owner(first, is_folder, lms_regexp)
        if owner is None:
            continue
        if is_folder:
            lister = partial(_lms_entry_listing, archive, first + "/", staging / str(number))
            yield owner[0], owner[0], f"{archive.name}: {first}", lister
        else:
            flat.setdefault(owner[0], []).append((first, owner[1]))
    for number, (student_id, files) in enumerate(sorted(flat.items())):
        lister = partial(_lms_file_listing, archive, files, staging / f"flat{number}")
        yield student_id, student_id, f"{archive.name}: {files[0][0]}", lister


def _lms_entry_listing(archive, prefix, staging):
    """A student's folder of the bulk download; each zip in it is replaced by the (checked) files inside."""
    entries = []
    for entry in zip_listing(archive, prefix):
        if not entry.path.lower().endswith(".zip") or len(PurePosixPath(entry.path).parts) >= MAX_DEPTH:
            entries.append(entry)
            continue
        folder = PurePosixPath(entry.path).parent
        entries += [
            Entry(str(folder / inner.path), inner.size, inner.read)
            for inner in _inner_zip_listing(entry, staging / f"{len(entries)}.zip")
        ]
    if len(entries) > MAX_SUBMISSION_FILES:
        raise TooLarge(f"more than {MAX_SUBMISSION_FILES} files")
    return entries


def _lms_file_listing(archive, files, staging):
    """One student's top-level files (``<name>_<id>_..._<file>``) of a bulk download; a zip among them is listed."""
    members = {m.filename: m for m in zip_members(archive, MAX_BULK_MEMBERS)}
    entries = []
    for number, (first, file_id) in enumerate(files):
        member = members[first]
        entry = Entry(file_id, member.file_size, partial(read_member, archive, member))
        if file_id.lower().endswith(".zip"):
            entries += _inner_zip_listing(entry, staging / f"{number}.zip")
        else:
            entries.append(entry)
    return entries


def _inner_zip_listing(entry, copy):
    """Copy a student's zip out of the bulk download (size checked first) and list it."""
    if entry.size > MAX_SUBMISSION_BYTES:
        raise TooLarge(f"{shown(entry.path)} is larger than {MAX_SUBMISSION_BYTES // 2**20} MB")
    data = entry.read(MAX_SUBMISSION_BYTES)
    if len(data) > MAX_SUBMISSION_BYTES:
        raise TooLarge(f"{shown(entry.path)} is larger than {MAX_SUBMISSION_BYTES // 2**20} MB")
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_bytes(data)
    return zip_listing(copy)


# ----------------------------------------------------------------------------- layout for nbgrader


def normalize(submission, course_root, release_dir):
    """Write ``submitted/<id>/hand_in_3/`` with only the known files (+ the released grading.ipynb).

    Missing student modules get the released stub, so the other parts still import.
    The report is rewritten by :func:`clean_report`; the results file is copied unparsed.
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
        source_report = Path(course_root) / "source" / ASSIGNMENT / REPORT
        report, problem = clean_report(submission.files[REPORT].read_bytes(), source_report)
        if report is None:
            submission.notes.append(
                f"{REPORT} could not be used ({problem}); the TA sees no report. The code parts are graded as usual."
            )
        else:
            (target / REPORT).write_text(report, encoding="utf-8")
    if RESULTS_FILE in submission.files:
        (target / "results").mkdir()
        shutil.copyfile(submission.files[RESULTS_FILE], target / RESULTS_FILE)
    shutil.copyfile(Path(release_dir) / GRADING, target / GRADING)
    return target


def clean_report(data, source_report):
    """The report as nbformat text with only the nbgrader metadata of the instructor's source, or ``(None, why)``.

    A cell keeps ``nbgrader`` metadata only if the source notebook has a cell with
    that ``grade_id`` and cell type, once; the metadata is then the source's. Every
    other ``nbgrader`` entry (a planted grade cell, a duplicate) is dropped, so nbgrader
    never meets a cell that is not in its gradebook. All other cell metadata is dropped
    and the notebook's metadata is the source's (nothing nested deeply reaches nbgrader).
    Markdown and outputs are sanitized here already (:func:`.sanitize.clean_notebook`), so
    no copy of the report in RESULTS holds active HTML, not even the one in ``submitted/``.
    """
    try:
        notebook = nbformat.reads(data.decode("utf-8"), as_version=4)
        nbformat.validate(notebook)
    except Exception as error:  # noqa: BLE001 - bad JSON, RecursionError on deep nesting, schema errors...
        return None, f"not a valid notebook: {type(error).__name__}"
    notebook = clean_notebook(notebook)
    source = nbformat.read(source_report, as_version=4) if Path(source_report).is_file() else None
    known = {
        cell.metadata["nbgrader"]["grade_id"]: cell
        for cell in (source.cells if source else [])
        if "grade_id" in cell.metadata.get("nbgrader", {})
    }
    used = set()
    notebook.metadata = source.metadata if source else {}
    for cell in notebook.cells:
        claimed = cell.metadata.get("nbgrader")
        cell.metadata = {}
        grade_id = claimed.get("grade_id") if isinstance(claimed, dict) else None
        original = known.get(grade_id) if isinstance(grade_id, str) else None
        if original is not None and original.cell_type == cell.cell_type and grade_id not in used:
            cell.metadata["nbgrader"] = original.metadata["nbgrader"]
            used.add(grade_id)
    return nbformat.writes(notebook, version=4), None


def make_staging_dir(results_dir):
    """A private folder for the files read from submissions, inside RESULTS so that nothing leaks to /tmp."""
    staging = Path(results_dir) / ".staging"
    staging.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=staging))
