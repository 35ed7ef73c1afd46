"""Memory, pids and cpu limits through cgroup v1 (root only; ``HANDIN3_CGROUPS=0`` turns them off).

Where they are not usable (not root, cgroup v2, or turned off) the sandbox falls back to
rlimits, size-capped tmpfs and CPU affinity: see :mod:`autograder.sandbox.enforcement`.
"""

import os
import signal
import time
from pathlib import Path

from .. import CGROUPS_ENV

CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_CONTROLLERS = ("memory", "pids", "cpu")
CGROUP_PREFIX = "handin3-"


def is_root():
    return os.geteuid() == 0


def cgroups_forced_off():
    return os.environ.get(CGROUPS_ENV, "1") == "0"


def cgroup_usable():
    """Whether runs get cgroup v1 memory, pids and cpu limits here."""
    return (
        is_root()
        and not cgroups_forced_off()
        and all((CGROUP_ROOT / c / "cgroup.procs").exists() for c in CGROUP_CONTROLLERS)
    )


class Cgroup:
    """Memory, pids and cpu cgroups (v1) for one run; no-op when not usable."""

    def __init__(self, name, limits):
        self.dirs = []
        if not cgroup_usable():
            return
        for controller in CGROUP_CONTROLLERS:
            folder = CGROUP_ROOT / controller / name
            folder.mkdir(exist_ok=True)
            self.dirs.append(folder)
        memory, pids, cpu = self.dirs
        write(memory / "memory.limit_in_bytes", limits.memory_bytes)
        if (memory / "memory.memsw.limit_in_bytes").exists():
            write(memory / "memory.memsw.limit_in_bytes", limits.memory_bytes)
        write(memory / "memory.swappiness", 0, ignore_errors=True)
        write(pids / "pids.max", limits.max_processes)
        write(cpu / "cpu.cfs_period_us", 100_000)
        write(cpu / "cpu.cfs_quota_us", int(100_000 * limits.cpus))

    @property
    def procs_files(self):
        """The ``cgroup.procs`` paths a new process writes its pid into to join."""
        return [str(folder / "cgroup.procs") for folder in self.dirs]

    def oom_kills(self):
        """How many processes the cgroup's OOM killer has killed so far."""
        if not self.dirs:
            return 0
        oom = (self.dirs[0] / "memory.oom_control").read_text()
        return next((int(line.split()[1]) for line in oom.splitlines() if line.startswith("oom_kill ")), 0)

    def memory_exceeded(self):
        """Whether the memory limit was hit: an OOM kill, or an allocation the limit refused."""
        if not self.dirs:
            return False
        return self.oom_kills() > 0 or int((self.dirs[0] / "memory.failcnt").read_text()) > 0

    def kill_all(self):
        for folder in self.dirs:
            kill_cgroup(folder)

    def remove(self):
        for folder in self.dirs:
            remove_cgroup(folder)


def write(path, value, ignore_errors=False):
    try:
        Path(path).write_text(str(value))
    except OSError:
        if not ignore_errors:
            raise


def kill_cgroup(folder):
    try:
        pids = (folder / "cgroup.procs").read_text().split()
    except OSError:
        return
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


def remove_cgroup(folder):
    for _ in range(50):  # the kernel needs a moment after the last process exits
        kill_cgroup(folder)
        try:
            folder.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.05)


def owner_alive(name):
    """Our cgroups and mounts are named ``handin3-<grader pid>-<n>``: is that grader still running?"""
    try:
        pid = int(name.split("-")[1])
    except (IndexError, ValueError):
        return True
    return Path(f"/proc/{pid}").exists()


def remove_stale_cgroups():
    """Remove the cgroups that a crashed grader left behind (only those of dead graders)."""
    for controller in CGROUP_CONTROLLERS:
        for folder in (CGROUP_ROOT / controller).glob(CGROUP_PREFIX + "*"):
            if not owner_alive(folder.name):
                remove_cgroup(folder)
