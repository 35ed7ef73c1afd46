"""The sandbox's state on the host: the folder of slot locks and scratch mounts, and the uid slots."""
import fcntl
import tempfile
import time
from pathlib import Path

from .cgroups import is_root, owner_alive, remove_stale_cgroups

#: Where the sandbox keeps its per-run state on the host (slot locks, tmpfs mounts).
STATE_DIR = Path(tempfile.gettempdir()) / "handin3-sandbox"
UID_BASE = 61000  # slot n runs as uid/gid UID_BASE + n
MAX_SLOTS = 64


def state_dir():
    return STATE_DIR


class Slot:
    """An exclusive slot number (flock on a file), hence a uid no other concurrent run uses."""

    def __enter__(self):
        folder = state_dir() / "slots"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        while True:
            for number in range(MAX_SLOTS):
                handle = open(folder / f"{number}.lock", "w")
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    handle.close()
                    continue
                self.handle, self.number = handle, number
                return self
            time.sleep(0.1)

    def __exit__(self, *exc):
        self.handle.close()

    @property
    def uid(self):
        return UID_BASE + self.number


def cleanup_stale():
    """Remove tmpfs mounts and cgroups that a crashed grader left behind (only those of dead graders)."""
    from .scratch import unmount

    if not is_root():
        return
    for line in Path("/proc/mounts").read_text().splitlines():
        mount_point = line.split()[1]
        if mount_point.startswith(str(state_dir()) + "/") and not owner_alive(Path(mount_point).name):
            unmount(mount_point)
    remove_stale_cgroups()
