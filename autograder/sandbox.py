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

The child runs as an unprivileged uid (one per concurrent slot, so RLIMIT_NPROC
counts only its own processes) with no capabilities, ``no_new_privs``, a seccomp
filter that refuses namespace, mount, ptrace, bpf, keyring, perf, userfaultfd and
io_uring system calls, rlimits (CPU, file size, open files, no core files, address
space), and, when the grader runs as root, cgroup v1 memory, pids and cpu limits.
A wall-clock timeout kills the whole process tree: killing bubblewrap collapses
the pid namespace, so ``setsid`` daemons die with it.

The workdir is copied into a fresh tmpfs of ``limits.scratch_bytes`` (as root),
so a flood of files cannot fill the grader's disk; afterwards regular files are
copied back (symlinks are never followed) and the tmpfs is unmounted.

``sandbox=False`` runs the same command as a plain subprocess with the same
timeout and output caps: for development only.
"""
import atexit
import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import functools
import itertools
import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

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


@dataclass
class RunResult:
    """What came back from one run. Only plain text; files are left in ``workdir``."""
    returncode: int
    timed_out: bool
    memory_exceeded: bool
    stdout: str
    stderr: str
    output_truncated: bool = False
    seconds: float = 0.0

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


#: Where the sandbox keeps its per-run state on the host (slot locks, tmpfs mounts).
STATE_DIR = Path(tempfile.gettempdir()) / "handin3-sandbox"
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_CONTROLLERS = ("memory", "pids", "cpu")
CGROUP_PREFIX = "handin3-"
UID_BASE = 61000  # slot n runs as uid/gid UID_BASE + n
MAX_SLOTS = 64

#: System calls the child may not make: they would let it build namespaces, mount
#: file systems, trace other processes or reach rarely hardened kernel interfaces.
BLOCKED_SYSCALLS = (
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree",
    "fsopen", "fsconfig", "fsmount", "fspick", "ptrace", "process_vm_readv", "process_vm_writev",
    "bpf", "keyctl", "add_key", "request_key", "perf_event_open", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register", "kexec_load", "kexec_file_load",
    "init_module", "finit_module", "delete_module", "swapon", "swapoff", "reboot",
    "open_by_handle_at", "name_to_handle_at", "acct", "quotactl",
)
CLONE_NEWUSER = 0x10000000
#: /etc files that Python, libc and matplotlib read; nothing secret.
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf", "passwd",
             "group", "alternatives", "fonts", "mime.types")

_run_counter = itertools.count()


# ----------------------------------------------------------------------------- availability

def bubblewrap_path():
    """The ``bwrap`` executable, or None."""
    return shutil.which("bwrap")


def check_sandbox_support():
    """Raise :class:`SandboxUnavailable` with the fix when the sandbox cannot run here."""
    if bubblewrap_path() is None:
        raise SandboxUnavailable(
            "bubblewrap (bwrap) is not installed, so student code cannot be isolated. "
            "Install it with `apt-get install bubblewrap` (or `make setup`), "
            "or pass --no-sandbox on a development machine with trusted submissions only.")
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        raise SandboxUnavailable("setpriv (util-linux) is missing: it drops the child to an unprivileged uid.")
    if _load_libseccomp() is None:
        raise SandboxUnavailable("libseccomp.so.2 is missing: `apt-get install libseccomp2`.")


def _is_root():
    return os.geteuid() == 0


# ----------------------------------------------------------------------------- seccomp

def _load_libseccomp():
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        return ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None


class _ArgCmp(ctypes.Structure):
    """libseccomp's ``struct scmp_arg_cmp``."""
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


@functools.cache
def seccomp_program():
    """The filter (allow everything except :data:`BLOCKED_SYSCALLS`) compiled to BPF: bytes.

    Blocked calls fail with EPERM; ``clone`` with CLONE_NEWUSER fails with EPERM and
    ``clone3`` with ENOSYS so that libc falls back to ``clone``, whose flags the
    filter can see. Compiled once per grader process and kept in memory: no file that
    another thread, or a later process with the same pid, could overwrite.
    """
    lib = _load_libseccomp()
    if lib is None:
        raise SandboxUnavailable("libseccomp.so.2 is missing: `apt-get install libseccomp2`.")
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(_ArgCmp)]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    allow, deny = 0x7FFF0000, lambda err: 0x00050000 | err  # SCMP_ACT_ALLOW, SCMP_ACT_ERRNO(err)
    ctx = lib.seccomp_init(allow)
    try:
        def add(name, action, *comparisons):
            number = lib.seccomp_syscall_resolve_name(name.encode())
            if number < 0:  # not a system call on this architecture
                return
            array = (_ArgCmp * max(len(comparisons), 1))(*comparisons)
            if lib.seccomp_rule_add_array(ctx, action, number, len(comparisons), array) != 0:
                raise SandboxUnavailable(f"libseccomp refused the rule for {name}")

        for name in BLOCKED_SYSCALLS:
            add(name, deny(errno.EPERM))
        add("clone3", deny(errno.ENOSYS))
        masked_eq = 7  # SCMP_CMP_MASKED_EQ: (arg0 & datum_a) == datum_b
        add("clone", deny(errno.EPERM), _ArgCmp(0, masked_eq, CLONE_NEWUSER, CLONE_NEWUSER))
        with tempfile.TemporaryFile() as exported:
            if lib.seccomp_export_bpf(ctx, exported.fileno()) != 0:
                raise SandboxUnavailable("libseccomp could not export the BPF program")
            exported.seek(0)
            return exported.read()
    finally:
        lib.seccomp_release(ctx)


def open_seccomp_program():
    """A new descriptor, at offset 0, holding :func:`seccomp_program` for ``bwrap --seccomp FD``.

    bwrap reads the descriptor to its end, so every run needs its own; the caller closes it.
    """
    program = seccomp_program()  # first: if compiling fails, no descriptor is left open
    descriptor = os.memfd_create("handin3-seccomp", os.MFD_CLOEXEC)
    if os.write(descriptor, program) != len(program):
        os.close(descriptor)
        raise SandboxUnavailable("could not write the seccomp program to a memfd")
    os.lseek(descriptor, 0, os.SEEK_SET)
    return descriptor


# ----------------------------------------------------------------------------- uid slots

class _Slot:
    """An exclusive slot number (flock on a file), hence a uid no other concurrent run uses."""

    def __enter__(self):
        folder = STATE_DIR / "slots"
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


# ----------------------------------------------------------------------------- cgroups (v1, root only)

def _cgroup_usable():
    return _is_root() and all((CGROUP_ROOT / c / "cgroup.procs").exists() for c in CGROUP_CONTROLLERS)


class _Cgroup:
    """Memory, pids and cpu cgroups (v1) for one run; no-op when not usable."""

    def __init__(self, name, limits):
        self.dirs = []
        if not _cgroup_usable():
            return
        for controller in CGROUP_CONTROLLERS:
            folder = CGROUP_ROOT / controller / name
            folder.mkdir(exist_ok=True)
            self.dirs.append(folder)
        memory, pids, cpu = self.dirs
        _write(memory / "memory.limit_in_bytes", limits.memory_bytes)
        if (memory / "memory.memsw.limit_in_bytes").exists():
            _write(memory / "memory.memsw.limit_in_bytes", limits.memory_bytes)
        _write(memory / "memory.swappiness", 0, ignore_errors=True)
        _write(pids / "pids.max", limits.max_processes)
        _write(cpu / "cpu.cfs_period_us", 100_000)
        _write(cpu / "cpu.cfs_quota_us", int(100_000 * limits.cpus))

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
            _kill_cgroup(folder)

    def remove(self):
        for folder in self.dirs:
            _remove_cgroup(folder)


def _write(path, value, ignore_errors=False):
    try:
        Path(path).write_text(str(value))
    except OSError:
        if not ignore_errors:
            raise


def _kill_cgroup(folder):
    try:
        pids = (folder / "cgroup.procs").read_text().split()
    except OSError:
        return
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


def _remove_cgroup(folder):
    for _ in range(50):  # the kernel needs a moment after the last process exits
        _kill_cgroup(folder)
        try:
            folder.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.05)


def _owner_alive(name):
    """Our cgroups and mounts are named ``handin3-<grader pid>-<n>``: is that grader still running?"""
    try:
        pid = int(name.split("-")[1])
    except (IndexError, ValueError):
        return True
    return Path(f"/proc/{pid}").exists()


def cleanup_stale():
    """Remove tmpfs mounts and cgroups that a crashed grader left behind (only those of dead graders)."""
    if not _is_root():
        return
    for line in Path("/proc/mounts").read_text().splitlines():
        mount_point = line.split()[1]
        if mount_point.startswith(str(STATE_DIR) + "/") and not _owner_alive(Path(mount_point).name):
            subprocess.run(["umount", "-l", mount_point], capture_output=True)
            shutil.rmtree(mount_point, ignore_errors=True)
    for controller in CGROUP_CONTROLLERS:
        for folder in (CGROUP_ROOT / controller).glob(CGROUP_PREFIX + "*"):
            if not _owner_alive(folder.name):
                _remove_cgroup(folder)


# ----------------------------------------------------------------------------- scratch tmpfs

class _Scratch:
    """The writable folder the child sees at ``workdir``: a size-limited tmpfs copy, as root.

    Without root the workdir itself is bound (RLIMIT_FSIZE still caps each file).
    """

    def __init__(self, workdir, name, limits, owner_uid):
        self.workdir = Path(workdir)
        self.mount = None
        if not _is_root():
            self.host_path = self.workdir
            return
        self.mount = STATE_DIR / name
        self.mount.mkdir(mode=0o700, parents=True)
        try:
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={limits.scratch_bytes},mode=0755,nosuid,nodev",
                            "tmpfs", str(self.mount)], check=True, capture_output=True)
            _copy_tree(self.workdir, self.mount, limits.scratch_bytes)
            for path in [self.mount, *self.mount.rglob("*")]:
                os.lchown(path, owner_uid, owner_uid)
        except BaseException:
            self._unmount()
            raise
        self.host_path = self.mount

    def copy_back_and_remove(self, max_bytes):
        if self.mount is None:
            return
        try:
            _copy_tree(self.mount, self.workdir, max_bytes)
        finally:
            self._unmount()

    def _unmount(self):
        subprocess.run(["umount", "-l", str(self.mount)], capture_output=True)
        shutil.rmtree(self.mount, ignore_errors=True)


def _copy_tree(source, target, max_file_bytes):
    """Copy regular files and folders only; symlinks, devices, fifos and oversized files are skipped."""
    for root, folders, files in os.walk(source, followlinks=False):
        relative = Path(root).relative_to(source)
        (Path(target) / relative).mkdir(parents=True, exist_ok=True)
        for name in files:
            path = Path(root) / name
            info = os.lstat(path)
            if stat.S_ISREG(info.st_mode) and info.st_size <= max_file_bytes:
                destination = Path(target) / relative / name
                if destination.is_symlink():
                    destination.unlink()
                with open(path, "rb") as src, open(destination, "wb") as dst:
                    shutil.copyfileobj(src, dst)


# ----------------------------------------------------------------------------- the bwrap command

def _mkdirs_0755(path):
    """bwrap creates missing parents 0700 (unreachable for the dropped uid): create them 0755 first."""
    args = []
    for parent in reversed(Path(path).parents):
        if str(parent) != "/":
            args += ["--perms", "0755", "--dir", str(parent)]
    return args


def _ro_bind(path, args):
    path = Path(path)
    if path.is_symlink() and str(path.parent) == "/":
        args += ["--symlink", os.readlink(path), str(path)]
    elif path.exists():
        args += _mkdirs_0755(path) + ["--ro-bind", str(path), str(path)]


def python_binds():
    """The Python install and the virtualenv, read-only; a venv's python is a symlink into base_prefix."""
    return sorted({os.path.realpath(sys.base_prefix), sys.prefix})


def sandbox_env(workdir, extra=None):
    """The child's whole environment (bwrap starts from --clearenv)."""
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp", "TMPDIR": "/tmp", "MPLCONFIGDIR": "/tmp/matplotlib", "IPYTHONDIR": "/tmp/ipython",
        "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0",
        # one thread per slot: slots run in parallel, and oversubscribed BLAS is slower
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    }
    env.update(extra or {})
    return env


def bwrap_command(argv, workdir, scratch_path, limits, env, seccomp_fd, uid, readonly_binds=(), warm=False):
    """The full command line: bwrap's mounts and namespaces, then setpriv, then ``argv``.

    ``warm=True`` builds the long-lived sandbox of the warm runner instead: no uid drop
    (its server forks and drops each child itself, so it keeps CAP_SETUID/CAP_SETGID),
    and ``/tmp`` and ``/dev/shm`` not writable for the children (their HOME and TMPDIR
    are in their scratch).
    """
    args = [bubblewrap_path(), "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--hostname", "sandbox"]
    if _is_root():
        # setpriv needs these three to become the slot's uid; the uid change then clears every capability
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]
    else:
        args += ["--unshare-user"]
    for top in ("usr", "bin", "lib", "lib32", "lib64", "libx32", "sbin"):
        _ro_bind(f"/{top}", args)
    args += ["--perms", "0755", "--dir", "/etc"]
    for name in ETC_FILES:
        if Path("/etc", name).exists():
            args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    # The private /tmp comes before the binds: a kit or venv that lives under /tmp
    # (a CI checkout, say) must be bound on top of it, not hidden by it.
    tmp_perms = "0755" if warm else "1777"
    args += ["--proc", "/proc", "--dev", "/dev",
             "--size", str(limits.tmp_bytes), "--perms", tmp_perms, "--tmpfs", "/tmp",
             "--size", str(limits.tmp_bytes), "--perms", tmp_perms, "--tmpfs", "/dev/shm"]
    for path in python_binds():
        _ro_bind(path, args)
    for bind in readonly_binds:
        source, target = bind if isinstance(bind, (tuple, list)) else (bind, bind)
        args += _mkdirs_0755(target) + ["--ro-bind", str(source), str(target)]
    if warm:
        args += ["--cap-add", "CAP_KILL"]  # the server kills every leftover process of the child's uid
    args += _mkdirs_0755(workdir) + ["--bind", str(scratch_path), str(workdir), "--chdir", str(workdir)]
    args += ["--clearenv"]
    for key, value in env.items():
        args += ["--setenv", key, value]
    args += ["--seccomp", str(seccomp_fd), "--"]
    if _is_root() and not warm:
        args += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs",
                 "--inh-caps=-all", "--bounding-set=-all"]
    return args + [str(a) for a in argv]


def _rlimits(limits):
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


def _child_setup(rlimits, cgroup_procs):
    """Runs in the forked child before exec: join the cgroups, set the rlimits (C calls only)."""
    def setup():
        pid = str(os.getpid()).encode()
        for procs in cgroup_procs:
            fd = os.open(procs, os.O_WRONLY)
            os.write(fd, pid)
            os.close(fd)
        for kind, soft, hard in rlimits:
            resource.setrlimit(kind, (soft, hard))
    return setup


# ----------------------------------------------------------------------------- the warm runner

WARM_WORKDIR = "/sandbox/work"
WARM_TMP = ".tmp"  # the child's HOME and TMPDIR, inside its scratch (the sandbox's /tmp is not writable)
ZYGOTE = Path(__file__).resolve().parent / "zygote.py"
#: Modules the warm runner imports once; every child starts with them loaded.
WARM_PRELOAD = ("numpy", "torch", "torch.nn.functional")
WARM_MEMORY_OVERHEAD = 1 * GiB  # the server's own pages (torch) count in the slot's cgroup too
_warm_runners = {}
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="handin3-sandbox-spawner")


def _warm_usable(argv, readonly_binds=()):
    """Warm runs need root (cgroups, uid drop), ``HANDIN3_WARM`` not ``0``, and a ``python -I script`` command."""
    return (_is_root() and _cgroup_usable() and os.environ.get("HANDIN3_WARM", "1") != "0"
            and not readonly_binds and len(argv) >= 3 and argv[0] == sys.executable and argv[1] == "-I"
            and not argv[2].startswith("-") and not Path(argv[2]).is_absolute())


def _warm_runner(slot, limits):
    runner = _warm_runners.get(slot.number)
    if runner is None or not runner.alive(limits):
        if runner is not None:
            runner.close()
        runner = _warm_runners[slot.number] = _WarmRunner(slot, limits)
    return runner


class _WarmRunner:
    """A long-lived sandbox for one slot whose trusted server (:mod:`autograder.zygote`) forks each run.

    Same namespaces, binds, seccomp filter and cgroups as a cold run; the differences:
    the scratch is the slot's tmpfs mounted at ``/sandbox/work`` (wiped and refilled by
    this process for every run), and the uid drop, rlimits and wall clock are applied
    by the server to each forked child. Between runs the server kills every process of
    the slot's uid and this process wipes the scratch, so nothing of one student is left
    for the next.
    """

    def __init__(self, slot, limits):
        self.uid, self.limits, self.died = slot.uid, limits, False
        self.process = self.scratch = None
        name = f"{CGROUP_PREFIX}{os.getpid()}-warm{slot.number}"
        server_limits = Limits(**{**limits.__dict__, "memory_bytes": limits.memory_bytes + WARM_MEMORY_OVERHEAD,
                                  "max_processes": limits.max_processes + 16, "cpu_seconds": 10**7})
        self.cgroup = _Cgroup(name, server_limits)
        # a runner that fails to start must leave nothing behind: the slot's next runner reuses the names
        try:
            self.scratch = _Scratch(Path(tempfile.mkdtemp(prefix="handin3-warm-")), name, limits, self.uid)
            self.process = self._start_server(server_limits)
            if self._read_line(120) != "ready":
                raise SandboxUnavailable("the warm runner did not start; set HANDIN3_WARM=0 to run cold")
        except BaseException:
            self.close()
            raise
        for folder in self.cgroup.dirs[:1]:  # the OOM killer must pick the children, never the server
            for pid in (folder / "cgroup.procs").read_text().split():
                _write(f"/proc/{pid}/oom_score_adj", -1000, ignore_errors=True)

    def _start_server(self, server_limits):
        """Start bubblewrap running the zygote server; returns the Popen."""
        seccomp_fd = open_seccomp_program()
        try:
            command = bwrap_command([sys.executable, "-I", "/sandbox/zygote.py", ",".join(WARM_PRELOAD)],
                                    WARM_WORKDIR, self.scratch.host_path, self.limits, sandbox_env(WARM_WORKDIR),
                                    seccomp_fd, self.uid, [(ZYGOTE, "/sandbox/zygote.py")], warm=True)
            rlimits = [limit for limit in _rlimits(server_limits) if limit[0] != resource.RLIMIT_CPU]
            # --die-with-parent follows the thread that forks bwrap: fork from a thread that lives
            # as long as this process, not from a worker thread that a pool may end
            return _SPAWNER.submit(
                subprocess.Popen, command, cwd="/", env={"PATH": "/usr/bin:/bin"}, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, pass_fds=(seccomp_fd,), start_new_session=True,
                preexec_fn=_child_setup(rlimits, self.cgroup.procs_files)).result()
        finally:
            os.close(seccomp_fd)

    def alive(self, limits):
        return self.process.poll() is None and limits == self.limits

    def _read_line(self, timeout):
        import select
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        return self.process.stdout.readline().decode().strip() if ready else None

    def run(self, argv, workdir, limits, readonly_binds=(), env=None):
        start = time.monotonic()
        scratch = self.scratch.host_path
        _empty(scratch)
        _copy_tree(workdir, scratch, limits.scratch_bytes)
        (scratch / WARM_TMP).mkdir(exist_ok=True)
        for path in [scratch, *scratch.rglob("*")]:
            os.lchown(path, self.uid, self.uid)
        child_env = sandbox_env(WARM_WORKDIR, {"HOME": f"{WARM_WORKDIR}/{WARM_TMP}", "TMPDIR": f"{WARM_WORKDIR}/{WARM_TMP}",
                                               "MPLCONFIGDIR": f"{WARM_WORKDIR}/{WARM_TMP}",
                                               "IPYTHONDIR": f"{WARM_WORKDIR}/{WARM_TMP}", **(env or {})})
        request = {"argv": [str(a) for a in argv[2:]], "cwd": WARM_WORKDIR, "env": child_env, "uid": self.uid,
                   "rlimits": _rlimits(limits), "wall_seconds": limits.wall_seconds,
                   "output_bytes": limits.output_bytes}
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
            result = RunResult(-9, True, False, "", "the sandbox stopped answering", False, time.monotonic() - start)
        else:
            result = RunResult(reply["returncode"], reply["timed_out"], False, reply["stdout"], reply["stderr"],
                               reply["truncated"], time.monotonic() - start)
            if result.returncode in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
                result.timed_out = True
            oom = self.cgroup.oom_kills() > kills_before
            result.memory_exceeded = result.returncode != 0 and (oom or "MemoryError" in result.stderr[-2000:])
        shutil.rmtree(scratch / WARM_TMP, ignore_errors=True)
        _copy_tree(scratch, workdir, limits.file_size_bytes)
        _empty(scratch)
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


def _empty(folder):
    for path in Path(folder).iterdir():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


@atexit.register
def close_warm_runners():
    """Stop every warm runner of this process (also called at exit)."""
    for runner in list(_warm_runners.values()):
        runner.close()
    _warm_runners.clear()


# ----------------------------------------------------------------------------- output capture

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


# ----------------------------------------------------------------------------- running

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
    if _warm_usable(argv, readonly_binds):
        with _Slot() as slot:
            for attempt in range(2):  # a runner that died on its own (not the child's doing) is restarted once
                runner = _warm_runner(slot, limits)
                result = runner.run(argv, workdir, limits, readonly_binds, env)
                if not runner.died:
                    return result
            return result
    name = f"{CGROUP_PREFIX}{os.getpid()}-{next(_run_counter)}"
    seccomp_program()  # fails early, before a slot is taken, if libseccomp is missing
    with _Slot() as slot, contextlib.ExitStack() as cleanup:  # undone in reverse, also after an error
        cgroup = _Cgroup(name, limits)
        cleanup.callback(cgroup.remove)
        scratch = _Scratch(workdir, name, limits, slot.uid)
        cleanup.callback(scratch.copy_back_and_remove, limits.file_size_bytes)
        cleanup.callback(cgroup.kill_all)
        seccomp_fd = open_seccomp_program()
        cleanup.callback(os.close, seccomp_fd)
        command = bwrap_command(argv, workdir, scratch.host_path, limits, sandbox_env(workdir, env),
                                seccomp_fd, slot.uid, readonly_binds)
        result = _run(command, workdir, limits, cwd="/", env={"PATH": "/usr/bin:/bin"},
                      pass_fds=(seccomp_fd,), cgroup=cgroup)
        if cgroup.memory_exceeded() and result.returncode != 0:
            result.memory_exceeded = True
    return result


def _run(command, workdir, limits, cwd, env, pass_fds=(), cgroup=None):
    start = time.monotonic()
    setup = _child_setup(_rlimits(limits) if cgroup is not None else [],
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
    return RunResult(returncode, timed_out or cpu_exceeded, memory_error, out.text(), stderr,
                     out.truncated or err.truncated, time.monotonic() - start)


def _kill_tree(process, cgroup):
    """Kill the whole session, and with it bwrap's pid namespace, then reap."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if cgroup is not None:
        cgroup.kill_all()
    process.wait()
