"""Find live processes by name, to prove that nothing a sandboxed run started outlived it."""

import os
from pathlib import Path


def processes_named(name):
    """PIDs (as strings) of the live processes whose command name is ``name``."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if (proc / "comm").read_text().strip() == name:
                found.append(proc.name)
        except OSError:
            pass  # the process ended while we looked
    return found


def processes_running(*argv):
    """PIDs (as ints) of the live processes whose command line is exactly ``argv``."""
    wanted = b"".join(arg.encode() + b"\0" for arg in argv)
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if (proc / "cmdline").read_bytes() == wanted:
                found.append(int(proc.name))
        except OSError:
            pass  # the process ended while we looked
    return found


def dask_worker_pids(cluster):
    """PIDs of a ``distributed.LocalCluster``'s worker processes."""
    import distributed

    with distributed.Client(cluster.scheduler_address) as client:
        return set(client.run(os.getpid).values())
