"""Verdict cache keys and submission reading (standard library only: the grading kernel imports this).

A verdict is stored as ``<cache dir>/<key>.json`` where the key is the sha256 of the
judge's version, the seed of the hidden inputs and the bytes of the student's modules.
The cache lives outside every submission (``$HANDIN3_VERDICTS``), so a submission cannot
plant a verdict.

The seed is not in the kit's source: it derives from a course secret, 32 random bytes
written once (mode 0600) as ``<cache dir>/secret`` by the first judge that uses the
folder. Grading is deterministic for a given secret; students, who only ever see
the kit's source, cannot compute the hidden inputs in advance.
"""

import hashlib
import json
import os
import secrets
import stat
from pathlib import Path

from .. import STUDENT_MODULES, VERDICTS_ENV
from ..files import write_atomically

JUDGE_DIR = Path(__file__).resolve().parent
MAX_MODULE_BYTES = 1_000_000
SECRET_NAME = "secret"
SECRET_BYTES = 32


class SubmissionError(ValueError):
    """A student module that cannot be read safely (a symlink, a folder, too large)."""


#: The judge's files that decide a verdict; editing any of them invalidates cached verdicts.
VERDICT_SOURCES = (
    "cache.py",
    "checks.py",
    "core.py",
    "digits.py",
    "hidden.py",
    "pictures.py",
    "points.py",
    "reference.py",
    "runner.py",
)
#: The kit's provided modules that the child runs (the kit's own finetuning, which blends its
#: batches with the kit's ``blending.augment``); the others (plotting, checks, engine...) are
#: copied too but cannot change a verdict.
PROVIDED_SOURCES = ("__init__.py", "blending.py", "training.py")


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


def course_seed(cache_dir=None):
    """The seed of the hidden inputs: derived from the course secret of ``cache_dir`` (made on first use).

    The secret file is created atomically with mode 0600 (a link of a finished temporary
    file, so concurrent judges agree on one secret) and read without following symlinks.

    Raises:
        OSError: if the secret exists but is not a private regular file of this user
            (the message says which file and what to do).
    """
    folder = Path(cache_dir or verdicts_dir())
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / SECRET_NAME
    if not os.path.lexists(path):
        temporary = folder / f".{SECRET_NAME}.{secrets.token_hex(8)}"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(SECRET_BYTES) + "\n")
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another judge made it first: use theirs
        finally:
            temporary.unlink()
    return _seed_from_secret(path)


def _seed_from_secret(path):
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as error:
        raise OSError(
            f"the course secret {path} cannot be read ({error.strerror}); delete it to make a new one "
            "(cached verdicts are then judged again)"
        ) from None
    with os.fdopen(descriptor) as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_mode & 0o077 or info.st_uid != os.geteuid():
            raise OSError(
                f"the course secret {path} must be a regular file of this user with mode 0600; "
                f"fix it with chmod 600 {path}, or delete it to make a new one"
            )
        text = handle.read(4 * SECRET_BYTES).strip()
    if len(text) < SECRET_BYTES:
        raise OSError(f"the course secret {path} is too short; delete it to make a new one")
    # 62 bits: numpy and torch.manual_seed accept it, also after the judge adds small offsets
    return int.from_bytes(hashlib.sha256(b"handin3 hidden inputs\0" + text.encode()).digest()[:8], "big") >> 2


def verdict_key(handin_dir, seed=None, cache_dir=None):
    """The cache key of a submission's verdict (``seed``: default, the course seed of ``cache_dir``)."""
    seed = course_seed(cache_dir) if seed is None else seed
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


def load_cached(handin_dir, seed=None, cache_dir=None):
    """The cached verdict of a submission, or None."""
    return load_by_key(verdict_key(handin_dir, seed, cache_dir), cache_dir)


def load_by_key(key, cache_dir=None):
    """The cached verdict stored under ``key``, or None (absent, or still being written)."""
    try:
        return json.loads(_path(key, ".json", cache_dir).read_text())
    except (FileNotFoundError, ValueError):
        return None


def store(verdict, handin_dir, seed=None, cache_dir=None):
    """Write a verdict atomically under its key; returns the path."""
    key = verdict_key(handin_dir, seed, cache_dir)
    return write_atomically(_path(key, ".json", cache_dir), json.dumps(verdict, indent=1, sort_keys=True))


def _path(key, suffix, cache_dir):
    return Path(cache_dir or verdicts_dir()) / f"{key}{suffix}"
