"""The warm runner: a trusted server INSIDE a long-lived bubblewrap sandbox (see :mod:`autograder.sandbox`).

Importing torch costs about 4 s of CPU here, more than the judge's tests themselves.
This server imports the heavy modules once and then forks one child per request,
so every student's code starts in a fresh process with torch already loaded.

It never runs student code itself. Per request (one JSON line on stdin) it:

1. forks a child that joins its own session, asks the OOM killer to pick it first,
   sets the rlimits, drops to the request's unprivileged uid (different from the
   server's, so the child cannot signal, trace or read the server), and runs the
   script with ``runpy`` in the scratch folder;
2. waits at most the wall-clock limit, then kills the child's session;
3. kills every process left with that uid (it holds CAP_KILL for this; the children,
   once they have another uid, hold no capability), so nothing survives into the next
   student's run;
4. answers with one JSON line: exit code, timeout flag, the tails of stdout/stderr.

The child's stdout/stderr are pipes that this server drains, keeping only their tails
(a flood costs neither memory nor disk, and never makes the child's writes fail).
Standard library only, apart from the preloaded modules named on the command line.
"""

import json
import os
import resource
import select
import signal
import sys
import time


def preload(names):
    """Import the heavy modules once, and pay torch's lazy first-use costs here, not in every child."""
    for name in filter(None, names.split(",")):
        __import__(name)
    if "torch" in sys.modules:
        warm_up_torch(sys.modules["torch"])


def warm_up_torch(torch):
    """One tiny training step: the first optimizer step alone takes ~5 s (lazy imports inside torch)."""
    torch.set_num_threads(1)  # before any fork: no thread pools to inherit
    weight = torch.zeros(2, 1, 3, 3, requires_grad=True)
    images = torch.zeros(4, 1, 8, 8)
    for optimizer in (torch.optim.SGD([weight], lr=0.1), torch.optim.Adam([weight])):
        output = torch.nn.functional.conv2d(images, weight)
        loss = torch.nn.functional.log_softmax(torch.nn.functional.max_pool2d(output, 2).flatten(1), 1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def processes_of(uid):
    """Live (not zombie) pids in this pid namespace that belong to ``uid``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as status:
                fields = dict(line.split(":", 1) for line in status if ":" in line)
        except OSError:
            continue
        if int(fields.get("Uid", "-1 ").split()[0]) == uid and not fields.get("State", "").strip().startswith("Z"):
            pids.append(int(entry))
    return pids


def sweep(uid):
    """SIGKILL every process of ``uid`` until none is left (the server holds CAP_KILL for this only).

    No fork is needed, so a fork bomb that exhausted the pids limit cannot block it.
    """
    for _ in range(1000):
        pids = processes_of(uid)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.002)


def child(request, out_fd, err_fd):  # the write ends of the two output pipes
    """Runs in the forked child: become the student's uid and run the script. Never returns."""
    code = 1
    try:
        os.setsid()
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        os.closerange(3, 65536)
        with open("/proc/self/oom_score_adj", "w") as adjust:
            adjust.write("1000")
        for kind, soft, hard in request["rlimits"]:
            resource.setrlimit(kind, (soft, hard))
        uid = request["uid"]
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = list(request["argv"])
        import runpy

        runpy.run_path(sys.argv[0], run_name="__main__")
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        if isinstance(exit_.code, str):
            print(exit_.code, file=sys.stderr)
    except BaseException:  # the child reports everything, like a fresh interpreter would
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


class Tail:
    """Drain a pipe, keeping only its last ``cap`` bytes."""

    def __init__(self, fd, cap):
        self.fd, self.cap, self.data, self.total, self.open = fd, cap, bytearray(), 0, True

    def read(self):
        chunk = os.read(self.fd, 65536)
        if not chunk:
            self.open = False
            os.close(self.fd)
            return
        self.total += len(chunk)
        self.data += chunk
        if len(self.data) > self.cap:
            del self.data[: len(self.data) - self.cap]

    def text(self):
        return self.data.decode("utf-8", errors="replace")


def pump(tails, seconds):
    """Read whatever the pipes have for at most ``seconds``."""
    readable = [t for t in tails if t.open]
    if not readable:
        time.sleep(seconds)
        return
    ready, _, _ = select.select([t.fd for t in readable], [], [], seconds)
    for t in readable:
        if t.fd in ready:
            t.read()


def serve(request):
    (out_r, out_w), (err_r, err_w) = os.pipe(), os.pipe()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        child(request, out_w, err_w)
    os.close(out_w)
    os.close(err_w)
    tails = [Tail(out_r, request["output_bytes"]), Tail(err_r, request["output_bytes"])]
    deadline, timed_out = started + request["wall_seconds"], False
    while True:
        pump(tails, 0.01)
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            timed_out = True
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            sweep(request["uid"])
            _, status = os.waitpid(pid, 0)
            break
    sweep(request["uid"])  # daemons die here, and with them the last writers of the pipes
    drain_until = time.monotonic() + 2
    while any(t.open for t in tails) and time.monotonic() < drain_until:
        pump(tails, 0.05)
    for t in tails:
        if t.open:
            os.close(t.fd)
    returncode = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    out, err = tails
    return {
        "returncode": returncode,
        "timed_out": timed_out,
        "stdout": out.text(),
        "stderr": err.text(),
        "truncated": out.total > out.cap or err.total > err.cap,
        "seconds": time.monotonic() - started,
    }


def main():
    preload(sys.argv[1] if len(sys.argv) > 1 else "")
    control = os.fdopen(os.dup(1), "w")
    null = os.open("/dev/null", os.O_WRONLY)
    os.dup2(null, 1)  # stray prints of the preloaded modules must not corrupt the protocol
    control.write("ready\n")
    control.flush()
    for line in sys.stdin:
        request = json.loads(line)
        try:
            reply = serve(request)
        except Exception as error:  # e.g. fork failed: answer instead of dying, after cleaning up
            sweep(request["uid"])
            reply = {
                "returncode": -1,
                "timed_out": False,
                "stdout": "",
                "truncated": False,
                "seconds": 0.0,
                "stderr": f"the sandbox could not run the code: {type(error).__name__}: {error}",
            }
        control.write(json.dumps(reply) + "\n")
        control.flush()


if __name__ == "__main__":
    main()
