"""One sandboxed run from start to end: :func:`run_isolated`."""

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .. import WARM_ENV
from . import seccomp
from .bwrap import bwrap_command, check_sandbox_support, sandbox_env
from .cgroups import CGROUP_PREFIX, Cgroup, cgroup_usable
from .limits import Limits, RunResult, SandboxFault, child_setup, out_of_memory, rlimits, slot_cpus
from .scratch import Scratch, receive_files
from .state import Slot
from .warm import warm_runner, warm_usable

LAUNCHER = Path(__file__).resolve().parent / "launcher.py"
COPY_BACK_SECONDS = 30  # the launcher's time, after the wall clock, to send the files back

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
                del self.buffer[: len(self.buffer) - self.cap]

    def text(self):
        return self.buffer.decode("utf-8", errors="replace")

    @property
    def truncated(self):
        return self.total > self.cap


def run_isolated(argv, workdir, limits=Limits(), sandbox=True, readonly_binds=(), env=None):  # noqa: B008 - never mutated (callers use dataclasses.replace)
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

    Raises:
        SandboxUnavailable: the sandbox cannot run here (the message says how to fix it).
        SandboxFault: the grader's side failed for this run (not the student's doing).
    """
    workdir = Path(workdir).resolve()
    if not sandbox:
        return _run(
            argv,
            limits,
            cwd=workdir,
            env={**os.environ, **sandbox_env(workdir, env), "PATH": os.environ.get("PATH", "")},
        )
    check_sandbox_support()
    if warm_usable(argv, readonly_binds):
        with Slot() as slot:
            for _attempt in range(2):  # a runner that died on its own (not the child's doing) is restarted once
                runner = warm_runner(slot, limits)
                result = runner.run(argv, workdir, limits, env)
                if not runner.died:
                    return result
            raise SandboxFault(f"the warm runner of slot {slot.number} died twice; set {WARM_ENV}=0 to run cold")
    return _run_cold(argv, workdir, limits, readonly_binds, env)


def _run_cold(argv, workdir, limits, readonly_binds, env):
    """A fresh sandbox for one run. Without cgroups, rlimits (RLIMIT_DATA as the memory limit), CPU
    affinity and the fallback seccomp filter hold the limits; without root, ``launcher.py`` runs inside."""
    name = f"{CGROUP_PREFIX}{os.getpid()}-{next(_run_counter)}"
    fallback = not cgroup_usable()
    seccomp.seccomp_program(fallback)  # fails early, before a slot is taken, if libseccomp is missing
    with Slot() as slot, contextlib.ExitStack() as cleanup:  # undone in reverse, also after an error
        try:
            cgroup = Cgroup(name, limits)
            cleanup.callback(cgroup.remove)
            scratch = Scratch(workdir, name, limits, slot.uid)
            cleanup.callback(scratch.copy_back_and_remove, limits.file_size_bytes)
            cleanup.callback(cgroup.kill_all)
            seccomp_fd = seccomp.open_seccomp_program(fallback)
            cleanup.callback(os.close, seccomp_fd)
            status = _Pipe(cleanup)
            files = _Pipe(cleanup) if scratch.host_path is None else None
        except (OSError, subprocess.SubprocessError) as error:
            raise SandboxFault(f"the sandbox could not be set up: {error}") from error
        child_env, limit_triples = sandbox_env(workdir, env), rlimits(limits, memory=fallback)
        cpu_set = slot_cpus(slot.number, limits.cpus) if fallback else None
        if files is None:
            command = bwrap_command(
                argv,
                workdir,
                scratch.host_path,
                limits,
                child_env,
                seccomp_fd,
                slot.uid,
                readonly_binds,
                status_fd=status.write,
            )
            setup, wall_seconds = child_setup(limit_triples, cgroup.procs_files, cpu_set), limits.wall_seconds
        else:  # the launcher sets the rlimits inside the user namespace, where RLIMIT_NPROC counts only this run
            request = {
                "argv": [str(a) for a in argv],
                "cwd": str(workdir),
                "env": child_env,
                "rlimits": limit_triples,
                "wall_seconds": limits.wall_seconds,
                "status_fd": files.write,
                "max_file_bytes": limits.file_size_bytes,
            }
            binds = [*readonly_binds, (LAUNCHER, "/sandbox/launcher.py"), (workdir, "/sandbox/in")]
            command = bwrap_command(
                [sys.executable, "-I", "/sandbox/launcher.py", json.dumps(request)],
                workdir,
                None,
                limits,
                child_env,
                seccomp_fd,
                slot.uid,
                binds,
                status_fd=status.write,
            )
            setup, wall_seconds = child_setup([], [], cpu_set), limits.wall_seconds + COPY_BACK_SECONDS
        receiver = files and _FilesReceiver(files, workdir, limits.file_size_bytes)
        pipes = [pipe for pipe in (status, files) if pipe]
        try:
            result = _run(
                command,
                limits,
                cwd="/",
                env={"PATH": "/usr/bin:/bin"},
                pass_fds=[seccomp_fd, *(pipe.write for pipe in pipes)],
                setup=setup,
                wall_seconds=wall_seconds,
                cgroup=cgroup,
                after_start=[pipe.close_write for pipe in pipes],
            )
        except (OSError, subprocess.SubprocessError) as error:  # e.g. a preexec setrlimit or cgroup join failed
            raise SandboxFault(f"the sandbox could not start or a limit could not be set: {error}") from error
        if receiver is not None:
            receiver.join(COPY_BACK_SECONDS)
            if receiver.status is not None:
                result.returncode, result.timed_out = receiver.status["returncode"], receiver.status["timed_out"]
                result.timed_out |= result.returncode in (-signal.SIGXCPU, 128 + signal.SIGXCPU)
            result.memory_exceeded = out_of_memory(result.returncode, result.stderr)
        if cgroup.memory_exceeded() and result.returncode != 0:
            result.memory_exceeded = True
        if not result.timed_out and not result.memory_exceeded and b'"exit-code"' not in status.read_all():
            raise SandboxFault(f"bubblewrap failed to start the run: {result.stderr[-500:].strip()}")
        result.slot = slot.number
    return result


class _Pipe:
    """A pipe whose write end goes to the sandbox; both ends are closed by ``cleanup``."""

    def __init__(self, cleanup):
        self.read, self.write = os.pipe()
        self.write_open = True
        cleanup.callback(os.close, self.read)
        cleanup.callback(self.close_write)

    def close_write(self):
        if self.write_open:
            self.write_open = False
            os.close(self.write)

    def read_all(self, cap=65536):
        """What was written, once every writer has closed (at most ``cap`` bytes)."""
        os.set_blocking(self.read, False)
        try:
            return os.read(self.read, cap)
        except BlockingIOError:
            return b""


class _FilesReceiver(threading.Thread):
    """Receive the launcher's status line and files (a tar stream) while the run goes on."""

    def __init__(self, pipe, workdir, max_file_bytes):
        super().__init__(daemon=True)
        self.stream = os.fdopen(os.dup(pipe.read), "rb")
        self.workdir, self.max_file_bytes, self.status = workdir, max_file_bytes, None
        self.start()

    def run(self):
        with self.stream:
            try:
                self.status = json.loads(self.stream.readline(4096))
                receive_files(self.stream, self.workdir, self.max_file_bytes)
            except (ValueError, OSError, EOFError):
                pass  # the launcher was killed (by the student's code): no files come back


def _run(command, limits, cwd, env, pass_fds=(), setup=None, wall_seconds=None, cgroup=None, after_start=()):
    start = time.monotonic()
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=pass_fds,
        start_new_session=True,
        preexec_fn=setup,
    )
    for close in after_start:  # only the sandbox may hold the write ends: EOF when it ends
        close()
    out, err = _TailReader(process.stdout, limits.output_bytes), _TailReader(process.stderr, limits.output_bytes)
    timed_out = False
    try:
        process.wait(timeout=wall_seconds or limits.wall_seconds)
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
    # an allocation above an rlimit fails inside the child instead of triggering the cgroup OOM killer
    return RunResult(
        returncode=returncode,
        timed_out=timed_out or cpu_exceeded,
        memory_exceeded=out_of_memory(returncode, stderr),
        stdout=out.text(),
        stderr=stderr,
        output_truncated=out.truncated or err.truncated,
        seconds=time.monotonic() - start,
    )


def _kill_tree(process, cgroup):
    """Kill the whole session, and with it bwrap's pid namespace, then reap."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if cgroup is not None:
        cgroup.kill_all()
    process.wait()
