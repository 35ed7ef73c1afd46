"""What a sandboxed run may use (:class:`Limits`), what came back (:class:`RunResult`), and the errors."""
import os
import resource
from dataclasses import dataclass

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


def rlimits(limits):
    """``(resource, soft, hard)`` triples for ``setrlimit``.

    The CPU limit's hard value is one second above its soft one: at the soft limit the
    kernel sends SIGXCPU, which reports the run as timed out. With equal values it would
    send SIGKILL, which looks like any other kill.
    """
    return [
        (resource.RLIMIT_CPU, limits.cpu_seconds, limits.cpu_seconds + 1),
        (resource.RLIMIT_FSIZE, limits.file_size_bytes, limits.file_size_bytes),
        (resource.RLIMIT_NOFILE, limits.open_files, limits.open_files),
        (resource.RLIMIT_CORE, 0, 0),
        (resource.RLIMIT_AS, limits.address_space_bytes, limits.address_space_bytes),
        (resource.RLIMIT_NPROC, limits.max_processes, limits.max_processes),
    ]


def child_setup(limit_triples, cgroup_procs):
    """A ``preexec_fn`` for the forked child: join the cgroups, set the rlimits (C calls only)."""
    def setup():
        pid = str(os.getpid()).encode()
        for procs in cgroup_procs:
            fd = os.open(procs, os.O_WRONLY)
            os.write(fd, pid)
            os.close(fd)
        for kind, soft, hard in limit_triples:
            resource.setrlimit(kind, (soft, hard))
    return setup
