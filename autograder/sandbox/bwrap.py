"""The bubblewrap command line: namespaces, read-only binds, private /tmp, the uid drop."""

import os
import shutil
import sys
from pathlib import Path

from .cgroups import is_root
from .limits import SandboxUnavailable
from .seccomp import load_libseccomp
from .state import state_dir

#: /etc files that Python, libc and matplotlib read; nothing secret.
ETC_FILES = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "nsswitch.conf",
    "passwd",
    "group",
    "alternatives",
    "fonts",
    "mime.types",
)


def bubblewrap_path():
    """The ``bwrap`` executable, or None."""
    return shutil.which("bwrap")


def check_sandbox_support():
    """Raise :class:`SandboxUnavailable` with the fix when the sandbox cannot run here."""
    if bubblewrap_path() is None:
        raise SandboxUnavailable(
            "bubblewrap (bwrap) is not installed, so student code cannot be isolated. "
            "Install it with `apt-get install bubblewrap` (or `make setup`), "
            "or pass --no-sandbox on a development machine with trusted submissions only."
        )
    if is_root() and shutil.which("setpriv") is None:
        raise SandboxUnavailable("setpriv (util-linux) is missing: it drops the child to an unprivileged uid.")
    if load_libseccomp() is None:
        raise SandboxUnavailable("libseccomp.so.2 is missing: `apt-get install libseccomp2`.")
    state_dir()  # a private folder of ours, or a clear refusal


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
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "MPLCONFIGDIR": "/tmp/matplotlib",
        "IPYTHONDIR": "/tmp/ipython",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        # one thread per slot: slots run in parallel, and oversubscribed BLAS is slower
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    env.update(extra or {})
    return env


def bwrap_command(
    argv, workdir, scratch_path, limits, env, seccomp_fd, uid, readonly_binds=(), warm=False, status_fd=None
):
    """The full command line: bwrap's mounts and namespaces, then setpriv, then ``argv``.

    ``scratch_path`` is the host folder bound at ``workdir``; None mounts a tmpfs of
    ``limits.scratch_bytes`` there instead (without root: see ``launcher.py``).
    ``status_fd`` receives bwrap's JSON status, whose ``exit-code`` says the command ran.

    ``warm=True`` builds the long-lived sandbox of the warm runner instead: no uid drop
    (its server forks and drops each child itself, so it keeps CAP_SETUID/CAP_SETGID),
    and ``/tmp`` and ``/dev/shm`` not writable for the children (their HOME and TMPDIR
    are in their scratch).
    """
    args = [
        bubblewrap_path(),
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
        "--hostname",
        "sandbox",
    ]
    if is_root():
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
    args += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        str(limits.tmp_bytes),
        "--perms",
        tmp_perms,
        "--tmpfs",
        "/tmp",
        "--size",
        str(limits.tmp_bytes),
        "--perms",
        tmp_perms,
        "--tmpfs",
        "/dev/shm",
    ]
    for path in python_binds():
        _ro_bind(path, args)
    for bind in readonly_binds:
        source, target = bind if isinstance(bind, (tuple, list)) else (bind, bind)
        args += _mkdirs_0755(target) + ["--ro-bind", str(source), str(target)]
    if warm:
        args += ["--cap-add", "CAP_KILL"]  # the server kills every leftover process of the child's uid
    if scratch_path is None:
        args += _mkdirs_0755(workdir) + [
            "--size",
            str(limits.scratch_bytes),
            "--perms",
            "0755",
            "--tmpfs",
            str(workdir),
        ]
    else:
        args += _mkdirs_0755(workdir) + ["--bind", str(scratch_path), str(workdir)]
    args += ["--chdir", str(workdir)]
    if status_fd is not None:
        args += ["--json-status-fd", str(status_fd)]
    args += ["--clearenv"]
    for key, value in env.items():
        args += ["--setenv", key, value]
    args += ["--seccomp", str(seccomp_fd), "--"]
    if is_root() and not warm:
        args += [
            "setpriv",
            f"--reuid={uid}",
            f"--regid={uid}",
            "--clear-groups",
            "--no-new-privs",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ]
    return args + [str(a) for a in argv]
