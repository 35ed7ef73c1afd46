"""Run untrusted student code in a child process, inside bubblewrap, with limits.

One call, :func:`run_isolated`, runs ``argv`` with ``workdir`` as its current
directory and as the only writable folder it can see, and returns a
:class:`RunResult` (exit code, captured output, and a ``status``: ``ok``,
``timeout``, ``memory_limit`` or ``crashed``).

What the child sees and may do (``sandbox=True``)::

    /usr, /etc pieces, the Python install, the venv   read-only binds
    readonly_binds                                    read-only binds (e.g. a runner script)
    workdir                                           read-write, a size-limited tmpfs copy
    /tmp, /dev/shm                                    private size-limited tmpfs
    /proc, /dev                                       fresh, inside new pid/ipc/net/uts/cgroup namespaces
    everything else (solutions/, other students,      not there
    the gradebook, the network, $HOME)

The child runs with no capabilities, ``no_new_privs``, a seccomp filter that refuses
namespace, mount, ptrace, bpf, keyring, perf, userfaultfd and io_uring system calls
and objects that would outlive the run (SysV IPC, POSIX message queues), and rlimits
(CPU, file size, open files, no core files, address space). A wall-clock timeout kills
the whole process tree: killing bubblewrap collapses the pid namespace, so ``setsid``
daemons die with it.

As root, the child runs as an unprivileged uid (one per concurrent slot), in cgroup v1
memory, pids and cpu limits, and its workdir is a tmpfs of ``limits.scratch_bytes``
that the grader mounts, fills and copies back (regular files only, never through a
symlink). Without root, or without usable cgroups (cgroup v2, ``HANDIN3_CGROUPS=0``),
the same limits come from RLIMIT_DATA, RLIMIT_NPROC, CPU affinity and a stricter
filter; without root the tmpfs is mounted inside the sandbox and ``launcher.py`` moves
the files. :func:`enforcement` says which mechanism holds each limit here; a failure
on the grader's side raises :class:`SandboxFault`, never a student status.

``sandbox=False`` runs the same command as a plain subprocess with the same
timeout and output caps: for development only.

The modules, one idea each::

    limits      Limits, RunResult, the errors (SandboxUnavailable, SandboxFault), the rlimits
    enforcement which limit holds here and by what; require_limits
    bwrap       the bubblewrap command line (namespaces, binds, private /tmp, uid drop)
    seccomp     the system-call filter
    cgroups     cgroup v1 memory, pids and cpu limits
    scratch     the size-limited tmpfs copy of the workdir
    state       the host folder of slot locks and mounts; the uid slots
    warm        the warm runner (one long-lived sandbox per slot) and its server, zygote.py
    run         run_isolated: one run from start to end (launcher.py: its first process without root)
"""

from .bwrap import bubblewrap_path, bwrap_command, check_sandbox_support, python_binds, sandbox_env
from .cgroups import CGROUP_CONTROLLERS, CGROUP_PREFIX, CGROUP_ROOT, CGROUPS_ENV
from .enforcement import enforcement, require_limits
from .limits import GiB, Limits, MiB, RunResult, SandboxFault, SandboxUnavailable
from .run import run_isolated
from .seccomp import BLOCKED_SYSCALLS, open_seccomp_program, seccomp_program
from .state import STATE_ENV, UID_BASE, cleanup_stale, state_dir
from .warm import close_warm_runners

__all__ = [
    "BLOCKED_SYSCALLS",
    "CGROUPS_ENV",
    "CGROUP_CONTROLLERS",
    "CGROUP_PREFIX",
    "CGROUP_ROOT",
    "GiB",
    "Limits",
    "MiB",
    "RunResult",
    "STATE_ENV",
    "SandboxFault",
    "SandboxUnavailable",
    "UID_BASE",
    "bubblewrap_path",
    "bwrap_command",
    "check_sandbox_support",
    "cleanup_stale",
    "close_warm_runners",
    "enforcement",
    "open_seccomp_program",
    "python_binds",
    "require_limits",
    "run_isolated",
    "sandbox_env",
    "seccomp_program",
    "state_dir",
]
