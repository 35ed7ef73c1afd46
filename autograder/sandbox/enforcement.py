"""Which limit holds here, and by what: :func:`enforcement` reports it, :func:`require_limits` insists on it.

With cgroup v1 (root) the kernel's memory, pids and cpu controllers hold a run's limits.
Without them (not root, cgroup v2, or ``HANDIN3_CGROUPS=0``) the sandbox falls back to
mechanisms that need no privilege: RLIMIT_DATA per process for memory, RLIMIT_NPROC set
inside the run's own user namespace (or per slot uid as root) for processes, tmpfs size
caps inside the sandbox for the scratch, /tmp and /dev/shm, CPU affinity for the cpu share,
and a stricter seccomp filter against memory RLIMIT_DATA does not count.

``systemd-run --user --scope`` (a delegated cgroup v2) is not used: it needs a systemd user
session, which graders under CI, containers or sudo often lack; the fallback holds everywhere.
"""

import subprocess
from functools import cache

from .bwrap import bubblewrap_path, check_sandbox_support
from .cgroups import CGROUP_ROOT, CGROUPS_ENV, cgroup_usable, cgroups_forced_off, is_root
from .limits import LIBRARY_DATA_ALLOWANCE, SandboxUnavailable

#: The limits every sandboxed run must have; :func:`enforcement` reports each.
LIMITS = (
    "isolation",
    "memory",
    "processes",
    "cpu_time",
    "cpu_share",
    "wall_clock",
    "scratch",
    "tmp",
    "file_size",
    "open_files",
    "ipc",
)
CGROUP_LIMITS = ("memory", "processes", "cpu_share")  # held by cgroups where usable, else by the fallback


def enforcement():
    """``{limit: {"mechanism": str or None, "reason": str}}`` for every name in :data:`LIMITS`.

    ``mechanism`` None means the limit does not hold on this machine, and ``reason`` says why;
    for a limit the fallback holds, ``reason`` says why cgroups are not used.
    """
    try:
        check_sandbox_support()
        problem = _namespaces_problem()
    except SandboxUnavailable as error:
        problem = str(error)
    if problem:
        return {name: {"mechanism": None, "reason": problem} for name in LIMITS}
    cgroups = cgroup_usable()
    why_not = None if cgroups else _why_no_cgroups()
    allowance = LIBRARY_DATA_ALLOWANCE // 2**20
    report = {
        "isolation": "bubblewrap: new pid, ipc, net, uts, mount namespaces; seccomp; no capabilities",
        "memory": "cgroup v1 memory.limit_in_bytes (all processes of the run together)"
        if cgroups
        else f"RLIMIT_DATA of the limit + {allowance} MiB for library data segments, per process "
        "(a run's processes together can hold max_processes times that); memfd and shared "
        "anonymous memory refused by seccomp",
        "processes": "cgroup v1 pids.max"
        if cgroups
        else "RLIMIT_NPROC per slot uid"
        if is_root()
        else "RLIMIT_NPROC inside the run's user namespace (counts the run's processes only)",
        "cpu_time": "RLIMIT_CPU per process",
        "cpu_share": "cgroup v1 cpu.cfs_quota_us"
        if cgroups
        else "CPU affinity (ceil(cpus) cores per slot; sched_setaffinity refused by seccomp)",
        "wall_clock": "the grader kills the run's whole pid namespace",
        "scratch": "size-capped tmpfs mounted by the grader (root)"
        if is_root()
        else "size-capped tmpfs inside the sandbox (bwrap --size), copied back by the launcher",
        "tmp": "size-capped private tmpfs /tmp and /dev/shm (bwrap --size)",
        "file_size": "RLIMIT_FSIZE",
        "open_files": "RLIMIT_NOFILE",
        "ipc": "private IPC namespace; SysV IPC and POSIX message queues refused by seccomp",
    }
    fallback = "" if cgroups else f"no usable cgroups ({why_not}): the fallback holds it"
    return {name: {"mechanism": report[name], "reason": fallback if name in CGROUP_LIMITS else ""} for name in LIMITS}


def require_limits(allow_unenforced=False):
    """Return :func:`enforcement`; raise :class:`SandboxUnavailable` naming each limit that does not hold.

    ``allow_unenforced=True`` (the TA's explicit choice) returns the report instead of raising.
    """
    report = enforcement()
    missing = {name: entry["reason"] for name, entry in report.items() if entry["mechanism"] is None}
    if missing and not allow_unenforced:
        reasons = sorted(set(missing.values()))
        raise SandboxUnavailable(
            f"these limits cannot be enforced here: {', '.join(missing)} ({'; '.join(reasons)}). "
            "Fix that, or pass --allow-unenforced-limits to grade anyway."
        )
    return report


def _why_no_cgroups():
    if cgroups_forced_off():
        return f"{CGROUPS_ENV}=0"
    if not is_root():
        return "the grader is not root"
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return "cgroup v2 (only cgroup v1 is used, as root)"
    return "the cgroup v1 memory, pids or cpu controller is not mounted"


@cache
def _namespaces_problem():
    """Without root, bubblewrap needs unprivileged user namespaces: try one. None when they work."""
    if is_root():
        return None
    probe = subprocess.run(
        [bubblewrap_path(), "--unshare-user", "--unshare-pid", "--ro-bind", "/", "/", "true"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return (
            "unprivileged user namespaces are not available, so bubblewrap cannot isolate a non-root "
            f"grader ({probe.stderr.strip()[:200]}); an admin enables them with "
            "`sysctl kernel.unprivileged_userns_clone=1` (Debian) or runs the grader as root"
        )
    return None
