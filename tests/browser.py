"""What the browser tests share: Debian's Chromium, the flags it needs here, a free local port, a JupyterLab."""

import contextlib
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
#: Headless, as root, and without the background connections that this machine's closed network refuses.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
needs_chromium = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK), reason=f"{CHROMIUM} is missing: apt-get install chromium"
)


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def jupyter_lab(command, cwd, env, log_path, token, startup_seconds=180):
    """Run ``command`` (a ``jupyter lab`` with ``--port`` and ``token``) until the block ends; yields its base URL.

    Waits until the server answers (start-up on a loaded machine; not a timed assertion) and stops it
    afterwards. Its output goes to ``log_path``, which is shown if it exits early.
    """
    port = next(arg.split("=", 1)[1] for arg in command if arg.startswith("--port="))
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + startup_seconds
            while True:
                try:
                    with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5):
                        break
                except OSError:
                    if server.poll() is not None:
                        raise RuntimeError(
                            f"JupyterLab exited with code {server.returncode}:\n{Path(log_path).read_text()}"
                        ) from None
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"JupyterLab did not answer at {base} within {startup_seconds} s") from None
                    time.sleep(0.5)
            yield base
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
