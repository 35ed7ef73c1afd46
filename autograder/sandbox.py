"""Run untrusted student code in a child process with limits.

PLACEHOLDER interface (the bubblewrap implementation replaces the body):
``run_isolated(argv, workdir, limits, sandbox=True) -> RunResult``.
"""
import subprocess
from dataclasses import dataclass


@dataclass
class Limits:
    wall_seconds: float = 120.0
    cpu_seconds: int = 120
    memory_bytes: int = 4 * 2**30
    max_processes: int = 64
    file_size_bytes: int = 64 * 2**20


@dataclass
class RunResult:
    returncode: int
    timed_out: bool
    memory_exceeded: bool
    stdout: str
    stderr: str


def run_isolated(argv, workdir, limits=Limits(), sandbox=True, readonly_binds=()):
    """Run ``argv`` with cwd ``workdir`` (the only writable folder); plain subprocess for now."""
    try:
        done = subprocess.run(argv, cwd=workdir, capture_output=True, text=True, timeout=limits.wall_seconds)
        return RunResult(done.returncode, False, False, done.stdout[-20000:], done.stderr[-20000:])
    except subprocess.TimeoutExpired as timeout:
        return RunResult(-9, True, False, str(timeout.stdout or "")[-20000:], str(timeout.stderr or "")[-20000:])
