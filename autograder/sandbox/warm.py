"""The warm runner: one long-lived sandbox per slot whose trusted server (``zygote.py``) forks each run."""

import atexit
import json
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from .. import WARM_ENV
from . import seccomp
from .bwrap import bwrap_command, sandbox_env
from .cgroups import CGROUP_PREFIX, Cgroup, cgroup_usable, is_root, write
from .limits import GiB, RunResult, SandboxFault, child_setup, out_of_memory, rlimits, slot_cpus
from .scratch import Scratch, copy_tree, empty
from .state import state_dir

WARM_WORKDIR = "/sandbox/work"
WARM_TMP = ".tmp"  # the child's HOME and TMPDIR, inside its scratch (the sandbox's /tmp is not writable)
ZYGOTE = Path(__file__).resolve().parent / "zygote.py"
#: Modules the warm runner imports once; every child starts with them loaded.
WARM_PRELOAD = ("numpy", "torch", "torch.nn.functional")
WARM_MEMORY_OVERHEAD = 1 * GiB  # the server's own pages (torch) count in the slot's cgroup too
_warm_runners = {}
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="handin3-sandbox-spawner")


def warm_usable(argv, readonly_binds=()):
    """Warm runs need root (the uid drop), ``HANDIN3_WARM`` not ``0``, and a ``python -I script`` command."""
    return (
        is_root()
        and os.environ.get(WARM_ENV, "1") != "0"
        and not readonly_binds
        and len(argv) >= 3
        and argv[0] == sys.executable
        and argv[1] == "-I"
        and not argv[2].startswith("-")
        and not Path(argv[2]).is_absolute()
    )


def warm_runner(slot, limits):
    """The slot's running warm runner for ``limits``, started (or restarted) if needed."""
    runner = _warm_runners.get(slot.number)
    if runner is None or not runner.alive(limits):
        if runner is not None:
            runner.close()
        runner = _warm_runners[slot.number] = WarmRunner(slot, limits)
    return runner


class WarmRunner:
    """A long-lived sandbox for one slot whose trusted server (``zygote.py``) forks each run.

    Same namespaces, binds, seccomp filter and cgroups as a cold run; the differences:
    the scratch is the slot's tmpfs mounted at ``/sandbox/work`` (wiped and refilled by
    this process for every run), and the uid drop, rlimits and wall clock are applied
    by the server to each forked child. Between runs the server kills every process of
    the slot's uid and this process wipes the scratch, so nothing of one student is left
    for the next. Without cgroups the whole sandbox is pinned to the slot's CPUs and each
    child gets RLIMIT_DATA as its memory limit.
    """

    def __init__(self, slot, limits):
        self.slot, self.uid, self.limits, self.died = slot.number, slot.uid, limits, False
        self.fallback = not cgroup_usable()
        self.process = self.scratch = None
        name = f"{CGROUP_PREFIX}{os.getpid()}-warm{slot.number}"
        server_limits = replace(
            limits,
            memory_bytes=limits.memory_bytes + WARM_MEMORY_OVERHEAD,
            max_processes=limits.max_processes + 16,
            cpu_seconds=10**7,
        )
        self.cgroup = Cgroup(name, server_limits)
        # a runner that fails to start must leave nothing behind: the slot's next runner reuses the names
        try:
            self.scratch = Scratch(Path(tempfile.mkdtemp(prefix="warm-", dir=state_dir())), name, limits, self.uid)
            self.process = self._start_server(server_limits)
            if self._read_line(120) != "ready":
                raise SandboxFault(f"the warm runner did not start; set {WARM_ENV}=0 to run cold")
        except (OSError, subprocess.SubprocessError) as error:
            self.close()
            raise SandboxFault(f"the warm runner could not be set up: {error}") from error
        except BaseException:
            self.close()
            raise
        for folder in self.cgroup.dirs[:1]:  # the OOM killer must pick the children, never the server
            for pid in (folder / "cgroup.procs").read_text().split():
                write(f"/proc/{pid}/oom_score_adj", -1000, ignore_errors=True)

    def _start_server(self, server_limits):
        """Start bubblewrap running the zygote server; returns the Popen."""
        seccomp_fd = seccomp.open_seccomp_program(self.fallback)
        try:
            command = bwrap_command(
                [sys.executable, "-I", "/sandbox/zygote.py", ",".join(WARM_PRELOAD)],
                WARM_WORKDIR,
                self.scratch.host_path,
                self.limits,
                sandbox_env(WARM_WORKDIR),
                seccomp_fd,
                self.uid,
                [(ZYGOTE, "/sandbox/zygote.py")],
                warm=True,
            )
            server_rlimits = [limit for limit in rlimits(server_limits) if limit[0] != resource.RLIMIT_CPU]
            # --die-with-parent follows the thread that forks bwrap: fork from a thread that lives
            # as long as this process, not from a worker thread that a pool may end
            return _SPAWNER.submit(
                subprocess.Popen,
                command,
                cwd="/",
                env={"PATH": "/usr/bin:/bin"},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                pass_fds=(seccomp_fd,),
                start_new_session=True,
                preexec_fn=child_setup(
                    server_rlimits,
                    self.cgroup.procs_files,
                    slot_cpus(self.slot, self.limits.cpus) if self.fallback else None,
                ),
            ).result()
        finally:
            os.close(seccomp_fd)

    def alive(self, limits):
        """Whether this runner is up and can run under ``limits`` (the wall clock, CPU and output
        limits go with each run; a different memory, process or disk limit needs a new sandbox)."""
        return self.process.poll() is None and limits.sandbox_shape() == self.limits.sandbox_shape()

    def _read_line(self, timeout):
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        return self.process.stdout.readline().decode().strip() if ready else None

    def run(self, argv, workdir, limits, env=None):
        """Run ``python -I script args`` (``argv``) on a copy of ``workdir``; files come back into it.

        Returns None when the server died by itself (``died`` is set): the caller runs again.
        """
        start = time.monotonic()
        scratch = self.scratch.host_path
        empty(scratch)
        copy_tree(workdir, scratch, limits.scratch_bytes)
        (scratch / WARM_TMP).mkdir(exist_ok=True)
        for path in [scratch, *scratch.rglob("*")]:
            os.lchown(path, self.uid, self.uid)
        private = f"{WARM_WORKDIR}/{WARM_TMP}"
        child_env = sandbox_env(
            WARM_WORKDIR,
            {"HOME": private, "TMPDIR": private, "MPLCONFIGDIR": private, "IPYTHONDIR": private, **(env or {})},
        )
        request = {
            "argv": [str(a) for a in argv[2:]],
            "cwd": WARM_WORKDIR,
            "env": child_env,
            "uid": self.uid,
            "rlimits": rlimits(limits, memory=self.fallback),
            "wall_seconds": limits.wall_seconds,
            "output_bytes": limits.output_bytes,
        }
        kills_before = self.cgroup.oom_kills()
        try:
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.flush()
            line = self._read_line(limits.wall_seconds + 30)
            reply = json.loads(line) if line else None
        except (OSError, ValueError):
            reply = None
        if reply is None:  # the server itself hung or died: start afresh next time
            self.died = self.process.poll() is not None  # died by itself: the caller retries the run
            self.close()
            if not self.died:
                raise SandboxFault(f"the warm runner of slot {self.slot} stopped answering")
            return None  # the caller starts a new runner and runs again
        result = RunResult(
            returncode=reply["returncode"],
            timed_out=reply["timed_out"],
            stdout=reply["stdout"],
            stderr=reply["stderr"],
            output_truncated=reply["truncated"],
            seconds=time.monotonic() - start,
            slot=self.slot,
        )
        if result.returncode in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
            result.timed_out = True
        oom = self.cgroup.oom_kills() > kills_before
        result.memory_exceeded = out_of_memory(result.returncode, result.stderr) or (result.returncode != 0 and oom)
        shutil.rmtree(scratch / WARM_TMP, ignore_errors=True)
        copy_tree(scratch, workdir, limits.file_size_bytes)
        empty(scratch)
        return result

    def close(self):
        """Stop the server and remove what the runner set up (also after a failed start)."""
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.process.wait()
        self.cgroup.kill_all()
        if self.scratch is not None:
            self.scratch.copy_back_and_remove(0)
            shutil.rmtree(self.scratch.workdir, ignore_errors=True)
        self.cgroup.remove()


@atexit.register
def close_warm_runners():
    """Stop every warm runner of this process (also called at exit)."""
    for runner in list(_warm_runners.values()):
        runner.close()
    _warm_runners.clear()
