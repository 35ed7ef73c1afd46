"""One sandboxed run from start to end: :func:`run_isolated`."""
import contextlib
import itertools
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from . import seccomp
from .bwrap import bwrap_command, check_sandbox_support, sandbox_env
from .cgroups import CGROUP_PREFIX, Cgroup
from .limits import Limits, RunResult, child_setup, rlimits
from .scratch import Scratch
from .state import Slot
from .warm import warm_runner, warm_usable

_run_counter = itertools.count()


class _TailReader(threading.Thread):
    """Drain a pipe completely, keeping only its last ``cap`` bytes (an output flood costs no memory)."""

    def __init__(self, pipe, cap):
        super().__init__(daemon=True)
        self.pipe, self.cap, self.buffer, self.total = pipe, cap, bytearray(), 0
        self.start()

    def run(self):
        while chunk := self.pipe.read1(65536) if hasattr(self.pipe, "read1") else self.pipe.read(65536):
            self.total += len(chunk)
            self.buffer += chunk
            if len(self.buffer) > self.cap:
                del self.buffer[:len(self.buffer) - self.cap]

    def text(self):
        return self.buffer.decode("utf-8", errors="replace")

    @property
    def truncated(self):
        return self.total > self.cap


def run_isolated(argv, workdir, limits=Limits(), sandbox=True, readonly_binds=(), env=None):
    """Run ``argv`` in ``workdir``, isolated, and wait for it (at most ``limits.wall_seconds``).

    Args:
        argv: the command, e.g. ``[sys.executable, "-I", "/path/runner.py", "args.json"]``.
            Paths in it must be visible inside: the venv's python is; a runner script
            outside ``workdir`` must be listed in ``readonly_binds``.
        workdir: host folder; the child's cwd and the only place it can write. Its
            files after the run are what the child left (regular files only).
        limits: :class:`Limits`.
        sandbox: False runs a plain subprocess (development only: no isolation).
        readonly_binds: extra host paths (or ``(host, inside)`` pairs) to show read-only.
        env: extra environment variables for the child.

    Returns:
        :class:`RunResult`. Never raises because of what the child did.
    """
    workdir = Path(workdir).resolve()
    if not sandbox:
        return _run(argv, workdir, limits, cwd=workdir, env={**os.environ, **sandbox_env(workdir, env),
                                                              "PATH": os.environ.get("PATH", "")})
    check_sandbox_support()
    if warm_usable(argv, readonly_binds):
        with Slot() as slot:
            for attempt in range(2):  # a runner that died on its own (not the child's doing) is restarted once
                runner = warm_runner(slot, limits)
                result = runner.run(argv, workdir, limits, env)
                if not runner.died:
                    return result
            return result
    name = f"{CGROUP_PREFIX}{os.getpid()}-{next(_run_counter)}"
    seccomp.seccomp_program()  # fails early, before a slot is taken, if libseccomp is missing
    with Slot() as slot, contextlib.ExitStack() as cleanup:  # undone in reverse, also after an error
        cgroup = Cgroup(name, limits)
        cleanup.callback(cgroup.remove)
        scratch = Scratch(workdir, name, limits, slot.uid)
        cleanup.callback(scratch.copy_back_and_remove, limits.file_size_bytes)
        cleanup.callback(cgroup.kill_all)
        seccomp_fd = seccomp.open_seccomp_program()
        cleanup.callback(os.close, seccomp_fd)
        command = bwrap_command(argv, workdir, scratch.host_path, limits, sandbox_env(workdir, env),
                                seccomp_fd, slot.uid, readonly_binds)
        result = _run(command, workdir, limits, cwd="/", env={"PATH": "/usr/bin:/bin"},
                      pass_fds=(seccomp_fd,), cgroup=cgroup)
        if cgroup.memory_exceeded() and result.returncode != 0:
            result.memory_exceeded = True
        result.slot = slot.number
    return result


def _run(command, workdir, limits, cwd, env, pass_fds=(), cgroup=None):
    start = time.monotonic()
    setup = child_setup(rlimits(limits) if cgroup is not None else [],
                        cgroup.procs_files if cgroup is not None else [])
    process = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, pass_fds=pass_fds, start_new_session=True,
                               preexec_fn=setup)
    out, err = _TailReader(process.stdout, limits.output_bytes), _TailReader(process.stderr, limits.output_bytes)
    timed_out = False
    try:
        process.wait(timeout=limits.wall_seconds)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        _kill_tree(process, cgroup)
    # a daemon that inherited the pipes could keep them open: stop waiting after a moment
    out.join(2)
    err.join(2)
    returncode = process.returncode
    cpu_exceeded = returncode in (-signal.SIGXCPU, 128 + signal.SIGXCPU)
    stderr = err.text()
    # an allocation above RLIMIT_AS fails inside the child instead of triggering the cgroup OOM killer
    memory_error = returncode != 0 and "MemoryError" in stderr[-2000:]
    return RunResult(returncode=returncode, timed_out=timed_out or cpu_exceeded, memory_exceeded=memory_error,
                     stdout=out.text(), stderr=stderr, output_truncated=out.truncated or err.truncated,
                     seconds=time.monotonic() - start)


def _kill_tree(process, cgroup):
    """Kill the whole session, and with it bwrap's pid namespace, then reap."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if cgroup is not None:
        cgroup.kill_all()
    process.wait()
