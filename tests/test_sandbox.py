"""The sandbox around student code: what it hides, what it refuses, what it survives.

Every test runs a real ``bwrap`` child (skipped when bubblewrap is missing) with a
short wall-clock limit, and checks the grader's side afterwards. Tests that take the
``mode`` fixture run twice: ``cold`` (``python -c``: a fresh sandbox per run) and
``warm`` (``python -I script.py``: forked by the warm runner's server inside a
long-lived sandbox, as the judge's runner is; needs root, else it runs cold too).

CI runs this file as root, as an unprivileged user, and with ``HANDIN3_CGROUPS=0``:
the limits must hold with cgroups and with the fallback (rlimits, tmpfs caps, affinity).
"""

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
from processes import processes_named

from autograder import KIT_ROOT
from autograder.sandbox import Limits, bubblewrap_path, run_isolated

pytestmark = pytest.mark.skipif(bubblewrap_path() is None, reason="bubblewrap is not installed")

QUICK = Limits(
    wall_seconds=15,
    cpu_seconds=15,
    memory_bytes=512 * 2**20,
    max_processes=32,
    file_size_bytes=8 * 2**20,
    scratch_bytes=32 * 2**20,
    tmp_bytes=16 * 2**20,
)


#: For the hostile snippets (plain Python, no torch to import) that some other limit must stop first:
#: ample for a cold start on a busy machine.
HOSTILE_LIMITS = replace(QUICK, wall_seconds=6, cpu_seconds=6)
#: For those that run until the clock stops them: a short clock keeps the test short (they loop on the
#: CPU meanwhile), and whenever it strikes, the run is a timeout.
ENDLESS_LIMITS = replace(QUICK, wall_seconds=2, cpu_seconds=2)

SLOW_START = Limits(wall_seconds=120, cpu_seconds=120)  # importing torch on a busy 2-core machine


@pytest.fixture()
def classroom(tmp_path):
    """Two students' scratch copies side by side; returns (alice's workdir, bob's secret file)."""
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    alice.mkdir()
    bob.mkdir()
    secret = bob / "network.py"
    secret.write_text("BOB_SECRET = 1\n")
    return alice, secret


@pytest.fixture(params=["cold", "warm"])
def mode(request):
    if request.param == "warm" and os.geteuid() != 0:
        pytest.skip("the warm runner needs root: its server drops each child to the slot's own uid")
    return request.param


def run(code, workdir, limits=QUICK, mode="cold"):
    if mode == "cold":
        return run_isolated([sys.executable, "-c", code], workdir, limits)
    (Path(workdir) / "snippet.py").write_text(code)
    return run_isolated([sys.executable, "-I", "snippet.py"], workdir, limits)


def test_runs_as_unprivileged_uid_with_torch_available(classroom, mode):
    alice, _ = classroom
    result = run(
        "import os, torch; print(os.getuid(), os.getcwd(), torch.ones(2).sum().item())\n"
        "open('made.txt', 'w').write('x')",
        alice,
        SLOW_START,
        mode=mode,
    )
    assert result.status == "ok", result.stderr
    uid, cwd, total = result.stdout.split()
    assert int(uid) != 0 and float(total) == 2.0
    assert (alice / "made.txt").read_text() == "x"  # the scratch copy comes back


def test_hides_solutions_other_students_and_home(mode, classroom):
    alice, secret = classroom
    probe = "import os, json; paths = {p: os.path.exists(p) for p in %r}; print(json.dumps(paths))" % [
        str(secret),
        str(secret.parent),
        str(KIT_ROOT / "solutions"),
        str(KIT_ROOT / "autograder"),
        "/root/.bash_history",
        "/etc/shadow",
    ]
    result = run(probe, alice, mode=mode)
    assert result.status == "ok", result.stderr
    assert "true" not in result.stdout, result.stdout


def test_network_fails(mode, classroom):
    alice, _ = classroom
    code = (
        "import socket\n"
        "for host in ('1.1.1.1', '127.0.0.1'):\n"
        "    try:\n"
        "        socket.create_connection((host, 80), timeout=2); print('CONNECTED', host)\n"
        "    except OSError as e: print('refused', host, e.errno)\n"
        "print(open('/proc/net/dev').read().count(':'))"
    )
    result = run(code, alice, mode=mode)
    assert result.status == "ok", result.stderr
    assert "CONNECTED" not in result.stdout
    assert result.stdout.split()[-1] == "1"  # only the loopback interface exists


def test_writes_outside_scratch_fail_and_scratch_comes_back(mode, classroom):
    alice, secret = classroom
    code = (
        "import os\n"
        "for path in (%r, %r, %r):\n"
        "    try: open(path, 'w').write('x'); print('WROTE', path)\n"
        "    except OSError as e: print('refused', e.errno)\n"
        "open('result.json', 'w').write('{}')\n"
        "os.symlink('/etc/passwd', 'link')" % (str(secret), sys.prefix + "/pwned", str(KIT_ROOT / "pwned"))
    )
    result = run(code, alice, mode=mode)
    assert result.status == "ok", result.stderr
    # the kit's folder is not there; without root a path under /tmp may be created on the sandbox's own /tmp
    assert f"WROTE {sys.prefix}" not in result.stdout and not Path(sys.prefix, "pwned").exists()
    assert not (KIT_ROOT / "pwned").exists()
    assert secret.read_text() == "BOB_SECRET = 1\n"
    assert (alice / "result.json").read_text() == "{}"
    assert not (alice / "link").exists()  # symlinks are never copied out


def test_namespaces_and_ptrace_are_refused(mode, classroom):
    alice, _ = classroom
    code = (
        "import ctypes, subprocess\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.unshare(0x10000000), ctypes.get_errno())\n"  # CLONE_NEWUSER
        "print(subprocess.run(['unshare', '-r', 'true']).returncode)\n"
        "print(libc.ptrace(0, 0, 0, 0), ctypes.get_errno())"
    )
    result = run(code, alice, mode=mode)
    assert result.status == "ok", result.stderr
    lines = result.stdout.split("\n")
    assert lines[0] == "-1 1" and lines[1] != "0" and lines[2] == "-1 1"


HOSTILE = {
    "fork_bomb": ("import os\nwhile True:\n    try: os.fork()\n    except OSError: pass", {"timeout"}),
    "memory_bomb": ("x = []\nwhile True: x.append(bytearray(64 * 2**20))", {"memory_limit"}),
    "huge_allocation": ("x = bytearray(40 * 2**30)", {"memory_limit"}),
    "ignores_sigint_and_sigterm": (
        "import signal\nfor s in (signal.SIGINT, signal.SIGTERM):\n"
        "    signal.signal(s, signal.SIG_IGN)\nwhile True: pass",
        {"timeout"},
    ),
    "os_exit": ("import os\nos._exit(3)", {"crashed"}),
    "huge_file": ("f = open('big', 'wb')\nwhile True: f.write(bytes(2**20))", {"crashed"}),
    "many_files": ("for i in range(10**6): open(f'f{i}', 'wb').write(bytes(4 * 2**20))", {"crashed"}),
    "output_flood": ("import sys\nwhile True: sys.stdout.write('x' * 65536)", {"timeout"}),
    "tmp_flood": ("for i in range(10**6): open(f'/tmp/f{i}', 'wb').write(bytes(4 * 2**20))", {"crashed"}),
    "shm_flood": ("for i in range(10**6): open(f'/dev/shm/f{i}', 'wb').write(bytes(4 * 2**20))", {"crashed"}),
    "shared_anonymous_memory": (
        "import mmap\nx = []\nwhile True:\n    m = mmap.mmap(-1, 64 * 2**20)\n"
        "    m.write(bytes(64 * 2**20))\n    x.append(m)",
        {"memory_limit", "crashed"},
    ),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_code_is_contained(mode, classroom, name):
    alice, secret = classroom
    code, statuses = HOSTILE[name]
    limits = ENDLESS_LIMITS if statuses == {"timeout"} else HOSTILE_LIMITS
    result = run(code, alice, limits, mode=mode)
    assert result.status in statuses, (result.status, result.stderr[-500:])
    assert result.seconds < limits.wall_seconds + 5
    assert len(result.stdout) <= limits.output_bytes
    assert secret.read_text() == "BOB_SECRET = 1\n"


def test_the_cpu_limit_is_a_timeout_and_a_self_kill_is_not(mode, classroom):
    alice, _ = classroom
    busy = run("while True: pass", alice, replace(QUICK, wall_seconds=60, cpu_seconds=2), mode=mode)
    assert busy.status == "timeout", (busy.returncode, busy.stderr[-500:])
    assert busy.seconds < 30  # the CPU limit ended it, not the wall clock
    killed = run("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", alice, mode=mode)
    assert killed.status == "crashed", (killed.returncode, killed.stderr[-500:])


def test_a_warm_runner_is_kept_when_only_the_per_run_limits_change(classroom):
    """The clock, CPU and output limits go with each run, so the warm server (torch already
    imported) stays; a different memory limit shapes the sandbox itself and needs a new one."""
    from autograder.sandbox import warm

    if os.geteuid() != 0:
        pytest.skip("the warm runner needs root: its server drops each child to the slot's own uid")
    alice, _ = classroom

    def servers():
        return {runner.process.pid for runner in warm._warm_runners.values()}

    assert run("print(1)", alice, mode="warm").status == "ok"
    before = servers()
    busy = run("while True: pass", alice, replace(QUICK, wall_seconds=60, cpu_seconds=1), mode="warm")
    assert busy.status == "timeout" and busy.seconds < 30  # the new CPU limit held
    assert run("print(1)", alice, replace(QUICK, output_bytes=100), mode="warm").status == "ok"
    assert servers() == before
    assert run("print(1)", alice, replace(QUICK, memory_bytes=QUICK.memory_bytes // 2), mode="warm").status == "ok"
    assert servers() != before


def test_setsid_daemon_dies_with_the_run(mode, classroom):
    alice, _ = classroom
    code = (
        "import ctypes, os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        ctypes.CDLL(None).prctl(15, b'h3daemon', 0, 0, 0)\n"  # PR_SET_NAME: findable in /proc
        "        while True:\n"
        "            time.sleep(0.05)\n"
        "    os._exit(0)\n"
        "time.sleep(0.3)\nprint('parent done')"
    )
    result = run(code, alice, mode=mode)
    assert result.status == "ok" and "parent done" in result.stdout
    assert not processes_named("h3daemon"), "a daemon survived the run"


def test_no_sandbox_runs_plainly(tmp_path):
    result = run_isolated([sys.executable, "-c", "import os; print(os.getuid())"], tmp_path, QUICK, sandbox=False)
    assert result.status == "ok" and result.stdout.strip() == str(os.getuid())


def test_every_run_gets_its_own_whole_seccomp_program(tmp_path):
    """bwrap reads its --seccomp descriptor to the end, so runs in parallel threads each need a fresh one,
    and nothing on disk may be shared (the kit once raced on a file named after the pid)."""
    from autograder.sandbox import open_seccomp_program, seccomp_program

    program = seccomp_program()
    assert len(program) > 0 and len(program) % 8 == 0, "a BPF program is a whole number of 8-byte instructions"

    def read_one(_):
        descriptor = open_seccomp_program()
        try:
            return os.read(descriptor, len(program) + 1)
        finally:
            os.close(descriptor)

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert set(pool.map(read_one, range(16))) == {program}
    compile_in_a_fresh_process = "import os; from autograder import sandbox; os.close(sandbox.open_seccomp_program())"
    subprocess.run(
        [sys.executable, "-c", compile_in_a_fresh_process],
        cwd=KIT_ROOT,
        check=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert not list(tmp_path.rglob("*")), "the program lives in memory, not in a shared file"


@pytest.mark.parametrize("mode", ["cold", "warm"])
def test_a_sandbox_that_fails_to_start_leaves_nothing_behind(mode, classroom, monkeypatch):
    """A failed start once left the warm slot's tmpfs mounted, so every later run in that slot failed."""
    from autograder import sandbox
    from autograder.sandbox import seccomp

    alice, _ = classroom
    sandbox.close_warm_runners()  # the warm run below must start a new runner
    real_open = seccomp.open_seccomp_program

    def fails_once(*args):
        monkeypatch.setattr(seccomp, "open_seccomp_program", real_open)
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(seccomp, "open_seccomp_program", fails_once)
    with pytest.raises(sandbox.SandboxFault, match="Too many open files"):
        run("print('unreachable')", alice, mode=mode)
    ours = f"{sandbox.CGROUP_PREFIX}{os.getpid()}-"
    assert ours not in Path("/proc/mounts").read_text(), "a scratch tmpfs is still mounted"
    assert not list(sandbox.CGROUP_ROOT.glob(f"*/{ours}*")), "a cgroup is left"
    again = run("print('fine')", alice, mode=mode)
    assert again.status == "ok" and again.stdout.strip() == "fine", again.stderr[-500:]


# ----------------------------------------------------------------------------- nothing survives a run

LEAVE_BEHIND = r"""
import ctypes, json, os, subprocess
libc = ctypes.CDLL(None, use_errno=True)
IPC_CREAT = 0o1000
made = {
    "sysv_shm": libc.shmget(0x4833, 1 << 20, IPC_CREAT | 0o666),
    "sysv_sem": libc.semget(0x4833, 4, IPC_CREAT | 0o666),
    "sysv_msg": libc.msgget(0x4833, IPC_CREAT | 0o666),
    "posix_mq": libc.mq_open(b"/h3leftover", os.O_CREAT | os.O_RDWR, 0o666, None),
    "mount": libc.mount(b"none", b"/tmp", b"tmpfs", 0, None),
}
for path in ("/dev/shm/h3leftover", "/tmp/h3leftover", os.environ["TMPDIR"] + "/h3leftover",
             os.environ["HOME"] + "/h3leftover.home", "h3leftover.scratch"):
    try:
        open(path, "w").write("x")
        made[path] = 0
    except OSError:
        made[path] = -1
subprocess.Popen(["sleep", "600"], start_new_session=True)
print(json.dumps(made))
"""

FIND_LEFTOVERS = r"""
import glob, json, os
found = {kind: open(f"/proc/sysvipc/{kind}").read().splitlines()[1:] for kind in ("shm", "sem", "msg")}
found["posix_mq"] = __import__("ctypes").CDLL(None).mq_open(b"/h3leftover", 0) >= 0
found["files"] = [p for p in ("/dev/shm/h3leftover", "/tmp/h3leftover", os.environ["TMPDIR"] + "/h3leftover",
                               os.environ["HOME"] + "/h3leftover.home", "h3leftover.scratch") if os.path.exists(p)]
found["processes"] = [open(f"/proc/{p}/cmdline").read() for p in os.listdir("/proc")
                      if p.isdigit() and open(f"/proc/{p}/cmdline").read().split("\0")[0] == "sleep"]
found["mounts"] = open("/proc/self/mountinfo").read().count("\n")
print(json.dumps(found))
"""


def runs_in_one_slot(snippets, mode):
    """Run ``(code, workdir)`` pairs one after the other; warm ones through ONE slot's warm runner."""
    from autograder.sandbox.state import Slot
    from autograder.sandbox.warm import warm_runner, warm_usable

    argv = [sys.executable, "-I", "snippet.py"]
    if mode == "cold" or not warm_usable(argv):
        return [run(code, workdir, mode=mode) for code, workdir in snippets]
    with Slot() as slot:
        results = []
        for code, workdir in snippets:
            (workdir / "snippet.py").write_text(code)
            results.append(warm_runner(slot, QUICK).run(argv, workdir, QUICK))
        return results


def test_a_run_finds_nothing_the_previous_run_in_its_slot_left(mode, tmp_path):
    """SysV shm/sem/msg, POSIX message queues, files in /tmp, /dev/shm, HOME and the scratch, processes, mounts:
    each kind is either refused outright or gone before the next run in the same slot (the warm runner
    keeps one sandbox, and so one IPC namespace and one /tmp, per slot)."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    baseline, left, found = runs_in_one_slot(
        [(FIND_LEFTOVERS, second), (LEAVE_BEHIND, first), (FIND_LEFTOVERS, second)], mode
    )
    assert left.status == "ok", left.stderr[-500:]
    made = json.loads(left.stdout)
    assert {made[kind] for kind in ("sysv_shm", "sysv_sem", "sysv_msg", "posix_mq", "mount")} == {-1}, made
    assert made["h3leftover.scratch"] == 0  # the student's own scratch is writable, and comes back to its workdir
    assert (first / "h3leftover.scratch").exists()
    assert found.status == "ok", found.stderr[-500:]
    assert json.loads(found.stdout) == {**json.loads(baseline.stdout), "files": [], "processes": []}
    assert json.loads(found.stdout)["shm"] == [] and not json.loads(found.stdout)["posix_mq"]


HOLD_MEMORY = r"""
import ctypes, os, subprocess, sys
size = int(sys.argv[1]) if len(sys.argv) > 1 else %d
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
for key in (0x4834, 0x4835):
    segment = libc.shmget(key, size, 0o1000 | 0o666)
    if segment >= 0:  # when SysV shared memory is allowed, its pages stay charged after the run
        ctypes.memset(libc.shmat(segment, None, 0), 1, size)
subprocess.Popen([sys.executable, "-c", "x = bytearray(%d); import time; time.sleep(600)"], start_new_session=True)
import time; time.sleep(1)
"""


def test_the_next_run_in_a_slot_is_not_charged_for_what_the_previous_one_held(mode, tmp_path):
    """A run that leaves a daemon and shared memory holding most of the memory limit: the next run in the
    same slot can still allocate most of its limit (the warm runner's slot shares one memory cgroup)."""
    held = QUICK.memory_bytes * 7 // 8
    hog, after = runs_in_one_slot(
        [(HOLD_MEMORY % (held, held), tmp_path), (f"x = bytearray({held}); print(len(x))", tmp_path)], mode
    )
    assert hog.status == "ok", hog.stderr[-500:]
    assert after.status == "ok", (after.status, after.stderr[-500:])


# ----------------------------------------------------------------------------- the grader's own state


@pytest.fixture()
def state(tmp_path, monkeypatch):
    """A fresh state folder for the sandbox (``HANDIN3_SANDBOX_STATE``); returns its path, not yet created."""
    from autograder.sandbox import STATE_ENV, close_warm_runners

    close_warm_runners()  # warm runners hold mounts in the previous state folder
    folder = tmp_path / "state"
    monkeypatch.setenv(STATE_ENV, str(folder))
    (tmp_path / "work").mkdir()
    yield folder
    close_warm_runners()


def test_state_lives_in_a_private_folder_of_the_grader(state, tmp_path):
    from autograder.sandbox import state_dir

    assert run("print('fine')", tmp_path / "work").status == "ok"
    info = state.stat()
    assert state_dir() == state and info.st_uid == os.geteuid() and info.st_mode & 0o777 == 0o700
    del os.environ["HANDIN3_SANDBOX_STATE"]
    default = state_dir()  # per user, never the old fixed /tmp/handin3-sandbox that anyone could create first
    runtime = Path(os.environ.get("XDG_RUNTIME_DIR", "/"))
    assert default.name != "handin3-sandbox" or default.parent in {Path("/run"), runtime}
    assert default.stat().st_uid == os.geteuid() and default.stat().st_mode & 0o777 == 0o700


def test_a_symlinked_slot_lock_neither_truncates_nor_redirects(state, tmp_path):
    from autograder.sandbox import SandboxUnavailable

    victim = tmp_path / "precious.txt"
    victim.write_text("the TA's file\n")
    (state / "slots").mkdir(parents=True, mode=0o700)
    state.chmod(0o700)
    (state / "slots" / "0.lock").symlink_to(victim)
    with pytest.raises(SandboxUnavailable, match="0.lock is a symlink"):
        run("print('unreachable')", tmp_path / "work")
    assert victim.read_text() == "the TA's file\n"


def test_a_state_folder_that_is_a_symlink_is_refused(state, tmp_path):
    from autograder.sandbox import SandboxUnavailable

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    state.symlink_to(elsewhere)
    with pytest.raises(SandboxUnavailable, match="is a symlink"):
        run("print('unreachable')", tmp_path / "work")
    assert not list(elsewhere.iterdir())


def test_a_state_folder_with_other_permissions_is_refused(state, tmp_path):
    from autograder.sandbox import SandboxUnavailable

    state.mkdir(mode=0o755)
    state.chmod(0o755)
    with pytest.raises(SandboxUnavailable, match="chmod 700"):
        run("print('unreachable')", tmp_path / "work")


def test_a_state_folder_of_another_user_is_refused(state, tmp_path, monkeypatch):
    from autograder.sandbox import STATE_ENV, SandboxUnavailable

    if os.geteuid() == 0:
        state.mkdir(mode=0o700)
        os.chown(state, 65534, 65534)
    else:  # an unprivileged grader cannot give a folder away: point at one that root owns
        monkeypatch.setenv(STATE_ENV, "/usr/bin")
    with pytest.raises(SandboxUnavailable, match="belongs to uid"):
        run("print('unreachable')", tmp_path / "work")


# ----------------------------------------------------------------------------- limits with and without cgroups

FILL = """
import errno, os, sys
folder, written = sys.argv[1], 0
try:
    for i in range(10**6):
        with open(os.path.join(folder, f"fill{i}"), "wb") as f:
            for _ in range(4):
                f.write(bytes(2**20))
                written += 2**20
except OSError as error:
    print(written, errno.errorcode[error.errno])
"""


@pytest.mark.parametrize("where", ["scratch", "/tmp", "/dev/shm"])
def test_writable_folders_are_capped(mode, classroom, where):
    """The scratch, /tmp and /dev/shm are size-capped tmpfs (or not writable at all), with or without root."""
    alice, _ = classroom
    folder = "." if where == "scratch" else where
    cap = QUICK.scratch_bytes if where == "scratch" else QUICK.tmp_bytes
    (alice / "fill.py").write_text(FILL)
    if mode == "cold":
        result = run_isolated([sys.executable, "fill.py", folder], alice, QUICK)
    else:
        result = run_isolated([sys.executable, "-I", "fill.py", folder], alice, QUICK)
    assert result.status == "ok", result.stderr[-500:]
    written, error = result.stdout.split()
    assert error in {"ENOSPC", "EACCES"} and int(written) <= cap, result.stdout


def test_the_graders_own_processes_do_not_count_against_the_run(mode, classroom):
    """RLIMIT_NPROC counts per uid: a non-root TA's many processes once made every run crash."""
    alice, _ = classroom
    idle = [subprocess.Popen(["sleep", "60"]) for _ in range(QUICK.max_processes + 8)]
    try:
        result = run(
            "import subprocess\nkids = [subprocess.Popen(['sleep', '1']) for _ in range(%d)]\n"
            "print(sum(kid.wait() == 0 for kid in kids))" % (QUICK.max_processes // 2),
            alice,
            mode=mode,
        )
    finally:
        for process in idle:
            process.kill()
            process.wait()
    assert result.status == "ok" and result.stdout.strip() == str(QUICK.max_processes // 2), result.stderr[-500:]


def test_a_cuda_sized_address_space_reservation_is_not_a_memory_use(mode, classroom):
    """CUDA builds of torch reserve GiBs of PROT_NONE address space at import: that must not count."""
    alice, _ = classroom
    code = (
        "import mmap\nreserved = mmap.mmap(-1, 8 * 2**30, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,"
        " prot=0)\nprint('reserved')"
    )
    result = run(code, alice, mode=mode)
    assert result.status == "ok" and result.stdout.strip() == "reserved", result.stderr[-500:]


def test_enforcement_reports_how_every_limit_holds_here():
    from autograder.sandbox import enforcement
    from autograder.sandbox.cgroups import cgroup_usable
    from autograder.sandbox.enforcement import LIMITS

    report = enforcement()
    assert set(report) == set(LIMITS)
    assert all(entry["mechanism"] for entry in report.values()), report
    memory = report["memory"]["mechanism"]
    assert ("cgroup" in memory) == cgroup_usable() and ("RLIMIT_DATA" in memory) != cgroup_usable()


def test_without_bubblewrap_every_limit_is_reported_unenforced_and_required(monkeypatch):
    from autograder.sandbox import SandboxUnavailable, enforcement, require_limits

    monkeypatch.setenv("PATH", "/nonexistent")
    report = enforcement()
    assert all(entry["mechanism"] is None and "bubblewrap" in entry["reason"] for entry in report.values())
    with pytest.raises(SandboxUnavailable, match="memory.*allow-unenforced-limits"):
        require_limits()
    assert require_limits(allow_unenforced=True) == report


def test_cgroups_can_be_forced_off(monkeypatch, classroom):
    """``HANDIN3_CGROUPS=0`` runs the fallback even where cgroups work: one pinned core, RLIMIT_DATA."""
    from autograder.sandbox import CGROUPS_ENV, close_warm_runners, enforcement

    alice, _ = classroom
    close_warm_runners()
    monkeypatch.setenv(CGROUPS_ENV, "0")
    assert "RLIMIT_DATA" in enforcement()["memory"]["mechanism"]
    code = (
        "import os, resource\nprint(len(os.sched_getaffinity(0)), resource.getrlimit(resource.RLIMIT_DATA)[0])\n"
        "try: os.sched_setaffinity(0, range(os.cpu_count())); print('widened')\n"
        "except OSError: print('refused')"
    )
    result = run(code, alice)
    assert result.status == "ok", result.stderr[-500:]
    cores, data, widened = result.stdout.split()
    assert cores == "1" and 0 < int(data) < 2**62 and widened == "refused"
    close_warm_runners()


def test_a_sandbox_that_cannot_start_is_a_grader_fault_not_the_students(classroom):
    from autograder.sandbox import SandboxFault

    alice, _ = classroom
    with pytest.raises(SandboxFault, match="bubblewrap failed"):
        run_isolated([sys.executable, "-c", "print(1)"], alice, QUICK, readonly_binds=["/nonexistent/runner.py"])
