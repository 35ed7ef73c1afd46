"""The writable folder the child sees: a size-limited tmpfs copy of the workdir, and safe copies in and out."""

import os
import shutil
import stat
import subprocess
from pathlib import Path

from .cgroups import is_root
from .state import state_dir


class Scratch:
    """The writable folder the child sees at ``workdir``: a size-limited tmpfs copy, as root.

    Without root ``host_path`` is None: bubblewrap mounts the tmpfs inside the sandbox and
    ``launcher.py`` copies the files in and streams them back (:func:`receive_files`).
    """

    def __init__(self, workdir, name, limits, owner_uid):
        self.workdir = Path(workdir)
        self.mount = None
        if not is_root():
            self.host_path = None
            return
        self.mount = state_dir() / name
        self.mount.mkdir(mode=0o700, parents=True)
        try:
            subprocess.run(
                [
                    "mount",
                    "-t",
                    "tmpfs",
                    "-o",
                    f"size={limits.scratch_bytes},mode=0755,nosuid,nodev",
                    "tmpfs",
                    str(self.mount),
                ],
                check=True,
                capture_output=True,
            )
            copy_tree(self.workdir, self.mount, limits.scratch_bytes)
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
            copy_tree(self.mount, self.workdir, max_bytes)
        finally:
            self._unmount()

    def _unmount(self):
        unmount(self.mount)


def unmount(mount_point):
    """Lazily unmount a scratch tmpfs and remove its folder."""
    subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)
    shutil.rmtree(mount_point, ignore_errors=True)


def copy_tree(source, target, max_file_bytes):
    """Copy regular files and folders only; symlinks, devices, fifos and oversized files are skipped."""
    for root, _folders, files in os.walk(source, followlinks=False):
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


def empty(folder):
    """Remove everything inside ``folder`` (symlinks are removed, never followed)."""
    for path in Path(folder).iterdir():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def receive_files(stream, target, max_file_bytes):
    """Write the regular files of a tar ``stream`` (from ``launcher.py``) into ``target``, safely.

    Only regular files no larger than ``max_file_bytes``, with relative names that stay
    inside ``target``; a symlink already in ``target`` is replaced, never followed.
    """
    import tarfile

    target = Path(target)
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if (
                not member.isreg()
                or member.size > max_file_bytes
                or not parts
                or Path(member.name).is_absolute()
                or ".." in parts
            ):
                continue
            folder = target
            for part in parts[:-1]:
                folder = folder / part
                if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
                    break
                folder.mkdir(exist_ok=True)
            else:
                destination = folder / parts[-1]
                if destination.is_symlink():
                    destination.unlink()
                with tar.extractfile(member) as src, open(destination, "wb") as dst:
                    shutil.copyfileobj(src, dst)
