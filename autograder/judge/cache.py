"""Verdict cache keys and submission reading (standard library only: the grading kernel imports this).

A verdict is stored as ``<cache dir>/<key>.json`` where the key is the sha256 of the
judge's version, the seed and the bytes of the student's modules. The cache lives
outside every submission (``$HANDIN3_VERDICTS``), so a submission cannot plant a verdict.
"""
import hashlib
import json
import os
import stat
from pathlib import Path

from .. import STUDENT_MODULES
from ..files import write_atomically

JUDGE_DIR = Path(__file__).resolve().parent
DEFAULT_SEED = 20240611
MAX_MODULE_BYTES = 1_000_000
VERDICTS_ENV = "HANDIN3_VERDICTS"


class SubmissionError(ValueError):
    """A student module that cannot be read safely (a symlink, a folder, too large)."""


#: The judge's files that decide a verdict; editing any of them invalidates cached verdicts.
VERDICT_SOURCES = ("cache.py", "checks.py", "core.py", "hidden.py", "points.py", "reference.py", "runner.py")
#: The kit's provided modules that the child runs (the kit's own finetuning); the others
#: (plotting, checks, engine...) are copied too but cannot change a verdict.
PROVIDED_SOURCES = ("__init__.py", "training.py")


def judge_version():
    """sha256 of the judge's verdict-deciding files (:data:`VERDICT_SOURCES`, :data:`PROVIDED_SOURCES`)."""
    from .. import KIT_ROOT
    provided = [KIT_ROOT / "solutions" / "handin" / name for name in PROVIDED_SOURCES]
    digest = hashlib.sha256()
    for path in [JUDGE_DIR / name for name in VERDICT_SOURCES] + provided:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def read_module(handin_dir, name):
    """The bytes of ``handin_dir/name``, or None if it is missing.

    Symlinks are refused (``O_NOFOLLOW``): a submitted ``network.py`` that links to
    the instructor's solution must not be graded as the student's code.

    Raises:
        SubmissionError: for a symlink, a non-regular file or a file over 1 MB.
    """
    path = Path(handin_dir) / name
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return None
    except OSError as error:
        raise SubmissionError(f"{path} cannot be read ({error.strerror}); submit it as a plain file") from None
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise SubmissionError(f"{path} is not a regular file; submit it as a plain .py file")
        data = handle.read(MAX_MODULE_BYTES + 1)
    if len(data) > MAX_MODULE_BYTES:
        raise SubmissionError(f"{path} is larger than 1 MB; submit only your code")
    return data


def read_modules(handin_dir):
    """``{module name: bytes or None}`` for the student's modules of ``handin_dir``."""
    return {name: read_module(handin_dir, name) for name in STUDENT_MODULES}


def verdict_key(handin_dir, seed=DEFAULT_SEED):
    """The cache key of a submission's verdict."""
    digest = hashlib.sha256(f"{judge_version()}:{seed}".encode())
    try:
        modules = read_modules(handin_dir)
    except SubmissionError as error:
        modules = {"error": str(error).encode()}
    for name, data in sorted(modules.items()):
        digest.update(b"\0" + name.encode() + b"\0" + (hashlib.sha256(data).digest() if data is not None else b"-"))
    return digest.hexdigest()


def verdicts_dir():
    """Where verdicts are cached: ``$HANDIN3_VERDICTS``, else ``build/verdicts`` in the kit."""
    from .. import KIT_ROOT
    return Path(os.environ.get(VERDICTS_ENV) or KIT_ROOT / "build" / "verdicts")


def load_cached(handin_dir, seed=DEFAULT_SEED, cache_dir=None):
    """The cached verdict of a submission, or None."""
    return load_by_key(verdict_key(handin_dir, seed), cache_dir)


def load_by_key(key, cache_dir=None):
    """The cached verdict stored under ``key``, or None (absent, or still being written)."""
    try:
        return json.loads(_path(key, ".json", cache_dir).read_text())
    except (FileNotFoundError, ValueError):
        return None


def store(verdict, handin_dir, seed=DEFAULT_SEED, cache_dir=None):
    """Write a verdict atomically under its key; returns the path."""
    key = verdict_key(handin_dir, seed)
    path = write_atomically(_path(key, ".json", cache_dir), json.dumps(verdict, indent=1, sort_keys=True))
    clear_failure(key, cache_dir)
    return path


def store_failure(key, message, cache_dir=None):
    """Record that the batch grader could not judge the modules under ``key``.

    The grade cells waiting for that verdict then stop waiting and judge by themselves.
    """
    return write_atomically(_path(key, ".failed", cache_dir), message)


def judge_failed(key, cache_dir=None):
    """Whether the batch grader gave up on the verdict under ``key`` (see :func:`store_failure`)."""
    return _path(key, ".failed", cache_dir).is_file()


def clear_failure(key, cache_dir=None):
    _path(key, ".failed", cache_dir).unlink(missing_ok=True)


def _path(key, suffix, cache_dir):
    return Path(cache_dir or verdicts_dir()) / f"{key}{suffix}"
