"""The first process of a cold run when the grader is not root (see :mod:`autograder.sandbox.run`).

Without root the grader can mount nothing on the host, so the size-capped scratch is a
tmpfs that bubblewrap mounts inside the sandbox, and this script, running there, moves
files across. It is started with one argument, a JSON request, and:

1. copies the workdir (bound read-only at ``/sandbox/in``) into the scratch tmpfs;
2. forks the command in its own session, with the rlimits. RLIMIT_NPROC set here, inside
   the run's user namespace, counts only the run's own processes, not the TA's;
3. waits at most the wall-clock limit, then kills every process of the sandbox;
4. writes one JSON line (exit code, timeout flag) and then a tar of the scratch's regular
   files to the status descriptor, which only this process holds.

The command runs with the same uid as this script (an unprivileged user namespace maps
one uid), so this script makes itself non-dumpable: the command can neither trace it nor
open its descriptors. It can kill it; then the grader receives no files (a crash).
Standard library only.
"""

import ctypes
import json
import os
import resource
import select
import shutil
import signal
import stat
import sys
import tarfile

PR_SET_DUMPABLE = 4


def copy_in(source, target):
    """Copy regular files and folders only (symlinks, devices and fifos are skipped)."""
    for root, _folders, files in os.walk(source):
        relative = os.path.relpath(root, source)
        os.makedirs(os.path.join(target, relative), exist_ok=True)
        for name in files:
            path = os.path.join(root, name)
            if stat.S_ISREG(os.lstat(path).st_mode):
                shutil.copyfile(path, os.path.join(target, relative, name), follow_symlinks=False)


def start(request):
    """Fork the command; the child sets the rlimits and execs it. Returns the child's pid."""
    pid = os.fork()
    if pid:
        return pid
    try:
        os.setsid()
        for kind, soft, hard in request["rlimits"]:
            resource.setrlimit(kind, (soft, hard))
        os.chdir(request["cwd"])
        os.execvpe(request["argv"][0], request["argv"], request["env"])
    except BaseException as error:  # report whatever stopped the exec, as a shell would
        os.write(2, f"the sandbox could not start {request['argv'][0]}: {error}\n".encode())
    os._exit(127)


def wait(pid, seconds):
    """Wait for ``pid`` at most ``seconds``; then kill every process here. ``(returncode, timed_out)``."""
    watch = os.pidfd_open(pid)
    timed_out = not select.select([watch], [], [], seconds)[0]
    os.kill(-1, signal.SIGKILL)  # every process of the sandbox but this one and its init: daemons too
    _, status = os.waitpid(pid, 0)
    return (-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)), timed_out


def send_back(stream, folder, max_file_bytes):
    """Write the regular files under ``folder`` (none larger than ``max_file_bytes``) as a tar stream."""
    with tarfile.open(fileobj=stream, mode="w|") as tar:
        for root, _folders, files in os.walk(folder):
            for name in files:
                path = os.path.join(root, name)
                info = os.lstat(path)
                if stat.S_ISREG(info.st_mode) and info.st_size <= max_file_bytes:
                    tar.add(path, arcname=os.path.relpath(path, folder), recursive=False)


def main():
    request = json.loads(sys.argv[1])
    ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    status = os.fdopen(request["status_fd"], "wb")
    os.set_inheritable(request["status_fd"], False)
    copy_in("/sandbox/in", request["cwd"])
    returncode, timed_out = wait(start(request), request["wall_seconds"])
    status.write(json.dumps({"returncode": returncode, "timed_out": timed_out}).encode() + b"\n")
    send_back(status, request["cwd"], request["max_file_bytes"])
    status.close()


if __name__ == "__main__":
    main()
