"""Writing a file so that readers see the old content or the new one, never half (standard library only)."""

import os
import tempfile
from pathlib import Path


def write_atomically(path, data, mode=0o644):
    """Write ``data`` (str as UTF-8, or bytes) to ``path`` through a temporary file and a rename.

    The temporary name is unique, so threads and processes writing the same path at
    once cannot trip over each other: the last rename wins, and each one is whole.
    Returns the path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(temporary, mode)  # by default not mkstemp's 0600, which would hide feedback pages from a web server
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
