"""Find live processes by name, to prove that nothing a sandboxed run started outlived it."""

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
