"""The sandbox's state on the host: a private folder of slot locks and scratch mounts, and the uid slots.

The folder is per user and private (owned by the grader's uid, mode 0700, never a
symlink): ``$HANDIN3_SANDBOX_STATE`` if set; for root ``/run/handin3-sandbox`` (one
folder for every root grader, so their slots, hence uids, never collide); else
``$XDG_RUNTIME_DIR/handin3-sandbox``, else ``<tmp>/handin3-sandbox-<uid>``. Anything
else found at that path is refused, with the command that fixes it: another user's
folder or a symlink there must never decide where the grader writes.
"""

import fcntl
import os
import stat
import tempfile
import time
from pathlib import Path

from .. import SANDBOX_STATE_ENV as STATE_ENV
from .cgroups import is_root, owner_alive, remove_stale_cgroups
from .limits import SandboxUnavailable

UID_BASE = 61000  # slot n runs as uid/gid UID_BASE + n
MAX_SLOTS = 64


def state_dir():
    """The grader's private state folder, created if missing and checked (:func:`private_dir`)."""
    if os.environ.get(STATE_ENV):
        return private_dir(Path(os.environ[STATE_ENV]))
    if is_root() and os.access("/run", os.W_OK):
        return private_dir(Path("/run/handin3-sandbox"))
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime and Path(runtime).is_absolute() and Path(runtime).is_dir():
        return private_dir(Path(runtime) / "handin3-sandbox")
    return private_dir(Path(tempfile.gettempdir()) / f"handin3-sandbox-{os.geteuid()}")


def private_dir(path):
    """Create ``path`` (mode 0700), or accept it only if it is a real folder, ours, mode 0700.

    Raises:
        SandboxUnavailable: naming the path, what is wrong with it, and the fix.
    """
    path = Path(path)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as error:
        raise _refusal(path, error) from error
    descriptor = _open_no_symlink(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        info = os.fstat(descriptor)
        if info.st_uid != os.geteuid():
            raise SandboxUnavailable(
                f"the sandbox state folder {path} belongs to uid {info.st_uid}, not to you (uid {os.geteuid()}): "
                f"another user may control it. Remove it, or set {STATE_ENV} to a folder of your own."
            )
        if stat.S_IMODE(info.st_mode) != 0o700:
            raise SandboxUnavailable(
                f"the sandbox state folder {path} has mode {stat.S_IMODE(info.st_mode):04o}; it must be private: "
                f"`chmod 700 {path}`."
            )
    finally:
        os.close(descriptor)
    return path


def _open_no_symlink(path, flags, mode=0o600):
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as error:
        raise _refusal(path, error) from error


def _refusal(path, error):
    what = "is a symlink" if os.path.islink(path) else f"cannot be used ({error.strerror})"
    return SandboxUnavailable(
        f"the sandbox state path {path} {what}: remove it, or set {STATE_ENV} to a folder of your own."
    )


class Slot:
    """An exclusive slot number (flock on a file), hence a uid no other concurrent run uses.

    Lock files are opened without following symlinks and without truncating, and must be
    regular files of ours: a planted link can neither redirect nor empty another file.
    """

    def __enter__(self):
        folder = private_dir(state_dir() / "slots")
        while True:
            for number in range(MAX_SLOTS):
                descriptor = _open_lock(folder / f"{number}.lock")
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    if is_root() and _uid_in_use(UID_BASE + number):
                        raise BlockingIOError  # a grader with another state folder runs as this uid
                except BlockingIOError:
                    os.close(descriptor)
                    continue
                self.descriptor, self.number = descriptor, number
                return self
            time.sleep(0.1)

    def __exit__(self, *exc):
        os.close(self.descriptor)

    @property
    def uid(self):
        return UID_BASE + self.number


def _uid_in_use(uid):
    """Whether a live process runs as ``uid`` (scans /proc; no fork)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    return True
            except OSError:
                pass
    return False


def _open_lock(path):
    descriptor = _open_no_symlink(path, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK)
    info = os.fstat(descriptor)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        os.close(descriptor)
        raise SandboxUnavailable(f"the slot lock {path} is not a regular file of yours: remove it.")
    return descriptor


def cleanup_stale():
    """Remove tmpfs mounts and cgroups that a crashed grader left behind (only those of dead graders)."""
    from .scratch import unmount

    if not is_root():
        return
    prefix = f"{state_dir()}/"
    for line in Path("/proc/mounts").read_text().splitlines():
        mount_point = line.split()[1]
        if mount_point.startswith(prefix) and not owner_alive(Path(mount_point).name):
            unmount(mount_point)
    remove_stale_cgroups()
