"""What a sandboxed run may use (:class:`Limits`), what came back (:class:`RunResult`), and the errors."""

import os
import resource
from dataclasses import dataclass, replace

GiB = 2**30
MiB = 2**20


@dataclass
class Limits:
    """Resource limits for one sandboxed run."""

    wall_seconds: float = 120.0
    cpu_seconds: int = 120
    memory_bytes: int = 4 * GiB  # cgroup memory limit (RSS + tmpfs pages); RLIMIT_AS is separate
    max_processes: int = 64
    file_size_bytes: int = 64 * MiB  # per file (RLIMIT_FSIZE)
    scratch_bytes: int = 256 * MiB  # size of the writable workdir tmpfs
    tmp_bytes: int = 128 * MiB  # size of the private /tmp and /dev/shm
    open_files: int = 256
    address_space_bytes: int = 16 * GiB  # CUDA torch builds reserve ~3.4 GiB of address space at import
    output_bytes: int = 64 * 1024  # stdout and stderr keep only their last this many bytes
    cpus: float = 1.0  # cgroup cpu quota, in cores

    #: The limits that the warm runner's server applies to each run it forks; the others shape the
    #: long-lived sandbox itself (cgroup, tmpfs sizes, the server's own rlimits).
    PER_RUN = ("wall_seconds", "cpu_seconds", "output_bytes")

    def sandbox_shape(self):
        """These limits without the per-run ones: runs whose limits have the same shape can share a warm runner."""
        return replace(self, **{name: getattr(Limits, name) for name in self.PER_RUN})


@dataclass(kw_only=True)
class RunResult:
    """What came back from one run. Only plain text; files are left in ``workdir``."""

    returncode: int  # the child's exit code, or minus the signal that killed it
    timed_out: bool = False  # the wall clock or the CPU limit stopped it
    memory_exceeded: bool = False  # it hit the memory limit (OOM kill or a refused allocation)
    stdout: str = ""  # the last ``Limits.output_bytes`` of each stream
    stderr: str = ""
    output_truncated: bool = False
    seconds: float = 0.0
    slot: int | None = None  # the sandbox slot (and warm runner) that ran it; None without the sandbox

    @property
    def status(self):
        """``timeout``, ``memory_limit``, ``crashed`` (non-zero exit or a signal) or ``ok``."""
        if self.timed_out:
            return "timeout"
        if self.memory_exceeded:
            return "memory_limit"
        return "ok" if self.returncode == 0 else "crashed"


class SandboxUnavailable(RuntimeError):
    """bubblewrap (or what it needs) is missing; the message says how to fix it."""


class SandboxFault(RuntimeError):
    """The grader's side failed (bubblewrap did not start, a limit could not be set, the warm runner
    died): never the student's fault, so never a student status and never a cached verdict."""


#: Without cgroups, RLIMIT_DATA is the memory limit. It counts the writable data segments of every
#: shared library mapped, touched or not: a CUDA build of torch maps ~770 MiB of them at import.
LIBRARY_DATA_ALLOWANCE = 1 * GiB


def rlimits(limits, memory=False):
    """``(resource, soft, hard)`` triples for ``setrlimit``.

    The CPU limit's hard value is one second above its soft one: at the soft limit the
    kernel sends SIGXCPU, which reports the run as timed out. With equal values it would
    send SIGKILL, which looks like any other kill. ``memory=True`` adds RLIMIT_DATA, the
    memory limit where no cgroup holds one: unlike RLIMIT_AS it ignores PROT_NONE address
    space reservations (CUDA builds of torch reserve GiBs of them).
    """
    data = limits.memory_bytes + LIBRARY_DATA_ALLOWANCE
    return [(resource.RLIMIT_DATA, data, data)] * memory + [
        (resource.RLIMIT_CPU, limits.cpu_seconds, limits.cpu_seconds + 1),
        (resource.RLIMIT_FSIZE, limits.file_size_bytes, limits.file_size_bytes),
        (resource.RLIMIT_NOFILE, limits.open_files, limits.open_files),
        (resource.RLIMIT_CORE, 0, 0),
        (resource.RLIMIT_AS, limits.address_space_bytes, limits.address_space_bytes),
        (resource.RLIMIT_NPROC, limits.max_processes, limits.max_processes),
    ]


#: What a process that ran out of memory under RLIMIT_DATA/AS prints (Python, then torch's allocator).
OUT_OF_MEMORY_MESSAGES = ("MemoryError", "can't allocate memory")


def out_of_memory(returncode, stderr):
    """Whether a failed run's stderr says an allocation was refused."""
    return returncode != 0 and any(message in stderr[-2000:] for message in OUT_OF_MEMORY_MESSAGES)


def slot_cpus(slot_number, cpus):
    """The CPUs a slot is pinned to where no cgroup cpu quota exists: ``ceil(cpus)`` of them, by slot."""
    available = sorted(os.sched_getaffinity(0))
    count = min(len(available), max(1, -int(-cpus // 1)))
    return {available[(slot_number * count + i) % len(available)] for i in range(count)}


def child_setup(limit_triples, cgroup_procs, cpu_set=None):
    """A ``preexec_fn`` for the forked child: join the cgroups, pin the CPUs, set the rlimits."""

    def setup():
        pid = str(os.getpid()).encode()
        for procs in cgroup_procs:
            fd = os.open(procs, os.O_WRONLY)
            os.write(fd, pid)
            os.close(fd)
        if cpu_set:
            os.sched_setaffinity(0, cpu_set)
        for kind, soft, hard in limit_triples:
            resource.setrlimit(kind, (soft, hard))

    return setup
